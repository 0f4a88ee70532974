#!/usr/bin/env node
// Verifies a `valhalla audit export` file offline, with nothing but Node.js: no Valhalla code,
// no database. The rule it checks is the one stated in docs/audit.md:
//   hash = SHA-256 hex of the canonical JSON of {seq, at, actor, action, subject, details, prev_hash}
//   (keys sorted, no white space), prev_hash of entry 1 = 64 zeros, each prev_hash = the hash before,
//   seq = 1, 2, 3, … without gaps.
// Usage: node verify-audit-export.mjs EXPORT.jsonl [EXPECTED_HEAD_HASH]
// Exit 0 when intact (prints the count and head hash), 1 when broken (prints the first bad line).
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { entryHash } from './chain-rules.mjs';

const [file, expectedHead] = process.argv.slice(2);
if (!file) {
  console.error('usage: node verify-audit-export.mjs EXPORT.jsonl [EXPECTED_HEAD_HASH]');
  process.exit(2);
}
let prev = '0'.repeat(64);
let expectedSeq = 1;
let lineNo = 0;
for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
  lineNo++;
  if (line.trim() === '') continue;
  const e = JSON.parse(line);
  const hash = entryHash(e);
  const problem =
    e.seq !== expectedSeq
      ? `sequence gap: expected entry ${expectedSeq}, found ${e.seq}`
      : e.prev_hash !== prev
        ? 'prev_hash does not match the entry before'
        : hash !== e.hash
          ? 'contents do not match the hash'
          : null;
  if (problem) {
    console.log(`BROKEN at line ${lineNo} (entry ${e.seq}): ${problem}`);
    process.exit(1);
  }
  prev = e.hash;
  expectedSeq++;
}
if (expectedHead && expectedHead !== prev) {
  console.log(
    `BROKEN: the export ends at ${prev}, not at the expected head ${expectedHead} (entries missing at the end)`,
  );
  process.exit(1);
}
console.log(`intact: ${expectedSeq - 1} entries, head ${prev}`);
