#!/usr/bin/env node
// The built CLI is one bundle (dist/bundle, made by `npm run build`): a command that starts reads a
// handful of files, not the hundreds of modules it is written in.
import { existsSync } from 'node:fs';

// A reader that went away (`valhalla status | head -1`) is not the command's failure: what it would
// have printed is dropped, and the command finishes its work and exits as it would have.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

const bundle = new URL('../dist/bundle/valhalla.js', import.meta.url);
if (!existsSync(bundle)) {
  process.stderr.write('valhalla: not built yet: run `npm run build` in the Valhalla folder first\n');
  process.exitCode = 1;
} else {
  const { main } = await import(bundle.href);
  await main();
}
