import type { Writable } from 'node:stream';
import { escapeText } from '../text/index.js';

export { escapeText };

/** What a command writes to and reads from; the process's own streams in production. */
export interface CliIo {
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
}

/**
 * 4 (`unconfirmed`): a rollback was recorded but no running worker confirmed it, because none is
 * running (a worker that is running and does not confirm is a failure, 1).
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, refused: 3, unconfirmed: 4 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A command's failure with the exit code it means. */
export class CliExit extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
  }
}

/** A human-readable line: whatever it holds from input (a file's header, a name, a reason) is escaped. */
export function writeLine(out: Writable, text = ''): void {
  out.write(`${escapeText(text)}\n`);
}

/** JSON already escapes C0 controls; DEL, C1 and the bidirectional overrides are escaped too. */
export function writeJson(out: Writable, value: unknown): void {
  const json = JSON.stringify(value, null, 2).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  out.write(`${json}\n`);
}

/** A plain text table: a header row, then one row per item, columns padded to fit. */
export function formatTable(columns: string[], rows: (string | number | null)[][]): string {
  const cells = [columns, ...rows.map((r) => r.map((c) => (c === null ? '' : String(c))))];
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

type Attributes = Readonly<Record<string, string | number | boolean | null>>;

/**
 * A table of leads, with an ATTRIBUTES column last only when one of them has attributes (most
 * installations keep none).
 */
export function formatLeadTable(
  columns: string[],
  leads: readonly { cells: (string | number | null)[]; attributes: Attributes }[],
): string {
  const withAttributes = leads.some((l) => Object.keys(l.attributes).length > 0);
  if (!withAttributes)
    return formatTable(
      columns,
      leads.map((l) => l.cells),
    );
  return formatTable(
    [...columns, 'ATTRIBUTES'],
    leads.map((l) => [...l.cells, formatAttributes(l.attributes)]),
  );
}

/** A lead's (masked) attributes on one line: `name=value` pairs, escaped (a value is text from a file). */
export function formatAttributes(
  attributes: Readonly<Record<string, string | number | boolean | null>>,
): string {
  return Object.entries(attributes)
    .map(([name, value]) => `${escapeText(name)}=${value === null ? '' : escapeText(String(value))}`)
    .join(' ');
}
