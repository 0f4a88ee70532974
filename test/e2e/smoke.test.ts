import { describe, expect, it } from 'vitest';
import { runBinary, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

describe('the valhalla binary', () => {
  it('initialises, generates, ingests and reports status on embedded SQLite', async () => {
    const cwd = tempDir();
    const env = testEnv(`${cwd}/data`);
    expect((await runBinary(['init'], { cwd, env })).code).toBe(0);
    const generated = await runBinary(
      [
        'leads',
        'generate',
        '--count',
        '300',
        '--seed',
        '3',
        '--out',
        'leads.csv',
        '--now',
        '2026-11-20T12:00:00Z',
      ],
      { cwd, env },
    );
    expect(generated.code).toBe(0);
    const ingest = await runBinary(['ingest', 'leads.csv', '--json'], { cwd, env });
    expect(ingest.code).toBe(0);
    const summary = JSON.parse(ingest.stdout);
    expect(summary.read).toBe(300);
    expect(summary.accepted + summary.duplicate + summary.rejected).toBe(300);
    const status = JSON.parse((await runBinary(['status', '--json'], { cwd, env })).stdout);
    expect(status.leads.total).toBe(summary.accepted);
  });
});
