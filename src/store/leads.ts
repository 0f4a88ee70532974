import type SqliteDatabase from 'better-sqlite3';
import { sql } from 'kysely';
import type { LeadState } from '../policy/index.js';
import type { Dialect } from './dialect.js';
import type { Executor, Store, StoreTransaction } from './executor.js';
import type { DeliveryState, Lead, LeadAttributes, NewLead } from './schema.js';

/** Columns per row of a multi-row insert; keeps each statement under both backends' parameter limits. */
const INSERT_ROWS_PER_STATEMENT = 250;

/** Which identity of a lead a key stands for: its normalised e-mail or its external id. */
export type LeadIdentity = 'email' | 'external_id';

/** A lead `insertNewLeads` stored: its id, primary dedup key and source line. */
export interface InsertedLead {
  id: number;
  dedup_key: string;
  source_line: number;
}

/** A key as the tables hold it (bytes) from the 32 hex digits the rest of the product passes. */
export function keyBytes(hex: string): Buffer {
  // Buffer.from would drop what is not hex without a word: two bad keys would become the same key.
  if (!KEY_HEX.test(hex))
    throw new TypeError(`an identity key is 32 lowercase hex digits, not ${hex.length} characters`);
  return Buffer.from(hex, 'hex');
}

const KEY_HEX = /^[0-9a-f]{32}$/;

/**
 * Bytes of an identity key `lead_identities` keeps: the first 12 of the 16 (96 bits). Two different
 * people's identities meet with odds of about n²/2⁹⁷ for n identities (under 10⁻¹³ at 100 million); if
 * they ever did, the later lead would be kept out as a duplicate of the earlier, never sent twice.
 */
const IDENTITY_BYTES = 12;

/** An identity key (32 hex digits) as `lead_identities` holds it: its first 12 bytes. */
export function identityBytes(hex: string): Buffer {
  return keyBytes(hex).subarray(0, IDENTITY_BYTES);
}

/** What `lead_identities` holds of an identity key, in hex: the 24 digits two keys are told apart by. */
export function identityHex(hex: string): string {
  return hex.slice(0, IDENTITY_BYTES * 2);
}

/** A key as the rest of the product reads it: hex digits. */
export function keyHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** A row read from `leads` as the product reads it: see `leadFromRow`. */
export type LeadFromRow<T extends { dedup_key: Uint8Array }> = Omit<T, 'dedup_key' | 'attributes'> & {
  dedup_key: string;
} & (T extends { attributes: string | null } ? { attributes: LeadAttributes | null } : unknown);

/** A stored lead as the product reads it: its dedup key in hex, its attributes (when selected) parsed. */
export function leadFromRow<T extends { dedup_key: Uint8Array; attributes?: string | null }>(
  row: T,
): LeadFromRow<T> {
  const read: Record<string, unknown> = { ...row, dedup_key: keyHex(row.dedup_key) };
  if ('attributes' in row) read.attributes = parseAttributes(row.attributes ?? null);
  return read as LeadFromRow<T>;
}

/** A lead's attributes as `leads.attributes` holds them: null when it has none (no JSON written). */
export function attributesColumn(attributes: LeadAttributes | null | undefined): string | null {
  return attributes === null || attributes === undefined ? null : JSON.stringify(attributes);
}

/**
 * `leads.attributes` read back: a JSON object whose values are strings, finite numbers, booleans or
 * null. Anything else (a hand edit, a broken write) reads as null, as a lead with no attributes: one
 * bad row must not stop a list, a cycle or an erasure.
 */
export function parseAttributes(stored: string | null): LeadAttributes | null {
  if (stored === null) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(stored);
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return null;
  for (const value of Object.values(parsed)) {
    const plain =
      value === null ||
      typeof value === 'string' ||
      typeof value === 'boolean' ||
      (typeof value === 'number' && Number.isFinite(value));
    if (!plain) return null;
  }
  return Object.freeze(parsed as LeadAttributes);
}

/** The identity keys a new lead holds: its e-mail's, and its external id's when it has one. */
function identityKeysOfRow(row: NewLead): string[] {
  return row.external_id_key === null ? [row.email_key] : [row.email_key, row.external_id_key];
}

/**
 * Take the write locks a lead insert needs before it reads which identities are held, so what it found
 * free stays free until it commits: SQLite's one write lock; on PostgreSQL a lock on `lead_identities`
 * that holds off every other writer of it (reads go on), so two ingests at once take turns.
 */
