/**
 * Invariant 7: PII never reaches logs, the audit chain, or what the CLI prints, unmasked.
 *
 * Leads go in through every door (generated CSV and JSONL, hand-made CSV and JSONL full of
 * duplicates and broken rows, standard input), in-process and through the built binary, at the
 * default log level and at trace. Everything the product wrote outside its database is then
 * searched for every raw e-mail address, phone number and full name of the input. On SQLite and
 * PostgreSQL: a database's own messages (a constraint's, a driver's) must not carry PII out either.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { openStore } from '../../src/store/index.js';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { BIN, type CliResult, REPO_ROOT, runBinary, runInProcess, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { DAY } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
const NOW = Date.now();
const iso = (msAgo: number) => new Date(NOW - msAgo).toISOString();

/** Hand-made CSV: valid leads, duplicates (case and spacing), and every kind of bad row. */
const HAND_CSV = [
  'external_id,name,email,phone,company,score,source_timestamp,value',
  `H-1,Ingrid Valkyrie,ingrid.valkyrie@fjord-mail.example,+47 912 34 567,Valkyrie Shipping,88,${iso(DAY)},1200`,
  `H-2,Bjorn Ironside,bjorn.ironside@raid.example,(555) 201-3344,Ironside AS,64,${iso(2 * DAY)},`,
  `H-3,Astrid Longhair,astrid.longhair@kaupang.example,555.867.5309,,35,${iso(3 * DAY)},500`,
  `H-4,Sigurd Ring,sigurd.ring@uppsala.example,+46 70 123 45 67,Ring & Co,71,${iso(20 * DAY)},900`,
  // Duplicates of H-1 and H-2: the e-mail differs only in case and surrounding spaces.
  `H-5,Ingrid Valkyrie,  INGRID.VALKYRIE@FJORD-MAIL.EXAMPLE ,+47 912 34 567,Valkyrie Shipping,88,${iso(DAY)},1200`,
  `H-6,Bjorn Ironside,Bjorn.Ironside@Raid.Example,(555) 201-3344,Ironside AS,64,${iso(2 * DAY)},`,
  // Bad e-mail, bad phone, future timestamp, bad score.
  `H-7,Freydis Eiriksdottir,freydis.eiriksdottir-at-vinland.example,+1 709 555 0142,Vinland Trade,77,${iso(DAY)},`,
  `H-8,Leif Eriksson,leif.eriksson@vinland.example,call 709-555-0199 after six,Greenland Co,80,${iso(DAY)},`,
  `H-9,Harald Hardrada,harald.hardrada@stamford.example,+44 20 7946 0958,Hardrada Ltd,90,${iso(-3 * DAY)},`,
  `H-10,Gudrun Osvifsdottir,gudrun.osvifsdottir@laxdaela.example,+354 555 1234,,high,${iso(DAY)},`,
  // Broken quoting: text after a closing quote, and a quote inside an unquoted field.
  `H-11,"Olaf Tryggvason"x,olaf.tryggvason@nidaros.example,+47 22 33 44 55,Nidaros,70,${iso(DAY)},`,
  `H-12,Rag"nar Lodbrok,ragnar.lodbrok@kattegat.example,+45 3312 3456,Kattegat,75,${iso(DAY)},`,
  // Too few fields for the header.
  'H-13,Erik the Red,erik.thered@brattahlid.example,+299 32 1234',
  `H-14,Ivar Boneless,ivar.boneless@york.example,+44 1904 555 123,York Holdings,95,${iso(4 * DAY)},2500`,
  // Last: a quote that is never closed swallows the rest of the file.
  `H-15,"Ubbe Unclosed,ubbe.unclosed@wessex.example,+44 1962 555 321,Wessex,60,${iso(DAY)},`,
  '',
].join('\n');

