import type { HealthResult, PartnerBatch, SendOutcome, TokenOutcome } from '../outbound/index.js';

export type { HealthResult, PartnerLead, SendOutcome, TokenOutcome } from '../outbound/index.js';

/** What the engine needs of the partner client (src/outbound implements it; tests may pass their own). */
export interface PartnerPort {
  health(signal?: AbortSignal): Promise<HealthResult>;
  /** Make sure the token stays valid for at least `validForMs`; or say why none could be had. */
  ensureToken(validForMs: number, signal?: AbortSignal): Promise<TokenOutcome>;
  /**
   * ONE request; data, never an exception, for partner and network failures. `holdNew` stops it
   * from starting (it then throws, nothing sent); `signal` cuts it even in flight.
   */
  sendBatch(batch: PartnerBatch, signal?: AbortSignal, holdNew?: AbortSignal): Promise<SendOutcome>;
}