async function lockIdentities(trx: StoreTransaction, dialect: Dialect): Promise<void> {
  if (dialect === 'sqlite') await sql`update leads set id = id where 0`.execute(trx);
  else await sql`lock table lead_identities in share row exclusive mode`.execute(trx);
}

/**
 * Insert leads, skipping any that matches a stored lead (or an earlier row of `rows`) on either of its
 * identities: its e-mail or its external id (0013, 0015). The keys are `lead_identities`' primary key,
 * read under a lock that holds off every other writer, so a lead cannot be stored twice, not even by two
 * ingests at once. Returns the rows inserted, in `rows`' order.
 */
export async function insertNewLeads(
  store: Store,
  rows: NewLead[],
  trx?: StoreTransaction,
): Promise<InsertedLead[]> {
  if (trx === undefined) return store.db.transaction().execute((t) => insertNewLeads(store, rows, t));
  await lockIdentities(trx, store.dialect);
  const inserted: InsertedLead[] = [];
  const taken = new Set<string>();
  for (let i = 0; i < rows.length; i += INSERT_ROWS_PER_STATEMENT) {
    const slice = rows.slice(i, i + INSERT_ROWS_PER_STATEMENT);
    const held = await trx
      .selectFrom('lead_identities')
      .select('key')
      .where('key', 'in', slice.flatMap(identityKeysOfRow).map(identityBytes))
      .execute();
    for (const h of held) taken.add(keyHex(h.key));
    const fresh: NewLead[] = [];
    for (const row of slice) {
      const keys = identityKeysOfRow(row).map(identityHex);
      if (keys.some((k) => taken.has(k))) continue;
      for (const k of keys) taken.add(k);
      fresh.push(row);
    }
    if (fresh.length === 0) continue;
    const stored = await trx
      .insertInto('leads')
      .values(
        fresh.map(({ email_key: _e, external_id_key: _x, ...lead }) => ({
          ...lead,
          dedup_key: keyBytes(lead.dedup_key),
          // Written out: in a multi-row insert SQLite fills a column missing from one row with NULL, not its default.
          synthetic: lead.synthetic ?? 0,
          attributes: attributesColumn(lead.attributes),
        })),
      )
      .returning(['id', 'dedup_key'])
      .execute();
    const idByKey = new Map(stored.map((r) => [keyHex(r.dedup_key), r.id]));
    const identities: { key: Buffer; lead_id: number }[] = [];
    for (const row of fresh) {
      const id = idByKey.get(row.dedup_key);
      if (id === undefined) throw new Error(`the insert of line ${row.source_line} returned no id`);
      inserted.push({ id, dedup_key: row.dedup_key, source_line: row.source_line });
      for (const k of identityKeysOfRow(row)) identities.push({ key: identityBytes(k), lead_id: id });
    }
    await trx.insertInto('lead_identities').values(identities).execute();
  }
  return inserted;
}

/** The columns a new lead is inserted with, in the prepared statement's order. */
const NEW_LEAD_COLUMNS = [
  'dedup_key',
  'external_id',
  'name',
  'email',
  'phone',
  'company',
  'score',
  'source_ts',
  'value',
  'state',
  'state_reason',
  'ingested_at',
  'updated_at',
  'exported_at',
  'run_id',
  'source_line',
  'synthetic',
  'attributes',
] as const satisfies readonly (keyof NewLead)[];

/**
 * Every column a new lead can carry is in the list: a column added to the table and not here fails to
 * compile. Left out on purpose: the id, the marks a lead gets later (its dry run, its erasure), and the
 * identity keys (rows of `lead_identities`).
 */
type MissingColumns = Exclude<
  keyof NewLead,
  (typeof NEW_LEAD_COLUMNS)[number] | 'id' | 'dry_run_at' | 'erased_at' | 'email_key' | 'external_id_key'
>;
const everyColumn: [MissingColumns] extends [never] ? true : MissingColumns = true;
void everyColumn;

const SYNTHETIC_COLUMN = NEW_LEAD_COLUMNS.indexOf('synthetic');
const ATTRIBUTES_COLUMN = NEW_LEAD_COLUMNS.indexOf('attributes');

