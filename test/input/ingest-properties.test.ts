/**
 * Input suite, part 1: generated and hostile lead files through the real app into a real SQLite
 * database (src/ingest via app.ingest), by path and on standard input in arbitrary byte chunks.
 *
 * For every run: no exception but a clean IngestFileError for a file-level problem; read = accepted +
 * duplicate + rejected; every record ends exactly where the generator says (test/support/lead-fuzz.ts
 * defines how records and lines are counted); accepted leads hold their values exactly; rejects
 * files hold line, field and reason only; the audit chain verifies; and no generated e-mail, phone,
 * name or company reaches the log (at trace), the rejects file, the audit chain or an error message.
 * A failed run keeps whole chunks only, each with the outcomes its records must have.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEAD_FIELDS } from '../../src/ingest/index.js';
import {
  applyEdits,
  type Delivery,
  delivery,
  type IngestHarness,
  openIngestHarness,
} from '../support/ingest-harness.js';
import {
  buildCsv,
  buildJsonl,
  chunkPoints,
  expectStored,
  findLeaks,
  readable,
} from '../support/lead-files.js';
import {
  csvHeader,
  EXTRA_COLUMNS,
  type Format,
  fcParams,
  fileLayout,
  items,
  NOW,
  RECORD_LIMIT,
} from '../support/lead-fuzz.js';

let h: IngestHarness;
let runs = 0;
/** Unique per property run: the e-mail pool of one run never meets another's in the shared database. */
const nextToken = () => `t${String(++runs).padStart(5, '0')}`;

/**
 * The case's file in its format: CSV from `items`, JSONL from `jsonlItems`. JSONL lines end in LF
 * (a lone CR is no JSONL line end), whatever the layout drew.
 */
function buildEither(
  c: {
    format: Format;
    header: Parameters<typeof buildCsv>[0];
    items: Parameters<typeof buildCsv>[1];
    jsonlItems: Parameters<typeof buildJsonl>[0];
    layout: Parameters<typeof buildCsv>[2];
  },
  token: string,
) {
  if (c.format === 'csv') return buildCsv(c.header, c.items, c.layout, token);
  const layout = c.layout.eol === '\r' ? { ...c.layout, eol: '\n' as const } : c.layout;
  return buildJsonl(c.jsonlItems, layout, token);
}

beforeAll(async () => {
  h = await openIngestHarness();
});
afterAll(async () => {
  await h?.app.close();
});

const csvCase = readable(
  fc.record({
    header: csvHeader,
    items: items('csv'),
    layout: fileLayout('csv'),
    unclosedTail: fc.oneof(
      { weight: 3, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.constantFrom('Never Closed', 'Ünclosed Ümlaut', "O'Brien Unclosed") },
    ),
    delivery,
    again: fc.boolean(),
  }),
);
const jsonlCase = readable(
  fc.record({ items: items('jsonl'), layout: fileLayout('jsonl'), delivery, again: fc.boolean() }),
);

describe('ingest of generated files, valid and hostile', () => {
  it('CSV: every record accounted for and stored exactly; rejects hold no values; no PII leaves the store', async () => {
    await fc.assert(
      fc.asyncProperty(csvCase, async (c) => {
        const token = nextToken();
        const built = buildCsv(c.header, c.items, c.layout, token, c.unclosedTail);
        const result = await h.ingest(Buffer.from(built.text, 'utf8'), 'csv', c.delivery, token);
        await h.expectCompleted(built, result);
        if (c.again) await h.expectReingested(built, result, c.delivery, token);
        const extras = c.header.columns.filter((col): col is number => typeof col === 'number');
        expect(result.summary!.ignoredColumns.sort()).toEqual(
          extras.map((i) => EXTRA_COLUMNS[i]!.toLowerCase()).sort(),
        );
      }),
      fcParams(70, 20261120),
    );
  });

  it('JSONL: every line accounted for, wrong types rejected by field, values stored exactly, no PII leaves the store', async () => {
    await fc.assert(
      fc.asyncProperty(jsonlCase, async (c) => {
        const token = nextToken();
        const built = buildJsonl(c.items, c.layout, token);
        const result = await h.ingest(Buffer.from(built.text, 'utf8'), 'jsonl', c.delivery, token);
        if (built.text.replace(/^\ufeff/, '') === '') {
          // Not one byte of data: refused before a run is even created.
          await h.expectFailed(result, c.delivery.chunkSize, []);
          expect(result).toMatchObject({ runId: null, error: { code: 'EMPTY_FILE' } });
          return;
        }
        await h.expectCompleted(built, result);
        if (c.again) await h.expectReingested(built, result, c.delivery, token);
      }),
      fcParams(70, 20261121),
    );
  });
});

