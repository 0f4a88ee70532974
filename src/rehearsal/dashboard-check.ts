import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { App } from '../app/index.js';
import { EVIDENCE_ACTIONS, LIVE_FLOW_MAX_MS } from '../gates/index.js';

/** How long the whole check may take before it counts as failed (a dashboard that hangs). */
const CHECK_TIMEOUT_MS = 10_000;
export const DASHBOARD_PROBE_ACTION = 'dashboard.probe';

export interface DashboardCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DashboardCheckResult {
  passed: boolean;
  url: string;
  /** From the probe entry's commit to its arrival on the dashboard's event stream; null if it never came. */
  latencyMs: number | null;
  checks: DashboardCheck[];
}

/**
 * `valhalla dashboard check`: gate 5's dashboard item, measured rather than attested. Against the
 * running dashboard at `url`, with a viewer's token: it answers and is ready, serves its page,
 * reports this installation (phase and policy hash), and an audit entry written now reaches its
 * live event stream within a second. The result is recorded in the audit chain as the evidence.
 */
export async function checkDashboard(
  app: App,
  options: { url: string; token: string },
): Promise<DashboardCheckResult> {
  const url = options.url.replace(/\/+$/, '');
  const auth = { authorization: `Bearer ${options.token}` };
  const signal = AbortSignal.timeout(CHECK_TIMEOUT_MS);
  const checks: DashboardCheck[] = [];
  const check = (name: string, ok: boolean, detail: string) => {
    checks.push({ name, ok, detail });
    return ok;
  };
  let latencyMs: number | null = null;

  try {
    const ready = await fetch(`${url}/readyz`, { signal });
    check('ready', ready.status === 200, `GET /readyz: HTTP ${ready.status}`);

    const page = await fetch(`${url}/`, { signal });
    const type = page.headers.get('content-type') ?? '';
    const html = await page.text();
    check(
      'page',
      page.status === 200 && type.startsWith('text/html') && html.includes('<script'),
      `GET /: HTTP ${page.status}, ${type || 'no content type'}`,
    );

    const statusResponse = await fetch(`${url}/api/status`, { headers: auth, signal });
    if (statusResponse.status !== 200) {
      check(
        'this installation',
        false,
        `GET /api/status: HTTP ${statusResponse.status} (is the token valid?)`,
      );
    } else {
      const status = (await statusResponse.json()) as { phase?: number; policyHash?: string };
      // The dashboard reports the running service's phase and policy (its worker's heartbeat), as
      // `valhalla status` does: compare with the same truth, this configuration's when none runs.
      const { service } = await app.runState();
      const phase = service.phase ?? app.config.phase;
      const policyHash = service.policyHash ?? app.config.policyHash;
      check(
        'this installation',
        status.phase === phase && status.policyHash === policyHash,
        `the dashboard reports Phase ${status.phase} and policy ${String(status.policyHash).slice(0, 12)}…; this installation is Phase ${phase}, policy ${policyHash.slice(0, 12)}…`,
      );
    }

    latencyMs = await probeLiveFlow(app, `${url}/api/events`, auth, signal);
    check(
      'live lead flow',
      latencyMs !== null && latencyMs <= LIVE_FLOW_MAX_MS,
      latencyMs === null
        ? 'the probe entry never arrived on the event stream'
        : `an audit entry reached the event stream in ${Math.round(latencyMs)} ms (limit ${LIVE_FLOW_MAX_MS} ms)`,
    );
  } catch (error) {
    const reason =
      (error as Error).name === 'TimeoutError'
        ? `no answer within ${CHECK_TIMEOUT_MS / 1000} s`
        : (error as Error).message;
    check('reachable', false, `${url}: ${reason}`);
  }

  const passed = checks.length > 0 && checks.every((c) => c.ok);
  const result = { passed, url, latencyMs: latencyMs === null ? null : Math.round(latencyMs), checks };
  await app.audit.record({
    actor: app.config.operator,
    action: EVIDENCE_ACTIONS.dashboardCheck,
    details: result,
  });
  return result;
}

/** Open the event stream, append a probe entry, and time its arrival; null when it does not come. */
async function probeLiveFlow(
  app: App,
  eventsUrl: string,
  auth: Record<string, string>,
  timeout: AbortSignal,
): Promise<number | null> {
  const stop = new AbortController();
  const signal = AbortSignal.any([timeout, stop.signal]);
  try {
    const response = await fetch(eventsUrl, { headers: { ...auth, accept: 'text/event-stream' }, signal });
    if (response.status !== 200 || response.body === null) return null;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const nonce = randomBytes(8).toString('hex');
    let buffered = '';
    let sentAt: number | null = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return null;
      buffered += value;
      let end = buffered.indexOf('\n\n');
      while (end !== -1) {
        const event = parseEvent(buffered.slice(0, end));
        buffered = buffered.slice(end + 2);
        end = buffered.indexOf('\n\n');
        if (event.name === 'hello' && sentAt === null) {
          // The stream is following the chain now: what is appended from here on must arrive.
          sentAt = performance.now();
          await app.audit.record({
            actor: app.config.operator,
            action: DASHBOARD_PROBE_ACTION,
            details: { nonce },
          });
        } else if (event.name === 'audit' && sentAt !== null && event.data.includes(nonce)) {
          return performance.now() - sentAt;
        }
      }
    }
  } catch (error) {
    if (timeout.aborted) return null;
    throw error;
  } finally {
    stop.abort();
  }
}

function parseEvent(block: string): { name: string; data: string } {
  let name = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) name = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
  }
  return { name, data: data.join('\n') };
}
