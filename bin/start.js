#!/usr/bin/env node
// `npm start`: build when the build is missing or older than its sources, then `valhalla init` and
// `valhalla run` in this one process, so that Ctrl-C reaches one service that stops cleanly (exit 0).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The bundle, the dashboard, and the compiled modules the upload's ingest thread runs.
const BUILT = [
  join(ROOT, 'dist', 'bundle', 'valhalla.js'),
  join(ROOT, 'dist', 'web', 'index.html'),
  join(ROOT, 'dist', 'src', 'app', 'ingest-thread.js'),
];
const SOURCES = [
  join(ROOT, 'src'),
  join(ROOT, 'web'),
  join(ROOT, 'package.json'),
  join(ROOT, 'package-lock.json'),
  join(ROOT, 'tsconfig.json'),
  join(ROOT, 'tsconfig.build.json'),
  join(ROOT, 'vite.cli.config.mjs'),
];

/** The newest modification time of a file or of any file under a folder. */
function newest(path) {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let latest = stat.mtimeMs;
  for (const entry of readdirSync(path)) latest = Math.max(latest, newest(join(path, entry)));
  return latest;
}

/** Why a build is needed, or null when the build is there and newer than every source. */
function buildNeeded() {
  const missing = BUILT.find((file) => !existsSync(file));
  if (missing) return `${missing} is missing`;
  const built = Math.min(...BUILT.map((file) => statSync(file).mtimeMs));
  const sources = Math.max(...SOURCES.map(newest));
  return sources > built ? 'the sources changed since the last build' : null;
}

async function start() {
  const why = buildNeeded();
  if (why !== null) {
    process.stderr.write(`npm start: building (${why})\n`);
    const npm = process.env.npm_execpath;
    const build = npm
      ? spawnSync(process.execPath, [npm, 'run', 'build'], { cwd: ROOT, stdio: 'inherit' })
      : spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    if (build.status !== 0) {
      process.stderr.write('npm start: the build failed\n');
      return build.status ?? 1;
    }
  }
  const { runCli } = await import(new URL('../dist/bundle/valhalla.js', import.meta.url).href);
  const io = {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
  };
  const init = await runCli(['init'], io);
  return init === 0 ? await runCli(['run'], io) : init;
}

process.exitCode = await start();
