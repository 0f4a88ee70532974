/**
 * Database loss in the middle of a cycle (README "Delivery guarantee": the guard's decision and the
 * batch's move to `sending` commit before the request).
 * The database can fail between that commit and the outcome's, or before the next authorisation: the
 * cycle must fail closed (no further request once nothing can be recorded), and after recovery the
 * batch caught `sending` is resent under its own key only (the partner replays it): nothing lost,
 * nothing sent twice. Checked against the sandbox partner's own record and the audit chain.
 *
 * SQLite: "unwritable" is the connection turned read-only (`PRAGMA query_only`: every write fails
 * with SQLITE_READONLY, as a read-only remount or a full disk fails it); "lost" is the handle closed
 * under the engine. Permissions cannot stand in for either: these tests may run as root, and an open
 * WAL connection keeps writing through its open files after a chmod.
 *
 * PostgreSQL (a private schema, test/support/backends.ts): the app's connections are terminated with
 * pg_terminate_backend, idle ones while a batch request is in flight, and the one inside the outcome's
 * transaction. CI=true requires PostgreSQL; elsewhere these tests are skipped with a printed reason.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  type Backend,
  dropTestSchemas,
  PG_URL,
  postgresAvailable,
  postgresBackend,
  withPgAdmin,
} from '../support/backends.js';
import { closeWorlds, many, world } from '../support/live-world.js';
import { holdsWithin, SECOND } from '../support/world.js';

afterEach(closeWorlds);
afterAll(dropTestSchemas);

const withPostgres = await postgresAvailable();

describe('SQLite: the database fails mid-cycle', () => {
  it('unwritable while the batch request is in flight: the outcome cannot commit, the cycle fails, nothing more is sent; after recovery the batch is resent under its key and replayed', async () => {
    const w = await world({ env: { VALHALLA_MAX_LEADS_PER_CYCLE: '2' } });
    await w.ingestAll(many('s', 3));
    // The batch is committed `sending` when the request is handed to the client: then the disk goes.
    w.beforeSend = (_batch, nth) => {
      if (nth === 1) w.app.store.sqlite!.pragma('query_only = ON');
    };
    await expect(w.cycle()).rejects.toThrow(/readonly|read-only/i);
    const [caught] = await w.deliveries();
    expect(caught).toMatchObject({ state: 'sending', attempts: 1 });
    expect(w.sandbox.stats().batches).toMatchObject({ received: 1, accepted: 1 });

    // Still unwritable: the next cycle cannot claim or authorise anything, so no batch goes out.
    w.clock.advance(10 * SECOND);
    await expect(w.cycle()).rejects.toThrow(/readonly|read-only/i);
    expect(w.sandbox.stats().batches.received).toBe(1);

    // A restart on a writable database: recovery resends the caught batch under its own key.
    w.beforeSend = null;
    await w.restart();
    expect(await w.engine.recover()).toEqual({ resumed: 1, quarantined: 0 });
    w.clock.advance(10 * SECOND);
    expect(await w.cycle()).toMatchObject({ accepted: 2 });
    w.clock.advance(10 * SECOND);
    expect(await w.cycle()).toMatchObject({ accepted: 1 });
    expect((await w.deliveries())[0]).toMatchObject({ batch_key: caught!.batch_key, state: 'accepted' });
    const summary = await w.check({ finalStates: ['exported'], leadCount: 3 });
    expect(summary.replays).toBe(1);
  });

  it('lost during a retry backoff: the retry is never authorised or sent; after a restart it goes out under the same key, once', async () => {
    const w = await world({ sandbox: { faults: { failNext: 1 } } });
    await w.ingestAll(many('l', 2));
    w.onSleep = () => {
      w.app.store.sqlite!.close();
    };
    await expect(w.cycle()).rejects.toThrow(/not open|closed/i);
    expect(w.sandbox.stats().batches).toMatchObject({ received: 1, failedByFault: 1, accepted: 0 });

    w.onSleep = null;
    await w.restart();
    expect(await w.engine.recover()).toEqual({ resumed: 0, quarantined: 0 });
    const [waiting] = await w.deliveries();
    expect(waiting).toMatchObject({ state: 'retry_wait', attempts: 1, last_status: 503 });
    w.clock.advance(2 * SECOND);
    expect(await w.cycle()).toMatchObject({ actions: 1, accepted: 2 });
    expect((await w.deliveries())[0]).toMatchObject({ batch_key: waiting!.batch_key, attempts: 2 });
    await w.check({ finalStates: ['exported'], leadCount: 2 });
  });

  it('unwritable before the cycle: nothing is claimed and no batch request is sent', async () => {
    const w = await world();
    await w.ingestAll(many('u', 2));
    w.app.store.sqlite!.pragma('query_only = ON');
    await expect(w.cycle()).rejects.toThrow(/readonly|read-only/i);
    expect(w.sandbox.stats().batches.received).toBe(0);
    await w.restart();
    expect([...(await w.leads()).values()].map((l) => l.state)).toEqual(['pending', 'pending']);
    expect(await w.cycle()).toMatchObject({ accepted: 2 });
    await w.check({ finalStates: ['exported'], leadCount: 2 });
  });
});

describe.runIf(withPostgres)('PostgreSQL: the app’s connections are terminated mid-batch', () => {
  /** A private schema, and an application_name that names this app's connections alone. */
  function privateBackend(): { backend: Backend; appName: string } {
    const appName = `vfault_${randomBytes(5).toString('hex')}`;
    return {
      appName,
      backend: {
        ...postgresBackend,
        databaseUrl: () => `${postgresBackend.databaseUrl()}&application_name=${appName}`,
      },
    };
  }

  const admin = withPgAdmin;

  async function terminate(client: pg.Client, appName: string): Promise<number> {
    const result = await client.query(
      'select pg_terminate_backend(pid) as ok from pg_stat_activity where application_name = $1 and pid <> pg_backend_pid()',
      [appName],
    );
    return result.rowCount ?? 0;
  }

  async function backendsOf(client: pg.Client, appName: string, waitingOnLock = false): Promise<number> {
    const result = await client.query(
      `select count(*)::int as n from pg_stat_activity where application_name = $1 ${waitingOnLock ? `and wait_event_type = 'Lock'` : ''}`,
      [appName],
    );
    return result.rows[0].n as number;
  }

  /**
   * Run `work` with this process's uncaught exceptions collected instead of reported: a connection
   * the server ends must fail the query that used it, never surface as an uncaught exception (which
   * would end a worker, or the supervisor and its dashboard, mid-flight).
   */
  async function collectingUncaught<T>(work: () => Promise<T>): Promise<{ result: T; uncaught: Error[] }> {
    const saved = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    const uncaught: Error[] = [];
    const collect = (error: Error) => uncaught.push(error);
    process.on('uncaughtException', collect);
    try {
      const result = await work();
      // An 'error' event of a socket that has just closed comes on a later turn of the event loop.
      await new Promise((resolve) => setTimeout(resolve, 100));
      return { result, uncaught };
    } finally {
      process.off('uncaughtException', collect);
      for (const listener of saved) process.on('uncaughtException', listener);
    }
  }

  const UNCAUGHT =
    'a terminated PostgreSQL connection surfaced as an uncaught exception (an unhandled pg client "error" event)';

  it('idle connections terminated while the batch is in flight: the pool reconnects, the outcome commits, accepted once', async () => {
    const { backend, appName } = privateBackend();
    const w = await world({ backend, env: { VALHALLA_MAX_LEADS_PER_CYCLE: '2' } });
    await w.ingestAll(many('p', 3));
    let terminated = 0;
    w.beforeSend = async (_batch, nth) => {
      if (nth !== 1) return;
      terminated = await admin(async (client) => {
        const n = await terminate(client, appName);
        // Wait for the backends to be gone, and the pool to have seen its idle clients end.
        await holdsWithin(async () => (await backendsOf(client, appName)) === 0, {
          timeoutMs: 5_000,
          everyMs: 10,
        });
        return n;
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
    };
    const { result, uncaught } = await collectingUncaught(() => w.cycle());
    expect(result).toMatchObject({ accepted: 2 });
    expect(terminated).toBeGreaterThan(0);
    expect(
      uncaught.map((e) => e.message),
      UNCAUGHT,
    ).toEqual([]);
    w.clock.advance(10 * SECOND);
    expect(await w.cycle()).toMatchObject({ accepted: 1 });
    const summary = await w.check({ finalStates: ['exported'], leadCount: 3 });
    expect(summary.replays).toBe(0);
  });

  it('the connection terminated inside the outcome’s transaction: the cycle fails, the batch stays sending; the restart resends it under its key and the partner replays it', async () => {
    const { backend, appName } = privateBackend();
    const w = await world({ backend, env: { VALHALLA_MAX_LEADS_PER_CYCLE: '2' } });
    await w.ingestAll(many('q', 3));
    const dbSchema = w.config.database.kind === 'postgres' ? w.config.database.schema : undefined;
    expect(dbSchema).toBeDefined();
    const locker = new pg.Client({ connectionString: PG_URL });
    await locker.connect();
    let killer: Promise<number> | null = null;
    try {
      w.afterSend = async (_outcome, nth) => {
        if (nth !== 1) return;
        // The partner has answered. Hold the outbox so the outcome's transaction waits inside, then
        // terminate the app's connections while it waits.
        await locker.query('begin');
        await locker.query(`lock table ${dbSchema}.deliveries in access exclusive mode`);
        killer = admin(async (client) => {
          try {
            const waiting = await holdsWithin(async () => (await backendsOf(client, appName, true)) > 0, {
              timeoutMs: 10_000,
              everyMs: 10,
            });
            if (!waiting) throw new Error('the outcome transaction never waited on the lock');
            return await terminate(client, appName);
          } finally {
            // Released in any case: a test that fails here must not leave the engine waiting forever.
            await locker.query('rollback');
          }
        });
      };
      const { result, uncaught } = await collectingUncaught(() =>
        w.cycle().then(
          () => null,
          (error: unknown) => error as Error,
        ),
      );
      expect(result, 'the cycle went on without its outcome committed').toBeInstanceOf(Error);
      expect(await killer).toBeGreaterThan(0);
      // Soft: the recovery below is checked whatever this says.
      expect
        .soft(
          uncaught.map((e) => e.message),
          UNCAUGHT,
        )
        .toEqual([]);
    } finally {
      await locker.end();
    }
    expect(w.sandbox.stats().batches).toMatchObject({ received: 1, accepted: 1 });

    w.afterSend = null;
    await w.restart();
    const [caught] = await w.deliveries();
    expect(caught).toMatchObject({ state: 'sending', attempts: 1 });
    expect(await w.engine.recover()).toEqual({ resumed: 1, quarantined: 0 });
    w.clock.advance(10 * SECOND);
    expect(await w.cycle()).toMatchObject({ accepted: 2 });
    w.clock.advance(10 * SECOND);
    expect(await w.cycle()).toMatchObject({ accepted: 1 });
    const summary = await w.check({ finalStates: ['exported'], leadCount: 3 });
    expect(summary.replays).toBe(1);
    expect((await w.deliveries())[0]).toMatchObject({ batch_key: caught!.batch_key, state: 'accepted' });
  });
});
