/**
 * Text an operator writes that is kept for good (the reasons of erasure, mode changes, quarantine and
 * revocation; sign-off comments), and `leads erase -` with a list, as an operator runs them: the real
 * binary on a real installation, a local Slack receiver for the alerts. Contact data in a reason is
 * refused (exit 3) without being echoed, and reaches neither the audit chain, nor a lead's reason, nor
 * an alert; a stop (pause, rollback) is still made, with the reason withheld.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REASON_WITHHELD } from '../../src/pii/index.js';
import { type CliResult, runBinary, testEnv } from '../support/cli.js';
import { type SlackReceiver, startSlackReceiver } from '../support/receivers.js';
import { query } from '../support/sqlite.js';
import { tempDir } from '../support/tmp.js';
import { HOUR } from '../support/world.js';

let receiver: SlackReceiver | null = null;
afterEach(async () => {
  await receiver?.close();
  receiver = null;
});

/** A Phase 3 installation with three leads: ada, bo, cy (@reasons.example.test). */
async function installation() {
  receiver = await startSlackReceiver('/services/T0/B0/reasons-test');
  const cwd = tempDir();
  const env = testEnv(join(cwd, 'data'), { VALHALLA_SLACK_WEBHOOK_URL: receiver.webhookUrl });
  const run = (args: string[], stdin?: string): Promise<CliResult> =>
    runBinary(args, { cwd, env, ...(stdin === undefined ? {} : { stdin }) });
  expect((await run(['init'])).code).toBe(0);
  const at = new Date(Date.now() - HOUR).toISOString();
  const rows = ['ada', 'bo', 'cy'].map(
    (who, i) =>
      `CRM-${who},${who.toUpperCase()} Person,${who}@reasons.example.test,+44 20 7946 10${i}0,${who} Ltd,80,${at},100`,
  );
  writeFileSync(
    join(cwd, 'leads.csv'),
    `external_id,name,email,phone,company,score,source_timestamp,value\n${rows.join('\n')}\n`,
  );
  const ingested = await run(['ingest', 'leads.csv']);
  expect(ingested.code, ingested.stderr).toBe(0);
  const db = join(cwd, 'data', 'valhalla.db');
  const leadId = (who: string) =>
    query<{ id: number }>(db, 'select id from leads where external_id = ?', [`CRM-${who}`])[0]!.id;
  return { cwd, env, run, db, leadId };
}

const FORMS = [
  '14155550012',
  'tel 4155550011',
  '415-555-0011',
  '0044 20 7946 0958',
  'zq010 at erase dot example',
];

