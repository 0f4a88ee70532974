/**
 * The dedup rule is the installation's (README "Leads and ingest"), through the built binary: `init`
 * records it; any later command run with another VALHALLA_DEDUP_KEY, from the environment or from
 * .env, exits 3 naming both rules, where the running one came from and the fix, and does nothing;
 * `valhalla run` too. On SQLite and PostgreSQL.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { runBinary, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { HOUR } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);

const refusal = (source: string, fix: string) =>
  'valhalla: refused: this installation deduplicates by email (the dedup rule recorded in its database), ' +
  `but this command runs with external_id (${source}). The rule is fixed per installation: leads keyed by ` +
  `another identity would not match the stored ones. Nothing was done. To fix: ${fix}.\n`;

describe.each(list)('on $name: the dedup rule recorded at init', (backend: Backend) => {
  it('another rule from the environment or .env: ingest and run exit 3 naming both rules and the fix, and nothing is done', async () => {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'), { VALHALLA_DATABASE_URL: backend.databaseUrl() });
    const run = (args: string[], extra: Record<string, string> = {}) =>
      runBinary(args, { cwd, env: { ...env, ...extra } });

    const init = await run(['init']);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    expect(init.stdout).toContain(
      '  dedup rule:       email (recorded: every command on this installation must run with it)\n',
    );
    const at = new Date(Date.now() - HOUR).toISOString();
    writeFileSync(
      join(cwd, 'leads.csv'),
      `external_id,name,email,score,source_timestamp,value\nCRM-1,Ada,ada@example.org,80,${at},10\nCRM-2,Bo,bo@example.org,80,${at},10\n`,
    );

    const fromEnvironment = await run(['ingest', 'leads.csv'], { VALHALLA_DEDUP_KEY: 'external_id' });
    expect(fromEnvironment.stdout).toBe('');
    expect(fromEnvironment.stderr).toBe(
      refusal(
        'VALHALLA_DEDUP_KEY from the environment',
        'unset VALHALLA_DEDUP_KEY (email is the default) or set it to email',
      ),
    );
    expect(fromEnvironment.code).toBe(3);

    writeFileSync(join(cwd, '.env'), 'VALHALLA_DEDUP_KEY=external_id\n');
    const fromDotenv = await run(['ingest', 'leads.csv']);
    expect(fromDotenv.stdout).toBe('');
    expect(fromDotenv.stderr).toBe(
      refusal(
        'VALHALLA_DEDUP_KEY in .env',
        'remove VALHALLA_DEDUP_KEY from .env (email is the default) or set it to email there',
      ),
    );
    expect(fromDotenv.code).toBe(3);

    // The service refuses before it starts anything: no worker, no synthetic leads loaded, no cycle.
    const service = await run(['run', '--once']);
    expect(service.stdout).toBe('');
    expect(service.stderr).toContain('valhalla: refused: this installation deduplicates by email');
    expect(service.stderr).toContain('(VALHALLA_DEDUP_KEY in .env)');
    expect(service.code).toBe(3);
    const serviceFromEnvironment = await run(['run', '--once'], { VALHALLA_DEDUP_KEY: 'external_id' });
    expect(serviceFromEnvironment.stderr).toContain('(VALHALLA_DEDUP_KEY from the environment)');
    expect(serviceFromEnvironment.code).toBe(3);
    // `init` again cannot change it either.
    expect((await run(['init'])).code).toBe(3);
    // A stop is never held up by it: a pause goes ahead (a resume, which lets leads go again, does not).
    const paused = await run(['pause', '--reason', 'stop first, settings later'], {
      VALHALLA_DEDUP_KEY: 'external_id',
    });
    expect(paused.stderr).not.toContain('refused');
    expect(paused.stdout).toMatch(/pause/);
    expect([0, 4]).toContain(paused.code);
    const resumed = await run(['resume', '--reason', 'done'], { VALHALLA_DEDUP_KEY: 'external_id' });
    expect(resumed.code).toBe(3);
    expect(resumed.stderr).toContain('valhalla: refused: this installation deduplicates by email');

    // Nothing was done: no ingest run, no lead, no cycle. With the recorded rule, the same file goes in.
    rmSync(join(cwd, '.env'));
    const status = await run(['status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout) as {
      leads: { total: number };
      ingest: { runs: number };
      run: { lastCycles: unknown[]; heartbeat: unknown };
    };
    expect(report.leads.total).toBe(0);
    expect(report.ingest.runs).toBe(0);
    expect(report.run).toMatchObject({ lastCycles: [], heartbeat: null });
    const ingested = await run(['ingest', 'leads.csv', '--json']);
    expect(ingested.code, ingested.stderr).toBe(0);
    expect(JSON.parse(ingested.stdout)).toMatchObject({ accepted: 2, duplicate: 0 });
    expect((await run(['audit', 'verify'])).code).toBe(0);
  });
});
