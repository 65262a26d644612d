// `npm run mutate`: breaks the compiled code on purpose, one named breakage at a time, runs
// the tests that should notice, and reports each breakage as killed (some test went red)
// or survived (every test stayed green). A breakage whose code no longer matches is stale:
// every breakage is checked against the code before any test runs, and one stale breakage
// stops the run at once with a non-zero exit, naming the file and the text not found, so
// the list cannot quietly drift away from the code.
//
// Why not Stryker: it mutates at random and needs a test run per mutant over the whole
// suite (hours here, with real Postgres, Redis and registries); these are the specific
// breakages found by attacking the service, each aimed at the tests meant to catch it.
//
// The edits are applied to dist/ (after `npm run build`) and always put back, also after
// Ctrl-C; a backup left by a killed run is restored at the next start.
//
// Two lists, scored apart: the designers' (mutants.ts, chosen by the people who wrote the
// tests) and the blind ones (blind-mutants.ts, chosen from the README and the source by
// someone who had not read the tests, issue 22), which measure more honestly what the tests
// guard. `npm run mutate` runs both; `-- --blind` only the blind ones; `-- --only <name>`
// (repeatable, or names alone as arguments) the named ones; `-- --check` only checks that
// the chosen ones still apply.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BLIND_MUTANTS } from './blind-mutants.js';
import { MUTANTS, type Mutant } from './mutants.js';

const DIST = 'dist';
const BACKUP = join(DIST, '.mutation-backup.json');

function restoreBackup(): void {
  if (!existsSync(BACKUP)) return;
  const saved = JSON.parse(readFileSync(BACKUP, 'utf8')) as Record<string, string>;
  for (const [file, text] of Object.entries(saved)) writeFileSync(file, text);
  rmSync(BACKUP);
}

type Outcome = 'killed' | 'survived' | 'stale';

/** The mutated texts of the files `m` edits, or why its edits no longer apply. */
function mutated(m: Mutant): { originals: Record<string, string>; texts: Record<string, string> } | string {
  const originals: Record<string, string> = {};
  const texts: Record<string, string> = {};
  for (const e of m.edits) {
    const file = join(DIST, e.file);
    if (!existsSync(file)) return `${e.file}: no such file under ${DIST}/`;
    texts[file] ??= readFileSync(file, 'utf8');
    originals[file] ??= texts[file]!;
    const count = texts[file]!.split(e.find).length - 1;
    if (count !== 1) return `${e.file}: expected the text once, found it ${count} times: ${JSON.stringify(e.find.slice(0, 120))}`;
    texts[file] = texts[file]!.replace(e.find, () => e.replace);
  }
  for (const t of m.tests) if (!existsSync(join(DIST, 'test', t))) return `test ${t}: no such file under ${DIST}/test/`;
  return { originals, texts };
}

function apply(m: Mutant): string | undefined {
  const edited = mutated(m);
  if (typeof edited === 'string') return edited;
  const { originals, texts } = edited;
  writeFileSync(BACKUP, JSON.stringify(originals));
  for (const [file, text] of Object.entries(texts)) writeFileSync(file, text);
  return undefined;
}

function run(m: Mutant): { outcome: Outcome; detail: string } {
  const stale = apply(m);
  if (stale) return { outcome: 'stale', detail: stale };
  try {
    const r = spawnSync(process.execPath, [
      'node_modules/mocha/bin/mocha.js', '--no-config', '--timeout', '60000', '--exit', '--reporter', 'dot',
      ...m.tests.map((t) => join(DIST, 'test', t)),
    ], { encoding: 'utf8', env: { ...process.env, TEST_LOG_LEVEL: 'silent' }, timeout: 10 * 60_000 });
    const failing = /(\d+) failing/.exec(r.stdout ?? '')?.[1];
    return r.status === 0
      ? { outcome: 'survived', detail: 'every test stayed green' }
      : { outcome: 'killed', detail: failing ? `${failing} failing` : `exit ${r.status ?? r.signal}` };
  } finally {
    restoreBackup();
  }
}

type Result = { m: Mutant; outcome: Outcome; detail: string };

