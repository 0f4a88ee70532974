/**
 * bench/limiter: S seconds (default 60) of saturated requests through the partner client (rate 5 per
 * 1,000 ms window, 5 concurrent, TLS 1.2+ with a pinned CA) against a fast local HTTPS partner that
 * runs in its own process and timestamps every request on arrival. Prints the achieved rate, the most
 * starts seen in any 1 s sliding window (at the server), the number of windows over the limit, and
 * the raw baseline of the same run: the same target hit by one unthrottled undici connection for a
 * couple of seconds, with the ratio between the two.
 *
 *   npm run bench:limiter -- [--seconds 60] [--baseline-seconds 2]
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { systemClock } from '../src/clock/index.js';
import { createPartnerClient, isOutboundError } from '../src/outbound/index.js';
import { buildPartnerRequest, type ProfileLead, shippedDefaultProfile } from '../src/partner/index.js';
import { arg } from './support.js';

const LIMIT = 5;
const WINDOW_MS = 1000;
const WORKERS = 10;
const self = fileURLToPath(import.meta.url);

type ToServer =
  | { type: 'start'; key: string; cert: string }
  | { type: 'reset' }
  | { type: 'report' }
  | { type: 'exit' };
type FromServer =
  | { type: 'ready'; port: number }
  | { type: 'reset-done' }
  | { type: 'arrivals'; arrivals: number[] };

/** The partner, in a child process: token, health and leads answered at once; arrivals timestamped. */
function serve(): void {
  let arrivals: number[] = [];
  const send = (message: FromServer) => process.send?.(message);
  const body = JSON.stringify({ accepted: 1, duplicates: 0, replayed: false });
  const token = JSON.stringify({ access_token: 'bench-token', token_type: 'Bearer', expires_in: 3600 });
  const answer = (res: ServerResponse, text: string) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  let server: ReturnType<typeof createServer> | null = null;
  process.on('message', (message: ToServer) => {
    if (message.type === 'start') {
      server = createServer(
        { key: message.key, cert: message.cert },
        (req: IncomingMessage, res: ServerResponse) => {
          arrivals.push(performance.now());
          req.resume();
          req.on('end', () => answer(res, req.url === '/oauth/token' ? token : body));
        },
      );
      server.keepAliveTimeout = 60_000;
      server.listen(0, '127.0.0.1', () =>
        send({ type: 'ready', port: (server!.address() as AddressInfo).port }),
      );
    } else if (message.type === 'reset') {
      arrivals = [];
      send({ type: 'reset-done' });
    } else if (message.type === 'report') {
      send({ type: 'arrivals', arrivals });
    } else {
      server?.closeAllConnections();
      server?.close(() => process.exit(0));
    }
  });
}

