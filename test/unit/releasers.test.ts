import { describe, expect, it } from 'vitest';
import { createReleasers } from '../../src/app/releasers.js';

describe("the app's teardown (releasers)", () => {
  it('releases in reverse order of acquisition, every one even when some fail, and throws the first error', async () => {
    const releasers = createReleasers();
    const ran: string[] = [];
    releasers.add(() => {
      ran.push('logger');
    });
    releasers.add(async () => {
      ran.push('store');
      throw new Error('store close failed');
    });
    releasers.add(() => {
      ran.push('server');
      throw new Error('server close failed');
    });
    releasers.add(async () => {
      ran.push('client');
    });
    await expect(releasers.releaseAll()).rejects.toThrow('server close failed');
    expect(ran).toEqual(['client', 'server', 'store', 'logger']);
    // Everything was released once: a second call finds nothing.
    await releasers.releaseAll();
    expect(ran).toHaveLength(4);
  });

  it('a second call while the first runs waits for it instead of releasing beside it', async () => {
    const releasers = createReleasers();
    let closes = 0;
    let finish!: () => void;
    const held = new Promise<void>((resolve) => {
      finish = resolve;
    });
    releasers.add(async () => {
      closes += 1;
      await held;
    });
    const first = releasers.releaseAll();
    const second = releasers.releaseAll();
    expect(second).toBe(first);
    finish();
    await Promise.all([first, second]);
    expect(closes).toBe(1);
  });
});
