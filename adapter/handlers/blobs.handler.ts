import type { Request, Response } from 'express';
import { RegistryError } from '../../core/errors.js';
import { checkName } from '../manifest-service.js';
import { checkDigest } from '../blob-service.js';

type Params = { name: string; digest: string };

export function blobHandlers() {
  return {
    /**
     * Every blob is "present": Harbor's replication (and skopeo) HEAD each blob before
     * sending it and skip it on 200, so no layer bytes ever travel to this endpoint.
     * The size is unknown here and reported as 0; those clients read only the status.
     */
    head(_req: Request, res: Response, p: Params): void {
      checkName(p.name);
      checkDigest(p.digest);
      res.status(200).set({
        'Docker-Content-Digest': p.digest,
        'Content-Type': 'application/octet-stream',
        'Content-Length': '0',
      }).end();
    },

    get(_req: Request, _res: Response, p: Params): void {
      checkName(p.name);
      checkDigest(p.digest);
      throw new RegistryError('BLOB_UNKNOWN', 'this endpoint records manifests only; blob contents are not kept', { digest: p.digest });
    },

    delete(_req: Request, res: Response, p: Params): void {
      checkName(p.name);
      checkDigest(p.digest);
      res.status(202).set('Content-Length', '0').end();
    },
  };
}
