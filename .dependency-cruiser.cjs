// The shape of the code, checked by `npm run depcheck` (dependency-cruiser) before the tests
// in `make test`: which folder may import which, and no import cycles. Rules are per folder,
// so files may move within a folder without touching them. See the README's "Layout".
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      comment: 'A cycle means neither file can be read (or changed) without the other: give the shared part a home both import.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'core-imports-only-core',
      comment: 'core/ is shared by the service and the agent: it imports nothing of theirs.',
      severity: 'error',
      from: { path: '^core/' },
      to: { pathNot: ['^core/', '(^|/)node_modules/'], dependencyTypesNot: ['core'] },
    },
    {
      name: 'agent-imports-only-core',
      comment: 'agent/ is a separate program (bundled on its own): besides itself it imports core/ only.',
      severity: 'error',
      from: { path: '^agent/' },
      to: { pathNot: ['^agent/', '^core/', '(^|/)node_modules/'], dependencyTypesNot: ['core'] },
    },
    {
      name: 'adapter-and-worker-apart',
      comment: 'adapter/ (HTTP) and worker/ (jobs) meet in harbor/ and core/, never in each other.',
      severity: 'error',
      from: { path: '^(adapter|worker)/' },
      to: { path: '^(adapter|worker)/', pathNot: '^$1/' },
    },
    {
      name: 'harbor-below-http-and-jobs',
      comment: 'harbor/ is the Harbor domain that adapter/ and worker/ use: it imports neither of them, nor cli/.',
      severity: 'error',
      from: { path: '^harbor/' },
      to: { path: '^(adapter|worker|cli|agent)/' },
    },
    {
      name: 'product-not-tests',
      comment: 'Nothing that ships imports the tests, the benchmarks or the development tools.',
      severity: 'error',
      from: { path: '^(core|harbor|adapter|worker|agent|cli|harbor-api/src)/' },
      to: { path: '^(test|bench|harbor-dev)/' },
    },
    {
      name: 'service-not-to-dev-dependencies',
      comment: 'the service image installs production dependencies only (npm prune --omit=dev): what its code loads at run time must be one; type-only imports are erased',
      severity: 'error',
      from: { path: '^(core|harbor|adapter|worker|cli|harbor-api/src)/', pathNot: '^adapter/dashboard/client/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that resolves to nothing would only fail at run time.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: '(^|/)node_modules/' },
    // Type-only imports count: a cycle through types is still a cycle for a reader.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'types', 'default'] },
  },
};
