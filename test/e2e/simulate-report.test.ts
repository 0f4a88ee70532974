/**
 * `valhalla simulate --html`'s report in a real headless Chromium (Debian's, driven by playwright-core),
 * for a run in each partner profile the sandbox plays (the report names the profile), at desktop and
 * phone width: the page never scrolls sideways, its tables have no empty column, no
 * chart label is cut at the chart's edge, and every line of a chart can be seen (the ceiling is not
 * hidden under the claimed line) and is named in a legend. Screenshots go to test-artifacts/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, runInProcess, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'simulate-report');
const available = existsSync(CHROMIUM);
if (!available) {
  if (process.env.CI === 'true')
    throw new Error(`CI=true but ${CHROMIUM} is missing: apt-get install -y chromium`);
  console.warn(
    `[skip] simulate report browser tests skipped: ${CHROMIUM} not installed (apt-get install -y chromium)`,
  );
}

const VIEWPORTS = [
  { name: 'desktop', width: 1280, height: 900, isMobile: false },
  { name: 'phone', width: 375, height: 800, isMobile: true },
] as const;

/** The partner profiles the simulation's sandbox plays: the report of a run in each. */
const PROFILES = ['valhalla', 'crm-batch-contacts'] as const;

let browser: Browser;
const reportUrls = new Map<(typeof PROFILES)[number], string>();

// The checks run in Chromium as strings: this file is compiled without the DOM's types.

/** Each table's header cells and, per body row, its cells' texts. */
const TABLES = `[...document.querySelectorAll('table')].map((t) => ({
  head: [...t.querySelectorAll('thead th')].map((c) => c.textContent),
  rows: [...t.querySelectorAll('tbody tr')].map((r) => [...r.cells].map((c) => c.textContent.trim())),
}))`;

/** Every text of every chart whose box leaves the chart's drawing area (its viewBox). */
const CUT_LABELS = `[...document.querySelectorAll('figure svg')].flatMap((svg) => {
  const view = svg.viewBox.baseVal;
  return [...svg.querySelectorAll(':scope > text')]
    .map((t) => ({ text: t.textContent, box: t.getBBox() }))
    .filter(({ box }) => box.x < view.x || box.y < view.y || box.x + box.width > view.x + view.width ||
      box.y + box.height > view.y + view.height)
    .map(({ text, box }) => text + ' at x ' + box.x.toFixed(1) + '..' + (box.x + box.width).toFixed(1) + ' of ' + view.width);
})`;

/**
 * Each chart line's share of its own length where its colour shows on screen: the chart is painted
 * into a canvas, 200 points are taken along each line and a point counts when a pixel within 2 px of
 * it is the line's colour (over the white page). A line painted over by another scores near 0.
 */
const LINE_VISIBILITY = `(async () => {
  const out = [];
  for (const svg of document.querySelectorAll('figure svg')) {
    const view = svg.viewBox.baseVal;
    const copy = svg.cloneNode(true);
    copy.setAttribute('width', String(view.width));
    copy.setAttribute('height', String(view.height));
    copy.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
    const image = new Image();
    image.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(new XMLSerializer().serializeToString(copy));
    await image.decode();
    const canvas = document.createElement('canvas');
    canvas.width = view.width;
    canvas.height = view.height;
    const context = canvas.getContext('2d');
    context.fillStyle = '#fff';
    context.fillRect(0, 0, view.width, view.height);
    context.drawImage(image, 0, 0);
    const pixels = context.getImageData(0, 0, view.width, view.height).data;
    const chart = svg.closest('figure').querySelector('figcaption')?.textContent ?? '';
    for (const path of svg.querySelectorAll('path')) {
      const name = path.querySelector('title')?.textContent ?? '';
      const probe = document.createElement('div');
      probe.style.color = path.getAttribute('stroke');
      document.body.append(probe);
      const [r, g, b] = getComputedStyle(probe).color.match(/\\d+/g).map(Number);
      probe.remove();
      const length = path.getTotalLength();
      let seen = 0;
      const samples = 200;
      for (let i = 0; i < samples; i++) {
        const p = path.getPointAtLength((length * (i + 0.5)) / samples);
        let found = false;
        for (let dx = -2; dx <= 2 && !found; dx++) {
          for (let dy = -2; dy <= 2 && !found; dy++) {
            const x = Math.round(p.x) + dx;
            const y = Math.round(p.y) + dy;
            if (x < 0 || y < 0 || x >= view.width || y >= view.height) continue;
            // The pixel as the line's colour laid over the white page at some coverage: anti-aliased
            // edges count when at least half covered; a mix with another line's colour does not fit.
            const at = (y * view.width + x) * 4;
            const ink = [255 - r, 255 - g, 255 - b];
            const seenInk = [255 - pixels[at], 255 - pixels[at + 1], 255 - pixels[at + 2]];
            const norm = ink.reduce((sum, v) => sum + v * v, 0);
            const cover = ink.reduce((sum, v, k) => sum + v * seenInk[k], 0) / norm;
            const misfit = Math.hypot(...seenInk.map((v, k) => v - cover * ink[k]));
            if (cover >= 0.5 && misfit < 40) found = true;
          }
        }
        if (found) seen++;
      }
      out.push({ chart, name, shown: seen / samples });
    }
  }
  return out;
})()`;

