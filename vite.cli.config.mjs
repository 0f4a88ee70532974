import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The CLI and service as one bundle (dist/bundle), built from tsc's output (dist/src): a command
// that starts reads a handful of files instead of hundreds, which is most of its start-up time.
// Inlined: the project's own modules and the pure-ESM packages made of many small files. Kept as
// packages: native modules (better-sqlite3), and those that find files of their own at run time
// (fastify's plugins serve assets from their folders, pino starts worker threads by path).
const INLINED = ['kysely', 'zod', 'commander', 'dotenv', 'undici', 'nodemailer', 'prom-client'];

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  logLevel: 'warn',
  ssr: { noExternal: INLINED },
  build: {
    ssr: fileURLToPath(new URL('dist/src/cli/main.js', import.meta.url)),
    outDir: fileURLToPath(new URL('dist/bundle', import.meta.url)),
    emptyOutDir: true,
    target: 'node20',
    minify: false,
    sourcemap: false,
    rolldownOptions: {
      output: { format: 'esm', entryFileNames: 'valhalla.js', chunkFileNames: '[name]-[hash].js' },
    },
  },
});
