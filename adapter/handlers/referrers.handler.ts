import type { Request, Response } from 'express';
import { MediaType } from '../../core/oci/media-types.js';
import type { ManifestService } from '../manifest-service.js';

export function referrerHandlers(service: ManifestService) {
  return {
    /** OCI distribution 1.1 "Listing Referrers": always an image index, empty when none. */
    async list(req: Request, res: Response, p: { name: string; digest: string }): Promise<void> {
      const artifactType = typeof req.query.artifactType === 'string' ? req.query.artifactType : undefined;
      const rows = await service.referrers(p.name, p.digest, artifactType);
      if (artifactType !== undefined) res.set('OCI-Filters-Applied', 'artifactType');
      const manifests = rows.map((r) => ({
        mediaType: r.mediaType,
        digest: r.digest,
        size: r.size,
        ...(r.artifactType === null ? {} : { artifactType: r.artifactType }),
        ...(r.annotations === null ? {} : { annotations: r.annotations }),
      }));
      res.status(200).type(MediaType.OciIndex).send(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }));
    },
  };
}
