import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../store/index.js';
import { getRuntimeValue, setRuntimeValue } from '../store/index.js';

/** The persisted operational state (DESIGN.md "mode"). */
export type Mode = 'live' | 'paused' | 'rolled_back';
const MODES: readonly Mode[] = ['live', 'paused', 'rolled_back'];

const MODE_KEY = 'mode';
const GO_LIVE_KEY = 'go_live_at';

type Executor = Kysely<Database> | Transaction<Database>;

/** The mode in force; `live` until an operator or a monitor moves it down. */
export async function readMode(db: Executor): Promise<Mode> {
  const value = await getRuntimeValue(db, MODE_KEY);
  if (value === undefined) return 'live';
  // An unknown value fails closed: nothing is sent in a mode this release does not know.
  return (MODES as readonly string[]).includes(value) ? (value as Mode) : 'rolled_back';
}

export async function writeMode(db: Executor, mode: Mode, now: number): Promise<void> {
  await setRuntimeValue(db, MODE_KEY, mode, now);
}

/** When Phase 4 first started (the ramp's clock), or null. */
export async function readGoLiveAt(db: Executor): Promise<number | null> {
  const value = await getRuntimeValue(db, GO_LIVE_KEY);
  return value === undefined ? null : Number(value);
}

export async function writeGoLiveAt(db: Executor, at: number): Promise<void> {
  await setRuntimeValue(db, GO_LIVE_KEY, String(at), at);
}
