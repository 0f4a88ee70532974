/** A Node.js script run as a child process for end-to-end tests: its output kept, its end awaited, bounded. */
import { type ChildProcess, spawn } from 'node:child_process';

export interface Spawned {
  child: ChildProcess;
  /** Standard output and error so far. */
  out(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Run `script` with Node.js in `cwd` with only PATH and `env`; it joins `children` until it ends, and
 * is killed (SIGKILL) if it is still running after `guardMs`.
 */
export function spawnNode(
  script: string,
  args: string[],
  options: { cwd: string; env: Record<string, string>; children: Set<ChildProcess>; guardMs?: number },
): Spawned {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: options.cwd,
    env: { PATH: process.env.PATH, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  options.children.add(child);
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c;
  });
  child.stderr?.on('data', (c: Buffer) => {
    out += c;
  });
  const guard = setTimeout(() => child.kill('SIGKILL'), options.guardMs ?? 60_000);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      options.children.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, out: () => out, exited };
}
