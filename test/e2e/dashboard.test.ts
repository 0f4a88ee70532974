/**
 * The dashboard in a real headless Chromium (Debian's, driven by playwright-core), against a real
 * Phase 4 `valhalla run` (supervisor, worker, dashboard server) exporting to the sandbox partner:
 * sign in with a token, watch the counts and the live flow move while cycles run, press the red
 * Roll back button, see the mode change, and the partner receive nothing more. Also: a viewer cannot
 * roll back, the page works by keyboard and at phone width, the chart's axis spans the data it has and
 * its legend shows numbers, a gate's items show their state and evidence in view at 1280 and 375 px,
 * and the sign-in page says how to get a token. Screenshots go to test-artifacts/.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SandboxPartner, startSandboxPartner } from '../../src/sandbox/index.js';
import { createApiToken } from '../../src/server/index.js';
import { harnessScript, phase4Env, REPO_ROOT, runInProcess } from '../support/cli.js';
import {
  chromiumAvailable,
  type DashboardRun,
  expectChartFitsData,
  expectGateItemsInView,
  expectNoSidewaysScroll,
  expectSignInHelp,
  launchChromium,
  openPage,
  signIn as signInAt,
  startDashboardRun,
  VIEWPORTS,
} from '../support/dashboard-page.js';
import { query } from '../support/sqlite.js';
import { tempDir } from '../support/tmp.js';
import { HOUR, until } from '../support/world.js';

const HARNESS = harnessScript('live-run');
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'dashboard');
const available = chromiumAvailable('dashboard browser tests');

const operator = createApiToken('alice', 'operator');
const viewer = createApiToken('victor', 'viewer');

let cwd: string;
let dbFile: string;
let partner: SandboxPartner;
let run: DashboardRun | null = null;
let baseUrl: string;
let browser: Browser;
/** The run's latest output, shown when a wait fails. */
const showingOutput = { detail: () => run?.showingOutput.detail() ?? 'no run' };

const signIn = (page: Page, token: string) => signInAt(page, baseUrl, token);

/** When the first lead of the chart's lines was counted: the first export or dry run. */
const firstFlowAt = () =>
  query<{ at: number | null }>(
    dbFile,
    "select min(at) as at from (select min(exported_at) as at from leads union all select min(created_at) from deliveries where kind = 'dry_run')",
  )[0]?.at ?? null;

const dialogOpen = (page: Page) => page.evaluate<boolean>("document.querySelector('#rollback-dialog').open");

const countOf = async (page: Page, state: string) =>
  Number(await page.locator(`[data-count="${state}"]`).first().textContent());

