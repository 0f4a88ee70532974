/**
 * How the CLI and the service start, from the operator's side: the real binary (`npm run build`)
 * and the real npm. What `--help` loads, `--version`, `npm start` and Ctrl-C, and the cycle line
 * against its JSON record.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BIN, REPO_ROOT, runBinary, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

/** A resolve hook that writes every module URL Node.js loads to `file`, one a line. */
function moduleRecorder(): { importFlag: string; loaded(): string[] } {
  const dir = tempDir();
  const log = join(dir, 'loaded.txt');
  writeFileSync(log, '');
  const hooks = join(dir, 'hooks.mjs');
  writeFileSync(
    hooks,
    `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, result.url + '\\n');
  return result;
}
`,
  );
  const register = join(dir, 'register.mjs');
  writeFileSync(
    register,
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
  );
  return {
    importFlag: pathToFileURL(register).href,
    loaded: () =>
      readFileSync(log, 'utf8')
        .split('\n')
        .filter((url) => url !== '' && !url.startsWith('node:')),
  };
}

/** Run `node <args>` with the recorder; resolves to the loaded modules and the output. */
function runRecorded(args: string[], cwd: string, env: Record<string, string>) {
  const recorder = moduleRecorder();
  return new Promise<{ code: number | null; stdout: string; loaded: string[] }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', recorder.importFlag, ...args], {
      cwd,
      env: { PATH: process.env.PATH, ...env },
    });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, loaded: recorder.loaded() }));
  });
}

describe('valhalla --help loads no command', () => {
  it('the built binary reads its entry file and nothing else of the product or its packages', async () => {
    const cwd = tempDir();
    const result = await runRecorded([BIN, '--help'], cwd, testEnv(join(cwd, 'data')));
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Commands:');
    expect(result.stdout).toContain('status [options]');
    const files = result.loaded.map((url) => url.replace(pathToFileURL(REPO_ROOT).href, ''));
    // bin/valhalla.js, the bundle's entry chunk and the bundler's helpers: no command's chunk, no package.
    const others = files.filter(
      (f) =>
        !f.endsWith('bin/valhalla.js') &&
        !f.endsWith('dist/bundle/valhalla.js') &&
        !/dist\/bundle\/rolldown-runtime-[\w-]+\.js$/.test(f),
    );
    expect(others).toEqual([]);
  });

  it('the compiled modules: --help imports the CLI front and commander only (no app, store, server or config)', async () => {
    const cwd = tempDir();
    const main = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')).href;
    const script = `const { runCli } = await import(${JSON.stringify(main)});
process.exitCode = await runCli(['--help'], { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: {}, cwd: process.cwd() });`;
    const result = await runRecorded(['--input-type=module', '-e', script], cwd, {});
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Commands:');
    const product = result.loaded
      .filter((url) => url.includes('/dist/src/'))
      .map((url) => url.slice(url.indexOf('/dist/src/') + '/dist/src/'.length));
    expect(product.length).toBeGreaterThan(0);
    // The CLI front and its one leaf, the terminal escaping rule (src/text: it imports nothing).
    for (const file of product)
      expect(file).toMatch(/^(cli\/(main|catalogue|output|version)|text\/index)\.js$/);
    const packages = result.loaded.filter((url) => url.includes('/node_modules/'));
    for (const url of packages) expect(url).toMatch(/\/node_modules\/commander\//);
  });

  it('`valhalla status` loads the status command and not the others (nor the dashboard)', async () => {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'));
    expect((await runBinary(['init'], { cwd, env })).code).toBe(0);
    const main = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')).href;
    const script = `const { runCli } = await import(${JSON.stringify(main)});
process.exitCode = await runCli(['status'], { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() });`;
    const result = await runRecorded(['--input-type=module', '-e', script], cwd, env);
    expect(result.code).toBe(0);
    const commands = result.loaded.filter((url) => url.includes('/dist/src/cli/commands/'));
    expect(commands.map((url) => url.slice(url.lastIndexOf('/') + 1))).toEqual(['status.js']);
    for (const url of result.loaded) {
      expect(url).not.toMatch(/\/node_modules\/(fastify|@fastify|@faker-js|selfsigned)\//);
      expect(url).not.toMatch(/\/dist\/src\/(server|synthetic|sandbox|rehearsal)\//);
    }
  });
});

describe('--version', () => {
  it("prints package.json's version and exits 0", async () => {
    const cwd = tempDir();
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string })
      .version;
    for (const flag of ['--version', '-V']) {
      const result = await runBinary([flag], { cwd, env: {} });
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(`${version}\n`);
    }
  });
});

describe('npm start', () => {
  it('runs the service and Ctrl-C (SIGINT to its process group) ends it with exit 0', async () => {
    const cwd = tempDir();
    const env = {
      ...process.env,
      ...testEnv(join(cwd, 'data'), { VALHALLA_CYCLE_INTERVAL_S: '2', VALHALLA_METRICS_PORT: '0' }),
    };
    // As a terminal starts it: its own process group, which Ctrl-C signals as a whole.
    const npm = spawn('npm', ['start'], {
      cwd: REPO_ROOT,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    npm.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      npm.on('exit', (code, signal) => resolve({ code, signal })),
    );
    await new Promise<void>((resolve, reject) => {
      npm.stdout.on('data', (c: Buffer) => {
        stdout += c.toString('utf8');
        if (/^cycle 1 /m.test(stdout)) resolve();
      });
      npm.on('exit', () =>
        reject(new Error(`npm start ended before its first cycle:\n${stdout}\n${stderr}`)),
      );
    });
    process.kill(-(npm.pid as number), 'SIGINT');
    const ended = await exit;
    expect(ended, stderr).toEqual({ code: 0, signal: null });
    expect(stderr).toContain('SIGINT: stopping the worker');
    // No process of the group is left behind.
    expect(() => process.kill(-(npm.pid as number), 0)).toThrow();
  });
});

describe('the cycle line and its JSON record', () => {
  it('say the same figures: the record is the report the line is written from', async () => {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'), { VALHALLA_CYCLE_INTERVAL_S: '1' });
    expect((await runBinary(['init'], { cwd, env })).code).toBe(0);
    const run = await runBinary(['run', '--cycles', '2'], { cwd, env, timeoutMs: 180_000 });
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.split('\n').filter((l) => /^cycle \d+ /.test(l));
    const records = readFileSync(env.VALHALLA_LOG_FILE as string, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((r) => r.event === 'cycle');
    expect(lines).toHaveLength(2);
    expect(records.map((r) => r.msg)).toEqual(lines);
    for (const record of records) {
      const line = record.msg as string;
      expect(line).toContain(`cycle ${record.cycleId} [${record.kind}]`);
      expect(line).toContain(`ceiling ${record.ceiling} `);
      expect(record.kind).toBe('dry_run');
      expect(line).toContain(`dry-run recorded ${record.dryRunRecorded} lead(s)`);
      expect(record.dryRunRecorded).toBeGreaterThan(0);
      // A dry run claims nothing: the record says so beside the figure the line gives.
      expect(record.claimed).toBe(0);
    }
  });
});
