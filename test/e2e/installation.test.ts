/**
 * Which installation a command acts on (README: "Which installation a command acts on"), through the
 * built binary: from a folder without one, every command but `init` exits 1, names where it looked
 * and creates nothing; `--data-dir`, `VALHALLA_DATA_DIR` and `VALHALLA_ENV_FILE` find the service's
 * installation from anywhere. PostgreSQL: a schema never initialised is no installation either, and
 * is not created.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { type Backend, backends, databaseExists, dropTestSchemas } from '../support/backends.js';
import { runBinary, runInProcess, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const list = await backends();
afterAll(dropTestSchemas);

const SECRET = 'test-secret-0123456789abcdef0123456789abcdef';

/** Only what an operator's shell would have: no data folder, database or settings file named. */
const bareEnv = (_cwd: string) => ({
  VALHALLA_PSEUDONYM_SECRET: SECRET,
  VALHALLA_LOG_FILE: join(tempDir(), 'valhalla.log'),
});

describe('a command run where there is no installation', () => {
  it('rollback, pause, status and gates status exit 1 naming the path and the rule, and create nothing', async () => {
    const cwd = tempDir();
    const env = bareEnv(cwd);
    for (const args of [
      ['rollback', '--reason', 'error rate on the dashboard'],
      ['pause'],
      ['status'],
      ['gates', 'status'],
      ['stability', 'verify'],
      ['cycle', 'confirm'],
      ['run', '--once'],
    ]) {
      const result = await runBinary(args, { cwd, env });
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(1);
      expect(result.stdout, args.join(' ')).toBe('');
      expect(result.stderr).toContain(`no Valhalla installation at ${join(cwd, 'data', 'valhalla.db')}`);
      expect(result.stderr).toContain('nothing was created');
      expect(result.stderr).toContain(`the current directory ${cwd}`);
      expect(result.stderr).toContain('--data-dir DIR');
      expect(result.stderr).toContain('VALHALLA_ENV_FILE=FILE');
      expect(result.stderr).not.toContain('mode live → rolled_back');
      expect(readdirSync(cwd), args.join(' ')).toEqual([]);
    }
  });

  it('a database that `init` never initialised is no installation either', async () => {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'));
    // `db migrate` makes no SQLite database either.
    expect((await runBinary(['db', 'migrate'], { cwd, env })).code).toBe(1);
    expect(readdirSync(cwd)).toEqual([]);
    // A store opened without `init` (what an older release's `status` left behind).
    const store = await openStore({ kind: 'sqlite', path: join(cwd, 'data', 'valhalla.db') });
    await store.close();
    const status = await runBinary(['status'], { cwd, env });
    expect(status.code).toBe(1);
    expect(status.stderr).toContain('was never initialised');
  });
});

describe.each(list)('on $name: the installation named by the configuration', (backend: Backend) => {
  it('a database URL with nothing initialised in it: exit 1, nothing created; after init the same command works', async () => {
    const cwd = tempDir();
    const databaseUrl = backend.databaseUrl();
    const env = testEnv(join(cwd, 'data'), { VALHALLA_DATABASE_URL: databaseUrl });
    const refused = await runInProcess(['rollback', '--reason', 'drill'], { cwd, env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('no Valhalla installation at');
    expect(refused.stderr).toContain('VALHALLA_DATABASE_URL from the environment');
    expect(await databaseExists(databaseUrl)).toBe(false);

    expect((await runInProcess(['init'], { cwd, env })).code).toBe(0);
    const status = await runInProcess(['status', '--json'], { cwd, env });
    expect(status.code, status.stderr).toBe(0);
  });
});

describe('pointing the CLI at the service’s installation from elsewhere', () => {
  it('--data-dir, VALHALLA_DATA_DIR and VALHALLA_ENV_FILE all reach it; the wrong folder does not', async () => {
    const service = tempDir();
    const dataDir = join(service, 'var-lib-valhalla');
    const envFile = join(service, 'valhalla.env');
    writeFileSync(envFile, `VALHALLA_DATA_DIR=${dataDir}\nVALHALLA_OPERATOR=svc\n`);
    const init = await runBinary(['init'], {
      cwd: service,
      env: { ...bareEnv(service), VALHALLA_ENV_FILE: envFile },
    });
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain(`Initialised Valhalla in ${dataDir}`);

    const elsewhere = tempDir();
    const env = bareEnv(elsewhere);
    const viaFlag = await runBinary(['--data-dir', dataDir, 'status', '--json'], { cwd: elsewhere, env });
    expect(viaFlag.code, viaFlag.stderr).toBe(0);
    const afterCommand = await runBinary(['status', '--json', '--data-dir', dataDir], {
      cwd: elsewhere,
      env,
    });
    expect(afterCommand.code, afterCommand.stderr).toBe(0);
    const viaVariable = await runBinary(['status', '--json'], {
      cwd: elsewhere,
      env: { ...env, VALHALLA_DATA_DIR: dataDir },
    });
    expect(viaVariable.code, viaVariable.stderr).toBe(0);
    const viaEnvFile = await runBinary(['pause', '--reason', 'maintenance'], {
      cwd: elsewhere,
      env: { ...env, VALHALLA_ENV_FILE: envFile },
    });
    expect(viaEnvFile.stdout).toContain('mode live → paused');
    const wrong = await runBinary(['--data-dir', join(elsewhere, 'nope'), 'resume'], { cwd: elsewhere, env });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`no Valhalla installation at ${join(elsewhere, 'nope', 'valhalla.db')}`);
    expect(wrong.stderr).toContain(`--data-dir ${join(elsewhere, 'nope')}`);
    expect(readdirSync(elsewhere)).toEqual([]);
  });
});
