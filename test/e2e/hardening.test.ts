/**
 * The product's hard edges, through the built binary (`npm run build` first) and its real servers:
 * secrets never printed, the PII store private whatever the umask, terminal escapes from a lead file
 * never reaching the terminal, output files never written through a link or over a file unasked,
 * a Host allow-list on every HTTP answer, failed authentications limited per address and overall,
 * and no internal error text in a response.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startMetricsServer } from '../../src/monitor/index.js';
import { AUTH_FAILURE_LIMITS, createApiToken } from '../../src/server/index.js';
import { BIN, type CliResult, runBinary, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const MARK = 'Zq9HardEdgeSecret';
const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

/** The binary under a umask of 022 (the usual default), as a shell would start it. */
function underUmask022(args: string[], cwd: string, env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', 'umask 022; exec "$0" "$@"', process.execPath, BIN, ...args], {
      cwd,
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c;
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c;
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(guard);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

describe('secrets are never printed', () => {
  it('config show and its refusal mask a ?password=, a client_secret in the token URL and a pasted token', async () => {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'), {
      VALHALLA_DATABASE_URL: `postgres://valhalla@db.example/valhalla?sslmode=require&password=${MARK}1`,
      VALHALLA_PARTNER_TOKEN_URL: `https://idp.example/oauth/token?client_id=v&client_secret=${MARK}2`,
      VALHALLA_SMTP_URL: `smtp://ops:${MARK}3@mail.example:587`,
      VALHALLA_ALERT_EMAIL_TO: 'ops@example.com',
    });
    const shown = await runBinary(['config', 'show'], { env, cwd });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout + shown.stderr).not.toContain(MARK);
    expect(shown.stdout).toContain('password=***');
    expect(shown.stdout).toContain('client_secret=***');
    expect(shown.stdout).toContain('smtp://ops:***@mail.example:587');

    const token = createApiToken('alice', 'operator').token;
    const refused = await runBinary(['config', 'show'], {
      env: {
        ...env,
        VALHALLA_API_TOKENS: `${token},alice:operator:${token}`,
        VALHALLA_PARTNER_URL: `ftp://x.example/?token=${MARK}4`,
      },
      cwd,
    });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('VALHALLA_API_TOKENS="entry 1 (not shown)"');
    expect(refused.stdout + refused.stderr).not.toContain(MARK);
    expect(refused.stdout + refused.stderr).not.toContain(token.slice(3));
  });
});

