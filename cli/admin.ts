import type { Config } from '../core/config.js';
import { createPool } from '../core/db/pool.js';
import { migrate } from '../core/db/migrate.js';
import { createLogger } from '../core/logger.js';
import type { HarborFilter, HarborTrigger } from '../core/store/group-store.js';
import { harborContext, requireHarbor, type HarborContext } from '../harbor/context.js';
import { ApiError } from '../harbor/errors.js';
import { GroupService, type GroupView } from '../harbor/group-service.js';
import { SatelliteService, type SatelliteView } from '../harbor/satellite-service.js';
import { HarborReconciler } from '../harbor/reconcile.js';

// `satellite groups …` and `satellite satellites …`: the admin API's operations from the
// command line, run in this process against the database and Harbor (the same services the
// API calls), with human tables or, with --json, the API's JSON.

export interface AdminOptions {
  json: boolean;
  filter: string[];
  tag?: string;
  label: string[];
  trigger?: string;
  cron?: string;
  replicate: boolean;
  fix: boolean;
  replace: boolean;
  group: string[];
  expiresInHours?: string;
}

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);

export function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) out(r.map((c, i) => (c ?? '').padEnd(widths[i]!)).join('  ').trimEnd());
}

function ago(iso: string | null): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const human = s < 90 ? `${s}s` : s < 5400 ? `${Math.round(s / 60)}m` : s < 129_600 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86400)}d`;
  return `${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')} (${human} ago)`;
}

function filtersFrom(o: AdminOptions): HarborFilter[] {
  return [
    ...o.filter.map((value) => ({ type: 'name', value })),
    ...(o.tag ? [{ type: 'tag', value: o.tag }] : []),
    ...(o.label.length ? [{ type: 'label', value: o.label }] : []),
  ];
}

function triggerFrom(o: AdminOptions): HarborTrigger | undefined {
  if (!o.trigger) return undefined;
  return o.trigger === 'scheduled' ? { type: 'scheduled', trigger_settings: { cron: o.cron ?? '' } } : { type: o.trigger };
}

function printGroups(groups: GroupView[]): void {
  table([
    ['GROUP', 'RULE', 'FILTERS', 'TRIGGER', 'LAST EXECUTION', 'STATE', 'SATELLITES'],
    ...groups.map((g) => [
      g.name,
      g.policyId === null ? '-' : `${g.policyId}${g.adopted ? ' (adopted)' : ''}`,
      g.filters.map((f) => `${f.decoration === 'excludes' ? '!' : ''}${f.type}=${Array.isArray(f.value) ? f.value.join('+') : String(f.value)}`).join(' ') || 'everything',
      g.trigger.type,
      g.lastExecution ? `${g.lastExecution.status} #${g.lastExecution.id} (${g.lastExecution.succeed}/${g.lastExecution.total})` : g.harborError ? 'Harbor unreachable' : '-',
      g.state ? `v${g.state.version} ${(g.state.digest ?? '').slice(0, 19)}` : 'not published',
      String(g.satellites),
    ]),
  ]);
}

function printSatellites(satellites: SatelliteView[]): void {
  table([
    ['SATELLITE', 'STATUS', 'GROUPS', 'DRIFT', 'LAST SEEN'],
    ...satellites.map((s) => [
      s.name,
      s.status,
      s.groups.join(','),
      s.drift.length && s.robot && !['never reported', 'reporting'].includes(s.status) ? s.drift.map((d) => `${d.group}: ${d.summary}`).join('; ') : '-',
      ago(s.lastSeen),
    ]),
  ]);
}

async function withServices<T>(config: Config, fn: (ctx: HarborContext, groups: GroupService, satellites: SatelliteService) => Promise<T>): Promise<T> {
  await migrate(config.databaseUrl);
  const pool = createPool(config.databaseUrl, 4);
  try {
    const ctx = await harborContext(config, pool, createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel));
    return await fn(ctx, new GroupService(ctx), new SatelliteService(ctx));
  } finally {
    await pool.end();
  }
}

/** Prints an ApiError the way the API would say it; the exit code tells bad input (2) from failure (1). */
function fail(e: unknown): number {
  if (!(e instanceof ApiError)) throw e;
  err(`satellite: ${e.message}`);
  return e.code === 'BAD_REQUEST' ? 2 : 1;
}

