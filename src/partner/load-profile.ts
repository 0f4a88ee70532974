// A partner profile read from its file and validated once: the shape, then the checks across its
// parts. Every refusal names the file, the path inside it and why; nothing is repaired or clamped.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { canonicalJson, deepFreeze } from '../policy/index.js';
import { PartnerProfileError, type PartnerProfileIssue } from './errors.js';
import { crossCheckProfile } from './profile-checks.js';
import { type PartnerProfile, partnerProfileSchema } from './profile-schema.js';

/** A profile is a page of JSON; anything far larger is not one. */
const MAX_PROFILE_BYTES = 256 * 1024;
const WHOLE_FILE = '(the whole file)';

/** Read, parse and validate the profile at `path`; the result is frozen. Throws `PartnerProfileError`. */
export function loadPartnerProfile(path: string): PartnerProfile {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new PartnerProfileError(
      'PROFILE_UNREADABLE',
      path,
      [{ path: WHOLE_FILE, problem: `cannot be read (${code})` }],
      { cause },
    );
  }
  if (bytes.length > MAX_PROFILE_BYTES) {
    throw new PartnerProfileError('PROFILE_UNREADABLE', path, [
      {
        path: WHOLE_FILE,
        problem: `is ${bytes.length} bytes, above the ${MAX_PROFILE_BYTES} a profile may have`,
      },
    ]);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (cause) {
    throw new PartnerProfileError(
      'PROFILE_NOT_JSON',
      path,
      [{ path: WHOLE_FILE, problem: 'is not valid UTF-8' }],
      { cause },
    );
  }
  return parsePartnerProfile(text, path);
}

/**
 * Parse and validate a profile's text; `source` names it in messages (its file). The result is
 * frozen. Throws `PartnerProfileError` listing every problem found.
 */
export function parsePartnerProfile(text: string, source: string): PartnerProfile {
  const body = text.startsWith('\ufeff') ? text.slice(1) : text;
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (cause) {
    throw new PartnerProfileError(
      'PROFILE_NOT_JSON',
      source,
      [{ path: WHOLE_FILE, problem: `is not JSON: ${jsonErrorWhere(body, cause)}` }],
      { cause },
    );
  }
  const parsed = partnerProfileSchema.safeParse(json, { reportInput: true });
  if (!parsed.success) {
    throw new PartnerProfileError('PROFILE_INVALID', source, parsed.error.issues.flatMap(issueOf));
  }
  const problems = crossCheckProfile(parsed.data);
  if (problems.length > 0) {
    throw new PartnerProfileError(
      'PROFILE_INVALID',
      source,
      problems.map((p) => ({ path: formatPath(p.path), problem: p.message })),
    );
  }
  return deepFreeze(parsed.data);
}

/** The SHA-256 (hex) of a profile's canonical JSON: the same profile hashes the same however it was written. */
export function profileSha256(profile: PartnerProfile): string {
  return createHash('sha256').update(canonicalJson(profile)).digest('hex');
}

/** `['fields', 3, 'from']` → `fields[3].from` (zod's own notation); the empty path is the whole file. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? WHOLE_FILE : z.core.toDotPath(path as PropertyKey[]);
}

function issueOf(issue: z.core.$ZodIssue): PartnerProfileIssue[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({
      path: formatPath([...issue.path, key]),
      problem: 'is not a key of a profile here (refused; check its spelling)',
    }));
  }
  // JSON has no undefined: a value zod reports as undefined (or leaves out) was not given at all.
  const missing = issue.code === 'invalid_type' && issue.input === undefined;
  return [{ path: formatPath(issue.path), problem: missing ? 'is missing (required)' : issue.message }];
}

/** Where JSON.parse stopped, as line and column (1-based), with its reason. */
function jsonErrorWhere(text: string, cause: unknown): string {
  const message = cause instanceof Error ? cause.message : String(cause);
  const lineColumn = /line (\d+) column (\d+)/.exec(message);
  const reason = message.replace(/\s*(?:in JSON )?at position \d+.*$|\s*\(line \d+ column \d+\)$/, '');
  if (lineColumn) return `${reason} at line ${lineColumn[1]}, column ${lineColumn[2]}`;
  const position = /position (\d+)/.exec(message);
  const offset = position ? Number(position[1]) : text.length;
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  return `${reason} at line ${line}, column ${column}`;
}