describe('the PII store and every output are private whatever the umask', () => {
  it('init, ingest, serve and the outputs under umask 022: folder 0700, database, WAL, SHM, logs, rejects, reports 0600', async () => {
    const cwd = tempDir();
    const data = join(cwd, 'data');
    const env = testEnv(data);
    expect((await underUmask022(['init'], cwd, env)).code).toBe(0);
    writeFileSync(
      join(cwd, 'leads.csv'),
      'name,email,score,source_timestamp\nAda,ada@example.com,80,2026-01-01\nBad,not-an-email,80,2026-01-01\n',
    );
    const ingest = await underUmask022(['ingest', 'leads.csv', '--rejects', 'out/rejects.jsonl'], cwd, env);
    expect(ingest.code, ingest.stderr).toBe(0);
    expect((await underUmask022(['audit', 'export', '--out', 'audit.jsonl'], cwd, env)).code).toBe(0);
    const generated = ['leads', 'generate', '--count', '5', '--out', 'gen/leads.csv'];
    expect((await underUmask022(generated, cwd, env)).code).toBe(0);
    expect(mode(data)).toBe('700');
    for (const file of [
      join(data, 'valhalla.db'),
      join(data, 'valhalla.log'),
      join(cwd, 'out', 'rejects.jsonl'),
      join(cwd, 'audit.jsonl'),
      join(cwd, 'gen', 'leads.csv'),
    ]) {
      expect(mode(file), file).toBe('600');
    }
    expect([mode(join(cwd, 'out')), mode(join(cwd, 'gen'))]).toEqual(['700', '700']);

    // While a server holds the database open, its WAL and SHM exist: they follow the database's mode.
    const served = await serve(cwd, env);
    try {
      for (const suffix of ['-wal', '-shm']) expect(mode(join(data, `valhalla.db${suffix}`))).toBe('600');
    } finally {
      await served.stop();
    }

    // An older release's modes: tightened on the next open, and said so in the log.
    chmodSync(data, 0o755);
    chmodSync(join(data, 'valhalla.db'), 0o644);
    chmodSync(join(data, 'valhalla.log'), 0o644);
    expect((await underUmask022(['status'], cwd, env)).code).toBe(0);
    expect([mode(data), mode(join(data, 'valhalla.db')), mode(join(data, 'valhalla.log'))]).toEqual([
      '700',
      '600',
      '600',
    ]);
    expect(readFileSync(join(data, 'valhalla.log'), 'utf8')).toContain('mode 0644 tightened to 0600');
  });

  it('--rejects never follows a link nor replaces a file unless --force; outputs likewise', async () => {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'));
    expect((await runBinary(['init'], { env, cwd })).code).toBe(0);
    writeFileSync(
      join(cwd, 'leads.csv'),
      'name,email,score,source_timestamp\nBad,not-an-email,80,2026-01-01\n',
    );
    writeFileSync(join(cwd, 'target.txt'), 'keep me\n');
    symlinkSync(join(cwd, 'target.txt'), join(cwd, 'link.jsonl'));
    symlinkSync(join(cwd, 'nowhere.txt'), join(cwd, 'dangling.jsonl'));
    for (const link of ['link.jsonl', 'dangling.jsonl']) {
      for (const extra of [[], ['--force']]) {
        const run = await runBinary(['ingest', 'leads.csv', '--rejects', link, ...extra], { env, cwd });
        expect(run.code).toBe(1);
        expect(run.stderr).toContain('is a symbolic link: refused');
      }
    }
    expect(readFileSync(join(cwd, 'target.txt'), 'utf8')).toBe('keep me\n');
    expect(existsSync(join(cwd, 'nowhere.txt'))).toBe(false);

    writeFileSync(join(cwd, 'old.jsonl'), 'old\n', { mode: 0o644 });
    const exists = await runBinary(['ingest', 'leads.csv', '--rejects', 'old.jsonl'], { env, cwd });
    expect([exists.code, exists.stderr]).toEqual([
      1,
      expect.stringContaining('exists: give --force to overwrite it'),
    ]);
    expect(readFileSync(join(cwd, 'old.jsonl'), 'utf8')).toBe('old\n');
    const forced = await runBinary(['ingest', 'leads.csv', '--rejects', 'old.jsonl', '--force'], {
      env,
      cwd,
    });
    expect(forced.code, forced.stderr).toBe(0);
    expect(readFileSync(join(cwd, 'old.jsonl'), 'utf8')).toContain('"problems"');
    expect(mode(join(cwd, 'old.jsonl'))).toBe('600');

    const exported = await runBinary(['audit', 'export', '--out', 'link.jsonl'], { env, cwd });
    expect([exported.code, exported.stderr]).toEqual([
      1,
      expect.stringContaining('is a symbolic link: refused'),
    ]);
    expect((await runBinary(['audit', 'export', '--out', 'old.jsonl'], { env, cwd })).code).toBe(1);
    expect((await runBinary(['audit', 'export', '--out', 'old.jsonl', '--force'], { env, cwd })).code).toBe(
      0,
    );
    expect(lstatSync(join(cwd, 'link.jsonl')).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(cwd, 'target.txt'), 'utf8')).toBe('keep me\n');
  });
});

describe('terminal escapes from a lead file', () => {
  it('are escaped in the "columns not used" note and every other line', async () => {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'));
    expect((await runBinary(['init'], { env, cwd })).code).toBe(0);
    writeFileSync(
      join(cwd, 'hostile.csv'),
      'name,email,score,source_timestamp,\u001b]0;owned\u0007,\u001b[2J,\u009b31m\u202e\n' +
        'Ada,ada@example.com,80,2026-01-01,x,y,z\n',
    );
    const run = await runBinary(['ingest', 'hostile.csv'], { env, cwd });
    expect(run.code, run.stderr).toBe(0);
    const out = run.stdout + run.stderr;
    // No control character but tab and newline, no C1 code, no bidi override reached the terminal.
    const raw = [...out].filter((c) => {
      const code = c.codePointAt(0)!;
      return (
        (code < 0x20 && code !== 0x09 && code !== 0x0a) || (code >= 0x7f && code <= 0x9f) || code === 0x202e
      );
    });
    expect(raw).toEqual([]);
    expect(run.stderr).toContain(
      'note: columns not used: "\\x1b]0;owned\\x07", "\\x1b[2j", "\\x9b31m\\u202e"',
    );
  });
});