/** Each chart's lines and the names its legend shows (visible, outside the drawing). */
const LEGENDS = `[...document.querySelectorAll('figure')].map((f) => ({
  chart: f.querySelector('figcaption')?.textContent ?? '',
  lines: [...f.querySelectorAll('svg path')].map((p) => p.querySelector('title')?.textContent ?? ''),
  legend: [...f.querySelectorAll('.legend li')]
    .filter((li) => li.getBoundingClientRect().width > 0 && getComputedStyle(li).visibility === 'visible')
    .map((li) => li.textContent.trim()),
}))`;

async function open(viewport: (typeof VIEWPORTS)[number], reportUrl: string): Promise<Page> {
  const context = await browser.newContext({
    viewport: { width: viewport.width, height: viewport.height },
    isMobile: viewport.isMobile,
  });
  const page = await context.newPage();
  await page.goto(reportUrl);
  return page;
}

describe.skipIf(!available)("the simulation's HTML report in Chromium", () => {
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    for (const profile of PROFILES) {
      const cwd = tempDir();
      const env = testEnv(join(cwd, 'data'), {
        VALHALLA_LOG_LEVEL: 'warn',
        VALHALLA_PARTNER_PROFILE: profile,
      });
      // A day from go-live with more leads than the ramp lets through: claimed equals the ceiling in
      // nearly every cycle, and the axis ends on a labelled hour.
      const result = await runInProcess(
        [
          'simulate',
          '--hours',
          '24',
          '--leads-per-hour',
          '400',
          '--start',
          '2026-12-01T00:00:00Z',
          '--html',
          'report.html',
        ],
        { cwd, env },
      );
      expect(result.code, result.stderr).toBe(0);
      reportUrls.set(profile, pathToFileURL(join(cwd, 'report.html')).href);
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
  });

  afterAll(async () => {
    await browser?.close();
  });

  for (const profile of PROFILES) {
    for (const viewport of VIEWPORTS) {
      // Soft checks: a failing report shows every way it fails at once.
      it(`partner profile ${profile}, at ${viewport.width} px: the report names the profile; no sideways scrolling, no empty column, no cut label, every line seen and named`, async () => {
        const page = await open(viewport, reportUrls.get(profile)!);
        const suffix = profile === 'valhalla' ? '' : `-${profile}`;
        await page.screenshot({ path: join(ARTIFACTS, `${viewport.name}${suffix}.png`), fullPage: true });
        const text = await page.evaluate<string>('document.body.innerText');
        expect(text).toMatch(
          new RegExp(
            `against the in-process sandbox partner playing the partner profile ${profile} \\(sha256 [0-9a-f]{64}\\)`,
          ),
        );

        const widths = await page.evaluate<{ scroll: number; client: number }>(
          '({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })',
        );
        expect(widths.client).toBeLessThanOrEqual(viewport.width);
        expect.soft(widths.scroll, 'the page is wider than the screen').toBeLessThanOrEqual(widths.client);
        // Nor is any table: one that scrolls sideways inside its box hides its last columns.
        const scrolled = await page.evaluate<string[]>(
          `[...document.querySelectorAll('table')].filter((t) => {
          const box = t.parentElement;
          return t.scrollWidth > box.clientWidth + 0.5 || box.scrollWidth > box.clientWidth + 0.5;
        }).map((t) => [...t.querySelectorAll('th')].map((th) => th.textContent).join(','))`,
        );
        expect.soft(scrolled, 'tables wider than their box').toEqual([]);

        const tables = await page.evaluate<{ head: string[]; rows: string[][] }[]>(TABLES);
        const stability = tables.find((t) => t.head[0] === 'check');
        expect(stability, 'the stability table').toBeDefined();
        expect(stability!.rows.length).toBeGreaterThan(0);
        for (const table of tables) {
          const columns = Math.max(table.head.length, ...table.rows.map((r) => r.length));
          for (const row of table.rows) {
            // A header table has a cell per header; a name/value table has none and two cells a row.
            if (table.head.length > 0)
              expect.soft(row, `a row of the table [${table.head}]`).toHaveLength(table.head.length);
          }
          for (let column = 0; column < columns; column++) {
            const filled = table.rows.some((r) => (r[column] ?? '') !== '');
            expect.soft(filled, `column ${column + 1} of the table [${table.head}] is empty`).toBe(true);
          }
        }

        expect.soft(await page.evaluate<string[]>(CUT_LABELS), 'labels cut at the edge').toEqual([]);

        const lines = await page.evaluate<{ chart: string; name: string; shown: number }[]>(LINE_VISIBILITY);
        console.log(
          `[simulate report] ${viewport.width} px, share of each line seen: ${lines.map((l) => `${l.name} ${l.shown.toFixed(2)}`).join(', ')}`,
        );
        const ceiling = lines.find((l) => l.name === 'ceiling');
        expect(ceiling, 'the ceiling line').toBeDefined();
        for (const line of lines) {
          expect.soft(line.shown, `"${line.name}" in "${line.chart}" is hidden`).toBeGreaterThanOrEqual(0.4);
        }

        for (const figure of await page.evaluate<{ chart: string; lines: string[]; legend: string[] }[]>(
          LEGENDS,
        )) {
          expect(figure.lines.length).toBeGreaterThan(0);
          // One entry a line, in the same order, each starting with the line's name.
          expect
            .soft(
              figure.legend.map((entry, k) => entry.startsWith(figure.lines[k] ?? '\u0000')),
              `the legend of "${figure.chart}": ${JSON.stringify(figure.legend)}`,
            )
            .toEqual(figure.lines.map(() => true));
        }
        await page.context().close();
      });
    }
  }
});
