import type { Request, Response } from 'express';
import type { FleetService } from '../dashboard/fleet-service.js';

// Thin handlers for the routes the dashboard added (dashboard-openapi.ts): validated
// against the document before they run, each calls the fleet service once.

const param = (req: Request, name: string) => String(req.params[name]);

export function dashboardHandlers(fleet: FleetService) {
  return {
    async overview(req: Request, res: Response) {
      const silent = req.query.silentAfterSeconds;
      res.json(await fleet.overview(silent === undefined ? undefined : Number(silent)));
    },
    async versions(req: Request, res: Response) {
      res.json(await fleet.versions(param(req, 'name')));
    },
    async diff(req: Request, res: Response) {
      res.json(await fleet.diff(param(req, 'name'), Number(req.query.from), Number(req.query.to)));
    },
    async report(req: Request, res: Response) {
      res.json(await fleet.report(param(req, 'name')));
    },
  };
}
