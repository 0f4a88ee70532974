import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { heapLimitWithinPolicy, workerHeapFlags, workerRestartRssBytes } from '../../src/policy/index.js';

const MB = 1024 * 1024;

/** V8's whole heap limit in a real Node.js process started with these flags. */
function heapSizeLimit(flags: string[]): number {
  const out = execFileSync(
    process.execPath,
    [...flags, '-e', 'process.stdout.write(String(require("v8").getHeapStatistics().heap_size_limit))'],
    { encoding: 'utf8' },
  );
  return Number(out);
}

describe("the policy's memory per process", () => {
  it.each([512, 384, 256])('the worker flags for %i MB give a V8 heap of exactly that size', (policyMb) => {
    expect(heapSizeLimit(workerHeapFlags(policyMb))).toBe(policyMb * MB);
  });

  it('--max-old-space-size alone gives a larger heap, which the check refuses', () => {
    const bare = heapSizeLimit(['--max-old-space-size=512']);
    expect(bare).toBeGreaterThan(512 * MB);
    expect(heapLimitWithinPolicy(bare, 512)).toBe(false);
    expect(heapLimitWithinPolicy(512 * MB, 512)).toBe(true);
  });

  it('the worker is restarted on RSS below the policy number, leaving the supervisor its share', () => {
    expect(workerRestartRssBytes(512)).toBeLessThan(512 * MB);
  });
});
