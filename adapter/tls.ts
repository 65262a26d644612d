import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { RequestListener } from 'node:http';
import { ConfigError, type Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';

// HTTPS for the endpoint and the operations listener, from PEM files (TLS_CERT_FILE,
// TLS_KEY_FILE, TLS_CLIENT_CA_FILE). The files are read again on a timer rather than
// watched: a Kubernetes Secret volume or cert-manager replaces them by swapping a symlink of
// their directory, which a watch on the files does not see. A pair that changed is handed to
// `setSecureContext`, which applies to every connection accepted after it; connections
// already open keep the certificate they were made with.

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** Ask every client for a certificate from these CAs, and refuse the handshake without one. */
  clientCaFile?: string;
  /** How often the files are read again. */
  reloadMs: number;
}

/** The TLS files of a listener, from the configuration: undefined when TLS is off. */
export function tlsFiles(config: Config, listener: 'endpoint' | 'operations'): TlsFiles | undefined {
  if (config.tlsCertFile === undefined || config.tlsKeyFile === undefined) return undefined;
  return {
    certFile: config.tlsCertFile,
    keyFile: config.tlsKeyFile,
    // Kubelet's probes cannot present a client certificate: the operations port never asks.
    ...(listener === 'endpoint' && config.tlsClientCaFile !== undefined ? { clientCaFile: config.tlsClientCaFile } : {}),
    reloadMs: config.tlsReloadSeconds * 1000,
  };
}

interface Pem {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

const VARS = { cert: 'TLS_CERT_FILE', key: 'TLS_KEY_FILE', ca: 'TLS_CLIENT_CA_FILE' } as const;

function secureOptions(pem: Pem): SecureContextOptions {
  return { cert: pem.cert, key: pem.key, ...(pem.ca ? { ca: pem.ca } : {}) };
}

/** Reads and checks the files; every problem (unreadable, not PEM, key not the certificate's) named in one error. */
function readPem(files: TlsFiles, read: (path: string) => Buffer): Pem {
  const problems: string[] = [];
  const one = (what: keyof typeof VARS, path: string): Buffer => {
    try {
      return read(path);
    } catch (err) {
      problems.push(`${VARS[what]}=${path} cannot be read: ${(err as Error).message}`);
      return Buffer.alloc(0);
    }
  };
  const pem: Pem = { cert: one('cert', files.certFile), key: one('key', files.keyFile), ...(files.clientCaFile ? { ca: one('ca', files.clientCaFile) } : {}) };
  if (problems.length === 0) {
    try {
      createSecureContext(secureOptions(pem));
    } catch (err) {
      problems.push(`TLS_CERT_FILE=${files.certFile} with TLS_KEY_FILE=${files.keyFile}${files.clientCaFile ? ` and TLS_CLIENT_CA_FILE=${files.clientCaFile}` : ''} cannot be used: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return pem;
}

/** Throws a ConfigError naming every TLS file that cannot be used, before anything starts. */
export function checkTlsFiles(files: TlsFiles | undefined): void {
  if (files) readPem(files, (path) => readFileSync(path));
}

const same = (a: Pem, b: Pem): boolean => a.cert.equals(b.cert) && a.key.equals(b.key) && (a.ca ?? Buffer.alloc(0)).equals(b.ca ?? Buffer.alloc(0));

export type Listener = http.Server | https.Server;

/**
 * An HTTP server for `handler`, or, with TLS files, an HTTPS server that reads them again
 * every `reloadMs` and serves a changed pair from the next connection on. An unusable file
 * at start is a ConfigError; an unusable one later is logged, and the last good pair kept.
 */
export function createListener(handler: RequestListener, tls: TlsFiles | undefined, log: Logger): Listener {
  if (!tls) return http.createServer(handler);
  let current = readPem(tls, (path) => readFileSync(path));
  const server = https.createServer({
    ...secureOptions(current),
    ...(tls.clientCaFile ? { requestCert: true, rejectUnauthorized: true } : {}),
  }, handler);
  let reading = false;
  const timer = setInterval(() => {
    if (reading) return;
    reading = true;
    reloadPem(tls).then((next) => {
      if (same(next, current)) return;
      server.setSecureContext(secureOptions(next));
      current = next;
      log.info({ cert: tls.certFile }, 'TLS certificate reloaded: new connections get the new one');
    }, (err: unknown) => {
      log.warn({ err: err instanceof ConfigError ? err.problems.join('; ') : (err as Error).message }, 'TLS files not reloaded; the last good certificate is still served');
    }).finally(() => {
      reading = false;
    });
  }, tls.reloadMs);
  timer.unref();
  server.on('close', () => clearInterval(timer));
  return server;
}

async function reloadPem(files: TlsFiles): Promise<Pem> {
  const [cert, key, ca] = await Promise.all([
    readFile(files.certFile).catch((e: Error) => e),
    readFile(files.keyFile).catch((e: Error) => e),
    files.clientCaFile ? readFile(files.clientCaFile).catch((e: Error) => e) : undefined,
  ]);
  const byPath = new Map<string, Buffer | Error>([[files.certFile, cert], [files.keyFile, key]]);
  if (files.clientCaFile && ca) byPath.set(files.clientCaFile, ca);
  return readPem(files, (path) => {
    const v = byPath.get(path)!;
    if (v instanceof Error) throw v;
    return v;
  });
}
