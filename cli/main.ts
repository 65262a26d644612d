#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, redact, requireEndpointPassword, type Config } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import { createPool } from '../core/db/pool.js';
import { createLogger } from '../core/logger.js';
import { buildState, renderState } from '../core/state/render.js';
import { ArtifactStore } from '../core/store/artifact-store.js';
import { startEndpoint } from '../adapter/server.js';

const USAGE = `usage: satellite <command> [options]

commands:
  serve                 run the endpoint (and, once it exists, the worker) in one process
  adapter               run the registry endpoint alone
  migrate               apply database migrations and exit
  list <group> [--json] print the artifacts recorded for a group; --json prints the exact
                        state JSON that would be published

configuration comes from environment variables; see README.md`;

async function runEndpoint(config: Config): Promise<void> {
  const password = requireEndpointPassword(config);
  const log = createLogger(config.logLevel);
  await migrate(config.databaseUrl, log);
  const endpoint = await startEndpoint({
    databaseUrl: config.databaseUrl,
    host: config.host,
    port: config.port,
    username: config.endpointUsername,
    password,
    authFailureLimit: config.authFailureLimit,
    log,
  });
  log.info({ url: endpoint.url, username: config.endpointUsername, database: redact(config.databaseUrl) }, 'endpoint listening');
  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down: finishing in-flight requests');
    endpoint.stop().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

async function list(config: Config, group: string, json: boolean): Promise<void> {
  const pool = createPool(config.databaseUrl, 2);
  try {
    const store = new ArtifactStore(pool);
    const state = buildState(group, config.imageRegistry, await store.listGroup(group, config.tombstoneRetentionHours));
    if (json) {
      process.stdout.write(renderState(state) + '\n');
      return;
    }
    if (!(await store.groupExists(group))) {
      process.stderr.write(`group ${group} has recorded nothing yet\n`);
      return;
    }
    const rows = state.artifacts.map((a) => [
      a.repository,
      a.tag.join(',') || '-',
      a.type + (a.platforms ? ` (${a.platforms.length} platforms)` : ''),
      a.digest,
      a.deleted ? 'deleted' : '',
    ]);
    const header = ['REPOSITORY', 'TAGS', 'TYPE', 'DIGEST', ''];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const r of [header, ...rows]) process.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
  } finally {
    await pool.end();
  }
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
  });
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE + '\n');
    return command === undefined && !values.help ? 2 : 0;
  }
  const config = loadConfig();
  switch (command) {
    case 'serve':
    case 'adapter':
      await runEndpoint(config);
      return -1; // keeps running
    case 'migrate': {
      const applied = await migrate(config.databaseUrl);
      process.stdout.write(applied.length ? `applied migrations ${applied.join(', ')}\n` : 'database is up to date\n');
      return 0;
    }
    case 'list':
      if (rest.length !== 1) {
        process.stderr.write('usage: satellite list <group> [--json]\n');
        return 2;
      }
      await list(config, rest[0]!, values.json);
      return 0;
    default:
      process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`satellite: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    process.stderr.write(`satellite: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
