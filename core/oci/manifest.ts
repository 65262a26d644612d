import { RegistryError } from '../errors.js';
import { computeDigest, isDigest, type DigestAlgorithm } from './digest.js';
import {
  classify,
  INDEX_TYPES,
  IMAGE_MANIFEST_TYPES,
  isMediaType,
  MediaType,
  type ArtifactKind,
} from './media-types.js';

/** distribution's default manifest size limit, and the one the OCI spec suggests. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
}

export interface IndexChild {
  digest: string;
  mediaType: string;
  size: number;
  platform: Platform | null;
}

/** What the endpoint records of a manifest: the exact bytes plus what a state needs. */
export interface ParsedManifest {
  bytes: Buffer;
  digest: string;
  mediaType: string;
  kind: ArtifactKind;
  /** The manifest's artifactType, else its config media type (OCI referrers rule). */
  artifactType: string | null;
  subject: string | null;
  annotations: Record<string, string> | null;
  children: IndexChild[];
  /** The blobs an image manifest names (config, then layers), with their sizes. */
  blobs: { digest: string; size: number }[];
}

function invalid(message: string, detail?: unknown): RegistryError {
  return new RegistryError('MANIFEST_INVALID', message, detail);
}

// A lone UTF-16 surrogate: JSON.parse accepts "\ud800", but it is no Unicode character and
// Postgres refuses it in jsonb (as it refuses U+0000 in text and jsonb).
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** False for text Postgres refuses in text and jsonb: a NUL character or a lone surrogate. */
export function isStorableText(s: string): boolean {
  return !s.includes('\u0000') && !LONE_SURROGATE.test(s);
}

/**
 * How deep arrays and objects may nest. An OCI or Docker manifest nests four or five deep;
 * the bound keeps every later reader of the document (the worker, the agent, JSON.stringify,
 * which all recurse) far from the stack limit.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Every key and string value of the document must be storable text: no U+0000, no lone
 * surrogate. Checked over the whole document, not only the fields recorded today, so a
 * field recorded tomorrow cannot bring the 500 back. The walk keeps its own stack (JSON.parse
 * accepts nesting far deeper than a recursive walk survives) and refuses nesting deeper
 * than MAX_JSON_DEPTH.
 */
