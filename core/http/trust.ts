import { rootCertificates } from 'node:tls';
import type { Agent } from 'undici';

// Extra CA certificates trusted for HTTPS (the agent's caFile) besides the system's. node:https
// takes them as `ca`; fetch takes none of its own, so it gets an undici dispatcher that
// connects with them (undici 6, the major Node 20's fetch is built on).
//
// undici is loaded only when a CA is given: loading it costs about 5 MiB of the process's
// resident memory (the agent's bundle evaluated it at start), and it installs its own global
// dispatcher where Node's fetch would use its built-in one. Without a CA, fetch's built-in
// undici does the same work.

/** TLS options trusting `ca` besides the system's CAs; none without it. */
export function trustOptions(ca: string | undefined): { ca?: string[] } {
  return ca ? { ca: [...rootCertificates, ca] } : {};
}

const dispatchers = new Map<string, Promise<Agent>>();
const NONE: Promise<RequestInit> = Promise.resolve({});

/** fetch's options trusting `ca` too (one dispatcher per bundle, kept); none without it. */
export function fetchTrusting(ca: string | undefined): Promise<RequestInit> {
  if (!ca) return NONE;
  let dispatcher = dispatchers.get(ca);
  if (!dispatcher) {
    dispatcher = import('undici').then(({ Agent }) => new Agent({ connect: trustOptions(ca) }));
    dispatchers.set(ca, dispatcher);
  }
  return dispatcher.then((d) => ({ dispatcher: d }) as RequestInit);
}
