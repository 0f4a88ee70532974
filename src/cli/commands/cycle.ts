import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { type CycleReview, confirmReviewedCycle, reviewCycle } from '../../app/index.js';
import { OperatorError } from '../../engine/index.js';
import { wholeNumber } from '../arguments.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatLeadTable, writeJson, writeLine } from '../output.js';

/** The batch under review, as the operator checks it before confirming: masked leads, scores, the partner's answer. */
function printReview(out: Writable, review: Extract<CycleReview, { kind: 'awaiting' }>): void {
  const { cycle } = review;
  writeLine(
    out,
    `cycle ${cycle.id} (live, ramp stage ${cycle.rampStage ?? '—'}), started ${cycle.startedAt}, ${cycle.finishedAt ? `finished ${cycle.finishedAt}` : 'STILL RUNNING'}; ${cycle.claimed} lead(s) claimed, awaiting confirmation`,
  );
  if (review.batches.length === 0) writeLine(out, '  no batch was queued by this cycle');
  for (const batch of review.batches) {
    writeLine(
      out,
      `batch ${batch.batchKey}: ${batch.state} after ${batch.attempts} attempt(s); partner answered ${batch.partnerStatus === null ? 'nothing (no answer recorded)' : `HTTP ${batch.partnerStatus}`}${batch.partnerAnswer ? ` (${batch.partnerAnswer})` : ''}`,
    );
    writeLine(
      out,
      formatLeadTable(
        ['LEAD', 'PSEUDONYM', 'NAME', 'EMAIL', 'SCORE', 'STATE', 'REASON'],
        batch.leads.map((l) => ({
          cells: [l.id, l.pseudonym, l.name, l.email, l.score, l.state, l.reason],
          attributes: l.attributes,
        })),
      )
        .split('\n')
        .map((line) => `  ${line}`)
        .join('\n'),
    );
  }
}

export function registerCycle(program: Command, ctx: Context): void {
  const cycle = program.command('cycle').description('operator actions on cycles');
  cycle
    .command('confirm')
    .description(
      'ramp stage 1: show the live cycle awaiting confirmation (its batch: masked leads, scores, the partner answer); `cycle confirm N` confirms that cycle, refusing a stale or wrong number',
    )
    .argument(
      '[cycle]',
      'the cycle to confirm, as shown by the review',
      wholeNumber(1, Number.MAX_SAFE_INTEGER),
    )
    .option('--cycle <id>', 'the same as the argument', wholeNumber(1, Number.MAX_SAFE_INTEGER))
    .option('--json', 'print the review (and the confirmation) as JSON')
    .action(async (argument: number | undefined, opts: { cycle?: number; json?: boolean }) => {
      const named = argument ?? opts.cycle;
      await ctx.withApp(async (app) => {
        const out = ctx.io.stdout;
        try {
          if (named === undefined) {
            const review = await reviewCycle(app);
            if (opts.json) writeJson(out, { review, confirmed: null });
            if (review.kind === 'nothing') {
              if (!opts.json) writeLine(out, `nothing to confirm: ${review.waitingFor}`);
              return;
            }
            if (!opts.json) printReview(out, review);
            // Confirming takes the cycle's number: a confirmation is a review, not a reflex.
            throw new CliExit(
              EXIT.refused,
              `nothing confirmed: check the batch above, then confirm it with \`valhalla cycle confirm ${review.cycle.id}\``,
            );
          }
          const { confirmed, review } = await confirmReviewedCycle(app, named);
          if (opts.json) return writeJson(out, { review, confirmed });
          if (review.kind === 'awaiting') printReview(out, review);
          writeLine(out, `cycle ${confirmed} confirmed by ${app.config.operator}`);
        } catch (error) {
          if (error instanceof OperatorError) throw new CliExit(EXIT.failure, error.message);
          throw error;
        }
      });
    });
}