describe('file-level problems: a clean IngestFileError, the run failed, whole chunks kept', () => {
  const badHeader = fc.oneof(
    fc.subarray(['name', 'email', 'score', 'source_timestamp'], { minLength: 1 }).map((missing) => ({
      header: LEAD_FIELDS.filter((f) => !missing.includes(f)).join(','),
      codes: ['MISSING_HEADER'],
    })),
    fc.constantFrom('name', 'email', 'phone', 'score').map((twice) => ({
      header: `${LEAD_FIELDS.join(',')}, ${twice.toUpperCase()} `,
      codes: ['BAD_HEADER'],
    })),
    fc
      .constantFrom(
        'name,"email,score,source_timestamp',
        'name,em"ail,score,source_timestamp',
        '"name"x,email,score,source_timestamp',
      )
      .map((header) => ({ header, codes: ['BAD_HEADER', 'MISSING_HEADER'] })),
    // No header at all: the first data row (if any) is taken for one, and lacks the columns.
    fc.constantFrom('', '\n\n\r', '\ufeff').map((header) => ({
      header,
      codes: ['EMPTY_FILE', 'MISSING_HEADER', 'BAD_HEADER'],
    })),
  );

  it('a header without a required column, with a repeated column, broken, or absent', async () => {
    const plain = { eol: '\n', bom: false, finalEol: true, leadingBlankLines: 0, quoteAll: false } as const;
    await fc.assert(
      fc.asyncProperty(
        readable(fc.record({ bad: badHeader, items: items('csv', 8), delivery })),
        async (c) => {
          const token = nextToken();
          const rows = buildCsv(
            { columns: [...LEAD_FIELDS], spelling: [{ upper: false, pad: '' }] },
            c.items,
            plain,
            token,
          );
          const body = rows.text.slice(rows.text.indexOf('\n') + 1);
          const text = c.bad.header === '' ? body : `${c.bad.header}\n${body}`;
          const result = await h.ingest(Buffer.from(text, 'utf8'), 'csv', c.delivery, token);
          await h.expectFailed(result, c.delivery.chunkSize, []);
          expect(c.bad.codes).toContain((result.error as { code: string }).code);
          await h.expectClean(rows, result);
        },
      ),
      fcParams(40, 20261122),
    );
  });

  const corruption = fc.constantFrom(
    { bytes: [0x00], code: 'BINARY_FILE' },
    { bytes: [0xff], code: 'BAD_ENCODING' },
    { bytes: [0xc3], code: 'BAD_ENCODING' },
    { bytes: [0xc0, 0xaf], code: 'BAD_ENCODING' },
    { bytes: [0xed, 0xa0, 0x80], code: 'BAD_ENCODING' },
    { bytes: [0xf4, 0x90, 0x80, 0x80], code: 'BAD_ENCODING' },
  );

  it('a NUL byte or invalid UTF-8 anywhere: nothing past the last whole chunk before it is kept', async () => {
    const arb = fc.record({
      format: fc.constantFrom<Format>('csv', 'jsonl'),
      header: csvHeader,
      items: items('csv', 25),
      jsonlItems: items('jsonl', 25),
      layout: fc.constantFrom<Format>('csv', 'jsonl').chain((f) => fileLayout(f)),
      corruption,
      at: fc.nat(),
      delivery: fc.record({
        via: fc.constantFrom('file', 'stdin'),
        points: chunkPoints,
        chunkSize: fc.constantFrom(1, 2, 3),
      }),
    });
    await fc.assert(
      fc.asyncProperty(readable(arb), async (c) => {
        const token = nextToken();
        const built = buildEither(c, token);
        const bytes = Buffer.from(built.text, 'utf8');
        const at = c.at % (bytes.length + 1);
        const corrupted = Buffer.concat([
          bytes.subarray(0, at),
          Buffer.from(c.corruption.bytes),
          bytes.subarray(at),
        ]);
        const result = await h.ingest(corrupted, c.format, c.delivery, token);
        await h.expectFailed(result, c.delivery.chunkSize, built.records);
        expect((result.error as { code: string }).code).toBe(c.corruption.code);
        await h.expectClean(built, result);
      }),
      fcParams(50, 20261123),
    );
  });

  it('a file cut short at any byte: every record wholly before the cut keeps its outcome', async () => {
    const arb = fc.record({
      format: fc.constantFrom<Format>('csv', 'jsonl'),
      header: csvHeader,
      items: items('csv', 20),
      jsonlItems: items('jsonl', 20),
      layout: fileLayout('csv'),
      cut: fc.nat(),
      delivery,
    });
    await fc.assert(
      fc.asyncProperty(readable(arb), async (c) => {
        const token = nextToken();
        const built = buildEither(c, token);
        const bytes = Buffer.from(built.text, 'utf8');
        const cut = c.cut % (bytes.length + 1);
        const whole = built.records.filter((_, i) => built.byteEnds[i]! <= cut);
        const result = await h.ingest(bytes.subarray(0, cut), c.format, c.delivery, token);
        if (result.error !== null) {
          // Cut inside a character (or the header): whole chunks of whole records only.
          await h.expectFailed(result, c.delivery.chunkSize, whole);
        } else {
          const s = result.summary!;
          expect(s.read).toBe(s.accepted + s.duplicate + s.rejected);
          expect(s.read).toBeGreaterThanOrEqual(whole.length);
          expect((await h.storedLines(s.runId)).size).toBe(s.read);
          // Past the cut, the records are whatever the reader makes of the rest: only whole ones are compared.
          await expectStored(h.app.store.db, s.runId, whole, whole.at(-1)?.line ?? 0);
        }
        await h.expectClean(built, result);
      }),
      fcParams(50, 20261124),
    );
  });

  it('random bytes, and generated files with random byte edits: never a crash, every row accounted for', async () => {
    const edit = fc.record({
      at: fc.nat(),
      op: fc.constantFrom('insert', 'delete', 'replace'),
      byte: fc.integer({ min: 0, max: 255 }),
    });
    const arb = fc.record({
      random: fc.option(fc.uint8Array({ maxLength: 3_000 }), { freq: 2 }),
      rows: items('csv', 12),
      header: csvHeader,
      edits: fc.array(edit, { minLength: 1, maxLength: 6 }),
      format: fc.constantFrom<Format | undefined>('csv', 'jsonl', undefined),
      delivery,
    });
    const plain = { eol: '\n', bom: false, finalEol: true, leadingBlankLines: 0, quoteAll: false } as const;
    await fc.assert(
      fc.asyncProperty(readable(arb), async (c) => {
        const token = nextToken();
        const built = buildCsv(c.header, c.rows, plain, token);
        const bytes =
          c.random !== null ? Buffer.from(c.random) : applyEdits(Buffer.from(built.text, 'utf8'), c.edits);
        const result = await h.ingest(bytes, c.format, c.delivery, token);
        if (result.error !== null) {
          await h.expectFailed(result, c.delivery.chunkSize, null);
        } else {
          const s = result.summary!;
          expect(s.read).toBe(s.accepted + s.duplicate + s.rejected);
          expect((await h.storedLines(s.runId)).size).toBe(s.read);
        }
        expect(findLeaks(built.needles, result.outputs)).toEqual([]);
        expect((await h.app.audit.verify()).ok).toBe(true);
      }),
      fcParams(60, 20261125),
    );
  });
});

