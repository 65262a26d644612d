import type { Request, Response } from 'express';
import type { BlobService } from '../blob-service.js';

type Params = { name: string; digest: string };

/** Where a blob's bytes are: the source repository (the name less its group) in Harbor. */
function sourceLocation(registry: string, name: string, digest: string): string {
  const slash = name.indexOf('/');
  return `${registry}/v2/${slash < 0 ? name : name.slice(slash + 1)}/blobs/${digest}`;
}

export function blobHandlers(blobs: BlobService, imageRegistry: string) {
  return {
    /**
     * Every blob is "present": Harbor's replication (and skopeo) HEAD each blob before
     * sending it and skip it on 200, so no layer bytes ever travel to this endpoint.
     * Content-Length is the blob's size once a recorded manifest (or a finished upload) has
     * named it; before that the size is not known here and 0 is sent (those clients read
     * only the status).
     */
    async head(_req: Request, res: Response, p: Params): Promise<void> {
      const size = await blobs.size(p.name, p.digest);
      // node's writeHead, not express's set(): the most frequent answer of all (several per
      // image) skips express's per-header charset handling.
      res.writeHead(200, {
        'Docker-Content-Digest': p.digest,
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(size ?? 0),
      }).end();
    },

    /**
     * The bytes are not kept here, but Harbor, which replicated the image, holds them: 307
     * to the source repository there. The spec lets a registry redirect any request (clients
     * follow, and do not carry Authorization to another host); the conformance suite's Go
     * client follows it and checks the status and body after the redirect.
     */
    async get(_req: Request, res: Response, p: Params): Promise<void> {
      await blobs.size(p.name, p.digest); // validates the name and the digest
      res.status(307).set({
        Location: sourceLocation(imageRegistry, p.name, p.digest),
        'Docker-Content-Digest': p.digest,
        'Content-Length': '0',
      }).end();
    },

    async delete(_req: Request, res: Response, p: Params): Promise<void> {
      await blobs.size(p.name, p.digest);
      res.status(202).set('Content-Length', '0').end();
    },
  };
}
