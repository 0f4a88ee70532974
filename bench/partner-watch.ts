/**
 * The kill sweep's view from the partner's side: which leads request the sandbox partner has received
 * and not yet answered, when it last answered one, and the two hooks that place a kill there.
 *
 * It works through the sandbox's latency hook (`sleep`), which the sandbox calls for every partner
 * request once the request and its body have arrived, just before it answers. The sweep runs one
 * `valhalla run` at a time, and its worker sends one request at a time (health check, token, batches),
 * so the request in the hook is the one counted since the previous call; when more than one arrived
 * meanwhile (a request cut by a kill before its body was read), the call is not attributed to any.
 */
import type { Sleep } from '../src/clock/index.js';
import type { SandboxPartner, SandboxStats } from '../src/sandbox/index.js';

/** Where a kill landed, by the partner's own times. */
export type KillPlace = 'during' | 'after' | 'other';

/** A leads request the partner received (`enteredAt`: the whole request had arrived). */
export interface LeadsRequest {
  enteredAt: number;
  /** When the partner's answer was written; null while it has not answered (or never did). */
  answeredAt: number | null;
}

/** What the sweep wants done at the `nth` leads request of the current run. */
export type Arm =
  | {
      kind: 'hold';
      nth: number;
      /** Called while the request is held unanswered; resolves true to let the partner answer it after all. */
      onHeld: (request: LeadsRequest) => Promise<boolean>;
    }
  | { kind: 'after-answer'; nth: number; onAnswered: (request: LeadsRequest) => void };

/** A kill's place: during a leads request, within `AFTER_ANSWER_MS` after an answer, or elsewhere. */
export interface Placement {
  place: KillPlace;
  /** For `after`: ms from the partner's answer to the kill. */
  sinceAnswerMs: number | null;
}

/** The window after a partner's answer in which a kill counts as `after`. */
export const AFTER_ANSWER_MS = 50;

const settled = (s: SandboxStats) =>
  s.batches.accepted + s.batches.replayed + s.batches.refused + s.batches.failedByFault;

/** Hand `sleep` to `startSandboxPartner`, then `attach` the partner it returned. */
export class PartnerWatch {
  #partner: SandboxPartner | null = null;
  #seen = { total: 0, leads: 0 };
  #open: LeadsRequest | null = null;
  #lastAnsweredAt: number | null = null;
  #arm: Arm | null = null;
  #leadsThisRun = 0;
  #firstLeadsAt: number | null = null;
  /** Leads requests seen in the hook, and calls that could not be attributed (see the file's note). */
  readonly counts = { leadsRequests: 0, unattributed: 0, heldAndAnswered: 0, heldAndDropped: 0 };

  attach(partner: SandboxPartner): void {
    this.#partner = partner;
    const stats = partner.stats();
    this.#seen = { total: stats.requests.total, leads: stats.requests.byPath['/api/leads'] ?? 0 };
  }

  /** A new `valhalla run` is about to start: count its leads requests from 1, with `arm` (or none). */
  newRun(arm: Arm | null): void {
    this.#arm = arm;
    this.#leadsThisRun = 0;
    this.#firstLeadsAt = null;
  }

  /** When the current run's first leads request reached the partner (null: none yet). */
  firstLeadsAt(): number | null {
    return this.#firstLeadsAt;
  }

  /** Where a kill at `at` lands: a leads request received and unanswered, just answered, or neither. */
  place(at: number): Placement {
    if (this.#open !== null && this.#open.enteredAt <= at && this.#open.answeredAt === null) {
      return { place: 'during', sinceAnswerMs: null };
    }
    const since = this.#lastAnsweredAt === null ? null : at - this.#lastAnsweredAt;
    if (since !== null && since >= 0 && since <= AFTER_ANSWER_MS)
      return { place: 'after', sinceAnswerMs: since };
    return { place: 'other', sinceAnswerMs: null };
  }

  /** Resolves once no leads request is inside the partner's handler (at most `timeoutMs`). */
  async quiet(timeoutMs = 2_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.#open !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    return this.#open === null;
  }

  /** The sandbox's latency hook: passes at once, except at an armed leads request. */
  readonly sleep: Sleep = async () => {
    const partner = this.#partner;
    if (partner === null) return;
    const stats = partner.stats();
    const total = stats.requests.total;
    const leads = stats.requests.byPath['/api/leads'] ?? 0;
    const arrived = total - this.#seen.total;
    const arrivedLeads = leads - this.#seen.leads;
    this.#seen = { total, leads };
    if (arrivedLeads === 0) return;
    if (arrived !== 1) {
      this.counts.unattributed += 1;
      return;
    }
    this.counts.leadsRequests += 1;
    const request: LeadsRequest = { enteredAt: Date.now(), answeredAt: null };
    this.#open = request;
    this.#leadsThisRun += 1;
    this.#firstLeadsAt ??= request.enteredAt;
    const before = settled(stats);
    const arm = this.#arm !== null && this.#arm.nth === this.#leadsThisRun ? this.#arm : null;
    if (arm !== null) this.#arm = null;
    if (arm?.kind === 'hold') {
      const answer = await arm.onHeld(request);
      if (!answer) {
        // The partner drops the request: its handler ends without touching the ledger.
        this.counts.heldAndDropped += 1;
        this.#open = null;
        throw new Error('dropped by the partner after the client was killed');
      }
      this.counts.heldAndAnswered += 1;
    }
    // The handler answers in the microtasks after this returns; a check afterwards sees it done.
    setImmediate(() => {
      const now = Date.now();
      if (settled(partner.stats()) > before) {
        request.answeredAt = now;
        this.#lastAnsweredAt = now;
      }
      if (this.#open === request) this.#open = null;
      if (arm?.kind === 'after-answer') arm.onAnswered(request);
    });
  };
}
