import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The test harness is built apart from the shipped dist/ (into dist-test/), and here when stale.
    globalSetup: ['test/support/test-build.ts'],
    // better-sqlite3 is a native module: separate processes are the safe pool for it.
    pool: 'forks',
    maxWorkers: 2,
    // Bounds, not expectations: a test ends as soon as its conditions hold. On a machine loaded at
    // several times its cores, real processes (a runner, its worker) take many times longer to start.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