/** The prepared statements of a SQLite connection's lead inserts, made once: an ingest runs them a million times. */
interface PreparedInserts {
  held: SqliteDatabase.Statement;
  lead: SqliteDatabase.Statement;
  identity: SqliteDatabase.Statement;
}
const preparedInserts = new WeakMap<SqliteDatabase.Database, PreparedInserts>();

function preparedFor(raw: SqliteDatabase.Database): PreparedInserts {
  let prepared = preparedInserts.get(raw);
  if (prepared === undefined) {
    prepared = {
      held: raw.prepare('select 1 from lead_identities where key = ?').pluck(),
      lead: raw.prepare(
        `insert into leads (${NEW_LEAD_COLUMNS.join(', ')}) values (${NEW_LEAD_COLUMNS.map(() => '?').join(', ')})`,
      ),
      identity: raw.prepare('insert into lead_identities (key, lead_id) values (?, ?)'),
    };
    preparedInserts.set(raw, prepared);
  }
  return prepared;
}

/**
 * `insertNewLeads` for a bulk writer: on SQLite prepared statements run per row on the store's
 * connection (inside `trx`, which holds that connection: SQLite has one, and the write lock is taken
 * first), skipping the query builder's compilation per statement; on PostgreSQL `insertNewLeads`.
 * The same rule decides: a lead whose e-mail or external id key is held is not stored.
 */
export async function insertNewLeadsInBulk(
  store: Store,
  trx: StoreTransaction,
  rows: NewLead[],
): Promise<InsertedLead[]> {
  const raw = store.sqlite;
  if (raw === null) return insertNewLeads(store, rows, trx);
  await lockIdentities(trx, store.dialect);
  const prepared = preparedFor(raw);
  const inserted: InsertedLead[] = [];
  const values: unknown[] = new Array(NEW_LEAD_COLUMNS.length);
  for (const row of rows) {
    const emailKey = identityBytes(row.email_key);
    const externalIdKey = row.external_id_key === null ? null : identityBytes(row.external_id_key);
    if (prepared.held.get(emailKey) !== undefined) continue;
    if (externalIdKey !== null && prepared.held.get(externalIdKey) !== undefined) continue;
    for (let i = 0; i < NEW_LEAD_COLUMNS.length; i++) values[i] = row[NEW_LEAD_COLUMNS[i]!] ?? null;
    values[0] = keyBytes(row.dedup_key);
    // The one column with a default (0011): left out, it takes it, as the PostgreSQL path's insert does.
    values[SYNTHETIC_COLUMN] = row.synthetic ?? 0;
    // A lead without attributes writes NULL: no JSON made, none stored.
    values[ATTRIBUTES_COLUMN] = attributesColumn(row.attributes);
    const id = Number(prepared.lead.run(values).lastInsertRowid);
    prepared.identity.run(emailKey, id);
    if (externalIdKey !== null) prepared.identity.run(externalIdKey, id);
    inserted.push({ id, dedup_key: row.dedup_key, source_line: row.source_line });
  }
  return inserted;
}

/**
 * Insert leads as `insertNewLeads` does; returns the id of each row that was inserted, by dedup key.
 */
export async function insertLeadsSkippingDuplicates(
  store: Store,
  rows: NewLead[],
): Promise<Map<string, number>> {
  const inserted = new Map<string, number>();
  for (const row of await insertNewLeads(store, rows)) inserted.set(row.dedup_key, row.id);
  return inserted;
}

/** A stored lead an identity key matched: the key, and where the lead came from. */
export interface LeadWithKeys {
  key: string;
  id: number;
  run_id: number;
  source_line: number;
}

/**
 * The stored leads holding any of these identity keys: the leads a duplicate matched, for its reason.
 * One statement per 250 keys (the primary key answers each).
 */
export async function findLeadsByIdentityKeys(db: Executor, keys: string[]): Promise<LeadWithKeys[]> {
  const found: LeadWithKeys[] = [];
  for (let i = 0; i < keys.length; i += INSERT_ROWS_PER_STATEMENT) {
    const slice = keys.slice(i, i + INSERT_ROWS_PER_STATEMENT);
    const asked = new Map(slice.map((key) => [identityHex(key), key]));
    const rows = await db
      .selectFrom('lead_identities')
      .innerJoin('leads', 'leads.id', 'lead_identities.lead_id')
      .select(['lead_identities.key', 'leads.id', 'leads.run_id', 'leads.source_line'])
      .where('lead_identities.key', 'in', slice.map(identityBytes))
      .execute();
    for (const r of rows) {
      const key = asked.get(keyHex(r.key));
      if (key !== undefined) found.push({ ...r, key });
    }
  }
  return found;
}

