import { rootCertificates } from 'node:tls';
import { Agent } from 'undici';

// Extra CA certificates trusted for HTTPS (the agent's caFile) besides the system's. node:https
// takes them as `ca`; fetch takes none of its own, so it gets an undici dispatcher that
// connects with them (undici 6, the major Node 20's fetch is built on).

/** TLS options trusting `ca` besides the system's CAs; none without it. */
export function trustOptions(ca: string | undefined): { ca?: string[] } {
  return ca ? { ca: [...rootCertificates, ca] } : {};
}

const dispatchers = new Map<string, Agent>();

/** fetch's options trusting `ca` too (one dispatcher per bundle, kept); none without it. */
export function fetchTrusting(ca: string | undefined): RequestInit {
  if (!ca) return {};
  let dispatcher = dispatchers.get(ca);
  if (!dispatcher) {
    dispatcher = new Agent({ connect: trustOptions(ca) });
    dispatchers.set(ca, dispatcher);
  }
  return { dispatcher } as RequestInit;
}
