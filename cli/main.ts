#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=8
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { ConfigError, loadConfig, type Config } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';

// Each command's code is loaded when that command runs (dynamic imports below): a process
// holds only what it runs. The endpoint (`adapter`) used to load the agent, the exporter,
// the Harbor and admin commands and the worker at start, about 30 MiB of its resident
// memory (bench/endpoint.ts).
const commands = () => import('./commands.js');

const USAGE = `usage: satellite <command> [options]

commands:
  serve                        the endpoint and the state worker in one process
  adapter                      the registry endpoint alone
  worker                       the state worker alone (outbox relay, builds, housekeeping)
  migrate                      apply database migrations and exit
  list <group> [--json]        what a group holds; --json prints the exact state JSON that
                               would be published
  state show <group>           the last published state: version, digest, time, signature
                               (checked with COSIGN_PUBLIC_KEY, else .dev/cosign.pub)
  keys generate [--dir D]      write cosign.key (encrypted with COSIGN_PASSWORD) and cosign.pub
  verify <ref> --key <pub>     check a published state's cosign signature; non-zero on failure
         [--plain-http] [--any-identity]
  credentials create <group>   a credential that may write only <group> (shown once)
  credentials revoke <group>   remove it
  harbor setup <group>         register this endpoint in Harbor and the group's replication rule
         [--filter <names>]... [--replicate]   (HARBOR_URL, HARBOR_PASSWORD, ENDPOINT_URL, ENDPOINT_PASSWORD)
  harbor robot <name> --group <g>...   a pull-only robot for satellites of those groups: the
                               state project and the projects of the images they list
  agent …                      the edge agent (see satellite agent --help)
  state diff <group> <vA> <vB> what was added, removed and retagged between two published versions
  export <group> -o site.tar   the signed state and every image it lists, as one OCI image layout
         [--version N] [--platform os/arch[/variant]]... [--key cosign.pub]   archive for an
                               air-gapped site (the signature checked first with --key, else
                               COSIGN_PUBLIC_KEY, when one is given)

groups (run in Harbor through its API; HARBOR_URL, HARBOR_PASSWORD; create and update also
ENDPOINT_URL and ENDPOINT_PASSWORD, as they register this endpoint in Harbor):
  groups list | show <group>   rule, last execution, published state, satellites
  groups create <group> --filter 'library/**' [--tag '1.*'] [--label L]... [--trigger
         event_based|manual|scheduled [--cron '0 0 * * * *']] [--replicate]
  groups update <group> [--filter …] [--tag …] [--label …] [--trigger …]
  groups delete <group>        remove its rule; every image it lists becomes a tombstone
  groups replicate <group>     a manual run of its rule now
  groups adopt <rule> [--fix] [--replace]  take over a rule made by hand (--fix sets No Flattening,
                               --replace lets it replace the rule the group already has)
  groups reconcile <group>     compare with what the rule selects in Harbor now
satellites:
  satellites list | show <name>             fleet view: drift from the latest state, last seen
  satellites create <name> --group <g>...   a one-time registration token [--expires-in-hours N]
  satellites token <name>                   a new registration token
  satellites set-groups <name> --group <g>...
  satellites rotate <name>                  a new robot secret
  satellites revoke <name>                  delete its robot in Harbor, refuse its tokens

configuration comes from environment variables; see README.md`;

/** Set once the configuration is read: whether a failure prints its stack. */
let verbose = false;

const COMMANDS = ['serve', 'adapter', 'worker', 'migrate', 'list', 'state', 'keys', 'verify', 'credentials', 'harbor', 'groups', 'satellites', 'export', 'help'];

// A reader that stops early (`satellite list edge-eu | head`) closes the pipe: what it did
// not read was not wanted, so that is no failure and deserves no stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  process.stderr.write(`satellite: cannot write the output: ${e.message}\n`);
  process.exit(1);
});

const OPTIONS = {
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  key: { type: 'string' },
  dir: { type: 'string', default: '.' },
  'plain-http': { type: 'boolean', default: false },
  'any-identity': { type: 'boolean', default: false },
  force: { type: 'boolean', default: false },
  filter: { type: 'string', multiple: true, default: [] },
  replicate: { type: 'boolean', default: false },
  tag: { type: 'string' },
  label: { type: 'string', multiple: true, default: [] },
  trigger: { type: 'string' },
  cron: { type: 'string' },
  fix: { type: 'boolean', default: false },
  replace: { type: 'boolean', default: false },
  group: { type: 'string', multiple: true, default: [] },
  'expires-in-hours': { type: 'string' },
  output: { type: 'string', short: 'o' },
  version: { type: 'string' },
  platform: { type: 'string', multiple: true, default: [] },
} satisfies NonNullable<ParseArgsConfig['options']>;

