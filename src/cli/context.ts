import { type App, openApp } from '../app/index.js';
import { type Config, loadConfig } from '../config/index.js';
import type { CliIo } from './output.js';

/** What every command shares: the IO, the configuration (loaded once, on first use) and the app. */
export interface Context {
  readonly io: CliIo;
  config(): Config;
  /** Open the app (database and all) for the length of `work`, and close it after. */
  withApp<T>(work: (app: App) => Promise<T>): Promise<T>;
}

export function createContext(io: CliIo): Context {
  let config: Config | undefined;
  const getConfig = () => {
    config ??= loadConfig({ env: io.env, cwd: io.cwd });
    return config;
  };
  return {
    io,
    config: getConfig,
    async withApp(work) {
      const app = await openApp({ config: getConfig() });
      try {
        return await work(app);
      } finally {
        await app.close();
      }
    },
  };
}
