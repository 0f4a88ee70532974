/**
 * The control plane is never behind the data plane, with the real binary:
 * `valhalla run` (supervisor, worker, dashboard server) takes 10 MB uploads of bad rows (one
 * character each; a JSON array of `{}`) with one 422 and one audit entry each, answers a pause in the
 * middle of an upload being stored, keeps the whole service under 512 MB, and its supervisor, stopped
 * (SIGSTOP) longer than the heartbeat limit, does not blame the worker for its own stall. Latencies
 * are measured by bench/control-plane, not asserted here.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { serviceRss } from '../../bench/support.js';
import { createApiToken, INGEST_BODY_LIMIT_BYTES } from '../../src/server/index.js';
import { apiClient } from '../support/api.js';
import { BIN, policyFileWith, runInProcess, testEnv } from '../support/cli.js';
import { spawnNode } from '../support/processes.js';
import { tempDir } from '../support/tmp.js';
import { HOUR, until } from '../support/world.js';

const children = new Set<ChildProcess>();
afterAll(() => {
  for (const child of children) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
});

const SERVICE_CAP_BYTES = 512 * 1024 * 1024;

describe('the control plane under uploads, with valhalla run', () => {
  it('bad 10 MB uploads stop with one 422 and one audit entry; a pause is answered mid-upload; the service stays under 512 MB; a supervisor stall is not a missed heartbeat', async () => {
    const cwd = tempDir();
    const operator = createApiToken('olga', 'operator');
    const env = testEnv(join(cwd, 'data'), {
      VALHALLA_REAL_DATA_INGEST: '1',
      VALHALLA_CYCLE_INTERVAL_S: '1',
      VALHALLA_METRICS_PORT: 'off',
      VALHALLA_LOG_LEVEL: 'warn',
      VALHALLA_API_TOKENS: operator.entry,
      // An 8 s heartbeat limit (3 s + 5 s grace): the 30 s that one upload once held the supervisor's
      // loop would be missed. Not shorter: a worker starting on a loaded machine can take over 4 s to
      // beat for the first time.
      VALHALLA_POLICY_FILE: policyFileWith(cwd, { heartbeatIntervalSeconds: 3, heartbeatGraceSeconds: 5 }),
    });
    expect((await runInProcess(['init'], { cwd, env })).code).toBe(0);
    const run = spawnNode(BIN, ['run'], { cwd, env, children, guardMs: 300_000 });
    const base = await until(async () => /dashboard: (http:\/\/[^\s/]+)\//.exec(run.out())?.[1], {
      what: 'the dashboard',
    });
    await until(async () => /cycle 1 /.test(run.out()), { what: 'the first cycle' });
    const supervisor = run.child.pid!;
    const api = apiClient(base);
    const as = { token: operator.token };
    let peakRss = serviceRss(supervisor);
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, serviceRss(supervisor));
    }, 50);
    try {
      const header = 'name,email,score,source_timestamp\n';
      const oneCharacterRows = Buffer.concat([
        Buffer.from(header),
        Buffer.alloc(Math.floor((INGEST_BODY_LIMIT_BYTES - header.length) / 2) * 2, 'x\n'),
      ]);
      const csv = await api('POST', '/api/ingest', { ...as, body: oneCharacterRows, type: 'text/csv' });
      expect(csv.status, csv.text).toBe(422);
      expect(csv.body.error.code).toBe('TOO_MANY_REJECTS');
      const elements = Math.floor((INGEST_BODY_LIMIT_BYTES - 2) / 3);
      const emptyObjects = Buffer.from(`[${'{},'.repeat(elements - 1)}{}]`);
      const json = await api('POST', '/api/ingest', { ...as, body: emptyObjects, type: 'application/json' });
      expect(json.status, json.text).toBe(422);
      expect(json.body.error.code).toBe('TOO_MANY_REJECTS');

      // An upload of valid leads held open halfway: stored as it arrives, and the pause is answered
      // while the rest has not even been sent.
      const at = new Date(Date.now() - HOUR).toISOString();
      const rows = Array.from(
        { length: 4_000 },
        (_, i) =>
          `Ada Lovelace ${i},ada.${i}@example.org,+1 555 010 ${String(i).padStart(4, '0')},Engines,80,${at},10`,
      );
      const leads = Buffer.from(
        `name,email,phone,company,score,source_timestamp,value\n${rows.join('\n')}\n`,
      );
      const half = leads.indexOf('\n', leads.length / 2) + 1;
      const body = new PassThrough();
      const answer = request(`${base}/api/ingest`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${operator.token}`,
          'content-type': 'text/csv',
          'content-length': String(leads.length),
        },
        body,
      });
      body.write(leads.subarray(0, half));
      await until(
        async () => {
          const status = await api<{ leads: { total: number } }>('GET', '/api/status', as);
          return status.body.leads.total >= 1_000;
        },
        { what: 'the first half stored' },
      );
      expect((await api('GET', '/healthz')).status).toBe(200);
      const paused = await api<{ kind: string; to: string }>('POST', '/api/mode/pause', {
        ...as,
        json: { reason: 'paused in the middle of an upload' },
      });
      expect(paused.body).toMatchObject({ kind: 'change', to: 'paused' });
      body.end(leads.subarray(half));
      const stored = await answer;
      expect(stored.statusCode).toBe(200);
      expect(await stored.body.json()).toMatchObject({ read: 4_000, accepted: 4_000, rejected: 0 });

      // The supervisor stopped for 12 s (its heartbeat limit is 8 s): on waking it reads the worker's
      // queued heartbeats before it judges them.
      const beforeStall = (await api<{ heartbeat: { at: string } | null }>('GET', '/api/status', as)).body;
      process.kill(supervisor, 'SIGSTOP');
      const stalledUntil = Date.now() + 12_000;
      while (Date.now() < stalledUntil) await new Promise((r) => setTimeout(r, 100));
      process.kill(supervisor, 'SIGCONT');
      // Heartbeats recorded after the stall (every 3 s), by the same worker.
      await until(
        async () => {
          const status = (await api<{ heartbeat: { at: string } | null }>('GET', '/api/status', as)).body;
          return status.heartbeat !== null && Date.parse(status.heartbeat.at) > stalledUntil + 2_000;
        },
        { what: 'heartbeats after the stall' },
      );
      expect(beforeStall.heartbeat).not.toBeNull();

      const entries = (
        await api<{ entries: { action: string; details: Record<string, unknown> }[] }>(
          'GET',
          '/api/audit?limit=1000',
          as,
        )
      ).body.entries;
      const count = (action: string) => entries.filter((e) => e.action === action).length;
      expect(count('ingest.started')).toBe(3);
      expect(count('ingest.failed')).toBe(2);
      expect(count('ingest.finished')).toBe(1);
      // 4,000 rows in transactions of 200: every accepted lead audited.
      expect(count('ingest.rows')).toBe(20);
      expect(count('worker.started')).toBe(1);
      for (const action of ['worker.heartbeat_missed', 'worker.crashed', 'worker.memory_restart']) {
        expect(count(action), action).toBe(0);
      }
    } finally {
      clearInterval(sampler);
      run.child.kill('SIGCONT');
    }
    expect(peakRss).toBeLessThan(SERVICE_CAP_BYTES);
    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);
  }, 300_000);
});
