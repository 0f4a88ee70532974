/**
 * Who runs the product: the operator's default name (the system user) and the runner's (the host
 * name), and the rule a runner name follows.
 */
import { userInfo } from 'node:os';

export const RUNNER_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** A host name as a runner name: what the rule allows, cut to its length. */
export function safeRunnerName(host: string): string {
  const name = host.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64);
  return name === '' ? 'runner' : name;
}

export function safeUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