/** The score of one list: killed, survived and stale counts, and the survivors named. */
function report(title: string, results: readonly Result[]): string {
  if (results.length === 0) return '';
  const count = (o: Outcome) => results.filter((r) => r.outcome === o).length;
  const lines = [`${title}: ${count('killed')} killed, ${count('survived')} survived, ${count('stale')} stale of ${results.length}`];
  for (const r of results.filter((x) => x.outcome === 'survived')) {
    lines.push(`  survived: ${r.m.name}${r.m.survivorBecause ? ` (expected: ${r.m.survivorBecause})` : ' (NOT EXPECTED)'}`);
  }
  return `${lines.join('\n')}\n`;
}

/** --check, --blind, --only <name> (repeatable) and bare names; undefined after a usage error. */
function parseArgs(argv: readonly string[]): { checkOnly: boolean; blindOnly: boolean; names: string[] } | undefined {
  const out = { checkOnly: false, blindOnly: false, names: [] as string[] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--check') out.checkOnly = true;
    else if (a === '--blind') out.blindOnly = true;
    else if (a === '--only') {
      const name = argv[++i];
      if (name === undefined) {
        process.stderr.write('--only needs a mutant name\n');
        return undefined;
      }
      out.names.push(name);
    } else if (a.startsWith('--')) {
      process.stderr.write(`unknown option ${a} (known: --check, --blind, --only <name>)\n`);
      return undefined;
    } else out.names.push(a);
  }
  return out;
}

function main(): number {
  restoreBackup();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => {
    restoreBackup();
    process.exit(130);
  });
  const args = parseArgs(process.argv.slice(2));
  if (!args) return 2;
  const blind = new Set<Mutant>(BLIND_MUTANTS);
  const all = args.blindOnly ? BLIND_MUTANTS : [...MUTANTS, ...BLIND_MUTANTS];
  const chosen = args.names.length ? all.filter((m) => args.names.includes(m.name)) : all;
  const unknown = args.names.filter((n) => !all.some((m) => m.name === n));
  if (unknown.length) {
    process.stderr.write(`no such mutant${args.blindOnly ? ' among the blind ones' : ''}: ${unknown.map((n) => JSON.stringify(n)).join(', ')}\n`);
    return 2;
  }
  const names = all.map((m) => m.name);
  const twice = names.filter((n, i) => names.indexOf(n) !== i);
  if (twice.length) {
    process.stderr.write(`mutant names must be unique: ${twice.map((n) => JSON.stringify(n)).join(', ')}\n`);
    return 1;
  }
  // Every patch must still apply before any test runs: a stale one fails the run loudly.
  const stale = chosen.flatMap((m) => {
    const r = mutated(m);
    return typeof r === 'string' ? [`  STALE: ${m.name}\n    ${r}`] : [];
  });
  if (stale.length) {
    process.stderr.write(`npm run mutate: ${stale.length} of ${chosen.length} mutants no longer apply to the code; update test/mutation/mutants.ts or blind-mutants.ts:\n${stale.join('\n')}\n`);
    return 1;
  }
  const blindCount = chosen.filter((m) => blind.has(m)).length;
  if (args.checkOnly) {
    process.stdout.write(`every one of ${chosen.length} mutants applies (${chosen.length - blindCount} designer, ${blindCount} blind)\n`);
    return 0;
  }
  const results: Result[] = [];
  for (const m of chosen) {
    process.stdout.write(`${m.name} … `);
    const r = run(m);
    process.stdout.write(`${r.outcome} (${r.detail})\n`);
    results.push({ m, ...r });
  }
  process.stdout.write(`\n${report('designer mutants (mutants.ts)', results.filter((r) => !blind.has(r.m)))}`);
  process.stdout.write(report('blind mutants (blind-mutants.ts)', results.filter((r) => blind.has(r.m))));
  // Red when a breakage is stale, or survives without a documented reason.
  const unexplained = results.filter((r) => r.outcome === 'stale' || (r.outcome === 'survived' && !r.m.survivorBecause));
  return unexplained.length === 0 ? 0 : 1;
}

process.exitCode = main();
