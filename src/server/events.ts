import type { ServerResponse } from 'node:http';
import type { App } from '../app/index.js';
import type { AuditEntryView, Dashboard } from '../views/index.js';

/** How often the chain is read for new entries: well inside the dashboard's 1 s from event to screen. */
export const EVENT_POLL_MS = 250;
/** A comment line this often keeps proxies from closing an idle stream. */
const KEEPALIVE_MS = 15_000;
/** Entries read per poll; a burst larger than this is sent over the next polls. */
const ENTRIES_PER_POLL = 500;
/**
 * The lead counts and mode change only with an audited event (ingest, batch outcomes, expiry, mode
 * changes), so they are read again after new entries, at most once a second; otherwise this often,
 * for the heartbeat's age. Counting leads by state scans the table: not something to do four times
 * a second.
 */
const STATUS_MIN_MS = 1_000;
const STATUS_IDLE_MS = 5_000;
/** A client this far behind (a stalled connection) is dropped rather than buffered without end. */
const MAX_BUFFERED_BYTES = 1024 * 1024;

interface Client {
  response: ServerResponse;
  /** Still signed in? (A session can end or expire while its stream is open.) */
  authorized: () => boolean;
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
  /** New entries came since the status was last read: read it again as soon as the minimum allows. */
  let statusDirty = false;
  let timer: NodeJS.Timeout | null = null;
  let keepalive: NodeJS.Timeout | null = null;
  let polling = false;
  /** Set while the database does not answer: the outage is logged once, not four times a second. */
  let failing = false;
  let closed = false;

  function drop(client: Client): void {
    clients.delete(client);
    client.response.end();
  }
  function send(client: Client, event: string, data: unknown): void {
    if (!client.authorized() || client.response.writableLength > MAX_BUFFERED_BYTES) {
      drop(client);
      return;
    }
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
    for (const client of clients) if (!client.authorized()) drop(client);
    if (polling || clients.size === 0 || lastSeq === null) return;
    polling = true;
    const mine = generation;
    try {
      let entries: AuditEntryView[];
      do {
        entries = await deps.dashboard.auditAfter(lastSeq, ENTRIES_PER_POLL);
        if (generation !== mine) return;
        for (const entry of entries) {
          broadcast('audit', entry);
          lastSeq = entry.seq;
          statusDirty = true;
        }
      } while (entries.length === ENTRIES_PER_POLL && clients.size > 0);
      const since = Date.now() - statusReadAt;
      if (since >= STATUS_IDLE_MS || (statusDirty && since >= STATUS_MIN_MS)) {
        statusReadAt = Date.now();
        statusDirty = false;
        const status = await statusSnapshot();
        const text = JSON.stringify(status);
        if (text !== lastStatus && generation === mine) {
          lastStatus = text;
          broadcast('status', status);
        }
      }
      failing = false;
    } catch (error) {
      if (!failing) deps.onError(error);
      failing = true;
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
    /**
     * Where a new stream starts: the chain's head when nobody is listening yet (what was written
     * while nobody watched is history, shown by the audit list, not live flow). Read before the
     * response is taken over, so a database that does not answer is an ordinary error response.
     */
    async prepare(): Promise<void> {
      if (lastSeq !== null) return;
      const head = await deps.dashboard.latestAuditSeq();
      lastSeq ??= head;
    },
    /** Take over this response as an event stream until the client goes away or the hub closes. */
    attach(response: ServerResponse, authorized: () => boolean): void {
      if (closed || response.destroyed || lastSeq === null) {
        response.destroy();
        return;
      }
      const client: Client = { response, authorized };
      response.on('close', () => {
        clients.delete(client);
        if (clients.size === 0) {
          stopTimers();
          lastSeq = null;
          lastStatus = '';
          statusReadAt = 0;
          generation += 1;
        }
      });
      response.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-store',
        Connection: 'keep-alive',
        'X-Content-Type-Options': 'nosniff',
        // Unbuffered through a reverse proxy (nginx buffers responses by default).
        'X-Accel-Buffering': 'no',
      });
      clients.add(client);
      send(client, 'hello', { lastSeq });
      // The first status goes with the next poll (at once: the read time was reset).
      lastStatus = '';
      statusReadAt = 0;
      start();
    },
    get clients() {
      return clients.size;
    },
    /** End every stream (the server is closing); safe to call twice. */
    close(): void {
      closed = true;
      stopTimers();
      for (const client of clients) client.response.end();
      clients.clear();
    },
  };
}
