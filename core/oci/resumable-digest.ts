import { createSHA512 } from 'hash-wasm';
import type { DigestAlgorithm } from './digest.js';
import { ResumableSha256 } from './resumable-sha256.js';

/**
 * A running digest whose state can be saved between the requests of a chunked upload (which
 * may reach different replicas) and resumed from those bytes. sha256 uses this project's
 * ResumableSha256; sha512 uses hash-wasm, whose hashers save and load their state.
 */
export interface ResumableDigester {
  readonly algorithm: DigestAlgorithm;
  update(chunk: Uint8Array): void;
  save(): Buffer;
  /** "algorithm:hex"; call once, last. */
  digest(): string;
}

class Sha256Digester implements ResumableDigester {
  readonly algorithm = 'sha256' as const;
  constructor(private readonly h: ResumableSha256) {}
  update(chunk: Uint8Array): void {
    this.h.update(chunk);
  }
  save(): Buffer {
    return this.h.save();
  }
  digest(): string {
    return `sha256:${this.h.hex()}`;
  }
}

class Sha512Digester implements ResumableDigester {
  readonly algorithm = 'sha512' as const;
  constructor(private readonly h: Awaited<ReturnType<typeof createSHA512>>) {}
  update(chunk: Uint8Array): void {
    this.h.update(chunk);
  }
  save(): Buffer {
    return Buffer.from(this.h.save());
  }
  digest(): string {
    return `sha512:${this.h.digest('hex')}`;
  }
}

/** A fresh digester, or one resumed from `state` (throws on a state that is not one). */
export async function resumableDigester(algorithm: DigestAlgorithm, state?: Uint8Array): Promise<ResumableDigester> {
  if (algorithm === 'sha256') return new Sha256Digester(state ? ResumableSha256.restore(state) : new ResumableSha256());
  const h = await createSHA512();
  if (state) h.load(state);
  else h.init();
  return new Sha512Digester(h);
}