interface Served {
  url: string;
  port: number;
  stop(): Promise<void>;
}
const running = new Set<ChildProcess>();
afterAll(() => {
  for (const child of running) child.kill('SIGKILL');
});

/** `valhalla serve` (the real binary) on a free port of 127.0.0.1. */
async function serve(cwd: string, env: Record<string, string>): Promise<Served> {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    cwd,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c;
  });
  child.stderr.on('data', (c: Buffer) => {
    out += c;
  });
  const closed = new Promise((resolve) => child.once('close', resolve));
  const urlIn = () => /dashboard: (http:\/\/[^\s/]+)\//.exec(out)?.[1];
  for (let i = 0; i < 600 && urlIn() === undefined; i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const url = urlIn();
  if (url === undefined) {
    child.kill('SIGKILL');
    throw new Error(`valhalla serve did not start: ${out}`);
  }
  return {
    url,
    port: Number(new URL(url).port),
    async stop() {
      child.kill('SIGTERM');
      await closed;
      running.delete(child);
    },
  };
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request with the Host header and source address given (127.0.0.x are all this host's). */
function call(
  port: number,
  path: string,
  options: {
    host?: string;
    from?: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string;
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        localAddress: options.from ?? '127.0.0.1',
        headers: { host: options.host ?? `127.0.0.1:${port}`, ...options.headers },
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A request written by hand (two Host headers cannot be sent otherwise); the status line's code. */
function rawStatus(port: number, head: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      reply += c;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0)));
    socket.end(`${head}\r\nConnection: close\r\n\r\n`);
  });
}