function ask<T extends FromServer['type']>(
  child: ChildProcess,
  message: ToServer,
  reply: T,
): Promise<Extract<FromServer, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the bench server did not answer ${message.type}`)),
      30_000,
    );
    const onMessage = (answer: FromServer) => {
      if (answer.type !== reply) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(answer as Extract<FromServer, { type: T }>);
    };
    child.on('message', onMessage);
    child.send(message);
  });
}

async function certificates(): Promise<{ caPem: string; key: string; cert: string }> {
  // A throwaway CA and a leaf for 127.0.0.1 (selfsigned is a development dependency).
  const { generate } = await import('selfsigned');
  const ca = await generate([{ name: 'commonName', value: 'valhalla bench CA' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  const leaf = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    ca: { key: ca.private, cert: ca.cert },
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
  });
  return { caPem: ca.cert, key: leaf.private, cert: leaf.cert };
}

const LEAD: ProfileLead = {
  lead_key: 'bench-lead',
  external_id: 'bench-1',
  name: 'Bench Lead',
  email: 'bench@example.com',
  phone: null,
  company: null,
  score: 80,
  source_ts: Date.parse('2026-11-20T00:00:00.000Z'),
  value: 100,
  attributes: {},
};

/** One connection, no limiter: requests back to back for `seconds`. */
async function baseline(origin: string, caPem: string, seconds: number): Promise<number> {
  const pool = new Pool(origin, {
    connections: 1,
    pipelining: 1,
    connect: { ca: caPem, minVersion: 'TLSv1.2' },
  });
  // The same body the client writes under the shipped profile (the product's own contract).
  const built = buildPartnerRequest(shippedDefaultProfile(), [LEAD], 'bench-baseline');
  if (!built.ok) throw new Error('the bench lead cannot be written');
  const body = JSON.stringify(built.request.body);
  let done = 0;
  let started = performance.now();
  let deadline = started + seconds * 1000;
  const warmUp = 200; // connect, handshake and JIT before the clock starts
  try {
    while (done < warmUp || performance.now() < deadline) {
      if (done === warmUp) {
        started = performance.now();
        deadline = started + seconds * 1000;
      }
      const res = await pool.request({
        path: '/api/leads',
        method: 'POST',
        headers: {
          authorization: 'Bearer bench-token',
          'idempotency-key': `baseline-${done}`,
          'content-type': 'application/json',
        },
        body,
      });
      await res.body.dump();
      done++;
    }
  } finally {
    await pool.close();
  }
  return (done - warmUp) / ((performance.now() - started) / 1000);
}

interface WindowStats {
  starts: number;
  mostInAnySecond: number;
  windowsOver: number;
  /** Shortest time spanned by LIMIT + 1 consecutive starts: ≥ 1,000 ms means the rule held. */
  tightestSpanMs: number;
  /** LIMIT × 1000 / mean time between a start and the LIMIT-th next one. */
  sustainedPerSecond: number;
}

function windowStats(arrivals: readonly number[]): WindowStats {
  const a = [...arrivals].sort((x, y) => x - y);
  let most = 0;
  let lo = 0;
  for (let hi = 0; hi < a.length; hi++) {
    while (a[hi]! - a[lo]! >= WINDOW_MS) lo++;
    most = Math.max(most, hi - lo + 1);
  }
  let over = 0;
  let tightest = Number.POSITIVE_INFINITY;
  let spanSum = 0;
  let spans = 0;
  for (let i = 0; i + LIMIT < a.length; i++) {
    const span = a[i + LIMIT]! - a[i]!;
    if (span < WINDOW_MS) over++;
    tightest = Math.min(tightest, span);
    spanSum += span;
    spans++;
  }
  return {
    starts: a.length,
    mostInAnySecond: most,
    windowsOver: over,
    tightestSpanMs: tightest,
    sustainedPerSecond: spans === 0 ? 0 : (LIMIT * 1000) / (spanSum / spans),
  };
}

async function main(): Promise<void> {
  if (process.argv.includes('--serve')) return serve();
  const seconds = arg('--seconds', 60, { fractions: true });
  const baselineSeconds = arg('--baseline-seconds', 2, { fractions: true });
  const pki = await certificates();
  const child = fork(self, ['--serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const { port } = await ask(child, { type: 'start', key: pki.key, cert: pki.cert }, 'ready');
    const origin = `https://127.0.0.1:${port}`;

    const rawPerSecond = await baseline(origin, pki.caPem, baselineSeconds);
    await ask(child, { type: 'reset' }, 'reset-done');

    const partner = createPartnerClient({
      baseUrl: origin,
      tokenUrl: `${origin}/oauth/token`,
      clientId: 'bench',
      clientSecret: 'bench-secret',
      caPem: pki.caPem,
      allowPlainHttpLoopback: false,
      rateLimitPerSecond: LIMIT,
      rateWindowMs: WINDOW_MS,
      maxConcurrent: 5,
      timeoutMs: 30_000,
      clock: systemClock,
    });
    const outcomes = new Map<string, number>();
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), seconds * 1000);
    const started = performance.now();
    let n = 0;
    const worker = async () => {
      while (!stop.signal.aborted) {
        try {
          const outcome = await partner.sendBatch({ batchKey: `bench-${n++}`, leads: [LEAD] }, stop.signal);
          outcomes.set(outcome.kind, (outcomes.get(outcome.kind) ?? 0) + 1);
        } catch (error) {
          if (!isOutboundError(error, 'CANCELLED')) throw error;
        }
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, worker));
    clearTimeout(timer);
    const ranSeconds = (performance.now() - started) / 1000;
    await partner.close();

    const { arrivals } = await ask(child, { type: 'report' }, 'arrivals');
    const stats = windowStats(arrivals);
    const counted = [...outcomes].map(([kind, count]) => `${kind} ${count}`).join(', ');
    console.log(
      `raw baseline (one undici connection, no limiter, ${baselineSeconds} s): ${rawPerSecond.toFixed(0)} requests/s`,
    );
    console.log(
      `partner client, limit ${LIMIT} per ${WINDOW_MS} ms, ${WORKERS} workers saturating it for ${ranSeconds.toFixed(1)} s:`,
    );
    console.log(
      `  requests seen at the server: ${stats.starts} (token + batches; outcomes: ${counted}); ${(stats.starts / ranSeconds).toFixed(2)}/s over the whole run, the first (empty) window included`,
    );
    console.log(`  achieved (sustained) rate: ${stats.sustainedPerSecond.toFixed(3)} requests/s (aim ≥ 4.9)`);
    console.log(
      `  most starts in any 1 s sliding window: ${stats.mostInAnySecond}; windows over ${LIMIT}: ${stats.windowsOver} (aim 0); tightest span of ${LIMIT + 1} consecutive starts: ${stats.tightestSpanMs.toFixed(1)} ms`,
    );
    console.log(
      `ratio client/raw: ${(stats.sustainedPerSecond / rawPerSecond).toExponential(2)} (the limiter, not the client, sets the pace)`,
    );
  } finally {
    child.send({ type: 'exit' } satisfies ToServer);
  }
}

await main();