/** Hand-made JSONL: valid, duplicate, invalid JSON (with an e-mail in it), non-objects, bad fields. */
const HAND_JSONL = [
  JSON.stringify({
    external_id: 'J-1',
    name: 'Torvald Strandberg',
    email: 'torvald.strandberg@hedeby.example',
    phone: '+49 4621 555 1212',
    company: 'Hedeby Handel',
    score: 82,
    source_timestamp: iso(DAY),
    value: 3000,
  }),
  JSON.stringify({
    external_id: 'J-2',
    name: 'Sigrid Storrada',
    email: 'sigrid.storrada@sveariket.example',
    phone: '+46 8 555 123 45',
    score: 55,
    source_timestamp: NOW - 2 * DAY,
  }),
  JSON.stringify({
    external_id: 'J-3',
    name: 'Torvald Strandberg',
    email: ' TORVALD.STRANDBERG@HEDEBY.EXAMPLE',
    phone: '+49 4621 555 1212',
    score: 82,
    source_timestamp: iso(DAY),
  }),
  // Duplicate of a lead from the hand-made CSV (another file, another run).
  JSON.stringify({
    external_id: 'J-4',
    name: 'Ivar Boneless',
    email: 'ivar.boneless@york.example',
    phone: '+44 1904 555 123',
    score: 95,
    source_timestamp: iso(4 * DAY),
  }),
  '{"external_id":"J-5","name":"Halfdan Broken","email":"halfdan.broken@jsonfail.example","phone":"+47 55 12 34 56",',
  '"gunnhild.string@onlyastring.example"',
  '["thyra.array@array.example", "+45 7012 3456"]',
  JSON.stringify({
    external_id: 'J-8',
    name: 'Knut Badmail',
    email: 'knut.badmail@',
    phone: '+45 3345 6789',
    score: 60,
    source_timestamp: iso(DAY),
  }),
  JSON.stringify({
    external_id: 'J-9',
    name: 'Estrid Badphone',
    email: 'estrid.badphone@denmark.example',
    phone: 'ring 4533 4567 89',
    score: 60,
    source_timestamp: iso(DAY),
  }),
  JSON.stringify({
    external_id: 'J-10',
    name: 'Gorm Future',
    email: 'gorm.future@jelling.example',
    phone: '+45 7512 3499',
    score: 60,
    source_timestamp: iso(-2 * DAY),
  }),
  JSON.stringify({
    external_id: 'J-11',
    name: 'Svein Numberemail',
    email: 4_712_345_678,
    phone: 4_712_345_679,
    score: 60,
    source_timestamp: iso(DAY),
  }),
  '',
].join('\n');

/** Fed on standard input: a new lead, duplicates of earlier ones, a broken row. */
const STDIN_JSONL = [
  JSON.stringify({
    name: 'Aslaug Sigurdsdottir',
    email: 'aslaug.sigurdsdottir@spangereid.example',
    phone: '+47 38 55 66 77',
    score: 91,
    source_timestamp: iso(DAY),
  }),
  JSON.stringify({
    name: 'Ingrid Valkyrie',
    email: 'ingrid.valkyrie@fjord-mail.example',
    phone: '+47 912 34 567',
    score: 88,
    source_timestamp: iso(DAY),
  }),
  '{"name":"Rollo Broken","email":"rollo.broken@normandy.example" "phone":"+33 2 35 55 12 34"}',
  JSON.stringify({
    name: 'Rollo Normandy',
    email: 'rollo.normandy@rouen.example',
    phone: '+33 2 35 98 76 54',
    score: 100,
    source_timestamp: iso(-DAY),
  }),
  '',
].join('\n');

/** Fed on standard input to the binary: CSV this time. */
const STDIN_CSV = [
  'name,email,phone,score,source_timestamp',
  `Kalf Arnason,kalf.arnason@egge.example,+47 74 55 12 12,58,${iso(DAY)}`,
  `Bjorn Ironside,BJORN.IRONSIDE@RAID.EXAMPLE,(555) 201-3344,64,${iso(2 * DAY)}`,
  `Thora Bad,thora.bad@@hlader.example,+47 73 55 00 11,58,${iso(DAY)}`,
  '',
].join('\n');

interface Needles {
  emails: Set<string>;
  phones: Set<string>;
  names: Set<string>;
}

/** Collect what must never appear: from a parsed row's fields, and from raw text that did not parse. */
function addRow(needles: Needles, fields: Record<string, unknown>): void {
  if (typeof fields.email === 'string' || typeof fields.email === 'number')
    addEmail(needles, String(fields.email));
  if (typeof fields.phone === 'string' || typeof fields.phone === 'number')
    addPhone(needles, String(fields.phone));
  if (typeof fields.name === 'string' && /\S+\s+\S+/.test(fields.name.trim()))
    needles.names.add(fields.name.trim());
}

function addEmail(needles: Needles, raw: string): void {
  const email = raw.trim();
  if (email.length < 4) return;
  needles.emails.add(email);
  needles.emails.add(email.toLowerCase());
  const at = email.indexOf('@');
  const local = at === -1 ? email : email.slice(0, at);
  if (local.length >= 4) {
    needles.emails.add(local);
    needles.emails.add(local.toLowerCase());
  }
}