export async function groupsCommand(config: Config, args: string[], o: AdminOptions): Promise<number> {
  const [action, name] = args;
  const print = (v: unknown, human: () => void) => (o.json ? out(JSON.stringify(v)) : human());
  return withServices(config, async (ctx, groups) => {
    try {
      switch (action) {
        case 'list': {
          const list = await groups.list();
          print(list, () => (list.length ? printGroups(list) : out('no groups yet: satellite groups create <name> --filter "library/**"')));
          return 0;
        }
        case 'show': {
          const g = await groups.get(name!);
          print(g, () => printGroups([g]));
          return 0;
        }
        case 'create': {
          const r = await groups.create({ name: name!, filters: filtersFrom(o), trigger: triggerFrom(o), replicate: o.replicate });
          print(r, () => {
            out(`group ${r.group.name} ${r.created ? 'created' : 'already set up'} in Harbor: rule ${r.group.policyId} (destination namespace ${r.group.name}, No Flattening, deletions replicated)`);
            out(`webhooks on: ${r.group.projects.join(', ') || '(no source project exists yet)'}`);
            if (r.executionId !== undefined) out(`replication started (execution ${r.executionId})`);
          });
          return 0;
        }
        case 'update': {
          const filters = filtersFrom(o);
          const g = await groups.update(name!, { ...(filters.length ? { filters } : {}), ...(o.trigger ? { trigger: triggerFrom(o) } : {}) });
          print(g, () => printGroups([g]));
          return 0;
        }
        case 'delete': {
          const r = await groups.delete(name!);
          print(r, () => out(`group ${name} deleted: rule removed from Harbor, ${r.tombstoned} artifacts tombstoned (satellites remove them with the next state)`));
          return 0;
        }
        case 'replicate': {
          const r = await groups.replicate(name!);
          print(r, () => out(`replication of ${name} started (execution ${r.executionId})`));
          return 0;
        }
        case 'adopt': {
          const r = await groups.adopt(name!, o.fix, o.replace);
          print(r, () => {
            out(`rule ${name} adopted as group ${r.group.name}${r.fixed ? ' (set to No Flattening)' : ''}`);
            for (const w of r.warnings) out(`warning: ${w}`);
          });
          return 0;
        }
        case 'reconcile': {
          await groups.get(name!);
          const r = await new HarborReconciler(ctx.pool, requireHarbor(ctx), ctx.log, config.tombstoneRetentionHours).reconcileGroup(name!);
          print(r, () => {
            out(`group ${name}: ${r.checked} entries checked against Harbor, ${r.tombstoned.length} tombstoned, ${r.updated} labels/platforms updated`);
            for (const t of r.tombstoned) out(`  tombstoned ${t}`);
          });
          return 0;
        }
        default:
          return -2;
      }
    } catch (e) {
      return fail(e);
    }
  });
}

export async function satellitesCommand(config: Config, args: string[], o: AdminOptions): Promise<number> {
  const [action, name] = args;
  const print = (v: unknown, human: () => void) => (o.json ? out(JSON.stringify(v)) : human());
  const hours = o.expiresInHours === undefined ? undefined : Number(o.expiresInHours);
  if (hours !== undefined && (!Number.isInteger(hours) || hours < 1 || hours > 8760)) {
    err('satellite: --expires-in-hours must be a whole number of hours from 1 to 8760');
    return 2;
  }
  return withServices(config, async (_ctx, _groups, satellites) => {
    try {
      switch (action) {
        case 'list': {
          const list = await satellites.list();
          print(list, () => (list.length ? printSatellites(list) : out('no satellites yet: satellite satellites create <name> --group <group>')));
          return 0;
        }
        case 'show': {
          const s = await satellites.get(name!);
          print(s, () => {
            printSatellites([s]);
            if (s.robot) out(`robot ${s.robot.name} may pull from: ${s.robot.projects.join(', ')}`);
          });
          return 0;
        }
        case 'create':
        case 'token': {
          const t = action === 'create' ? await satellites.create(name!, o.group, hours) : await satellites.newToken(name!, hours);
          print(t, () => {
            out(`registration token for satellite ${t.name} (valid once, until ${t.expiresAt}; not shown again):`);
            out(`  ${t.token}`);
            out(`on the device: satellite agent register --url ${config.endpointUrl ?? '<this service>'} --token <token>`);
          });
          return 0;
        }
        case 'set-groups': {
          const s = await satellites.setGroups(name!, o.group);
          print(s, () => printSatellites([s]));
          return 0;
        }
        case 'rotate': {
          const r = await satellites.rotate(name!);
          print(r, () => {
            out(`new robot secret for ${r.name} (the old one no longer works; not shown again):`);
            out(`  username: ${r.username}`);
            out(`  password: ${r.password}`);
          });
          return 0;
        }
        case 'revoke': {
          await satellites.revoke(name!);
          print({ revoked: name }, () => out(`satellite ${name} revoked: its robot is deleted in Harbor and its tokens refused`));
          return 0;
        }
        default:
          return -2;
      }
    } catch (e) {
      return fail(e);
    }
  });
}
