/**
 * The mode commands and the rollback drill as an operator runs them: exit codes, what is printed,
 * what is audited, and the alert a rollback sends at once (to a local Slack receiver) even with no
 * `valhalla run` to send it.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runInProcess, testEnv } from '../support/cli.js';
import { type SlackReceiver, startSlackReceiver } from '../support/receivers.js';
import { query } from '../support/sqlite.js';
import { tempDir } from '../support/tmp.js';

let receiver: SlackReceiver | null = null;
afterEach(async () => {
  await receiver?.close();
  receiver = null;
});

describe('valhalla pause | resume | rollback | rearm', () => {
  it('moves the mode only down, audits every change, and sends the rollback alert at once', async () => {
    receiver = await startSlackReceiver('/services/T0/B0/modes-test');
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'), {
      VALHALLA_SLACK_WEBHOOK_URL: receiver.webhookUrl,
      VALHALLA_OPERATOR: 'dana.ops',
    });
    const dbFile = join(cwd, 'data', 'valhalla.db');
    const run = (...args: string[]) => runInProcess(args, { cwd, env });
    expect((await run('init')).code).toBe(0);

    const paused = await run('pause', '--reason', 'partner maintenance window');
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stdout).toContain('mode live → paused by dana.ops (audited): partner maintenance window');
    expect(paused.stdout).toContain('NOT acknowledged: no worker of this installation is running');
    const again = await run('pause');
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('mode unchanged (paused): already paused');
    expect((await run('resume')).stdout).toContain('mode paused → live');

    const noReason = await run('rollback');
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain("required option '--reason <text>' not specified");

    // No `valhalla run` here: recorded and alerted, but no running worker confirmed it (exit 4).
    const rolled = await run('rollback', '--reason', 'error rate on the dashboard');
    expect(rolled.code, rolled.stderr).toBe(4);
    expect(rolled.stdout).toContain('mode live → rolled_back');
    expect(rolled.stdout).toContain('NOT acknowledged: no worker of this installation is running');
    expect(rolled.stderr).toContain('rollback recorded, not confirmed');
    expect(rolled.stdout).toMatch(/alerts: 1 sent/);
    const rollbackAlert = receiver.requests.find((r) => r.body.includes('ROLLED BACK by dana.ops'));
    expect(rollbackAlert?.body).toContain('error rate on the dashboard');

    const resume = await run('resume');
    expect(resume.code).toBe(3);
    expect(resume.stderr).toContain('resume refused: rolled back: resume does not undo a rollback');
    const rearm = await run('rearm', '--reason', 'fixed');
    expect(rearm.code).toBe(3);
    expect(rearm.stderr).toContain('rearm refused: this process is Phase 3');

    const entries = query<{ action: string; actor: string }>(
      dbFile,
      "select action, actor from audit_log where action like 'mode.%' order by seq",
    );
    expect(entries).toEqual([
      { action: 'mode.pause', actor: 'dana.ops' },
      { action: 'mode.resume', actor: 'dana.ops' },
      { action: 'mode.rollback', actor: 'dana.ops' },
      { action: 'mode.rearm_refused', actor: 'dana.ops' },
    ]);
    const status = await run('audit', 'verify');
    expect(status.code).toBe(0);
  });
});

describe('valhalla drill rollback', () => {
  it('runs a timed drill against the sandbox partner, checks the state is clean and records gate 7 evidence', async () => {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'));
    const dbFile = join(cwd, 'data', 'valhalla.db');
    expect((await runInProcess(['init'], { cwd, env })).code).toBe(0);
    const result = await runInProcess(['drill', 'rollback', '--json'], { cwd, env });
    expect(result.code, result.stderr).toBe(0);
    const drill = JSON.parse(result.stdout) as {
      passed: boolean;
      exported: number;
      keptInQueue: number;
      requestsAfterTrigger: number;
      triggerToHoldMs: number;
      checks: { name: string; ok: boolean }[];
    };
    expect(drill.passed).toBe(true);
    expect(drill.exported).toBeGreaterThan(0);
    expect(drill.exported + drill.keptInQueue).toBe(200);
    expect(drill.triggerToHoldMs).toBeLessThanOrEqual(1_000);
    expect(drill.checks.map((c) => c.name)).toEqual([
      'mode rolled back',
      'worker held new requests within 1 s',
      'outbound stopped within 1 s',
      'no batch left mid-request',
      'partner and database agree',
      'no lead sent twice',
      'nothing lost',
      'audit chain verifies',
      'drill under 5 minutes',
    ]);
    // The evidence is in this installation's chain; its own mode is untouched (the drill used a private database).
    const [evidence] = query<{ actor: string; details: string }>(
      dbFile,
      "select actor, details from audit_log where action = 'drill.rollback'",
    );
    expect(evidence?.actor).toBe('test-operator');
    expect(JSON.parse(evidence!.details)).toMatchObject({ passed: true, exported: drill.exported });
    expect(query(dbFile, "select value from runtime_state where key = 'mode'")).toEqual([]);
  });
});