function addPhone(needles: Needles, raw: string): void {
  const digits = raw.replace(/\D/g, '');
  if (digits.length < 7) return;
  needles.phones.add(raw.trim());
  needles.phones.add(digits);
}

/** From raw text: every e-mail-like and phone-like token, whether or not its line parses. */
function addFromText(needles: Needles, text: string): void {
  for (const match of text.matchAll(/[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]*/g)) addEmail(needles, match[0]);
  for (const match of text.matchAll(/\+?\d[\d ().-]{5,}\d/g)) {
    // Timestamps and epoch milliseconds are not phone numbers.
    if (!/^\d{4}-\d{2}-\d{2}/.test(match[0]) && !/^\d{13}$/.test(match[0])) addPhone(needles, match[0]);
  }
}

function needlesOf(csvTexts: string[], jsonlTexts: string[]): Needles {
  const needles: Needles = { emails: new Set(), phones: new Set(), names: new Set() };
  for (const text of csvTexts) {
    const rows = parseCsv(text, {
      columns: true,
      relax_column_count: true,
      relax_quotes: true,
      skip_records_with_error: true,
    }) as Record<string, string>[];
    for (const row of rows) addRow(needles, row);
    addFromText(needles, text);
  }
  for (const text of jsonlTexts) {
    for (const line of text.split('\n')) {
      try {
        const value: unknown = JSON.parse(line);
        if (value !== null && typeof value === 'object' && !Array.isArray(value))
          addRow(needles, value as Record<string, unknown>);
      } catch {
        // Not JSON: the text scan below still picks its e-mails and phones up.
      }
    }
    addFromText(needles, text);
  }
  return needles;
}

interface Leak {
  needle: string;
  kind: keyof Needles;
  where: string;
  context: string;
}

function findLeaks(needles: Needles, haystacks: Map<string, string>): Leak[] {
  const leaks: Leak[] = [];
  for (const kind of ['emails', 'phones', 'names'] as const) {
    for (const needle of needles[kind]) {
      for (const [where, text] of haystacks) {
        const at = text.indexOf(needle);
        if (at !== -1)
          leaks.push({
            needle,
            kind,
            where,
            context: text.slice(Math.max(0, at - 60), at + needle.length + 60),
          });
      }
    }
  }
  return leaks;
}

