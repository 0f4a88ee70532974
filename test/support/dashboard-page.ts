/**
 * The dashboard's browser tests' shared parts: Debian's Chromium driven by playwright-core, signing in,
 * and the checks read from the page. The checks are strings evaluated in Chromium: the tests are
 * compiled without the DOM's types.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { type Browser, chromium, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { until } from './world.js';

export const CHROMIUM = '/usr/bin/chromium';

/** The two widths every page is checked at: a desktop and a phone. */
export const VIEWPORTS = [
  { name: 'desktop', width: 1280, height: 800, isMobile: false },
  { name: 'phone', width: 375, height: 800, isMobile: true },
] as const;
export type Viewport = (typeof VIEWPORTS)[number];

/** Whether Chromium is here; under CI it must be (a missing browser fails the suite, never skips it). */
export function chromiumAvailable(suite: string): boolean {
  const available = existsSync(CHROMIUM);
  if (!available) {
    if (process.env.CI === 'true')
      throw new Error(`CI=true but ${CHROMIUM} is missing: apt-get install -y chromium`);
    console.warn(`[skip] ${suite} skipped: ${CHROMIUM} not installed (apt-get install -y chromium)`);
  }
  return available;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A `valhalla run` (or a harness standing in for it) serving the dashboard, as the tests drive it. */
export interface DashboardRun {
  /** The dashboard's address, as the run printed it. */
  baseUrl: string;
  /** Everything the run printed so far. */
  output(): string;
  /** For `until`: the run's latest output, shown when a wait fails. */
  showingOutput: { detail: () => string };
  /** SIGTERM, then SIGKILL after 30 s; resolves when the run has exited. */
  stop(): Promise<void>;
}

/** Start `script args` in `cwd` with only `env` (and PATH), and wait for the dashboard's address. */
export async function startDashboardRun(
  script: string,
  args: string[],
  options: { cwd: string; env: Record<string, string> },
): Promise<DashboardRun> {
  const run = spawn(process.execPath, [script, ...args], {
    cwd: options.cwd,
    env: { PATH: process.env.PATH, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (c: Buffer) => {
    output += c;
  };
  run.stdout?.on('data', collect);
  run.stderr?.on('data', collect);
  const showingOutput = { detail: () => `output:\n${output.slice(-2000)}` };
  const stop = async () => {
    if (run.exitCode !== null || run.signalCode !== null) return;
    const exited = new Promise((resolve) => run.once('close', resolve));
    run.kill('SIGTERM');
    const timer = setTimeout(() => run.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const baseUrl = await until(() => /dashboard: (http:\/\/[^\s/]+)\//.exec(output)?.[1], {
      what: 'the dashboard URL',
      ...showingOutput,
    });
    return { baseUrl, output: () => output, showingOutput, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

export async function openPage(browser: Browser, viewport: Viewport): Promise<Page> {
  const context = await browser.newContext({
    viewport: { width: viewport.width, height: viewport.height },
    isMobile: viewport.isMobile,
  });
  return context.newPage();
}

export async function signIn(page: Page, baseUrl: string, token: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  await page.locator('#token').fill(token);
  await page.locator('#sign-in').click();
  await page.locator('#whoami').waitFor({ state: 'visible', timeout: 10_000 });
}

/** The page is no wider than the screen. */
export async function expectNoSidewaysScroll(page: Page): Promise<void> {
  const widths = await page.evaluate<{ scroll: number; client: number }>(
    '({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })',
  );
  expect(widths.scroll, 'the page is wider than the screen').toBeLessThanOrEqual(widths.client);
}

/** A cell of a gate's item table and where it is drawn. */
export interface ItemCell {
  item: string;
  column: string;
  text: string;
  /** Inside the gates panel's box (not cut by it, nor behind a sideways scroll). */
  inPanel: boolean;
  /** Inside the screen's width. */
  inViewport: boolean;
  /** What the page shows at the cell's centre is the cell (nothing covers or clips it there). */
  onTop: boolean;
  width: number;
  height: number;
}

/**
 * Open every gate and measure, for every item, its state and evidence cells: the columns are found
 * by their headers (state; evidence, once called detail), so the check reads any layout of the table.
 */
export async function gateItemCells(page: Page): Promise<ItemCell[]> {
  await page.evaluate(`document.querySelectorAll('#gates details').forEach((d) => { d.open = true; })`);
  return page.evaluate<ItemCell[]>(`(() => {
    const viewport = document.documentElement.clientWidth;
    const out = [];
    for (const table of document.querySelectorAll('#gates table')) {
      const heads = [...table.querySelectorAll('thead th')].map((th) => th.textContent.trim());
      const wanted = heads
        .map((name, index) => ({ name, index }))
        .filter(({ name }) => ['state', 'evidence', 'detail'].includes(name));
      for (const row of table.querySelectorAll('tbody tr')) {
        for (const { name, index } of wanted) {
          const cell = row.cells[index];
          // Up or down the page only: a sideways scroll of the table's box would hide the other columns.
          window.scrollBy(0, cell.getBoundingClientRect().top - window.innerHeight / 2);
          const box = cell.getBoundingClientRect();
          const x = box.left + Math.min(box.width / 2, 8);
          const y = box.top + box.height / 2;
          const hit = document.elementFromPoint(x, y);
          const panelNow = document.querySelector('.panel-gates').getBoundingClientRect();
          out.push({
            item: row.dataset.item,
            column: name,
            text: cell.textContent,
            inPanel: box.left >= panelNow.left - 0.5 && box.right <= panelNow.right + 0.5,
            inViewport: box.left >= -0.5 && box.right <= viewport + 0.5,
            onTop: hit !== null && (hit === cell || cell.contains(hit)),
            width: box.width,
            height: box.height,
          });
        }
      }
    }
    return out;
  })()`);
}

/** Every gate's state and evidence cells are drawn whole inside the panel and the screen, each with its text. */
export async function expectGateItemsInView(page: Page): Promise<void> {
  await expect.poll(() => page.locator('#gates [data-gate]').count(), { timeout: 10_000 }).toBe(9);
  const cells = await gateItemCells(page);
  expect(cells.length).toBeGreaterThan(9);
  expect(new Set(cells.map((c) => c.column)).size, 'a state and an evidence column').toBe(2);
  // Drawn, and saying something: an empty evidence reads "—", never a blank box.
  const hidden = cells.filter(
    (c) => !(c.inPanel && c.inViewport && c.onTop && c.width > 0 && c.height > 0 && c.text.trim() !== ''),
  );
  expect(
    hidden.map((c) => `${c.item} ${c.column}: ${JSON.stringify(c)}`),
    'state and evidence cells out of view',
  ).toEqual([]);
}

/** The flow chart's legend: each line's label and the value it shows. */
export function chartLegend(page: Page): Promise<{ label: string; value: string }[]> {
  return page.evaluate<{ label: string; value: string }[]>(
    `[...document.querySelectorAll('#flow-chart .u-legend .u-series')].map((row) => ({
      label: row.querySelector('.u-label')?.textContent ?? '',
      value: row.querySelector('.u-value')?.textContent ?? '',
    }))`,
  );
}

/** The time span the flow chart's axis covers, as the chart says it (ISO times), or nulls. */
export function chartSpan(page: Page): Promise<{ from: string | null; to: string | null }> {
  return page.evaluate<{ from: string | null; to: string | null }>(
    `({ from: document.querySelector('#flow-chart').dataset.from ?? null,
        to: document.querySelector('#flow-chart').dataset.to ?? null })`,
  );
}

/**
 * The flow chart scales to its data: the axis starts at most five minutes before the first minute
 * with data (not 24 h before now), and away from the cursor every line's legend shows a number.
 */
export async function expectChartFitsData(page: Page, firstDataAt: number): Promise<void> {
  const firstMinute = Math.floor(firstDataAt / 60_000) * 60_000;
  await expect
    .poll(async () => Date.parse((await chartSpan(page)).from ?? ''), { timeout: 40_000 })
    .toBeLessThanOrEqual(firstMinute);
  const span = await chartSpan(page);
  const from = Date.parse(span.from ?? '');
  expect(
    firstMinute - from,
    `the axis starts at ${span.from}, the data at ${new Date(firstMinute).toISOString()}`,
  ).toBeLessThanOrEqual(5 * 60_000);
  await page.mouse.move(0, 0);
  const legend = await chartLegend(page);
  expect(legend.length, 'the time and at least one line').toBeGreaterThan(1);
  const [time, ...lines] = legend;
  expect(time!.value, 'the legend names the span its totals cover').toMatch(/\d\d[:-]\d\d–\d\d[:-]\d\d/);
  for (const line of lines) expect(line.value, `the legend of "${line.label}"`).toMatch(/^\d+$/);
  expect(
    lines.some((l) => Number(l.value) > 0),
    `a line with data: ${JSON.stringify(legend)}`,
  ).toBe(true);
}

/** The sign-in page says how to get a token: the command an administrator runs, and where it goes. */
export async function expectSignInHelp(page: Page, baseUrl: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  await page.locator('#token').waitFor({ state: 'visible', timeout: 10_000 });
  expect(await page.locator('#sign-in-help').isVisible()).toBe(true);
  const text = ((await page.locator('#sign-in-help').textContent()) ?? '').replace(/\s+/g, ' ');
  expect(text).toMatch(/valhalla tokens create --name \S+ --role viewer/);
  expect(text).toContain('VALHALLA_API_TOKENS');
  expect(text).toMatch(/restart/);
  const command = page.locator('#sign-in-help code', { hasText: 'valhalla tokens create' });
  expect(await command.isVisible()).toBe(true);
  const box = await command.boundingBox();
  const width = await page.evaluate<number>('document.documentElement.clientWidth');
  expect(box!.x).toBeGreaterThanOrEqual(0);
  expect(box!.x + box!.width).toBeLessThanOrEqual(width);
}