/**
 * Leads by state, as the database keeps them (0014: triggers update the counts in the transaction
 * that changes a state): a few rows read, whatever the number of leads.
 */
export async function countLeadsByState(db: Executor): Promise<Partial<Record<LeadState, number>>> {
  const rows = await db
    .selectFrom('lead_state_counts')
    .select(['state', (eb) => eb.fn.sum<number | string>('n').as('count')])
    .groupBy('state')
    .execute();
  return Object.fromEntries(rows.filter((r) => Number(r.count) !== 0).map((r) => [r.state, Number(r.count)]));
}

/** Leads by state counted row by row (a scan of every lead): what the kept counts must equal. */
export async function scanLeadsByState(db: Executor): Promise<Partial<Record<LeadState, number>>> {
  const rows = await db
    .selectFrom('leads')
    .select(['state', (eb) => eb.fn.countAll<number>().as('count')])
    .groupBy('state')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.state, Number(r.count)]));
}

/** One page of leads, newest id first, after the `beforeId` cursor (keyset paging: stable under inserts). */
export async function listLeads(
  db: Executor,
  options: { state?: LeadState; limit: number; beforeId?: number },
): Promise<Lead[]> {
  let query = db.selectFrom('leads').selectAll().orderBy('id', 'desc').limit(options.limit);
  if (options.state) query = query.where('state', '=', options.state);
  if (options.beforeId !== undefined) query = query.where('id', '<', options.beforeId);
  return (await query.execute()).map(leadFromRow);
}

/** Leads exported per minute in [from, to): minute index (epoch / 60 s) → count. */
export async function exportedLeadsPerMinute(
  db: Executor,
  from: number,
  to: number,
): Promise<Map<number, number>> {
  const rows = await db
    .selectFrom('leads')
    .select([sql<string | number>`exported_at / 60000`.as('minute'), sql<string | number>`count(*)`.as('n')])
    .where('exported_at', '>=', from)
    .where('exported_at', '<', to)
    .groupBy(sql`exported_at / 60000`)
    .execute();
  return new Map(rows.map((r) => [Math.floor(Number(r.minute)), Number(r.n)]));
}

// ---- erasure and retention (migration 0008) ----

/** What an erased lead holds in its required text columns; the nullable ones become null. */
export const ERASED_MARKER = '(erased)';

/** The columns that hold a person's data; erasure overwrites every one of them (and `attributes`). */
export const LEAD_PII_FIELDS = ['name', 'email', 'phone', 'company', 'external_id'] as const;
export type LeadPiiField = (typeof LEAD_PII_FIELDS)[number];

/** The end states `valhalla archive` takes (with `archived` leads that still hold their data). */
export const ARCHIVABLE_STATES = ['exported', 'expired', 'below_threshold', 'archived'] as const;
export type ArchivableState = (typeof ARCHIVABLE_STATES)[number];

/** Leads not complete: `valhalla archive` never touches them. */
export const INCOMPLETE_STATES = ['pending', 'in_flight', 'quarantined'] as const;
export type IncompleteState = (typeof INCOMPLETE_STATES)[number];

/** The predicate of the `leads_archivable` index (0008), word for word: PostgreSQL needs it to use the index. */
const ARCHIVABLE = sql<boolean>`(state in ('exported', 'expired', 'below_threshold') or (state = 'archived' and erased_at is null))`;

/** Every column that holds a person's data, erased; `erased_at` keeps the first erasure's time. */
function erasedColumns(now: number) {
  return {
    name: ERASED_MARKER,
    email: ERASED_MARKER,
    phone: null,
    company: null,
    external_id: null,
    // Every attribute, personal data or not: the lead keeps none of the person's extra columns.
    attributes: null,
    erased_at: sql<number>`coalesce(erased_at, ${now})`,
  };
}

/**
 * Take the write lock first thing in `trx` on SQLite (a write that touches no row), so what the
 * transaction then reads stays true until it commits. PostgreSQL locks the rows it reads instead.
 */
