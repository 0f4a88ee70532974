#!/usr/bin/env node
// Checks that the documentation stands alone and that docs/policy.md points at things that exist:
//
// - every relative link in README.md and docs/*.md resolves to a file inside the repository (and,
//   for a link to a Markdown heading, to that heading);
// - every repository path quoted in docs/policy.md (`src/…`, `test/…`, a migration file) exists;
// - nothing in the repository refers a reader to the team's own notes (DESIGN.md, ../shared);
// - every test it quotes as `test file` › "fragment of the title" holds that fragment (a table whose
//   header says "Proved by (`file` unless named)" quotes its own file's titles as bare "fragments").
//
// Usage: node scripts/check-docs.mjs [repository root]. Prints each problem; exit 1 if any, else 0.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
const problems = [];

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading) {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, '')
    .replace(/[^\p{L}\p{N}\s-]/gu, '')
    .replace(/\s/g, '-');
}

function anchors(file) {
  const seen = new Map();
  const result = new Set();
  let fenced = false;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const heading = !fenced && /^#{1,6}\s+(.*)$/.exec(line);
    if (!heading) continue;
    const base = slug(heading[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    result.add(n === 0 ? base : `${base}-${n}`);
  }
  return result;
}

function checkLinks(file) {
  const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
  for (const [, target] of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: …
    const [path, anchor] = target.split('#');
    const where = path === '' ? file : resolve(dirname(file), decodeURI(path));
    const name = relative(root, file);
    if (where !== root && !where.startsWith(root + sep)) {
      problems.push(`${name}: link ${target} leaves the repository`);
      continue;
    }
    if (!existsSync(where)) {
      problems.push(`${name}: link ${target}: no such file`);
      continue;
    }
    if (anchor && where.endsWith('.md') && statSync(where).isFile() && !anchors(where).has(anchor))
      problems.push(`${name}: link ${target}: no such heading`);
  }
}

const docs = join(root, 'docs');
for (const file of [
  join(root, 'README.md'),
  ...readdirSync(docs)
    .filter((f) => f.endsWith('.md'))
    .map((f) => join(docs, f)),
])
  checkLinks(file);

const POLICY = join(docs, 'policy.md');
const policy = readFileSync(POLICY, 'utf8');
const PATH = /`((?:src|test|deploy|config|docs|scripts|bench|web|bin)\/[^`\s]*)`/g;
for (const [, path] of policy.matchAll(PATH))
  if (!existsSync(join(root, path))) problems.push(`docs/policy.md: ${path}: no such file`);
for (const [, file] of policy.matchAll(/`(\d{4}-[a-z0-9-]+\.ts)`/g))
  if (!existsSync(join(root, 'src/store/migrations', file)))
    problems.push(`docs/policy.md: ${file}: no such migration in src/store/migrations`);

const sources = new Map();
function holds(file, fragment) {
  if (!sources.has(file))
    sources.set(file, existsSync(join(root, file)) ? readFileSync(join(root, file), 'utf8') : null);
  const text = sources.get(file);
  // "…" marks a fragment cut short: each piece must be there.
  return text !== null && fragment.split('…').every((piece) => text.includes(piece.trim()));
}

let tableFile = null;
policy.split('\n').forEach((line, index) => {
  const inTable = line.startsWith('|');
  if (!inTable) tableFile = null;
  const header = /Proved by \(`(test\/[^`]+)` unless named\)/.exec(line);
  if (header) {
    tableFile = header[1];
    return;
  }
  for (const cell of inTable ? line.split('|') : [line]) {
    let file = null;
    for (const token of cell.matchAll(/`(test\/[^`]+\.ts)`|(›\s*)?"([^"]+)"/g)) {
      if (token[1]) {
        file = token[1];
        continue;
      }
      const [, , arrow, fragment] = token;
      // A bare quotation is a title only in a table with a default file, before any named one.
      const of = arrow ? (file ?? tableFile) : file === null ? tableFile : null;
      if (of === null) continue;
      if (!holds(of, fragment)) problems.push(`docs/policy.md:${index + 1}: ${of} has no test "${fragment}"`);
    }
  }
});

// "Where the names live": each row's names are defined at the top level of its module, and every
// name the page quotes on its own that is so defined somewhere in src has a row.
const INDEX_HEADING = '## Where the names live';
const indexAt = policy.indexOf(INDEX_HEADING);
if (indexAt === -1) problems.push(`docs/policy.md: no "${INDEX_HEADING}" section`);
else {
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) files.push(relative(root, path).split(sep).join('/'));
    }
  };
  walk(join(root, 'src'));
  const texts = new Map(files.map((file) => [file, readFileSync(join(root, file), 'utf8')]));
  const definition = (name) =>
    new RegExp(
      `^(?:export\\s+)?(?:declare\\s+)?(?:async\\s+)?(?:function\\*?|const|let|class|interface|type|enum)\\s+${name}\\b(?!\\s*[,}])`,
      'm',
    );
  const listed = new Set();
  for (const row of policy.slice(indexAt).matchAll(/^\|\s*`(src\/[^`]+)`\s*\|(.*)\|\s*$/gm)) {
    const [, file, cell] = row;
    for (const [, name] of cell.matchAll(/`([A-Za-z_][A-Za-z0-9_]*)`/g)) {
      listed.add(name);
      if (!texts.has(file)) problems.push(`docs/policy.md: ${file}: no such module`);
      else if (!definition(name).test(texts.get(file)))
        problems.push(`docs/policy.md: ${name} is not defined in ${file}`);
    }
  }
  const quoted = new Set(
    [...policy.slice(0, indexAt).matchAll(/`([A-Za-z_][A-Za-z0-9_]*)`/g)].map((m) => m[1]),
  );
  for (const name of quoted) {
    if (!/[A-Z]/.test(name) || listed.has(name)) continue;
    const where = [...texts].find(([, text]) => definition(name).test(text));
    if (where) problems.push(`docs/policy.md: ${name} (${where[0]}) is missing from "${INDEX_HEADING}"`);
  }
}

// The team's design notes are not shipped: nothing the repository holds refers a reader to them.
const OUTSIDE = /DESIGN\.md|\.\.\/shared\b/;
function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return walk(path);
    return /\.(ts|mjs|cjs|js|md|css|html|json|yml|yaml)$/.test(entry.name) ? [path] : [];
  });
}
for (const top of ['src', 'test', 'bench', 'scripts', 'docs', 'web', 'deploy', 'config', 'bin']) {
  const dir = join(root, top);
  if (!existsSync(dir)) continue;
  for (const file of walk(dir)) {
    if (file === fileURLToPath(import.meta.url)) continue;
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (OUTSIDE.test(line))
        problems.push(`${relative(root, file)}:${i + 1}: refers to notes outside the repository`);
    });
  }
}
for (const file of ['README.md', 'Dockerfile', 'package.json']) {
  const path = join(root, file);
  if (!existsSync(path)) continue;
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (OUTSIDE.test(line)) problems.push(`${file}:${i + 1}: refers to notes outside the repository`);
    });
}

for (const problem of problems) console.log(problem);
process.exit(problems.length > 0 ? 1 : 0);
