import type { Request, Response } from 'express';
import type { ManifestService } from '../manifest-service.js';

const MAX_PAGE = 1000;

export function tagHandlers(service: ManifestService) {
  return {
    /** Spec "Listing Tags": lexical order, ?n= and ?last= pagination with a Link header. */
    async list(req: Request, res: Response, p: { name: string }): Promise<void> {
      const nRaw = typeof req.query.n === 'string' ? Number(req.query.n) : MAX_PAGE;
      const n = Number.isInteger(nRaw) && nRaw >= 0 ? Math.min(nRaw, MAX_PAGE) : MAX_PAGE;
      const last = typeof req.query.last === 'string' ? req.query.last : undefined;
      // One extra row tells whether a next page exists.
      const tags = await service.tags(p.name, n + 1, last);
      const page = tags.slice(0, n);
      if (tags.length > n && n > 0) {
        res.set('Link', `</v2/${p.name}/tags/list?n=${n}&last=${encodeURIComponent(page[page.length - 1]!)}>; rel="next"`);
      }
      res.status(200).json({ name: p.name, tags: page });
    },
  };
}