function checkText(doc: unknown, root: string): void {
  const bad = (s: string) => !isStorableText(s);
  const pending: { value: unknown; where: string; depth: number }[] = [{ value: doc, where: root, depth: 0 }];
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    const { value, where, depth } = item;
    if (typeof value === 'string') {
      if (bad(value)) throw invalid(`${where} holds a NUL character or a lone UTF-16 surrogate`);
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_JSON_DEPTH) {
      throw invalid(`${root} nests arrays and objects more than ${MAX_JSON_DEPTH} deep (at ${where})`, { maxDepth: MAX_JSON_DEPTH });
    }
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) pending.push({ value: value[i], where: `${where}[${i}]`, depth: depth + 1 });
    } else {
      const entries = Object.entries(value);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, v] = entries[i]!;
        if (bad(k)) throw invalid(`a key in ${where} holds a NUL character or a lone UTF-16 surrogate`);
        pending.push({ value: v, where: `${where}.${k}`, depth: depth + 1 });
      }
    }
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function descriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw invalid(`${where} must be a descriptor object`);
  const { mediaType, digest, size, artifactType, annotations } = value;
  if (!isMediaType(mediaType)) throw invalid(`${where}.mediaType is missing or not a media type`);
  if (typeof digest !== 'string' || !isDigest(digest)) {
    throw invalid(`${where}.digest is not a valid digest`, { digest });
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size must be a non-negative integer`);
  }
  if (artifactType !== undefined && !isMediaType(artifactType)) throw invalid(`${where}.artifactType is not a media type`);
  return { mediaType, digest, size, artifactType: artifactType as string | undefined, annotations: stringMap(annotations, `${where}.annotations`) ?? undefined };
}

function stringMap(value: unknown, where: string): Record<string, string> | null {
  if (value === undefined || value === null) return null;
  if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw invalid(`${where} must map strings to strings`);
  }
  return value as Record<string, string>;
}

function platform(value: unknown, where: string): Platform | null {
  if (value === undefined || value === null) return null;
  if (!isObject(value) || typeof value.architecture !== 'string' || typeof value.os !== 'string') {
    throw invalid(`${where} must name architecture and os`);
  }
  const p: Platform = { architecture: value.architecture, os: value.os };
  if (typeof value.variant === 'string') p.variant = value.variant;
  if (typeof value['os.version'] === 'string') p['os.version'] = value['os.version'];
  return p;
}

/**
 * Validates a manifest body as received and extracts what gets recorded. The media type is
 * the request's Content-Type, which must agree with the body's own mediaType when both
 * are present (OCI image-spec: mediaType "SHOULD be used" and must match).
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined, algorithm: DigestAlgorithm = 'sha256'): ParsedManifest {
  if (bytes.length === 0) throw invalid('manifest body is empty');
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new RegistryError('PAYLOAD_TOO_LARGE', `manifest is ${bytes.length} bytes; the limit is ${MAX_MANIFEST_BYTES}`);
  }
  let doc: unknown;
  try {
    // RFC 8259: JSON exchanged between systems is UTF-8; malformed bytes are refused rather
    // than silently replaced (the stored fields would then differ from the stored body).
    doc = JSON.parse(UTF8.decode(bytes));
  } catch (err) {
    throw invalid('manifest is not valid UTF-8 JSON', { reason: (err as Error).message });
  }
  if (!isObject(doc)) throw invalid('manifest must be a JSON object');
  checkText(doc, 'manifest');
  if (doc.schemaVersion !== 2) throw invalid('only schemaVersion 2 manifests are accepted', { schemaVersion: doc.schemaVersion });

  const header = contentType?.split(';')[0]?.trim().toLowerCase() || undefined;
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  if (header !== undefined && declared !== undefined && header !== declared) {
    throw invalid(`Content-Type ${header} does not match the manifest's mediaType ${declared}`);
  }
  const mediaType = header ?? declared ?? (Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest);
  if (mediaType === MediaType.DockerSchema1 || mediaType === MediaType.DockerSchema1Signed) {
    throw invalid('Docker schema 1 manifests are deprecated and not accepted; push schema 2 or OCI');
  }
  if (!IMAGE_MANIFEST_TYPES.has(mediaType) && !INDEX_TYPES.has(mediaType)) {
    throw invalid(`unsupported manifest media type ${mediaType}`);
  }

  const artifactTypeField = doc.artifactType;
  if (artifactTypeField !== undefined && !isMediaType(artifactTypeField)) throw invalid('artifactType is not a media type');
  const subject = doc.subject === undefined ? null : descriptor(doc.subject, 'subject').digest;
  const annotations = stringMap(doc.annotations, 'annotations');
  const digest = computeDigest(bytes, algorithm);

  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid('an index must have a manifests array');
    const children = doc.manifests.map((m, i) => {
      const d = descriptor(m, `manifests[${i}]`);
      return { digest: d.digest, mediaType: d.mediaType, size: d.size, platform: platform((m as Record<string, unknown>).platform, `manifests[${i}].platform`) };
    });
    return {
      bytes, digest, mediaType, subject, annotations, children,
      blobs: [],
      kind: 'IMAGE',
      artifactType: (artifactTypeField as string | undefined) ?? null,
    };
  }

  const config = descriptor(doc.config, 'config');
  if (!Array.isArray(doc.layers)) throw invalid('an image manifest must have a layers array');
  const layers = doc.layers.map((l, i) => descriptor(l, `layers[${i}]`));
  if (mediaType === MediaType.DockerManifest && layers.length === 0) {
    throw invalid('a Docker image manifest must have at least one layer');
  }
  const artifactType = artifactTypeField as string | undefined;
  const kind = classify({ manifestType: mediaType, artifactType, configType: config.mediaType, layerTypes: layers.map((l) => l.mediaType) });
  return {
    bytes, digest, mediaType, subject, annotations, kind,
    children: [],
    blobs: [config, ...layers].map((d) => ({ digest: d.digest, size: d.size })),
    artifactType: artifactType ?? config.mediaType,
  };
}

/** The platform an image's config names, or undefined when it names none (an artifact, a signature). */
export function configPlatform(config: Buffer): Platform | undefined {
  try {
    const c = JSON.parse(config.toString('utf8')) as { os?: unknown; architecture?: unknown; variant?: unknown };
    if (typeof c.os !== 'string' || typeof c.architecture !== 'string' || !c.os || !c.architecture) return undefined;
    return { os: c.os, architecture: c.architecture, ...(typeof c.variant === 'string' && c.variant ? { variant: c.variant } : {}) };
  } catch {
    return undefined;
  }
}