describe('reasons kept for good', () => {
  it('contact data in a reason is refused with exit 3 and never echoed; a stop is made with the reason withheld', async () => {
    const { run, db, leadId } = await installation();
    const printed: string[] = [];
    const expectRefused = (result: CliResult, value: string) => {
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toMatch(/what looks like (a phone number|an e-mail address) is in the reason/);
      expect(result.stdout + result.stderr).not.toContain(value);
      printed.push(result.stdout + result.stderr);
    };

    for (const value of FORMS) {
      expectRefused(
        await run(['leads', 'erase', String(leadId('ada')), '--reason', `DSR-7 ${value}`]),
        value,
      );
      expectRefused(await run(['quarantine', 'release', String(leadId('bo')), '--reason', value]), value);
    }
    // Nothing was erased.
    expect(
      query<{ email: string }>(db, 'select email from leads where id = ?', [leadId('ada')])[0]!.email,
    ).toBe('ada@reasons.example.test');

    // A stop is never held up by its wording: made, with the reason withheld, said on standard error;
    // its exit code is the acknowledgement's (a pause with no worker running: 0).
    const paused = await run(['pause', '--reason', 'partner rang from 415-555-0011']);
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stderr).toMatch(
      /note: what looks like a phone number is in the reason.*the pause itself was made/,
    );
    expect(paused.stdout + paused.stderr).not.toContain('415-555-0011');
    printed.push(paused.stdout + paused.stderr);
    expect(paused.stdout).toContain(`mode live → paused`);
    const resumed = await run(['resume', '--reason', 'zq010 at erase dot example said ok']);
    expectRefused(resumed, 'zq010');
    expect(query<{ value: string }>(db, "select value from runtime_state where key = 'mode'")[0]!.value).toBe(
      'paused',
    );
    // A rollback's exit code first says whether a running service confirmed it: here none runs (4).
    const rolled = await run(['rollback', '--reason', 'call 0044 20 7946 0958']);
    expect(rolled.code, rolled.stderr).toBe(4);
    expect(rolled.stderr).toMatch(/what looks like a phone number is in the reason/);
    expect(rolled.stdout + rolled.stderr).not.toContain('7946 0958');
    printed.push(rolled.stdout + rolled.stderr);
    expect(rolled.stdout).toContain('mode paused → rolled_back');

    // The erasure with a clean reason goes through; so do the mode's audit entries, withheld.
    const erased = await run(['leads', 'erase', String(leadId('ada')), '--reason', 'DSR-2026-0001234']);
    expect(erased.code, erased.stderr).toBe(0);
    const chain = query<{ action: string; details: string }>(db, 'select action, details from audit_log');
    const modeEntries = chain.filter((e) => e.action === 'mode.pause' || e.action === 'mode.rollback');
    expect(modeEntries.map((e) => JSON.parse(e.details).reason)).toEqual([REASON_WITHHELD, REASON_WITHHELD]);
    expect(chain.find((e) => e.action === 'lead.erased')?.details).toContain('DSR-2026-0001234');
    const everything = [
      ...chain.map((e) => e.details),
      ...query<{ r: string | null }>(db, 'select state_reason as r from leads').map((l) => l.r ?? ''),
      ...receiver!.requests.map((r) => r.body),
      ...printed,
    ].join('\n');
    for (const value of [...FORMS, '4155550011', '7946 0958', 'zq010'])
      expect(everything).not.toContain(value);
    expect(receiver!.requests.some((r) => r.body.includes('ROLLED BACK'))).toBe(true);
  });
});

describe('valhalla leads erase -', () => {
  it('takes one id or e-mail a line, reports each, and exits non-zero when any was not done', async () => {
    const { run, db, leadId } = await installation();
    const ada = leadId('ada');
    const stdin = [
      'ada@reasons.example.test',
      '',
      `  ${String(leadId('bo'))}  `,
      'nobody@reasons.example.test',
      'not an identifier',
      'ADA@reasons.example.test',
      '',
    ].join('\n');
    const result = await run(['leads', 'erase', '-', '--reason', 'DSR-31'], stdin);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stdout).toContain('line 1: erased');
    expect(result.stdout).toContain(`lead ${ada} (`);
    expect(result.stdout).toContain('line 3: erased');
    expect(result.stdout).toContain('line 4: not found: no lead found for this e-mail address');
    expect(result.stdout).toContain('line 5: not an id or e-mail');
    expect(result.stdout).toContain('line 6: already erased');
    expect(result.stdout).toContain(
      '5 requests: 2 erased, 1 already erased, 1 not found, 0 refused, 1 not an id or e-mail',
    );
    expect(result.stderr).toContain('not all done');
    // Never echoed: the e-mails read from standard input.
    expect(result.stdout + result.stderr).not.toMatch(/ada@|nobody@|not an identifier/i);
    const erased = query<{ external_id: string | null; erased: number }>(
      db,
      'select external_id, erased_at is not null as erased from leads order by id',
    );
    expect(erased.map((l) => l.erased)).toEqual([1, 1, 0]);

    // All done: exit 0, and --json gives each line's outcome.
    const again = await run(
      ['leads', 'erase', '-', '--reason', 'DSR-32', '--json'],
      'cy@reasons.example.test\n\n',
    );
    expect(again.code, again.stderr).toBe(0);
    const report = JSON.parse(again.stdout) as { requests: { line: number; outcome: string }[] };
    expect(report.requests.map((r) => [r.line, r.outcome])).toEqual([[1, 'erased']]);
    expect((await run(['leads', 'erase', '-', '--reason', 'DSR-33'], '\n  \n')).code).toBe(2);
  });
});
