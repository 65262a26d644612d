import type { Platform } from '../../core/oci/manifest.js';

// Platforms as "os/architecture[/variant]" (what `docker --platform` and containerd take),
// and the rules by which a device decides whether an image is for it, and which child of an
// index it takes.

export type { Platform };

/** Attestation manifests in an index (BuildKit's provenance and SBOMs) use this platform. */
export const ATTESTATION = 'unknown/unknown';

export function parsePlatform(text: string): Platform | undefined {
  const parts = text.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) return undefined;
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2]) p.variant = parts[2];
  return p;
}

export function formatPlatform(p: { os?: string; architecture?: string; variant?: string }): string {
  return [p.os ?? '', p.architecture ?? '', ...(p.variant ? [p.variant] : [])].join('/');
}

/** The platform Node runs on, in OCI's names (GOOS/GOARCH). */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };
  const p: Platform = { os: process.platform === 'win32' ? 'windows' : process.platform, architecture: arch[process.arch] ?? process.arch };
  if (process.arch === 'arm') {
    const v = (process.config.variables as { arm_version?: string }).arm_version;
    if (v) p.variant = `v${v}`;
  }
  return p;
}

/** An image's platform as an index or a config names it (any field may be missing). */
type Named = { os?: string; architecture?: string; variant?: string } | null | undefined;

// The rules below are containerd's (github.com/containerd/platforms: Normalize, Only), which
// its pulls and its CRI plugin use to pick a child of an index: the agent must hold the very
// child the runtime will ask the local server for. Written here because no npm package
// carries them; they are a few tables, kept in step with containerd's by the unit tests.

/**
 * containerd's canonical form of a platform: lower case; aarch64 → arm64, whose default
 * variant v8 (or "8", "v8.0") is dropped, and "9" or "v9.0" → v9; x86_64 and x86-64 →
 * amd64, whose default v1 is dropped; i386 → 386; armhf → arm/v7; armel → arm/v6; arm
 * without a variant (or "7") → arm/v7, and "5", "6", "8" → v5, v6, v8; macos → darwin.
 */
export function normalizePlatform(p: { os: string; architecture: string; variant?: string }): Platform {
  const os = p.os.toLowerCase() === 'macos' ? 'darwin' : p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  switch (architecture) {
    case 'i386':
      architecture = '386';
      variant = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      architecture = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = '';
      else if (variant === '9' || variant === '9.0' || variant === 'v9.0') variant = 'v9';
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
  }
  return { os, architecture, ...(variant ? { variant } : {}) };
}

const versionOf = (variant: string | undefined): number => {
  const m = /^v?(\d+)$/.exec(variant ?? '');
  return m ? Number(m[1]) : NaN;
};

/**
 * What a device of platform `wanted` runs, best first (containerd's `Only`): its own
 * platform; then, for amd64/vN, amd64 v(N-1) … v1 and 386; for arm/vN, arm v(N-1) … v5;
 * for arm64/v8.x, the earlier v8 revisions down to v8, for arm64/v9.x, v9.(x-1) … v9 and
 * then v8.(x+5) … v8; and, for any arm64, its 32-bit modes arm v8 … v5. An arm64 variant
 * containerd does not know (past v8.9 or v9.7) runs nothing.
 */
export function compatiblePlatforms(wanted: { os: string; architecture: string; variant?: string }): Platform[] {
  const p = normalizePlatform(wanted);
  const same = (variant: string): Platform => normalizePlatform({ os: p.os, architecture: p.architecture, variant });
  const arm = (from: number): Platform[] => {
    const list: Platform[] = [];
    for (let v = from; v >= 5; v--) list.push({ os: p.os, architecture: 'arm', variant: `v${v}` });
    return list;
  };
  if (p.architecture === 'amd64') {
    const out = [p];
    for (let v = versionOf(p.variant) - 1; v >= 1; v--) out.push(same(`v${v}`));
    return [...out, { os: p.os, architecture: '386' }];
  }
  if (p.architecture === 'arm') {
    const v = versionOf(p.variant);
    return v > 5 ? [p, ...arm(v - 1)] : [p];
  }
  if (p.architecture === 'arm64') {
    const m = /^v([89])(?:\.(\d))?$/.exec(p.variant ?? 'v8');
    const major = Number(m?.[1]);
    const minor = Number(m?.[2] ?? 0);
    if (!m || (major === 9 && minor > 7)) return [];
    // v9.x was forked from v8.(x+5): it runs those too (containerd stops at v8.9).
    const ranges: [number, number][] = major === 9 ? [[9, minor], [8, Math.min(minor + 5, 9)]] : [[8, minor]];
    const out: Platform[] = [];
    for (const [maj, top] of ranges) for (let x = top; x >= 0; x--) out.push(same(x === 0 ? `v${maj}` : `v${maj}.${x}`));
    return [...out, ...arm(8)];
  }
  return [p];
}

const samePlatform = (a: Platform, b: Platform): boolean => a.os === b.os && a.architecture === b.architecture && (a.variant ?? '') === (b.variant ?? '');

/** Where `image` comes in what `wanted` runs (0: its own platform), or -1 when it does not run there. */
export function platformRank(wanted: Platform, image: Named): number {
  if (!image?.os || !image.architecture) return -1;
  const actual = normalizePlatform({ os: image.os, architecture: image.architecture, ...(image.variant ? { variant: image.variant } : {}) });
  return compatiblePlatforms(wanted).findIndex((c) => samePlatform(c, actual));
}

/** Whether an image of platform `image` runs on a device that wants any of `wanted`. */
export function matches(wanted: readonly Platform[], image: Named): boolean {
  return wanted.some((w) => platformRank(w, image) >= 0);
}

/**
 * The children of an index a device pulls: for each wanted platform, the one child its
 * runtime picks (containerd pulls one: the best ranked, the first in the index among
 * equals). So an arm/v7 device offered v7 and v6 takes v7 only, and takes v6 only from an
 * index without v7. In index order.
 */
export function chooseChildren<T extends { platform?: Named }>(wanted: readonly Platform[], children: readonly T[]): T[] {
  const chosen = new Set<T>();
  for (const w of wanted) {
    let best: T | undefined;
    let bestRank = Infinity;
    for (const c of children) {
      const rank = platformRank(w, c.platform);
      if (rank >= 0 && rank < bestRank) {
        best = c;
        bestRank = rank;
      }
    }
    if (best) chosen.add(best);
  }
  return children.filter((c) => chosen.has(c));
}

export function isAttestation(p: { os?: string; architecture?: string } | null | undefined): boolean {
  return p?.os === 'unknown' && p?.architecture === 'unknown';
}
