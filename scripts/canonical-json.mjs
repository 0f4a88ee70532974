// Canonical JSON as the product hashes and signs it (src/policy/canonical-json.ts, docs/audit.md):
// object keys sorted, undefined members dropped, no white space. Shared by the offline verifiers.
export function canonical(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const keys = Object.keys(value)
    .filter((k) => value[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
}
