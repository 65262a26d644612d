import type { Platform } from '../core/oci/manifest.js';

// Platforms as "os/architecture[/variant]" (what `docker --platform` and containerd take),
// and the rule by which a device decides whether an image is for it.

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

/**
 * Whether an image of platform `image` runs on a device that wants `wanted`. A wanted
 * platform without a variant takes any variant (arm64 images often say v8, sometimes
 * nothing); a wanted variant must be named by the image.
 */
export function matches(wanted: readonly Platform[], image: { os?: string; architecture?: string; variant?: string } | null | undefined): boolean {
  if (!image) return false;
  return wanted.some((w) => w.os === image.os && w.architecture === image.architecture && (!w.variant || w.variant === image.variant));
}

export function isAttestation(p: { os?: string; architecture?: string } | null | undefined): boolean {
  return p?.os === 'unknown' && p?.architecture === 'unknown';
}