describe('the leak search itself', () => {
  it('would see a leak: every needle of a generated file is found in a log line that quotes it', () => {
    const plain = { eol: '\n', bom: false, finalEol: true, leadingBlankLines: 0, quoteAll: false } as const;
    fc.assert(
      fc.property(csvHeader, items('csv', 12), items('jsonl', 12), (header, rows, lines) => {
        for (const built of [buildCsv(header, rows, plain, 'probe'), buildJsonl(lines, plain, 'probe')]) {
          for (const needle of built.needles) {
            const log = JSON.stringify({
              level: 30,
              time: NOW,
              runId: 12,
              row: needle,
              msg: 'ingest finished',
            });
            expect(findLeaks([needle], { log }).length, needle).toBeGreaterThan(0);
          }
        }
      }),
      fcParams(30, 20261131),
    );
  });
});

/**
 * Defects this suite found, each as the smallest input that shows it (see the report). These assert
 * the correct behaviour, so they fail until the product is fixed; the broad generators above leave
 * these inputs out so that they can still find other problems.
 */
describe('defects found by the input suite', () => {
  const once: Delivery = { via: 'file', points: [], chunkSize: 1_000 };
  const leadsOf = (runId: number) =>
    h.app.store.db.selectFrom('leads').selectAll().where('run_id', '=', runId).execute();

  it('a lone surrogate in a JSONL text field is rejected, or stored as sent: never silently altered', async () => {
    const token = nextToken();
    // JSON escapes, so the file itself is valid UTF-8; JSON.parse turns them into lone surrogates.
    const line = `{"name":"Ann \\ud800 Lee","email":"lone.surrogate.${token}@example.com","company":"Acme \\udfff Ltd","score":70,"source_timestamp":"2026-11-19T09:30:00Z"}`;
    const result = await h.ingest(Buffer.from(`${line}\n`, 'utf8'), 'jsonl', once, token);
    expect(result.summary).toMatchObject({ read: 1 });
    for (const lead of await leadsOf(result.summary!.runId)) {
      expect({ name: lead.name, company: lead.company }).toEqual({
        name: 'Ann \ud800 Lee',
        company: 'Acme \udfff Ltd',
      });
    }
  });

  it('C1 control characters and the Unicode line separators are rejected in a name, like C0 controls', async () => {
    const token = nextToken();
    const names = ['Ann\u0085Lee', 'Ann\u009bLee', 'Ann\u2028Lee', 'Ann\u2029Lee'];
    const rows = names.map((n, i) => `${n},c1.${i}.${token}@example.com,70,2026-11-19T09:30:00Z`);
    const csv = `name,email,score,source_timestamp\n${rows.join('\n')}\n`;
    const result = await h.ingest(Buffer.from(csv, 'utf8'), 'csv', once, token);
    const outcomes = await h.app.store.db
      .selectFrom('ingest_outcomes')
      .select(['line', 'outcome', 'field'])
      .where('run_id', '=', result.summary!.runId)
      .orderBy('line')
      .execute();
    expect(outcomes).toEqual(names.map((_, i) => ({ line: i + 2, outcome: 'rejected', field: 'name' })));
  });

  it('a record of exactly the 65,536-character limit is judged the same, whatever its line break and chunking', async () => {
    const reasons: Record<string, string> = {};
    const judge = async (label: string, format: Format, chunks: string[]) => {
      const token = nextToken();
      const d: Delivery = { via: 'stdin', points: [], chunkSize: 1_000 };
      const bytes = Buffer.from(chunks.join('').replaceAll('{token}', token));
      // The chunks as given: the split points are where one ends and the next begins.
      let at = 0;
      d.points = chunks.slice(0, -1).map((c) => (at += Buffer.byteLength(c.replaceAll('{token}', token))));
      const result = await h.ingest(bytes, format, d, token);
      const outcome = await h.app.store.db
        .selectFrom('ingest_outcomes')
        .select('reason')
        .where('run_id', '=', result.summary!.runId)
        .executeTakeFirstOrThrow();
      reasons[label] = outcome.reason;
    };
    const tail = ',exact.limit.{token}@example.com,70,2026-11-19T09:30:00Z';
    const record = `${'N'.repeat(RECORD_LIMIT - tail.replace('{token}', 't00000').length)}${tail}`;
    const header = 'name,email,score,source_timestamp\n';
    await judge('csv, last line', 'csv', [header + record]);
    await judge('csv, LF', 'csv', [`${header}${record}\n`]);
    await judge('csv, CRLF', 'csv', [`${header}${record}\r\n`]);
    const head =
      '{"email":"exact.jsonl.{token}@example.com","score":70,"source_timestamp":"2026-11-19T09:30:00Z","name":"';
    const line = `${head}${'N'.repeat(RECORD_LIMIT - head.replace('{token}', 't00000').length - 2)}"}`;
    await judge('jsonl, CRLF in one chunk', 'jsonl', [`${line}\r\n`]);
    await judge('jsonl, CRLF split across chunks', 'jsonl', [`${line}\r`, '\n']);
    // Not longer than the limit: validated like any row (its name is too long), whatever its line break.
    const expected = 'name: longer than 200 characters';
    expect(reasons).toEqual({
      'csv, last line': expected,
      'csv, LF': expected,
      'csv, CRLF': expected,
      'jsonl, CRLF in one chunk': expected,
      'jsonl, CRLF split across chunks': expected,
    });
  });
});
