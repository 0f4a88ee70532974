/** Masking for display: enough to recognise a lead, never enough to contact one. */

/** `john.doe@example.com` → `j***@example.com`. */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf('@');
  if (at <= 0) return '***';
  return `${email[0]}***@${email.slice(at + 1)}`;
}

/** Any phone → `***-***-1234` (the last four digits only). */
export function maskPhone(phone: string | null | undefined): string {
  if (!phone) return '';
  const digits = phone.replace(/\D/g, '');
  if (digits.length < 7) return '***';
  return `***-***-${digits.slice(-4)}`;
}

/** `Jane Q. Doe` → `J*** Q*** D***`. */
export function maskName(name: string): string {
  return name
    .split(/\s+/)
    .filter(Boolean)
    .map((part) => `${Array.from(part)[0] ?? ''}***`)
    .join(' ');
}

/** `Acme Industries` → `Acm***`: a company can carry a person's name. */
export function maskCompany(company: string | null | undefined): string {
  if (!company) return '';
  const chars = Array.from(company.trim());
  // Never the whole name: a short one (`Li`, `Bob`) shows one character fewer than it has.
  return `${chars.slice(0, Math.min(3, chars.length - 1)).join('')}***`;
}

/** `CRM-0042-7781` → `***7781` (the last four characters only; a short one is `***`). */
export function maskExternalId(externalId: string | null | undefined): string {
  if (!externalId) return '';
  const chars = Array.from(externalId.trim());
  if (chars.length < 8) return '***';
  return `***${chars.slice(-4).join('')}`;
}

/** What a masked attribute shows: nothing of its value (an attribute may be a single word or a number). */
export const MASKED_ATTRIBUTE = '***';

type AttributeValue = string | number | boolean | null;

/**
 * A lead's attributes for display, in their stored order: an attribute declared as not personal data
 * (`pii: false`) shows as it is; every other one is masked, personal data or of a class no longer known
 * (stored under a profile that declared it, read under one that does not). A null stays null.
 */
export function maskAttributes(
  attributes: Readonly<Record<string, AttributeValue>> | null,
  declared: readonly { readonly name: string; readonly pii: boolean }[],
): Record<string, AttributeValue> {
  if (attributes === null) return {};
  const notPersonal = new Set(declared.filter((a) => !a.pii).map((a) => a.name));
  // fromEntries defines own members: a stored `__proto__` key stays a key, never the prototype.
  return Object.fromEntries(
    Object.entries(attributes).map(([name, value]) => [
      name,
      value === null || notPersonal.has(name) ? value : MASKED_ATTRIBUTE,
    ]),
  );
}
