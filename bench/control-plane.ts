/**
 * bench/control-plane: the control plane's answer times and the service's memory while 10 MB uploads
 * are ingested (pause, rollback and health within 100 ms, the whole service
 * within 512 MB, whatever is uploaded).
 *
 * A real `valhalla run` (the built binary: supervisor, worker, dashboard server) on a fresh SQLite
 * installation, cycling every 5 s. A prober alternates `GET /healthz` and `POST /api/mode/pause`
 * (each pause followed by an untimed resume, so every pause is a real change: audited, committed),
 * one request at a time. The service's RSS is the sum of VmRSS over the supervisor and every process
 * under it, read from /proc every 50 ms. The baseline, in the same run: the same probes and sampling
 * with the service idle. Then, one after another, each upload while probing:
 *
 *   - 10 MB of one-character CSV rows (about 5.2 million, every one rejected);
 *   - a 10 MB JSON array of `{}` (about 3.5 million elements, every one rejected);
 *   - a valid 10 MB CSV of about 148,000 leads (all accepted).
 *
 *   npm run bench:control-plane -- [--idle-probes 200]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { BIN } from '../src/app/run.js';
import { createApiToken } from '../src/server/auth.js';
import { INGEST_BODY_LIMIT_BYTES } from '../src/server/routes/ingest.js';
import { arg, quantile, serviceRss } from './support.js';

const P99_LIMIT_MS = 100;
const SERVICE_CAP_BYTES = 512 * 1024 * 1024;
const MB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Phase {
  name: string;
  healthz: number[];
  pause: number[];
  peakRss: number;
  upload?: { status: number; ms: number; answer: string };
}

function csvOfOneCharacterRows(): Buffer {
  const header = 'name,email,score,source_timestamp\n';
  const rows = Math.floor((INGEST_BODY_LIMIT_BYTES - header.length) / 2);
  return Buffer.concat([Buffer.from(header), Buffer.alloc(rows * 2, 'x\n')]);
}

function jsonArrayOfEmptyObjects(): Buffer {
  const n = Math.floor((INGEST_BODY_LIMIT_BYTES - 2) / 3);
  return Buffer.from(`[${'{},'.repeat(n - 1)}{}]`);
}

function validLeadsCsv(): { body: Buffer; leads: number } {
  const at = new Date(Date.now() - 3_600_000).toISOString();
  const lines = ['name,email,phone,company,score,source_timestamp,value'];
  let bytes = lines[0]!.length + 1;
  for (let i = 0; ; i++) {
    const line = `Bench Person ${i},bench.person.${i}@example.test,+1 555 010 ${String(i % 10_000).padStart(4, '0')},Bench Co,${40 + (i % 60)},${at},100`;
    if (bytes + line.length + 1 > INGEST_BODY_LIMIT_BYTES) break;
    lines.push(line);
    bytes += line.length + 1;
  }
  return { body: Buffer.from(`${lines.join('\n')}\n`), leads: lines.length - 1 };
}

async function main() {
  const idleProbes = arg('--idle-probes', 200);
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-bench-cp-'));
  const operator = createApiToken('bench', 'operator');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    VALHALLA_DATA_DIR: join(dir, 'data'),
    VALHALLA_PSEUDONYM_SECRET: 'bench-secret-0123456789abcdef0123456789abcdef',
    VALHALLA_LOG_FILE: join(dir, 'data', 'valhalla.log'),
    VALHALLA_LOG_LEVEL: 'warn',
    VALHALLA_SERVER_PORT: '0',
    VALHALLA_METRICS_PORT: 'off',
    VALHALLA_CYCLE_INTERVAL_S: '5',
    VALHALLA_API_TOKENS: operator.entry,
  };
  let run: ChildProcess | null = null;
  const agent = new Agent({ connections: 4 });
  try {
    await new Promise<void>((resolve, reject) => {
      const init = spawn(process.execPath, [BIN, 'init'], { cwd: dir, env, stdio: 'ignore' });
      init.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`init exited ${code}`))));
    });
    const service = spawn(process.execPath, [BIN, 'run'], {
      cwd: dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    run = service;
    let output = '';
    service.stdout?.on('data', (c: Buffer) => {
      output += c;
    });
    service.stderr?.on('data', (c: Buffer) => {
      output += c;
    });
    let base: string | undefined;
    for (let i = 0; i < 600 && base === undefined; i++) {
      base = /dashboard: (http:\/\/[^\s/]+)\//.exec(output)?.[1];
      if (base === undefined) await sleep(100);
    }
    if (base === undefined) throw new Error(`valhalla run did not serve the dashboard:\n${output}`);
    // The worker's start (5,000 synthetic leads loaded, its first cycle) is not the idle baseline.
    for (let i = 0; i < 1_200 && !/cycle/i.test(output); i++) await sleep(100);
    const pid = service.pid!;
    const auth = { authorization: `Bearer ${operator.token}` };

    const call = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
      const started = performance.now();
      const answer = await request(`${base}${path}`, {
        method,
        dispatcher: agent,
        headers: body === undefined ? auth : { ...auth, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      await answer.body.text();
      if (answer.statusCode !== 200) throw new Error(`${method} ${path}: ${answer.statusCode}`);
      return performance.now() - started;
    };

    /** Probe (and sample RSS) until `done` resolves, or for `count` rounds. */
    async function measure(name: string, until: { count: number } | { work: Promise<Phase['upload']> }) {
      const phase: Phase = { name, healthz: [], pause: [], peakRss: serviceRss(pid) };
      const sampler = setInterval(() => {
        phase.peakRss = Math.max(phase.peakRss, serviceRss(pid));
      }, 50);
      let finished = false;
      if ('work' in until) {
        void until.work.then(
          (result) => {
            phase.upload = result;
            finished = true;
          },
          () => {
            finished = true;
          },
        );
      }
      try {
        for (let i = 0; i < 100_000; i++) {
          if ('count' in until ? i >= until.count : finished) break;
          phase.healthz.push(await call('GET', '/healthz'));
          phase.pause.push(await call('POST', '/api/mode/pause', { reason: 'bench: control plane' }));
          await call('POST', '/api/mode/resume', { reason: 'bench: control plane' });
          await sleep(10);
        }
        if ('work' in until) await until.work;
      } finally {
        clearInterval(sampler);
      }
      return phase;
    }

    const upload = async (body: Buffer, type: string): Promise<Phase['upload']> => {
      const started = performance.now();
      const answer = await request(`${base}/api/ingest`, {
        method: 'POST',
        dispatcher: agent,
        headers: { ...auth, 'content-type': type },
        body,
        headersTimeout: 600_000,
        bodyTimeout: 600_000,
      });
      const text = await answer.body.text();
      return { status: answer.statusCode, ms: performance.now() - started, answer: text.slice(0, 240) };
    };

    const phases: Phase[] = [await measure('idle (baseline)', { count: idleProbes })];
    const valid = validLeadsCsv();
    const uploads: [string, Buffer, string][] = [
      ['10 MB of one-character CSV rows', csvOfOneCharacterRows(), 'text/csv'],
      ['10 MB JSON array of {}', jsonArrayOfEmptyObjects(), 'application/json'],
      [`10 MB valid CSV (${valid.leads} leads)`, valid.body, 'text/csv'],
    ];
    for (const [name, body, type] of uploads) {
      phases.push(await measure(name, { work: upload(body, type) }));
    }

    const idle = phases[0]!;
    const idleP99 = Math.max(quantile(sorted(idle.healthz), 0.99), quantile(sorted(idle.pause), 0.99));
    console.log(
      `control plane under uploads (valhalla run, SQLite; p99 limit ${P99_LIMIT_MS} ms, service cap ${SERVICE_CAP_BYTES / MB} MB)\n`,
    );
    let ok = true;
    for (const phase of phases) {
      const h = sorted(phase.healthz);
      const p = sorted(phase.pause);
      const p99 = Math.max(quantile(h, 0.99), quantile(p, 0.99));
      ok &&= p99 <= P99_LIMIT_MS && phase.peakRss <= SERVICE_CAP_BYTES;
      console.log(phase.name);
      if (phase.upload) {
        console.log(
          `  upload: ${phase.upload.status} in ${(phase.upload.ms / 1000).toFixed(1)} s: ${phase.upload.answer.replace(/\s+/g, ' ').slice(0, 160)}`,
        );
      }
      console.log(
        `  /healthz   n=${h.length}  p50 ${fmt(quantile(h, 0.5))} ms  p99 ${fmt(quantile(h, 0.99))} ms  max ${fmt(h.at(-1) ?? Number.NaN)} ms`,
      );
      console.log(
        `  pause      n=${p.length}  p50 ${fmt(quantile(p, 0.5))} ms  p99 ${fmt(quantile(p, 0.99))} ms  max ${fmt(p.at(-1) ?? Number.NaN)} ms`,
      );
      console.log(
        `  peak RSS (supervisor + worker + server) ${(phase.peakRss / MB).toFixed(0)} MB` +
          (phase === idle
            ? ''
            : `  (idle ${(idle.peakRss / MB).toFixed(0)} MB, ${(phase.peakRss / idle.peakRss).toFixed(2)}x; p99 ${(p99 / idleP99).toFixed(1)}x idle)`),
      );
    }
    console.log(
      `\n${ok ? 'PASS' : 'FAIL'}: every p99 within ${P99_LIMIT_MS} ms and every peak within ${SERVICE_CAP_BYTES / MB} MB`,
    );
    if (!ok) process.exitCode = 1;
    if (/heartbeat|crashed|memory/i.test(output)) console.log(`\nthe service said:\n${output.slice(-2_000)}`);
  } finally {
    if (run && run.exitCode === null) {
      const service = run;
      const exited = new Promise((resolve) => service.once('close', resolve));
      service.kill('SIGTERM');
      const guard = setTimeout(() => service.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(guard);
    }
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const fmt = (ms: number) => ms.toFixed(1);

await main();
