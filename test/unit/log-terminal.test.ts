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
  });
});
