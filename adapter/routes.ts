import type { Request, Response } from 'express';
import { RegistryError } from '../core/errors.js';
import { V2_PATHS } from '../core/oci/v2-paths.js';
import { checkScope } from './auth.js';

// The /v2 route table, in one place (as distribution's routes.go): which handler answers
// which method on which of the API's paths (core/oci/v2-paths.ts). Names are validated by
// the handlers against the spec grammar.

type Handler = (req: Request, res: Response, params: Record<string, string>) => unknown;

export interface Route {
  name: string;
  pattern: RegExp;
  methods: Partial<Record<'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE', Handler>>;
}

export interface RouteHandlers {
  tags: { list: Handler };
  manifests: { get: Handler; put: Handler; delete: Handler };
  uploads: { start: Handler; status: Handler; patch: Handler; complete: Handler; cancel: Handler };
  blobs: { head: Handler; get: Handler; delete: Handler };
  referrers: { list: Handler };
}

export function routeTable(h: RouteHandlers): Route[] {
  return [
    { name: 'tags', pattern: V2_PATHS.tags, methods: { GET: h.tags.list } },
    {
      name: 'manifest',
      pattern: V2_PATHS.manifest,
      methods: { GET: h.manifests.get, HEAD: h.manifests.get, PUT: h.manifests.put, DELETE: h.manifests.delete },
    },
    { name: 'upload-start', pattern: V2_PATHS.uploadStart, methods: { POST: h.uploads.start } },
    {
      name: 'upload',
      pattern: V2_PATHS.upload,
      methods: { GET: h.uploads.status, PATCH: h.uploads.patch, PUT: h.uploads.complete, DELETE: h.uploads.cancel },
    },
    {
      name: 'blob',
      pattern: V2_PATHS.blob,
      methods: { HEAD: h.blobs.head, GET: h.blobs.get, DELETE: h.blobs.delete },
    },
    { name: 'referrers', pattern: V2_PATHS.referrers, methods: { GET: h.referrers.list } },
  ];
}

function decode(params: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) {
    try {
      out[k] = decodeURIComponent(v);
    } catch {
      out[k] = v; // left as is: the grammar check rejects it
    }
  }
  return out;
}

/**
 * Answers a /v2 request (`path`: its path, without the query) with its handler; false when
 * no route has that path. 405 with Allow for a known path and another method.
 */
export function router(routes: Route[]) {
  return async (req: Request, res: Response, path: string): Promise<boolean> => {
    for (const route of routes) {
      const m = route.pattern.exec(path);
      if (!m) continue;
      const handler = route.methods[req.method as keyof Route['methods']];
      if (!handler) {
        res.set('Allow', Object.keys(route.methods).join(', '));
        throw new RegistryError('UNSUPPORTED', `${req.method} is not supported on this resource`);
      }
      const params = decode(m.groups ?? {});
      checkScope(req.principal, params.name);
      await handler(req, res, params);
      return true;
    }
    return false;
  };
}
