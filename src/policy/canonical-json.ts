/**
 * Canonical JSON: object keys sorted by UTF-16 code unit (JavaScript's default string order; the same
 * as code point order for the ASCII keys used here), no whitespace, `undefined` members dropped.
 * The policy hash and the audit chain hash this form, so the same data always hashes the same,
 * whatever order its keys were written in. Only JSON-safe values are accepted: a Date, Map, Set or
 * class instance is refused rather than silently hashed as `{}`.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`canonical JSON cannot hold ${value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(',')}]`;
  if (typeof value === 'object') {
    const prototype = Object.getPrototypeOf(value);
    if (prototype !== Object.prototype && prototype !== null) {
      throw new TypeError(
        `canonical JSON holds plain objects only, not a ${value.constructor?.name ?? 'class instance'}`,
      );
    }
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
}