export async function lockLeadsForWrite(trx: StoreTransaction, dialect: Dialect): Promise<void> {
  if (dialect === 'sqlite') await sql`update leads set id = id where 0`.execute(trx);
}

/**
 * The leads of one person, for erasure: by id, or by e-mail (its e-mail key in `lead_identities`, which
 * also finds a lead already erased, whatever its dedup rule; its dedup key, for a lead stored before 0013
 * whose identities are not filled yet; or the stored normalised e-mail, which finds a lead stored before
 * 0013 that shares its e-mail with an earlier one). Locked for update on PostgreSQL.
 */
export async function findLeadsForErasure(
  trx: StoreTransaction,
  dialect: Dialect,
  match: { id: number } | { email: string; emailDedupKey: string },
): Promise<Lead[]> {
  let query = trx.selectFrom('leads').selectAll().orderBy('id');
  query =
    'id' in match
      ? query.where('id', '=', match.id)
      : query.where((eb) =>
          eb.or([
            eb(
              'id',
              'in',
              eb
                .selectFrom('lead_identities')
                .select('lead_id')
                .where('key', '=', identityBytes(match.emailDedupKey)),
            ),
            eb('dedup_key', '=', keyBytes(match.emailDedupKey)),
            eb('email', '=', match.email),
          ]),
        );
  if (dialect === 'postgres') query = query.forUpdate();
  return (await query.execute()).map(leadFromRow);
}

/** Erase one lead's personal data, and set its state (and reason) when given; false if it was not there. */
export async function eraseLeadData(
  trx: StoreTransaction,
  id: number,
  change: { now: number; state?: Lead['state']; reason?: string | null },
): Promise<boolean> {
  const result = await trx
    .updateTable('leads')
    .set({
      ...erasedColumns(change.now),
      updated_at: change.now,
      ...(change.state !== undefined ? { state: change.state } : {}),
      ...(change.reason !== undefined ? { state_reason: change.reason } : {}),
    })
    .where('id', '=', id)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** The live batches that carried a lead, oldest first, with when their requests were made. */
export async function liveBatchesOfLead(
  db: Executor,
  leadId: number,
): Promise<
  {
    deliveryId: number;
    batchKey: string;
    leadKey: string;
    state: DeliveryState;
    attempts: number;
    updatedAt: number;
    firstRequestAt: number | null;
    lastRequestAt: number | null;
  }[]
> {
  const rows = await db
    .selectFrom('delivery_leads as dl')
    .innerJoin('deliveries as d', 'd.id', 'dl.delivery_id')
    .leftJoin('requests as r', (join) =>
      join.onRef('r.delivery_id', '=', 'd.id').on('r.endpoint', '=', 'leads'),
    )
    .select((eb) => [
      'd.id as deliveryId',
      'd.batch_key as batchKey',
      'dl.lead_key as leadKey',
      'd.state as state',
      'd.attempts as attempts',
      'd.updated_at as updatedAt',
      eb.fn.min('r.at').as('firstRequestAt'),
      eb.fn.max('r.at').as('lastRequestAt'),
    ])
    .where('dl.lead_id', '=', leadId)
    .where('d.kind', '=', 'live')
    .groupBy(['d.id', 'd.batch_key', 'dl.lead_key', 'd.state', 'd.attempts', 'd.updated_at'])
    .orderBy('d.id')
    .execute();
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return rows.map((r) => ({
    deliveryId: Number(r.deliveryId),
    batchKey: r.batchKey,
    leadKey: r.leadKey,
    state: r.state,
    attempts: Number(r.attempts),
    updatedAt: Number(r.updatedAt),
    firstRequestAt: num(r.firstRequestAt),
    lastRequestAt: num(r.lastRequestAt),
  }));
}

/**
 * A dry run keeps a masked summary of its leads with the batch (pseudonym, masked e-mail, score):
 * replace these leads' masked e-mails with the marker. Returns how many batches changed.
 */
export async function eraseFromBatchSummaries(trx: StoreTransaction, leadIds: number[]): Promise<number> {
  const erased = new Set(leadIds);
  let changed = 0;
  for (let i = 0; i < leadIds.length; i += INSERT_ROWS_PER_STATEMENT) {
    const batches = await trx
      .selectFrom('deliveries')
      .select(['id', 'summary'])
      .where('summary', 'is not', null)
      .where(
        'id',
        'in',
        trx
          .selectFrom('delivery_leads')
          .select('delivery_id')
          .where('lead_id', 'in', leadIds.slice(i, i + INSERT_ROWS_PER_STATEMENT)),
      )
      .execute();
    for (const batch of batches) {
      const summary = JSON.parse(batch.summary ?? 'null') as unknown;
      if (!Array.isArray(summary)) continue;
      let touched = false;
      const scrubbed = summary.map((entry: unknown) => {
        if (typeof entry !== 'object' || entry === null) return entry;
        const item = entry as { lead?: unknown; email?: unknown };
        if (!erased.has(Number(item.lead)) || item.email === undefined || item.email === ERASED_MARKER)
          return entry;
        touched = true;
        return { ...item, email: ERASED_MARKER };
      });
      if (!touched) continue;
      await trx
        .updateTable('deliveries')
        .set({ summary: JSON.stringify(scrubbed) })
        .where('id', '=', batch.id)
        .execute();
      changed++;
    }
  }
  return changed;
}

/** Leads `valhalla archive` would take with this cutoff (last change before it), by state. */
export async function countArchivable(
  db: Executor,
  cutoff: number,
): Promise<Record<ArchivableState, number>> {
  const rows = await db
    .selectFrom('leads')
    .select(['state', (eb) => eb.fn.countAll<number>().as('count')])
    .where(ARCHIVABLE)
    .where('updated_at', '<', cutoff)
    .groupBy('state')
    .execute();
  const counts = { exported: 0, expired: 0, below_threshold: 0, archived: 0 };
  for (const row of rows) counts[row.state as ArchivableState] = Number(row.count);
  return counts;
}

/** Leads not complete (pending, in flight, quarantined) whose last change is before the cutoff, by state. */
export async function countIncompleteBefore(
  db: Executor,
  cutoff: number,
): Promise<Record<IncompleteState, number>> {
  const rows = await db
    .selectFrom('leads')
    .select(['state', (eb) => eb.fn.countAll<number>().as('count')])
    .where('state', 'in', [...INCOMPLETE_STATES])
    .where('updated_at', '<', cutoff)
    .groupBy('state')
    .execute();
  const counts = { pending: 0, in_flight: 0, quarantined: 0 };
  for (const row of rows) counts[row.state as IncompleteState] = Number(row.count);
  return counts;
}

/** The next leads to archive with this cutoff, oldest change first (the index's order: no sort). */
export async function nextArchivable(
  db: Executor,
  cutoff: number,
  limit: number,
): Promise<{ id: number; state: ArchivableState }[]> {
  const rows = await db
    .selectFrom('leads')
    .select(['id', 'state'])
    .where(ARCHIVABLE)
    .where('updated_at', '<', cutoff)
    .orderBy('updated_at')
    .orderBy('id')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ id: Number(r.id), state: r.state as ArchivableState }));
}

