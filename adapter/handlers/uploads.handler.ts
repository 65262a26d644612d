import type { Request, Response } from 'express';
import { RegistryError } from '../../core/errors.js';
import { checkScope, credentialOwner } from '../auth.js';
import { checkAlgorithm, checkDigest, parseContentRange, type BlobService } from '../blob-service.js';
import { checkName } from '../manifest-service.js';

type Params = { name: string; id?: string };

function queryString(req: Request, key: string): string | undefined {
  const v = req.query[key];
  return typeof v === 'string' ? v : undefined;
}

/** Spec "Range: 0-<offset>": the last byte received; distribution writes 0-0 for nothing yet. */
function rangeHeader(size: number): string {
  return `0-${Math.max(size - 1, 0)}`;
}

function progress(res: Response, status: number, name: string, id: string, size: number): void {
  res.status(status).set({
    Location: `/v2/${name}/blobs/uploads/${id}`,
    Range: rangeHeader(size),
    'Docker-Upload-UUID': id,
    'Content-Length': '0',
  }).end();
}

function created(res: Response, name: string, digest: string): void {
  res.status(201).set({
    Location: `/v2/${name}/blobs/${digest}`,
    'Docker-Content-Digest': digest,
    'Content-Length': '0',
  }).end();
}

export function uploadHandlers(blobs: BlobService) {
  return {
    async start(req: Request, res: Response, p: Params): Promise<void> {
      checkName(p.name);
      const mount = queryString(req, 'mount');
      if (mount !== undefined) {
        // Cross-repository mount: every blob is present, so the mount always succeeds.
        const from = queryString(req, 'from');
        if (from !== undefined) {
          checkName(from);
          checkScope(req.principal, from);
        }
        created(res, p.name, checkDigest(mount, 'mount'));
        return;
      }
      const digest = queryString(req, 'digest');
      if (digest !== undefined) {
        await blobs.monolithic(p.name, digest, req);
        created(res, p.name, digest);
        return;
      }
      const id = await blobs.start(p.name, credentialOwner(req.principal), checkAlgorithm(queryString(req, 'digest-algorithm')));
      progress(res, 202, p.name, id, 0);
    },

    async status(_req: Request, res: Response, p: Params): Promise<void> {
      const session = await blobs.status(p.name, p.id!);
      progress(res, 204, p.name, session.id, session.size);
    },

    async patch(req: Request, res: Response, p: Params): Promise<void> {
      const range = parseContentRange(req.headers['content-range']);
      const size = await blobs.append(p.name, p.id!, range, req);
      progress(res, 202, p.name, p.id!, size);
    },

    async complete(req: Request, res: Response, p: Params): Promise<void> {
      const digest = queryString(req, 'digest');
      if (digest === undefined) throw new RegistryError('DIGEST_INVALID', 'the digest query parameter is required to complete an upload');
      await blobs.complete(p.name, p.id!, digest, parseContentRange(req.headers['content-range']), req);
      created(res, p.name, digest);
    },

    async cancel(_req: Request, res: Response, p: Params): Promise<void> {
      await blobs.cancel(p.name, p.id!);
      res.status(204).end();
    },
  };
}
