import { resolve } from 'node:path';
import { type App, findInstallation, openApp } from '../app/index.js';
import { type Config, loadConfig, maskSecrets } from '../config/index.js';
import { CliExit, type CliIo, EXIT } from './output.js';

/** The options given before (or beside) any command: `valhalla --data-dir DIR <command>`. */
export interface GlobalOptions {
  dataDir?: string;
}

/** What every command shares: the IO, the configuration (loaded once, on first use) and the app. */
export interface Context {
  readonly io: CliIo;
  config(): Config;
  /** The configuration read again now (environment, `.env`, policy file), not the one loaded first. */
  freshConfig(): Config;
  /**
   * Open the app (database and all) for the length of `work`, and close it after. The installation
   * must exist (made by `valhalla init`): where there is none, this fails naming where it looked and
   * creates nothing.
   */
  withApp<T>(work: (app: App) => Promise<T>, options?: { stopOnly?: boolean }): Promise<T>;
}

export function createContext(io: CliIo, globals: () => GlobalOptions = () => ({})): Context {
  let config: Config | undefined;
  const load = () => {
    const { dataDir } = globals();
    // --data-dir is VALHALLA_DATA_DIR given on the command line: it wins over the environment and .env.
    const env = dataDir === undefined ? io.env : { ...io.env, VALHALLA_DATA_DIR: resolve(io.cwd, dataDir) };
    return loadConfig({ env, cwd: io.cwd });
  };
  const getConfig = () => {
    config ??= load();
    return config;
  };
  return {
    io,
    config: getConfig,
    freshConfig: load,
    async withApp(work, options = {}) {
      const config = getConfig();
      const probe = await findInstallation(config);
      if (!probe.found) {
        throw new CliExit(
          EXIT.failure,
          noInstallation(config, io, globals().dataDir !== undefined, probe.why),
        );
      }
      const app = await openApp({ config, ...(options.stopOnly ? { stopOnly: true } : {}) });
      try {
        return await work(app);
      } finally {
        await app.close();
      }
    },
  };
}

/** Where the CLI looked for the installation, and why there: the one rule of README § "Which installation". */
export function installationLookup(
  config: Config,
  io: CliIo,
  dataDirFlag: boolean,
): { place: string; because: string } {
  const place =
    config.database.kind === 'sqlite'
      ? config.database.path
      : `${maskSecrets(config.database.url)}${config.database.schema ? ` (schema ${config.database.schema})` : ''}`;
  const envFile = resolve(io.cwd, config.raw.VALHALLA_ENV_FILE ?? '.env');
  const from = (name: 'VALHALLA_DATABASE_URL' | 'VALHALLA_DATA_DIR') =>
    config.sources[name] === '.env' ? `${name} in ${envFile}` : `${name} from the environment`;
  let because: string;
  if (
    config.sources.VALHALLA_DATABASE_URL === 'environment' ||
    config.sources.VALHALLA_DATABASE_URL === '.env'
  ) {
    because = from('VALHALLA_DATABASE_URL');
  } else if (dataDirFlag) {
    because = `--data-dir ${config.dataDir}`;
  } else if (
    config.sources.VALHALLA_DATA_DIR === 'environment' ||
    config.sources.VALHALLA_DATA_DIR === '.env'
  ) {
    because = from('VALHALLA_DATA_DIR');
  } else {
    because = `the current directory ${io.cwd} (its data folder; no --data-dir, VALHALLA_DATA_DIR or VALHALLA_ENV_FILE given)`;
  }
  return { place, because };
}

function noInstallation(config: Config, io: CliIo, dataDirFlag: boolean, why: string): string {
  const { place, because } = installationLookup(config, io, dataDirFlag);
  return [
    `no Valhalla installation at ${place} (${why}); nothing was created.`,
    `  looked there because of ${because}.`,
    "  Point the command at the service's installation: valhalla --data-dir DIR <command>, or VALHALLA_DATA_DIR=DIR,",
    "  or VALHALLA_ENV_FILE=FILE (the service's own settings file); or run it in the service's working directory.",
    '  `valhalla init` creates a new installation.',
  ].join('\n');
}
