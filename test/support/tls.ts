import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent } from 'undici';

const exec = promisify(execFile);

// Certificates made by the test with the openssl CLI (node:crypto cannot sign one): a CA,
// and server or client certificates it issues, each a PEM file pair in `dir`.

export interface Issued {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

export interface TestCa extends Issued {
  /** Issues a certificate for `name` (its CN; server certificates also get the SANs). */
  issue(name: string, opts?: { sans?: string[]; client?: boolean }): Promise<Issued>;
}

const openssl = (args: string[], cwd: string) => exec('openssl', args, { cwd });

async function read(certFile: string, keyFile: string): Promise<Issued> {
  return { certFile, keyFile, cert: await readFile(certFile), key: await readFile(keyFile) };
}

/** A CA of the test's own, in `dir`, valid for a day. */
export async function makeCa(dir: string, name = 'satellite-test-ca'): Promise<TestCa> {
  await mkdir(dir, { recursive: true });
  const base = join(dir, name);
  await openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', `/CN=${name}`, '-keyout', `${base}.key`, '-out', `${base}.crt`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ], dir);
  const ca = await read(`${base}.crt`, `${base}.key`);
  let serial = 1;
  return {
    ...ca,
    async issue(leaf, opts = {}) {
      const file = join(dir, `${leaf}-${serial}`);
      const sans = opts.sans ?? ['IP:127.0.0.1', 'DNS:localhost'];
      const ext = join(dir, `${leaf}-${serial}.ext`);
      await writeFile(ext, [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        `extendedKeyUsage=${opts.client ? 'clientAuth' : 'serverAuth'}`,
        ...(opts.client ? [] : [`subjectAltName=${sans.join(',')}`]),
      ].join('\n'));
      await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${leaf}`, '-keyout', `${file}.key`, '-out', `${file}.csr`], dir);
      await openssl(['x509', '-req', '-in', `${file}.csr`, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-set_serial', String(Date.now() * 100 + serial++), '-days', '1', '-extfile', ext, '-out', `${file}.crt`], dir);
      return read(`${file}.crt`, `${file}.key`);
    },
  };
}

/** A fetch dispatcher that trusts `ca` only (and presents `client`, if given). */
export function trusting(ca: Buffer, client?: Issued): Agent {
  return new Agent({ connect: { ca, ...(client ? { cert: client.cert, key: client.key } : {}) } });
}

/** The serial number of the certificate a TLS server at `url` presents to a new connection. */
export async function servedSerial(url: string, ca: Buffer, client?: Issued): Promise<string> {
  const { connect } = await import('node:tls');
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: u.hostname, port: Number(u.port), ca, ...(client ? { cert: client.cert, key: client.key } : {}) }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial);
    });
    socket.on('error', reject);
  });
}

/** The serial number of a PEM certificate, as node:tls reports it. */
export async function serialOf(cert: Buffer): Promise<string> {
  const { X509Certificate } = await import('node:crypto');
  return new X509Certificate(cert).serialNumber;
}

/** An HTTPS front for a plain-HTTP server (a registry): TLS with `server`'s certificate, bytes passed through. */
export async function tlsFront(target: string, server: Issued): Promise<{ url: string; host: string; close(): Promise<void> }> {
  const tls = await import('node:tls');
  const net = await import('node:net');
  const to = new URL(target);
  const sockets = new Set<import('node:net').Socket>();
  const front = tls.createServer({ cert: server.cert, key: server.key }, (client) => {
    const upstream = net.connect(Number(to.port), to.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  front.on('tlsClientError', () => undefined); // a client refusing the certificate
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  const { port } = front.address() as { port: number };
  return {
    url: `https://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => front.close(r));
    },
  };
}
