import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Clock } from '../clock/index.js';
import { type Config, loadConfig } from '../config/index.js';
import { ensurePrivateDir, PRIVATE_DIR_MODE } from '../files/index.js';
import type { Logger } from '../log/index.js';
import {
  claimInstallationId,
  getRuntimeValue,
  type InstallationProbe,
  probeInstallation,
  setRuntimeValue,
} from '../store/index.js';
import { openApp } from './open.js';
import type { App } from './types.js';

/**
 * The installation the configuration names: its store made by `valhalla init`, or why there is none.
 * Creates nothing (no folder, file or schema): every command but `init` asks this before `openApp`.
 */
export function findInstallation(config: Config): Promise<InstallationProbe> {
  return probeInstallation(config.database);
}

/** Load the configuration from this process's environment and working directory. */
export function configFromProcess(): Config {
  return loadConfig({ env: process.env, cwd: process.cwd() });
}

/**
 * Create what a fresh installation needs: the data folder, a pseudonym secret (mode 0600) when none
 * is configured, and the database with its schema. Safe to run again: it changes nothing that exists.
 */
export async function initialize(
  config: Config,
  options: { clock?: Clock; logger?: Logger } = {},
): Promise<{ createdSecret: boolean; app: App }> {
  ensurePrivateDir(config.dataDir);
  let createdSecret = false;
  let effective = config;
  if (config.pseudonymSecret === null) {
    // loadConfig found no secret and no file: write a fresh one, readable by this user only.
    const secret = randomBytes(32).toString('hex');
    // Missing folders are made private; an existing one named by the operator is left as it is.
    mkdirSync(dirname(config.pseudonymSecretFile), { recursive: true, mode: PRIVATE_DIR_MODE });
    writeFileSync(config.pseudonymSecretFile, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    createdSecret = true;
    effective = Object.freeze({ ...config, pseudonymSecret: secret });
  }
  const app = await openApp({ config: effective, ...options });
  const initializedAt = await getRuntimeValue(app.store.db, 'initialized_at');
  if (initializedAt === undefined) {
    await app.store.db.transaction().execute(async (trx) => {
      const { id: installationId } = await claimInstallationId(trx, randomUUID(), app.clock.now());
      await app.audit.append(trx, {
        actor: app.config.operator,
        action: 'system.initialized',
        details: {
          phase: app.config.phase,
          policyHash: app.config.policyHash,
          database: app.store.dialect,
          installationId,
          // Recorded as the store opened (checkDedupRule): every later command must run with it.
          dedupRule: app.config.dedupKey,
        },
      });
      await setRuntimeValue(trx, 'initialized_at', new Date(app.clock.now()).toISOString(), app.clock.now());
    });
  }
  return { createdSecret, app };
}
