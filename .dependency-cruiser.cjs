/** The product's layering, checked in `npm test` (npm run lint:deps). */
module.exports = {
  forbidden: [
    {
      name: 'no-cycle',
      severity: 'error',
      comment: 'The folders form a stack: no module may reach itself through its imports.',
      from: { path: '^src' },
      to: { circular: true },
    },
    {
      name: 'sql-only-in-store',
      severity: 'error',
      comment: 'Only src/store talks to the database: the query builder and the drivers are its own.',
      from: { path: '^src', pathNot: '^src/store/' },
      to: { path: 'node_modules/(kysely|better-sqlite3|pg)/' },
    },
    {
      name: 'no-deep-cross-folder-import',
      severity: 'error',
      comment: 'Another folder of src is used through its index.ts, never a file inside it.',
      from: { path: '^src/([^/]+)/' },
      to: { path: '^src/([^/]+)/(?!index\\.ts$)[^/]+', pathNot: '^src/$1/' },
    },
    {
      name: 'app-only-from-the-top',
      severity: 'error',
      comment:
        'The app composes the domain modules: only the commands (cli), the admin API (server) and the rehearsals, which build private installations, use it.',
      from: { path: '^src/', pathNot: '^src/(app|cli|server|rehearsal)/' },
      to: { path: '^src/app/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