async function main(argv: string[]): Promise<number> {
  // The agent runs on devices with its own configuration file, not the service's environment.
  if (argv[0] === 'agent') return (await import('../agent/cli/commands.js')).agentCli(argv.slice(1));
  // Named before anything else is looked at (options, the environment), so a typo is never
  // answered with something else's error.
  const first = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS, strict: false }).positionals[0];
  if (first !== undefined && !COMMANDS.includes(first)) {
    process.stderr.write(`satellite: unknown command ${JSON.stringify(first)}\n\n${USAGE}\n`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  } catch (e) {
    process.stderr.write(`satellite: ${(e as Error).message}\n`);
    return 2;
  }
  const { positionals, values } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE + '\n');
    return command === undefined && !values.help ? 2 : 0;
  }
  const usage = (text: string) => {
    process.stderr.write(`usage: satellite ${text}\n`);
    return 2;
  };
  const config: Config = loadConfig();
  verbose = config.logLevel === 'debug' || config.logLevel === 'trace';
  switch (command) {
    case 'serve':
    case 'adapter':
    case 'worker':
      // The endpoint alone favours memory over speed in V8 (a smaller young generation,
      // slower heap growth): what it allocates per request is short-lived, and left to the
      // defaults its heap grew to ~100 MiB of garbage between full collections under
      // Harbor's pushes (peak RSS 165-205 MiB at concurrency 32; with this, ~100). It costs
      // some CPU per request (more, smaller scavenges). Set before its modules load.
      if (command === 'adapter') setFlagsFromString('--optimize-for-size');
      await (await import('./run-process.js')).runProcess(config, { endpoint: command !== 'worker', worker: command !== 'adapter' });
      return -1; // keeps running until a signal
    case 'migrate': {
      const applied = await migrate(config.databaseUrl);
      process.stdout.write(applied.length ? `applied migrations ${applied.join(', ')}\n` : 'database is up to date\n');
      return 0;
    }
    case 'list':
      if (rest.length !== 1) return usage('list <group> [--json]');
      await migrate(config.databaseUrl);
      await (await commands()).list(config, rest[0]!, values.json);
      return 0;
    case 'state':
      if (rest[0] === 'diff' && rest.length === 4) return (await commands()).stateDiff(config, rest[1]!, rest[2]!, rest[3]!, values.json);
      if (rest[0] !== 'show' || rest.length !== 2) return usage('state show <group> | state diff <group> <vA> <vB>');
      await migrate(config.databaseUrl);
      return (await commands()).stateShow(config, rest[1]!, values.json);
    case 'keys':
      if (rest[0] !== 'generate' || rest.length !== 1) return usage('keys generate [--dir D] [--force]');
      return (await commands()).keysGenerate(config, values.dir!, values.force);
    case 'verify':
      if (rest.length !== 1 || !values.key) return usage('verify <ref> --key cosign.pub [--plain-http] [--any-identity]');
      return (await commands()).verify(config, rest[0]!, values.key, { plainHttp: values['plain-http']!, anyIdentity: values['any-identity']! });
    case 'credentials':
      if ((rest[0] === 'create' || rest[0] === 'revoke') && rest.length === 2) return (await commands()).groupCredential(config, rest[0], rest[1]!);
      return usage('credentials create|revoke <group>');
    case 'harbor':
      if (rest[0] === 'setup' && rest.length === 2) return (await import('./harbor.js')).harborSetup(config, rest[1]!, values.filter!, values.replicate!);
      if (rest[0] === 'robot' && rest.length === 2) return (await import('./harbor.js')).harborRobot(config, rest[1]!, values.group!);
      return usage('harbor setup <group> [--filter <names>]... [--replicate] | harbor robot <name> --group <g>...');
    case 'export':
      if (rest.length !== 1) return usage('export <group> -o site.tar [--version N] [--platform os/arch[/variant]]...');
      return (await import('./export.js')).exportCommand(config, rest[0]!, { version: values.version, platform: values.platform!, output: values.output, key: values.key });
    case 'groups':
    case 'satellites': {
      const admin = {
        json: values.json!, filter: values.filter!, tag: values.tag, label: values.label!, trigger: values.trigger, cron: values.cron,
        replicate: values.replicate!, fix: values.fix!, replace: values.replace!, group: values.group!, expiresInHours: values['expires-in-hours'],
      };
      const needsName = rest[0] !== 'list';
      if (rest.length !== (needsName ? 2 : 1)) return usage(`${command} ${command === 'groups' ? 'list|show|create|update|delete|replicate|adopt|reconcile' : 'list|show|create|token|set-groups|rotate|revoke'} [<name>] (see satellite help)`);
      const { groupsCommand, satellitesCommand } = await import('./admin.js');
      const code = command === 'groups' ? await groupsCommand(config, rest, admin) : await satellitesCommand(config, rest, admin);
      return code === -2 ? usage(`${command} ${rest[0]}: no such subcommand (see satellite help)`) : code;
    }
    default:
      process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${USAGE}\n`);
      return 2;
  }
}

/** A peer that cannot be reached, whether it refused, is unknown to DNS, or has no route. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT']);

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`satellite: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    // A message for the operator; the stack only when asked for (LOG_LEVEL=debug or trace).
    const e = err as Error & { code?: string };
    const hint = e?.code !== undefined && UNREACHABLE.has(e.code) ? ' (is the service at DATABASE_URL / REDIS_URL / the registry running?)' : '';
    process.stderr.write(`satellite: ${verbose ? e?.stack : e?.message ?? String(err)}${hint}\n`);
    process.exit(1);
  },
);
