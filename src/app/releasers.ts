/**
 * What an app holds open, released in reverse order of acquisition (graphile-worker's
 * `withReleasers`): every release runs, and the first error is thrown once all have run.
 */
export interface Releasers {
  /** Register a release; the last registered runs first. */
  add(release: () => Promise<void> | void): void;
  /** Run every release once, newest first; a second call finds nothing left to release. */
  releaseAll(): Promise<void>;
}

export function createReleasers(): Releasers {
  const releases: (() => Promise<void> | void)[] = [];
  let releasing: Promise<void> | null = null;
  async function release(): Promise<void> {
    let first: { error: unknown } | null = null;
    for (let next = releases.pop(); next !== undefined; next = releases.pop()) {
      try {
        await next();
      } catch (error) {
        first ??= { error };
      }
    }
    if (first !== null) throw first.error;
  }
  return {
    add(next) {
      releases.push(next);
    },
    releaseAll() {
      // A second call while the first runs waits for it rather than releasing beside it.
      releasing ??= release().finally(() => {
        releasing = null;
      });
      return releasing;
    },
  };
}
