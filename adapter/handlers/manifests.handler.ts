import type { Request, Response } from 'express';
import { MAX_MANIFEST_BYTES } from '../../core/oci/manifest.js';
import type { ManifestService } from '../manifest-service.js';
import { readBody } from './body.js';

type Params = { name: string; reference: string };

export function manifestHandlers(service: ManifestService) {
  return {
    /** GET and HEAD serve the exact bytes recorded, so a client's digest check passes. */
    async get(req: Request, res: Response, p: Params): Promise<void> {
      const m = await service.get(p.name, p.reference);
      res.status(200).set({
        'Content-Type': m.mediaType,
        'Docker-Content-Digest': m.digest,
        'Content-Length': String(m.body.length),
        ETag: `"${m.digest}"`,
      });
      if (req.method === 'HEAD') res.end();
      else res.end(m.body);
    },

    async put(req: Request, res: Response, p: Params): Promise<void> {
      const body = await readBody(req, MAX_MANIFEST_BYTES);
      const m = await service.put(p.name, p.reference, req.headers['content-type'], body);
      // 201 is sent only after the record (and its outbox row) is committed.
      res.status(201).set({
        Location: `/v2/${p.name}/manifests/${m.digest}`,
        'Docker-Content-Digest': m.digest,
        'Content-Length': '0',
      });
      if (m.subject) res.set('OCI-Subject', m.subject);
      res.end();
    },

    async delete(_req: Request, res: Response, p: Params): Promise<void> {
      await service.delete(p.name, p.reference);
      res.status(202).set('Content-Length', '0').end();
    },
  };
}
