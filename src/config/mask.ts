/**
 * The one masking rule for anything that may carry a credential when it is printed: a URL or a DSN
 * (`config show`, a refusal, a log line) and an API token entry. Masking too much is the safe way to
 * be wrong: a value is cut from its secret's first character to the end of the parameter.
 */

export const MASK = '***';

/**
 * Parameter names that carry a credential, compared without case, `-`, `_` or `.`:
 * `password`, `pwd`, `client_secret`, `access_token`, `api-key`, `sslkey`, `X-Amz-Signature`, ...
 */
const SECRET_NAME_PARTS = [
  'pass',
  'pwd',
  'secret',
  'token',
  'key',
  'auth',
  'sig',
  'credential',
  'session',
  'cookie',
];

/** Whether a query or DSN parameter of this name is a secret's. */
export function isSecretParameterName(name: string): boolean {
  let decoded = name;
  try {
    decoded = decodeURIComponent(name);
  } catch {
    // A broken escape: judge the name as written.
  }
  const plain = decoded.toLowerCase().replace(/[^a-z0-9]/g, '');
  return SECRET_NAME_PARTS.some((part) => plain.includes(part));
}

/**
 * `scheme:` (with `//`, `/` or neither: a URL inside a resolved path loses one), the user, a colon:
 * the password follows, up to the last `@`.
 */
const USER_INFO = /([a-z][a-z0-9+.-]*:\/{0,2}[^:/@\s]*:)[\s\S]*@/i;
/** Where a parameter starts: the value's start, or after `?`, `&`, `;`, `#` or white space (a keyword DSN). */
const PARAMETER = /(^|[?&;#\s])([^\s=&;#?]+)=/g;

/**
 * A URL, DSN or any text holding one, with every credential replaced by `***`: the password of the
 * user-info (from the user's colon to the last `@`: a password may hold an unencoded `@` or `/`), and
 * the value of every parameter named like a secret (to the next parameter, or the end).
 */
export function maskSecrets(text: string): string {
  // Each credential is a range of the text; overlapping ranges are merged, then each is replaced.
  const ranges: [start: number, end: number][] = [];
  const userInfo = USER_INFO.exec(text);
  if (userInfo !== null) {
    const start = userInfo.index + (userInfo[1]?.length ?? 0);
    ranges.push([start, userInfo.index + userInfo[0].length - 1]);
  }
  const starts: { name: string; at: number; valueAt: number }[] = [];
  for (const match of text.matchAll(PARAMETER)) {
    const name = match[2] ?? '';
    const at = (match.index ?? 0) + (match[1]?.length ?? 0);
    starts.push({ name, at, valueAt: at + name.length + 1 });
  }
  starts.forEach((start, i) => {
    if (!isSecretParameterName(start.name)) return;
    // The value runs to the separator before the next parameter: a `#`, `@` or space inside a secret
    // value stays inside it (masked) unless a `name=` follows it.
    const next = starts[i + 1];
    ranges.push([start.valueAt, next === undefined ? text.length : Math.max(start.valueAt, next.at - 1)]);
  });
  if (ranges.length === 0) return text;
  ranges.sort((a, b) => a[0] - b[0]);
  let out = '';
  let from = 0;
  for (const [start, end] of ranges) {
    if (end < from) continue;
    out += text.slice(from, Math.max(from, start)) + (start >= from ? MASK : '');
    from = Math.max(from, end);
  }
  return out + text.slice(from);
}

const TOKEN_ENTRY_NAME = /^[A-Za-z0-9._@-]{1,64}$/;

/**
 * How an entry of VALHALLA_API_TOKENS may be named when printed: by its position, with its holder's
 * name only when the entry has the shape `name:role:hash` and the name cannot be the token itself
 * (`vh_…`, pasted in the wrong place). Nothing else of an entry is ever shown.
 */
export function describeTokenEntry(entry: string, position: number): string {
  const parts = entry.split(':');
  const name = parts[0] ?? '';
  const showable = parts.length === 3 && TOKEN_ENTRY_NAME.test(name) && !looksLikeApiToken(name);
  return `entry ${position} (${showable ? name : 'not shown'})`;
}

/** A token made by `valhalla tokens create`, or anything starting like one. */
export function looksLikeApiToken(text: string): boolean {
  return /^\s*vh_/i.test(text);
}