describe.skipIf(!available)('the dashboard in Chromium against a live run', () => {
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    cwd = tempDir();
    dbFile = join(cwd, 'data', 'valhalla.db');
    partner = await startSandboxPartner({ certDir: join(cwd, 'cert') });
    const env = phase4Env(join(cwd, 'data'), partner, {
      VALHALLA_CYCLE_INTERVAL_S: '1',
      VALHALLA_MAX_LEADS_PER_CYCLE: '2',
      VALHALLA_METRICS_PORT: 'off',
      VALHALLA_LOG_LEVEL: 'warn',
      VALHALLA_API_TOKENS: `${operator.entry},${viewer.entry}`,
    });
    expect((await runInProcess(['init'], { cwd, env })).code).toBe(0);
    const now = Date.now();
    const rows = ['name,email,phone,company,score,source_timestamp,value'];
    for (let i = 0; i < 120; i++) {
      rows.push(
        `Grace Hopper ${i},grace.${i}@example.org,+1 555 010 ${String(i).padStart(4, '0')},Navy Labs,${90 - (i % 40)},${new Date(now - HOUR).toISOString()},50`,
      );
    }
    writeFileSync(join(cwd, 'leads.csv'), `${rows.join('\n')}\n`);
    expect((await runInProcess(['ingest', 'leads.csv'], { cwd, env })).code).toBe(0);

    const started = await startDashboardRun(HARNESS, [], { cwd, env });
    run = started;
    baseUrl = started.baseUrl;
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await run?.stop();
    await partner?.close();
  });

  it('a viewer signs in and sees everything, but cannot roll back; a wrong token is refused', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(`${baseUrl}/`);
    await page.locator('#token').fill('vh_not-a-token');
    await page.locator('#sign-in').click();
    await expect
      .poll(() => page.locator('#sign-in-error').textContent(), { timeout: 10_000 })
      .toMatch(/not valid/);
    await signIn(page, viewer.token);
    expect(await page.locator('#whoami').textContent()).toContain('victor');
    expect(await page.locator('#rollback').isDisabled()).toBe(true);
    expect(await page.locator('#pause').isDisabled()).toBe(true);
    // The nine gates, each with its state; every item's state and evidence in view, not cut by the panel.
    await expect.poll(() => page.locator('#gates [data-gate]').count(), { timeout: 10_000 }).toBe(9);
    await expectGateItemsInView(page);
    await page.locator('.panel-gates').screenshot({ path: join(ARTIFACTS, 'desktop-gates.png') });
    await context.close();
  });

  it('an operator watches the counts and the live flow move, works it by keyboard, and rolls back: the partner gets nothing more', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await signIn(page, operator.token);
    await expect.poll(() => page.locator('#mode').textContent(), { timeout: 10_000 }).toBe('live');
    // The mode may arrive first (over the event stream), the phase with the status read after it.
    await expect.poll(() => page.locator('#phase').textContent(), { timeout: 10_000 }).toContain('4');
    // The run's worker leads (its runner name is the host's, with its own suffix), its lease held.
    await expect
      .poll(() => page.locator('#leader').textContent(), { timeout: 10_000 })
      .toMatch(/#[0-9a-f]{8} · lease held$/);
    expect(await page.locator('#leader').getAttribute('data-ok')).toBe('true');

    // Cycles run against the sandbox: the exported count and the flow list change on screen.
    await until(() => partner.stats().batches.accepted >= 1, {
      what: 'a first accepted batch',
      ...showingOutput,
    });
    await expect.poll(() => countOf(page, 'exported'), { timeout: 10_000 }).not.toBeNaN();
    const before = await countOf(page, 'exported');
    await expect.poll(() => countOf(page, 'exported'), { timeout: 20_000 }).toBeGreaterThan(before);
    await expect
      .poll(() => page.locator('#flow li[data-action]').count(), { timeout: 10_000 })
      .toBeGreaterThan(0);
    expect(await page.locator('#live-indicator').textContent()).toBe('connected');
    await expect
      .poll(() => page.locator('#flow-chart canvas').count(), { timeout: 10_000 })
      .toBeGreaterThan(0);
    // The chart of leads per minute picks up the exports (it is read again a few seconds after a batch).
    await expect
      .poll(() => page.locator('#flow-chart-summary').textContent(), { timeout: 20_000 })
      .toMatch(/exported [1-9]/);
    // Its axis spans the minutes that hold data (not 24 h with everything at the right edge), its
    // legend shows each line's total.
    await expectChartFitsData(page, firstFlowAt()!);
    await page.locator('.panel-chart').screenshot({ path: join(ARTIFACTS, 'desktop-chart.png') });
    // PII never on screen: the leads are masked everywhere.
    const text = (await page.locator('body').textContent()) ?? '';
    expect(text).not.toMatch(/grace\.\d+@example\.org|Grace Hopper|555 010/);
    await page.screenshot({ path: join(ARTIFACTS, 'desktop-live.png'), fullPage: true });

    // Keyboard: Tab reaches the red button; Enter opens the confirmation; Escape closes it.
    await page.locator('body').click({ position: { x: 1, y: 1 } });
    let focused = '';
    for (let i = 0; i < 80 && focused !== 'rollback'; i++) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate<string>("document.activeElement ? document.activeElement.id : ''");
    }
    expect(focused).toBe('rollback');
    await page.keyboard.press('Enter');
    expect(await dialogOpen(page)).toBe(true);
    await page.keyboard.press('Escape');
    expect(await dialogOpen(page)).toBe(false);
    expect(await page.locator('#mode').textContent()).toBe('live');

    // The red button.
    await page.locator('#rollback').click();
    await page.locator('#rollback-reason').fill('browser test: partner misbehaving');
    await page.screenshot({ path: join(ARTIFACTS, 'desktop-rollback-dialog.png') });
    await page.locator('#rollback-confirm').click();
    await expect.poll(() => page.locator('#mode').textContent(), { timeout: 5_000 }).toBe('rolled_back');
    const rollback = query<{ actor: string; at: number }>(
      dbFile,
      "select actor, at from audit_log where action = 'mode.rollback'",
    );
    expect(rollback).toHaveLength(1);
    expect(rollback[0]!.actor).toBe('api:alice');
    // The button says whether the running worker took it, and how fast (its own record in mode_acks,
    // which the worker writes when it takes the change: waited for, not assumed written by now).
    await until(
      () => query(dbFile, 'select pid from mode_acks where acked_at >= ?', rollback[0]!.at).length >= 1,
      { what: "the worker's acknowledgement", ...showingOutput },
    );
    const [ack] = query<{ pid: number }>(dbFile, 'select pid from mode_acks order by acked_at desc limit 1');
    await expect
      .poll(() => page.locator('#action-result').textContent(), { timeout: 30_000 })
      .toMatch(
        new RegExp(
          `^Roll back: change, live → rolled_back\\. acknowledged by the running service: worker pid ${ack!.pid} \\(.+\\) took it \\d+ ms after the change`,
        ),
      );
    // Requests already in flight finish; give the hold a moment, then nothing more reaches the partner
    // while the worker goes on with dry-run cycles.
    await until(
      () =>
        query(dbFile, "select id from cycles where kind = 'dry_run' and started_at > ?", rollback[0]!.at)
          .length >= 1,
      { what: 'a dry-run cycle after the rollback', ...showingOutput },
    );
    const received = partner.stats().batches.received;
    await until(
      () =>
        query(dbFile, "select id from cycles where kind = 'dry_run' and started_at > ?", rollback[0]!.at)
          .length >= 4,
      { what: 'three more dry-run cycles', ...showingOutput },
    );
    expect(partner.stats().batches.received).toBe(received);
    // The guard allowed nothing after the rollback (chain order, not clock time): every request the
    // partner saw was allowed before it.
    expect(query(dbFile, "select seq from audit_log where action = 'guard.allowed'").length).toBeGreaterThan(
      0,
    );
    const allowedAfter = query(
      dbFile,
      "select seq from audit_log where action = 'guard.allowed' and seq > (select seq from audit_log where action = 'mode.rollback')",
    );
    expect(allowedAfter).toEqual([]);
    await expect
      .poll(() => page.locator('#flow li[data-action="mode.rollback"]').count(), { timeout: 5_000 })
      .toBe(1);
    await page.screenshot({ path: join(ARTIFACTS, 'desktop-rolled-back.png'), fullPage: true });
    await context.close();
  });

  it('at phone width the page fits the screen (no sideways scrolling), the controls are there, the chart fits its data and the gate items show their state and evidence', async () => {
    const context = await browser.newContext({ viewport: { width: 375, height: 800 }, isMobile: true });
    const page = await context.newPage();
    await signIn(page, operator.token);
    await expect
      .poll(() => page.locator('#mode').textContent(), { timeout: 10_000 })
      .toMatch(/live|rolled_back|paused/);
    // Strings, not functions: this file is compiled without the DOM's types; Chromium evaluates them.
    const widths = await page.evaluate<{ scroll: number; client: number }>(
      '({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })',
    );
    expect(widths.scroll).toBeLessThanOrEqual(widths.client);
    expect(await page.locator('#rollback').isVisible()).toBe(true);
    await expectChartFitsData(page, firstFlowAt()!);
    await expectGateItemsInView(page);
    await expectNoSidewaysScroll(page);
    await page.locator('.panel-gates').screenshot({ path: join(ARTIFACTS, 'phone-gates.png') });
    await page.locator('.panel-chart').screenshot({ path: join(ARTIFACTS, 'phone-chart.png') });
    await page.screenshot({ path: join(ARTIFACTS, 'phone.png'), fullPage: true });
    await context.close();
  });

  for (const viewport of VIEWPORTS) {
    it(`at ${viewport.width} px the sign-in page says how to get a token`, async () => {
      const page = await openPage(browser, viewport);
      await expectSignInHelp(page, baseUrl);
      await expectNoSidewaysScroll(page);
      await page.screenshot({ path: join(ARTIFACTS, `${viewport.name}-sign-in.png`), fullPage: true });
      await page.context().close();
    });
  }
});
