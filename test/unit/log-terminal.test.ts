import { describe, expect, it } from 'vitest';
import { terminalLine } from '../../src/log/index.js';

const record = (fields: Record<string, unknown>) =>
  JSON.stringify({ level: 30, time: 1, pid: 1, hostname: 'h', service: 'valhalla', msg: 'm', ...fields });

describe('the log on a terminal', () => {
  it('shows warnings and errors as one line each, and no info record', () => {
    expect(terminalLine(record({ level: 30, msg: 'cycle 1 [dry_run] ...' }))).toBeNull();
    expect(terminalLine(record({ level: 40, msg: 'metrics endpoint could not start', port: 9464 }))).toBe(
      'valhalla: warning: metrics endpoint could not start (port=9464)\n',
    );
    expect(terminalLine(record({ level: 50, msg: 'lost', err: { type: 'Error', message: 'gone' } }))).toBe(
      'valhalla: error: lost (err={"type":"Error","message":"gone"})\n',
    );
  });

  it('writes control characters from input out, so they cannot act on the terminal', () => {
    const line = terminalLine(record({ level: 40, msg: 'bad header \u001b]0;title\u0007' })) ?? '';
    expect(line).toBe('valhalla: warning: bad header \\x1b]0;title\\x07\n');
    // The same rule as the CLI's lines: bidirectional overrides and line breaks are written out too.
    const reordered = terminalLine(record({ level: 40, msg: 'reason \u202eevil\nsecond line' })) ?? '';
    expect(reordered).toBe('valhalla: warning: reason \\u202eevil\\x0asecond line\n');
  });
});

describe("the worker's standard error on the supervisor's terminal", () => {
  const forward = async (tty: boolean, lines: string[]) => {
    const { forwardStderr } = await import('../../src/app/supervisor.js');
    const { PassThrough } = await import('node:stream');
    const from = new PassThrough();
    const to = Object.assign(new PassThrough(), { isTTY: tty });
    const out: string[] = [];
    to.on('data', (c: Buffer) => out.push(c.toString('utf8')));
    forwardStderr(from, to);
    const ended = new Promise((resolve) => from.on('end', resolve));
    from.end(lines.map((l) => `${l}\n`).join(''));
    await ended;
    await new Promise((resolve) => setImmediate(resolve));
    return out.join('');
  };
  const info = record({ level: 30, msg: 'cycle 1 [dry_run] ...' });
  const warning = record({ level: 40, msg: 'slow' });

  it('a terminal gets lines: no info record, warnings as lines, plain lines as they are', async () => {
    expect(await forward(true, [info, warning, 'SIGINT: finishing'])).toBe(
      'valhalla: warning: slow\nSIGINT: finishing\n',
    );
  });

  it('a pipe or a file gets the JSON as written', async () => {
    expect(await forward(false, [info, warning])).toBe(`${info}\n${warning}\n`);
  });
});
