/**
 * The dashboard in a real headless Chromium (Debian's, driven by playwright-core) against a real
 * Phase 3 `valhalla run` (the binary: supervisor, worker, dashboard server) running dry-run cycles:
 * at 1280 and 375 px nothing on the page says "live" (the mode reads DRY-RUN, the stream's state
 * "connected"), the chart's axis spans the dry runs it has and its legend shows their totals, and
 * every gate item's state and evidence are in view. Screenshots go to test-artifacts/.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SandboxPartner, startSandboxPartner } from '../../src/sandbox/index.js';
import { createApiToken } from '../../src/server/index.js';
import { BIN, phase3Env, REPO_ROOT, runBinary } from '../support/cli.js';
import {
  chromiumAvailable,
  type DashboardRun,
  expectChartFitsData,
  expectGateItemsInView,
  expectNoSidewaysScroll,
  launchChromium,
  openPage,
  signIn,
  startDashboardRun,
  VIEWPORTS,
} from '../support/dashboard-page.js';
import { query } from '../support/sqlite.js';
import { tempDir } from '../support/tmp.js';
import { until } from '../support/world.js';

const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'dashboard');
const available = chromiumAvailable('Phase 3 dashboard browser tests');

const viewer = createApiToken('victor', 'viewer');

let dbFile: string;
let partner: SandboxPartner;
let run: DashboardRun | null = null;
let baseUrl: string;
let browser: Browser;
/** The run's latest output, shown when a wait fails. */
const showingOutput = { detail: () => run?.showingOutput.detail() ?? 'no run' };

/** The visible text of the page's badges and pills, and every badge or line that says "live" on screen. */
const LIVE_ON_SCREEN = `(() => {
  const badges = [...document.querySelectorAll('.pill, .badge, .live-indicator, #mode, #phase')]
    .filter((e) => e.getClientRects().length > 0)
    .map((e) => e.innerText.trim());
  const lines = document.body.innerText.split('\\n').map((l) => l.trim());
  // "Go-live" names the gates and the moment Phase 4 starts: a plan, not a claim of sending.
  return { badges, live: [...badges, ...lines].filter((t) => /(?<!go-)\\blive\\b/i.test(t)) };
})()`;

describe.skipIf(!available)('the dashboard in Chromium against a Phase 3 dry run', () => {
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    // A loopback sandbox in plain HTTP (allowed in Phase 3): the point is that nothing reaches it.
    partner = await startSandboxPartner({ plainHttp: true });
    const cwd = tempDir();
    dbFile = join(cwd, 'data', 'valhalla.db');
    const env = phase3Env(join(cwd, 'data'), partner, {
      VALHALLA_CYCLE_INTERVAL_S: '1',
      VALHALLA_METRICS_PORT: 'off',
      VALHALLA_LOG_LEVEL: 'warn',
      VALHALLA_API_TOKENS: viewer.entry,
    });
    const init = await runBinary(['init'], { cwd, env });
    expect(init.code, init.stderr).toBe(0);
    // On an empty store the run loads synthetic leads and dry-runs them.
    const started = await startDashboardRun(BIN, ['run'], { cwd, env });
    run = started;
    baseUrl = started.baseUrl;
    await until(() => query(dbFile, "select id from deliveries where kind = 'dry_run'").length >= 2, {
      what: 'two dry runs',
      ...showingOutput,
    });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await run?.stop();
    await partner?.close();
  });

  for (const viewport of VIEWPORTS) {
    it(`at ${viewport.width} px: DRY-RUN, never "live"; the chart fits the dry runs; gate items in view`, async () => {
      const page = await openPage(browser, viewport);
      await signIn(page, baseUrl, viewer.token);
      await expect.poll(() => page.locator('#phase').textContent(), { timeout: 10_000 }).toBe('3 DRY-RUN');
      await expect.poll(() => page.locator('#mode').textContent(), { timeout: 10_000 }).toBe('DRY-RUN');
      await expect
        .poll(() => page.locator('#live-indicator').textContent(), { timeout: 10_000 })
        .toBe('connected');
      // The dry runs reach the flow list and the chart.
      await expect
        .poll(() => page.locator('#flow-chart-summary').textContent(), { timeout: 40_000 })
        .toMatch(/dry run [1-9]/);
      const [first] = query<{ at: number }>(
        dbFile,
        "select min(created_at) as at from deliveries where kind = 'dry_run'",
      );
      await expectChartFitsData(page, first!.at);
      await expectGateItemsInView(page);
      await expectNoSidewaysScroll(page);

      const onScreen = await page.evaluate<{ badges: string[]; live: string[] }>(LIVE_ON_SCREEN);
      expect(onScreen.badges).toContain('DRY-RUN');
      expect(onScreen.live, 'what says "live" on a Phase 3 page').toEqual([]);
      await page
        .locator('.panel-chart')
        .screenshot({ path: join(ARTIFACTS, `phase3-${viewport.name}-chart.png`) });
      await page.screenshot({ path: join(ARTIFACTS, `phase3-${viewport.name}.png`), fullPage: true });
      // Nothing reached the partner.
      expect(partner.stats().batches.received).toBe(0);
      await page.context().close();
    });
  }
});
