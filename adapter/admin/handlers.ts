import type { Request, Response } from 'express';
import type { HarborFilter, HarborTrigger } from '../../core/store/group-store.js';
import type { StatusReport } from '../../harbor/fleet.js';
import type { GroupService } from '../../harbor/group-service.js';
import type { HarborSatelliteCompat } from '../../harbor/harbor-satellite.js';
import type { SatelliteService } from '../../harbor/satellite-service.js';
import type { HarborNotification, WebhookService } from '../../harbor/webhook-service.js';
import type { ReconcileSummary } from '../../harbor/reconcile.js';

// Thin handlers: the request was authenticated and checked against the OpenAPI document
// before they run; each calls one service and answers. A 2xx is sent only once the service
// has committed what it changed.

const param = (req: Request, name: string) => String(req.params[name]);

export function groupHandlers(groups: GroupService, reconcile: (group: string) => Promise<ReconcileSummary>) {
  return {
    async list(_req: Request, res: Response) {
      res.json(await groups.list());
    },
    async create(req: Request, res: Response) {
      const b = req.body as { name: string; filters: HarborFilter[]; trigger?: HarborTrigger; replicate?: boolean };
      const result = await groups.create(b);
      res.status(result.created ? 201 : 200).json(result);
    },
    async adopt(req: Request, res: Response) {
      const b = req.body as { policy: string; fix?: boolean; replace?: boolean };
      res.json(await groups.adopt(b.policy, b.fix ?? false, b.replace ?? false));
    },
    async get(req: Request, res: Response) {
      res.json(await groups.get(param(req, 'name')));
    },
    async update(req: Request, res: Response) {
      res.json(await groups.update(param(req, 'name'), req.body as { filters?: HarborFilter[]; trigger?: HarborTrigger }));
    },
    async remove(req: Request, res: Response) {
      res.json(await groups.delete(param(req, 'name')));
    },
    async replicate(req: Request, res: Response) {
      res.status(202).json(await groups.replicate(param(req, 'name')));
    },
    async reconcile(req: Request, res: Response) {
      await groups.get(param(req, 'name')); // 404 for an unknown group
      res.json(await reconcile(param(req, 'name')));
    },
  };
}

export function satelliteHandlers(satellites: SatelliteService, compat: HarborSatelliteCompat | undefined) {
  return {
    async list(req: Request, res: Response) {
      res.json(await satellites.list(typeof req.query.group === 'string' ? req.query.group : undefined));
    },
    async create(req: Request, res: Response) {
      const b = req.body as { name: string; groups: string[]; expiresInHours?: number };
      res.status(201).json(await satellites.create(b.name, b.groups, b.expiresInHours));
    },
    async register(req: Request, res: Response) {
      res.json(await satellites.register((req.body as { token: string }).token));
    },
    async get(req: Request, res: Response) {
      res.json(await satellites.get(param(req, 'name')));
    },
    async update(req: Request, res: Response) {
      res.json(await satellites.setGroups(param(req, 'name'), (req.body as { groups: string[] }).groups));
    },
    async revoke(req: Request, res: Response) {
      await satellites.revoke(param(req, 'name'));
      res.status(204).end();
    },
    async token(req: Request, res: Response) {
      res.status(201).json(await satellites.newToken(param(req, 'name'), (req.body as { expiresInHours?: number } | undefined)?.expiresInHours));
    },
    async rotate(req: Request, res: Response) {
      res.json(await satellites.rotate(param(req, 'name')));
    },
    async status(req: Request, res: Response) {
      await satellites.report(param(req, 'name'), req.caller!, req.body as StatusReport);
      res.status(204).end();
    },
    async zeroTouch(req: Request, res: Response) {
      res.json(await compat!.register(param(req, 'token')));
    },
    async sync(req: Request, res: Response) {
      await compat!.heartbeat(req.caller!, req.body as { name: string });
      res.status(200).end();
    },
  };
}

export function webhookHandlers(webhooks: WebhookService) {
  return {
    async receive(req: Request, res: Response) {
      res.json(await webhooks.receive(req.caller!, req.body as HarborNotification));
    },
  };
}
