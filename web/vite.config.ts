import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The server serves dist/web at `/` under a CSP of `default-src 'self'`: everything must be a
// same-origin file, so nothing is inlined as a data: URI and no inline script is generated.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
  },
  server: {
    // `vite --config web/vite.config.ts` for development, against `valhalla serve` on its default port.
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
});