describe.each(list)('PII never leaves the store unmasked (invariant 7), on $name', (backend: Backend) => {
  const cwd = tempDir();
  const dataDir = join(cwd, 'data');
  const logFile = join(dataDir, 'valhalla.log');
  const traceLogFile = join(dataDir, 'valhalla-trace.log');
  const database = { VALHALLA_DATABASE_URL: backend.databaseUrl() };
  const env = testEnv(dataDir, database);
  const traceEnv = testEnv(dataDir, {
    ...database,
    VALHALLA_LOG_LEVEL: 'trace',
    VALHALLA_LOG_FILE: traceLogFile,
  });
  const outputs = new Map<string, string>();
  const runs: { label: string; result: CliResult }[] = [];
  let attributedLeadId = 0;
  let needles: Needles;
  let inputText = '';
  const summaries: Record<
    string,
    { read: number; accepted: number; duplicate: number; rejected: number; rejectsFile: string | null }
  > = {};

  async function cli(
    label: string,
    args: string[],
    options: { binary?: boolean; trace?: boolean; stdin?: string } = {},
  ): Promise<CliResult> {
    const run = options.binary ? runBinary : runInProcess;
    const result = await run(args, {
      cwd,
      env: options.trace ? traceEnv : env,
      ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
    });
    runs.push({ label, result });
    outputs.set(`${label}: stdout`, result.stdout);
    outputs.set(`${label}: stderr`, result.stderr);
    return result;
  }

  async function ingest(
    label: string,
    args: string[],
    options: { binary?: boolean; trace?: boolean; stdin?: string } = {},
  ): Promise<void> {
    const result = await cli(label, ['ingest', ...args, '--json'], options);
    expect(result.code, `${label}: ${result.stderr}`).toBe(0);
    summaries[label] = JSON.parse(result.stdout);
  }

  beforeAll(async () => {
    expect(
      existsSync(join(BIN, '..', '..', 'dist', 'src', 'cli', 'main.js')),
      'run `npm run build` first',
    ).toBe(true);
    writeFileSync(join(cwd, 'hand.csv'), HAND_CSV);
    writeFileSync(join(cwd, 'hand.jsonl'), HAND_JSONL);

    expect((await cli('init', ['init'])).code).toBe(0);
    const now = new Date(NOW).toISOString();
    expect(
      (
        await cli('generate csv', [
          'leads',
          'generate',
          '--count',
          '200',
          '--seed',
          '11',
          '--now',
          now,
          '--out',
          'generated.csv',
        ])
      ).code,
    ).toBe(0);
    expect(
      (
        await cli('generate jsonl', [
          'leads',
          'generate',
          '--count',
          '150',
          '--seed',
          '12',
          '--format',
          'jsonl',
          '--now',
          now,
          '--out',
          'generated.jsonl',
        ])
      ).code,
    ).toBe(0);
    const generatedCsv = readFileSync(join(cwd, 'generated.csv'), 'utf8');
    const generatedJsonl = readFileSync(join(cwd, 'generated.jsonl'), 'utf8');
    inputText = [generatedCsv, generatedJsonl, HAND_CSV, HAND_JSONL, STDIN_JSONL, STDIN_CSV].join('\n');
    needles = needlesOf([generatedCsv, HAND_CSV, STDIN_CSV], [generatedJsonl, HAND_JSONL, STDIN_JSONL]);

    await ingest('ingest generated.csv', ['generated.csv']);
    await ingest('ingest generated.jsonl (trace)', ['generated.jsonl'], { trace: true });
    await ingest('ingest hand.csv', ['hand.csv', '--rejects', 'rejects/hand-csv.jsonl']);
    await ingest('ingest hand.jsonl (binary)', ['hand.jsonl'], { binary: true });
    await ingest('ingest - (stdin jsonl)', ['-'], { stdin: STDIN_JSONL, trace: true });
    await ingest('ingest - (stdin csv, binary)', ['-', '--format', 'csv'], {
      binary: true,
      stdin: STDIN_CSV,
    });
    // The same file again: every row a duplicate of a stored lead, in text output this time.
    expect((await cli('ingest hand.csv again (text)', ['ingest', 'hand.csv'])).code).toBe(0);

    // Attributes on every stored lead: the crm profile's title (personal), its country (not), and one
    // no profile declares (its class unknown). The personal values are needles like the names.
    const attributed = await openStore(loadConfig({ cwd, env }).database, { migrate: false });
    try {
      const leads = await attributed.db.selectFrom('leads').select('id').execute();
      for (const { id } of leads) {
        const title = `Jarl Title-${id} Secretsson`;
        const legacy = `Skald Legacy-${id} Hiddensdottir`;
        needles.names.add(title);
        needles.names.add(legacy);
        // Input too, as the files are: the check that the search would see a leak covers them.
        inputText += `\n${title}\n${legacy}`;
        await attributed.db
          .updateTable('leads')
          .set({ attributes: JSON.stringify({ title, country: 'NO', legacy }) })
          .where('id', '=', id)
          .execute();
      }
      attributedLeadId = Number(leads[0]?.id);
    } finally {
      await attributed.close();
    }

    for (const state of ['', 'pending', 'below_threshold', 'expired']) {
      const filter = state ? ['--state', state] : [];
      expect((await cli(`leads list ${state}`, ['leads', 'list', '--limit', '1000', ...filter])).code).toBe(
        0,
      );
      expect(
        (await cli(`leads list --json ${state}`, ['leads', 'list', '--limit', '1000', '--json', ...filter]))
          .code,
      ).toBe(0);
    }
    const shown = String(attributedLeadId);
    expect((await cli('leads show', ['leads', 'show', shown])).code).toBe(0);
    expect((await cli('leads show --json', ['leads', 'show', shown, '--json'], { trace: true })).code).toBe(
      0,
    );
    expect(
      (
        await cli('leads list (binary, trace)', ['leads', 'list', '--limit', '1000'], {
          binary: true,
          trace: true,
        })
      ).code,
    ).toBe(0);
    // The partner preview, masked (the default), in either shipped profile and as JSON.
    expect(
      (await cli('partner preview', ['partner', 'preview', '--limit', '10'], { trace: true })).code,
    ).toBe(0);
    expect(
      (
        await cli('partner preview crm --json', [
          'partner',
          'preview',
          '--profile',
          join(REPO_ROOT, 'config', 'partners', 'crm-batch-contacts.json'),
          '--limit',
          '10',
          '--json',
        ])
      ).code,
    ).toBe(0);
    expect((await cli('status', ['status'])).code).toBe(0);
    expect((await cli('status --json', ['status', '--json'])).code).toBe(0);
    expect((await cli('audit verify', ['audit', 'verify'])).code).toBe(0);
    expect((await cli('audit verify --json', ['audit', 'verify', '--json'])).code).toBe(0);
    expect((await cli('audit export (stdout)', ['audit', 'export'])).code).toBe(0);
    expect((await cli('audit export --out', ['audit', 'export', '--out', 'audit-export.jsonl'])).code).toBe(
      0,
    );
    expect((await cli('config show', ['config', 'show'])).code).toBe(0);
    expect((await cli('config show --json', ['config', 'show', '--json'], { trace: true })).code).toBe(0);
    // A failing ingest (a file-level error) must not leak through its error path either.
    writeFileSync(join(cwd, 'no-header.csv'), 'ingrid.valkyrie@fjord-mail.example,+47 912 34 567\n');
    expect((await cli('ingest no-header.csv', ['ingest', 'no-header.csv'], { trace: true })).code).toBe(1);

    outputs.set('audit export file', readFileSync(join(cwd, 'audit-export.jsonl'), 'utf8'));
    outputs.set('log file', readFileSync(logFile, 'utf8'));
    outputs.set('trace log file', readFileSync(traceLogFile, 'utf8'));
    for (const dir of [join(dataDir, 'rejects'), join(cwd, 'rejects')]) {
      for (const file of readdirSync(dir))
        outputs.set(`rejects ${file}`, readFileSync(join(dir, file), 'utf8'));
    }
  });

  it('searches for a real set of needles, all present in the input files', () => {
    // Without this, an empty or wrong search set would pass vacuously.
    expect(needles.emails.size).toBeGreaterThan(700);
    expect(needles.phones.size).toBeGreaterThan(300);
    expect(needles.names.size).toBeGreaterThan(300);
    for (const kind of ['emails', 'phones'] as const) {
      for (const needle of needles[kind]) {
        const asWritten =
          inputText.includes(needle) ||
          inputText.toLowerCase().includes(needle) ||
          inputText.replace(/\D/g, '').includes(needle);
        expect(asWritten, `${kind} needle ${needle} is not in the input`).toBe(true);
      }
    }
    for (const email of [
      'ingrid.valkyrie@fjord-mail.example',
      'INGRID.VALKYRIE@FJORD-MAIL.EXAMPLE',
      'halfdan.broken@jsonfail.example',
      'ubbe.unclosed@wessex.example',
      'freydis.eiriksdottir-at-vinland.example',
      'rollo.broken',
      'thora.bad@@hlader.example',
      'gunnhild.string@onlyastring.example',
      '4712345678',
    ]) {
      expect(needles.emails).toContain(email);
    }
    for (const phone of [
      '+47 912 34 567',
      '4791234567',
      '(555) 201-3344',
      '5552013344',
      '+47 55 12 34 56',
      '4712345679',
      '4533456789',
    ]) {
      expect(needles.phones).toContain(phone);
    }
  });

  it('would see a leak: the search finds every needle in the input itself', () => {
    const leaks = findLeaks(
      needles,
      new Map([['input', `${inputText}\n${inputText.toLowerCase()}\n${inputText.replace(/[^\d\n]/g, '')}`]]),
    );
    expect(leaks.length).toBe(needles.emails.size + needles.phones.size + needles.names.size);
  });

  it('exercised duplicates, rejects and every source through the pipeline', () => {
    expect(Object.keys(summaries)).toHaveLength(6);
    const hand = summaries['ingest hand.csv']!;
    expect(hand.accepted).toBe(5);
    expect(hand.duplicate).toBe(2);
    expect(hand.rejected).toBeGreaterThanOrEqual(7);
    expect(hand.rejectsFile).toBe(join(cwd, 'rejects', 'hand-csv.jsonl'));
    const jsonl = summaries['ingest hand.jsonl (binary)']!;
    expect(jsonl).toMatchObject({ read: 11, accepted: 2, duplicate: 2, rejected: 7 });
    expect(summaries['ingest - (stdin jsonl)']).toMatchObject({
      read: 4,
      accepted: 1,
      duplicate: 1,
      rejected: 2,
    });
    expect(summaries['ingest - (stdin csv, binary)']).toMatchObject({
      read: 3,
      accepted: 1,
      duplicate: 1,
      rejected: 1,
    });
    for (const label of ['ingest generated.csv', 'ingest generated.jsonl (trace)']) {
      const s = summaries[label]!;
      expect(s.accepted).toBeGreaterThan(100);
      expect(s.duplicate).toBeGreaterThan(0);
      expect(s.rejected).toBeGreaterThan(0);
      expect(s.rejectsFile).not.toBeNull();
    }
    expect(runs.filter((r) => r.label.includes('binary'))).toHaveLength(3);
  });

  it("stored every accepted lead once, in this backend's database", async () => {
    const store = await openStore(loadConfig({ cwd, env }).database, { migrate: false });
    try {
      const { count } = await store.db
        .selectFrom('leads')
        .select((eb) => eb.fn.countAll<number | string>().as('count'))
        .executeTakeFirstOrThrow();
      const accepted = Object.values(summaries).reduce((sum, s) => sum + s.accepted, 0);
      expect(accepted).toBeGreaterThan(200);
      expect(Number(count)).toBe(accepted);
    } finally {
      await store.close();
    }
  });

  it('collected non-empty outputs of every kind', () => {
    expect(outputs.get('log file')).toContain('ingest finished');
    expect(outputs.get('trace log file')).toContain('"level":50');
    expect(outputs.get('audit export file')).toContain('"ingest.rows"');
    expect(outputs.get('audit export (stdout): stdout')).toBe(outputs.get('audit export file'));
    const rejects = [...outputs.keys()].filter((k) => k.startsWith('rejects '));
    expect(rejects.length).toBeGreaterThanOrEqual(5);
    const listed = JSON.parse(outputs.get('leads list --json : stdout')!) as {
      leads: { email: string; phone: string; name: string; erased: boolean; attributes: unknown }[];
    };
    const shown = JSON.parse(outputs.get('leads show --json: stdout')!) as { lead: { attributes: unknown } };
    expect(shown.lead.attributes).toEqual({ title: '***', country: '***', legacy: '***' });
    expect(outputs.get('leads show: stdout')).toMatch(/attribute title:\s+\*\*\*\n/);
    // The crm profile's preview: its personal title masked, its country (not personal) as it is.
    const preview = outputs.get('partner preview crm --json: stdout')!;
    expect(preview).toContain('"jobtitle": "***"');
    expect(preview).toContain('"country": "NO"');
    expect(listed.leads.length).toBeGreaterThan(200);
    for (const lead of listed.leads) {
      // No profile configured: every attribute is of a class not known here, masked.
      if (!lead.erased) expect(lead.attributes).toEqual({ title: '***', country: '***', legacy: '***' });
      expect(lead.email).toMatch(/^.\*\*\*@/);
      expect(lead.phone).toMatch(/^$|^\*\*\*-\*\*\*-\d{4}$/);
      expect(lead.name).toMatch(/^(\S\*\*\*)( \S\*\*\*)*$/);
    }
  });

  it('prints no raw e-mail, phone or full name on any CLI standard output or error', () => {
    const cliOutputs = new Map(
      [...outputs].filter(([k]) => k.endsWith(': stdout') || k.endsWith(': stderr')),
    );
    expect(cliOutputs.size).toBe(runs.length * 2);
    expect(findLeaks(needles, cliOutputs)).toEqual([]);
  });

  it('writes no raw e-mail, phone or full name to the log file, at info or at trace', () => {
    const logs = new Map([...outputs].filter(([k]) => k.includes('log file')));
    expect(logs.size).toBe(2);
    expect(findLeaks(needles, logs)).toEqual([]);
  });

  it('puts no raw e-mail, phone or full name in the audit chain', () => {
    const audit = new Map([...outputs].filter(([k]) => k.startsWith('audit export')));
    expect(findLeaks(needles, audit)).toEqual([]);
  });

  it('keeps raw values out of the rejects files (line, field and reason only)', () => {
    const rejects = new Map([...outputs].filter(([k]) => k.startsWith('rejects ')));
    expect(findLeaks(needles, rejects)).toEqual([]);
    for (const [file, text] of rejects) {
      for (const line of text.trim().split('\n')) {
        const entry = JSON.parse(line) as {
          run: number;
          line: number;
          problems: { field: string; message: string }[];
        };
        expect(Object.keys(entry).sort(), file).toEqual(['line', 'problems', 'run']);
        expect(entry.problems.length).toBeGreaterThan(0);
      }
    }
  });
});