/**
 * Archive these leads if they are still in `from` and still archivable with this cutoff: state
 * `archived`, personal data erased. A lead changed meanwhile is left for the next pass. Returns the
 * ids archived. Leads already `archived` keep their reason (why they were dropped).
 */
export async function archiveLeads(
  trx: StoreTransaction,
  ids: number[],
  from: ArchivableState,
  change: { now: number; cutoff: number; reason: string },
): Promise<number[]> {
  if (ids.length === 0) return [];
  const rows = await trx
    .updateTable('leads')
    .set({
      ...erasedColumns(change.now),
      state: 'archived',
      updated_at: change.now,
      ...(from === 'archived' ? {} : { state_reason: change.reason }),
    })
    .where('id', 'in', ids)
    .where('state', '=', from)
    .where(ARCHIVABLE)
    .where('updated_at', '<', change.cutoff)
    .returning('id')
    .execute();
  return rows.map((r) => Number(r.id));
}

/**
 * A Phase 4 start: the synthetic leads still waiting (pending or quarantined) are archived with the
 * reason, so that none can be claimed live (the claim and the guard pass them over too). Returns
 * their ids.
 */
export async function archiveSyntheticLeads(db: Executor, now: number, reason: string): Promise<number[]> {
  const rows = await db
    .updateTable('leads')
    .set({ state: 'archived', state_reason: reason, updated_at: now })
    .where('synthetic', '=', 1)
    .where('state', 'in', ['pending', 'quarantined'])
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}
