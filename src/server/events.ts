import type { ServerResponse } from 'node:http';
import type { App, AuditEntryView, Dashboard } from '../app/index.js';

/** How often the chain is read for new entries: well inside the dashboard's 1 s from event to screen. */
export const EVENT_POLL_MS = 250;
/** A comment line this often keeps proxies from closing an idle stream. */
const KEEPALIVE_MS = 15_000;
/**
 * The lead counts and mode change only with an audited event (ingest, batch outcomes, expiry, mode
 * changes), so they are read again when new entries came; otherwise this often, for the heartbeat's
 * age. Counting leads by state scans the table: not something to do four times a second.
 */
const STATUS_REFRESH_MS = 5_000;
/** Entries read per poll; a burst larger than this is sent over the next polls. */
const ENTRIES_PER_POLL = 500;

interface Client {
  response: ServerResponse;
}

/**
 * The live event stream (Server-Sent Events). The worker is another process, so the stream follows
 * the database, not an in-process bus: one poll of the audit chain for everyone connected, every
 * entry sent as an `audit` event, and the lead counts and mode as a `status` event when they change.
 */
export function createEventHub(deps: { app: App; dashboard: Dashboard; onError: (error: unknown) => void }) {
  const clients = new Set<Client>();
  /** The newest entry sent; null while nobody listens (a new listener starts at the chain's head). */
  let lastSeq: number | null = null;
  /** Bumped when the last listener leaves, so a poll still running then cannot set an old position. */
  let generation = 0;
  let lastStatus = '';
  let statusReadAt = 0;
  let timer: NodeJS.Timeout | null = null;
  let keepalive: NodeJS.Timeout | null = null;
  let polling = false;

  function send(client: Client, event: string, data: unknown): void {
    client.response.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }
  function broadcast(event: string, data: unknown): void {
    for (const client of clients) send(client, event, data);
  }

  async function statusSnapshot() {
    const [report, run] = await Promise.all([deps.app.status(), deps.app.runState()]);
    return { mode: run.mode, leads: report.leads, heartbeatAgeSeconds: run.heartbeat?.ageSeconds ?? null };
  }

  async function poll(): Promise<void> {
    if (polling || clients.size === 0 || lastSeq === null) return;
    polling = true;
    const mine = generation;
    try {
      let entries: AuditEntryView[];
      let sawEntries = false;
      do {
        entries = await deps.dashboard.auditAfter(lastSeq, ENTRIES_PER_POLL);
        if (generation !== mine) return;
        for (const entry of entries) {
          broadcast('audit', entry);
          lastSeq = entry.seq;
          sawEntries = true;
        }
      } while (entries.length === ENTRIES_PER_POLL && clients.size > 0);
      if (!sawEntries && Date.now() - statusReadAt < STATUS_REFRESH_MS) return;
      statusReadAt = Date.now();
      const status = await statusSnapshot();
      const text = JSON.stringify(status);
      if (text !== lastStatus) {
        lastStatus = text;
        broadcast('status', status);
      }
    } catch (error) {
      deps.onError(error);
    } finally {
      polling = false;
    }
  }

  function start(): void {
    timer ??= setInterval(() => void poll(), EVENT_POLL_MS);
    keepalive ??= setInterval(() => {
      for (const client of clients) client.response.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
  }
  function stopTimers(): void {
    if (timer) clearInterval(timer);
    if (keepalive) clearInterval(keepalive);
    timer = null;
    keepalive = null;
  }

  return {
    /** Take over this response as an event stream until the client goes away or the hub closes. */
    async attach(response: ServerResponse): Promise<void> {
      // The first listener starts at the head: what was written while nobody watched is history
      // (the audit list), not live flow.
      if (lastSeq === null) {
        const head = await deps.dashboard.latestAuditSeq();
        lastSeq ??= head;
      }
      response.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-store',
        Connection: 'keep-alive',
        'X-Content-Type-Options': 'nosniff',
        // Unbuffered through a reverse proxy (nginx buffers responses by default).
        'X-Accel-Buffering': 'no',
      });
      const client: Client = { response };
      clients.add(client);
      response.on('close', () => {
        clients.delete(client);
        if (clients.size === 0) {
          stopTimers();
          lastSeq = null;
          lastStatus = '';
          generation += 1;
        }
      });
      send(client, 'hello', { lastSeq });
      const status = await statusSnapshot().catch((error: unknown) => {
        deps.onError(error);
        return null;
      });
      if (status !== null && clients.has(client)) send(client, 'status', status);
      start();
    },
    get clients() {
      return clients.size;
    },
    /** End every stream (the server is closing); safe to call twice. */
    close(): void {
      stopTimers();
      for (const client of clients) client.response.end();
      clients.clear();
    },
  };
}