describe('HTTP: the Host allow-list', () => {
  it('the dashboard server answers loopback names and VALHALLA_PUBLIC_HOST only; two Host headers are refused', async () => {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'), { VALHALLA_PUBLIC_HOST: 'valhalla.example.com' });
    expect((await runBinary(['init'], { env, cwd })).code).toBe(0);
    const s = await serve(cwd, env);
    try {
      for (const path of ['/metrics', '/api/openapi.json', '/api/docs', '/', '/healthz', '/api/status']) {
        for (const host of [
          'evil.example',
          'evil.example:8080',
          '127.0.0.1.evil.example',
          'valhalla.example.com.evil',
        ]) {
          const reply = await call(s.port, path, { host });
          expect([path, host, reply.status]).toEqual([path, host, 421]);
          expect(JSON.parse(reply.body).error.code).toBe('HOST_NOT_ALLOWED');
        }
      }
      for (const host of [
        `127.0.0.1:${s.port}`,
        `localhost:${s.port}`,
        'localhost',
        'valhalla.example.com',
        'VALHALLA.example.com:443',
      ]) {
        expect([host, (await call(s.port, '/healthz', { host })).status]).toEqual([host, 200]);
      }
      expect((await call(s.port, '/api/openapi.json')).status).toBe(200);
      const twice = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nHost: evil.example`;
      expect(await rawStatus(s.port, twice)).toBe(400);
      const twiceSame = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1`;
      expect(await rawStatus(s.port, twiceSame)).toBe(400);
      expect(await rawStatus(s.port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1`)).toBe(200);
    } finally {
      await s.stop();
    }
  });

  it('the metrics port answers loopback names only, one Host header', async () => {
    const metrics = await startMetricsServer({
      render: async () => 'valhalla_up 1\n',
      contentType: 'text/plain; version=0.0.4',
      port: 0,
    });
    try {
      expect((await call(metrics.port, '/metrics')).status).toBe(200);
      expect((await call(metrics.port, '/metrics', { host: 'localhost' })).status).toBe(200);
      expect((await call(metrics.port, '/metrics', { host: 'evil.example' })).status).toBe(421);
      const twice = `GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example`;
      expect(await rawStatus(metrics.port, twice)).toBe(400);
    } finally {
      await metrics.close();
    }
  });
});

describe('HTTP: failed authentications are limited per address and overall', () => {
  const { perAddress, global } = AUTH_FAILURE_LIMITS;
  const good = createApiToken('otto', 'operator');

  async function served(): Promise<Served> {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'), { VALHALLA_API_TOKENS: good.entry });
    mkdirSync(join(cwd, 'data'), { recursive: true });
    expect((await runBinary(['init'], { env, cwd })).code).toBe(0);
    return serve(cwd, env);
  }

  it('bearer tokens: a good token works throughout; past the limits every guess is refused unjudged (429)', async () => {
    const s = await served();
    try {
      const bearer = (token: string, from = '127.0.0.1') =>
        call(s.port, '/api/status', { from, headers: { authorization: `Bearer ${token}` } });
      for (let i = 0; i < 30; i++) expect((await bearer(good.token)).status).toBe(200);
      for (let i = 0; i < perAddress; i++) expect((await bearer(`vh_guess-${i}`)).status).toBe(401);
      const limited = await bearer('vh_guess-next');
      expect(limited.status).toBe(429);
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
      expect((await bearer(good.token)).status).toBe(429);
      // Other addresses of this host: judged until the global count is reached, then refused too.
      const statuses: number[] = [];
      for (let i = 2; i <= 13; i++) statuses.push((await bearer(`vh_other-${i}`, `127.0.0.${i}`)).status);
      const judged = global - perAddress;
      expect(statuses).toEqual([...Array(judged).fill(401), ...Array(12 - judged).fill(429)]);
      expect((await bearer(good.token, '127.0.0.14')).status).toBe(429);
      // Signing in is limited apart: a bearer flood does not lock the dashboard's sign-in.
      const signIn = await call(s.port, '/api/session', {
        method: 'POST',
        from: '127.0.0.20',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token: good.token }),
      });
      expect(signIn.status).toBe(200);
    } finally {
      await s.stop();
    }
  });

  it('sign-in: 12 more guesses from 127.0.0.2-13 do not all get judged', async () => {
    const s = await served();
    try {
      const signIn = (token: string, from = '127.0.0.1') =>
        call(s.port, '/api/session', {
          method: 'POST',
          from,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token }),
        });
      for (let i = 0; i < 5; i++) expect((await signIn(good.token)).status).toBe(200);
      for (let i = 0; i < perAddress; i++) expect((await signIn(`vh_guess-${i}`)).status).toBe(401);
      expect((await signIn(good.token)).status).toBe(429);
      const statuses: number[] = [];
      for (let i = 2; i <= 13; i++) statuses.push((await signIn(`vh_other-${i}`, `127.0.0.${i}`)).status);
      expect(statuses.filter((s) => s === 429).length).toBe(12 - (global - perAddress));
      // The API with a good bearer token is limited apart.
      const status = await call(s.port, '/api/status', {
        headers: { authorization: `Bearer ${good.token}` },
      });
      expect(status.status).toBe(200);
    } finally {
      await s.stop();
    }
  });
});

describe('HTTP: no internal error text in a response', () => {
  it('a deeply nested body, broken JSON, a poisoned body and a wrong type get a clean 4xx in the product’s words', async () => {
    const good = createApiToken('otto', 'operator');
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'), { VALHALLA_API_TOKENS: good.entry });
    expect((await runBinary(['init'], { env, cwd })).code).toBe(0);
    const s = await serve(cwd, env);
    try {
      const post = (body: string, type = 'application/json') =>
        call(s.port, '/api/mode/pause', {
          method: 'POST',
          headers: { authorization: `Bearer ${good.token}`, 'content-type': type },
          body,
        });
      const deep = `{"reason":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
      const cases: [string, string, number, string][] = [
        ['deep', deep, 400, 'VALIDATION'],
        ['broken', `{"reason": ${MARK}-body}`, 400, 'BAD_JSON'],
        ['poisoned', `{"__proto__":{"x":"${MARK}"},"reason":"r"}`, 400, 'BAD_JSON'],
        ['empty', '', 400, 'BAD_JSON'],
      ];
      for (const [what, body, status, code] of cases) {
        const reply = await post(body);
        expect([what, reply.status], reply.body).toEqual([what, status]);
        const error = JSON.parse(reply.body).error as { code: string; message: string };
        expect([what, error.code]).toEqual([what, code]);
        expect(reply.body).not.toContain(MARK);
        expect(reply.body).not.toMatch(/Unexpected|JSON at position|SyntaxError|stack|prototype/i);
      }
      const typed = await post(`reason=${MARK}`, 'application/x-www-form-urlencoded');
      expect(typed.status).toBe(415);
      expect(typed.body).not.toContain(MARK);
    } finally {
      await s.stop();
    }
  });
});
