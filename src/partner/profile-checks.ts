// The checks across the parts of a profile that its shape alone cannot make: a mapping's source
// exists and fits its type, no two mappings write the same place, OAuth2 has its token endpoint, the
// answer can be tied back to what was sent. Each problem names where in the file it is.
import {
  type FieldMapping,
  type PartnerProfile,
  PROFILE_LEAD_FIELDS,
  type ProfileAttribute,
  type ProfileLeadField,
  type ValueType,
} from './profile-schema.js';

/** One reason a profile is refused: where in the file (a zod-style path) and why. */
export interface ProfileProblem {
  path: (string | number)[];
  message: string;
}

/** What a source holds before conversion: `epoch-ms` is a whole number of milliseconds since 1970. */
type SourceKind = 'string' | 'number' | 'integer' | 'boolean' | 'epoch-ms';

const LEAD_FIELD_KINDS: Record<ProfileLeadField | 'lead_key', SourceKind> = {
  external_id: 'string',
  name: 'string',
  email: 'string',
  phone: 'string',
  company: 'string',
  score: 'integer',
  source_ts: 'epoch-ms',
  value: 'number',
  lead_key: 'string',
};

const KIND_WORDS: Record<SourceKind, string> = {
  string: 'text',
  number: 'a number',
  integer: 'a whole number',
  boolean: 'true or false',
  'epoch-ms': 'epoch milliseconds',
};

/** Which source kinds each written type accepts; a conversion not listed is refused at load. */
const ACCEPTS: Record<ValueType, readonly SourceKind[]> = {
  string: ['string', 'number', 'integer', 'boolean'],
  number: ['number', 'integer'],
  integer: ['integer'],
  boolean: ['boolean'],
  'iso-timestamp': ['epoch-ms', 'integer'],
  'epoch-ms': ['epoch-ms', 'integer'],
};

/** A constant written to a member named like this would put a credential in the profile. */
const SECRET_NAME = /secret|password|passwd|token|api[-_]?key|authorization|credential/i;

/** Every problem across the parts of a shape-valid profile; empty when it is consistent. */
export function crossCheckProfile(profile: PartnerProfile): ProfileProblem[] {
  return [...checkEndpoints(profile), ...checkFields(profile), ...checkAnswer(profile)];
}

function checkEndpoints(profile: PartnerProfile): ProfileProblem[] {
  const problems: ProfileProblem[] = [];
  const oauth2 = profile.auth.kind === 'oauth2_client_credentials';
  if (oauth2 && profile.endpoints.token === undefined) {
    problems.push({
      path: ['endpoints', 'token'],
      message: 'is missing: an oauth2_client_credentials profile needs its token endpoint ({ "path": … })',
    });
  }
  if (!oauth2 && profile.endpoints.token !== undefined) {
    problems.push({
      path: ['endpoints', 'token'],
      message: `only an oauth2_client_credentials profile has a token endpoint (auth.kind is ${profile.auth.kind})`,
    });
  }
  if (
    profile.auth.kind === 'api_key' &&
    profile.idempotency !== null &&
    profile.auth.header.toLowerCase() === profile.idempotency.header.toLowerCase()
  ) {
    problems.push({
      path: ['idempotency', 'header'],
      message: `is the same header as auth.header (${profile.auth.header})`,
    });
  }
  return problems;
}

/**
 * Names an attribute may not take: a lead's own columns in a lead file, and the names a mapping reads
 * them by. Such an attribute would keep a copy of a lead field, and one declared not personal would
 * show it unmasked.
 */
const LEAD_COLUMN_NAMES: ReadonlySet<string> = new Set([
  ...PROFILE_LEAD_FIELDS,
  'source_timestamp',
  'lead_key',
]);

function checkFields(profile: PartnerProfile): ProfileProblem[] {
  const problems: ProfileProblem[] = [];
  const attributes = new Map<string, ProfileAttribute>();
  for (const [i, attribute] of (profile.attributes ?? []).entries()) {
    if (attributes.has(attribute.name)) {
      problems.push({ path: ['attributes', i, 'name'], message: `"${attribute.name}" is declared twice` });
    }
    if (LEAD_COLUMN_NAMES.has(attribute.name)) {
      problems.push({
        path: ['attributes', i, 'name'],
        message: `"${attribute.name}" is a lead's own field, not an extra column`,
      });
    }
    attributes.set(attribute.name, attribute);
    if (attribute.maxLength !== undefined && attribute.type !== 'string') {
      problems.push({
        path: ['attributes', i, 'maxLength'],
        message: `applies to a string attribute only ("${attribute.name}" is ${attribute.type})`,
      });
    }
  }
  const targets = new Map<string, number>();
  for (const [i, field] of profile.fields.entries()) {
    const earlier = targets.get(field.to);
    if (earlier !== undefined) {
      problems.push({
        path: ['fields', i, 'to'],
        message: `"${field.to}" is already written by fields[${earlier}]`,
      });
    } else {
      for (const [other, j] of targets) {
        const [outer, inner] = other.length < field.to.length ? [other, field.to] : [field.to, other];
        if (inner.startsWith(`${outer}.`)) {
          problems.push({
            path: ['fields', i, 'to'],
            message: `"${field.to}" and "${other}" (fields[${j}]) overlap: "${outer}" cannot be a value and hold "${inner}"`,
          });
        }
      }
      targets.set(field.to, i);
    }
    problems.push(...checkSource(field, i, attributes));
  }
  return problems;
}

function checkSource(
  field: FieldMapping,
  i: number,
  attributes: ReadonlyMap<string, ProfileAttribute>,
): ProfileProblem[] {
  const at = (...rest: (string | number)[]) => ['fields', i, ...rest];
  if (typeof field.from === 'object') {
    const value = field.from.const;
    if (SECRET_NAME.test(field.to)) {
      return [
        {
          path: at('from'),
          message: `a constant written to "${field.to}" looks like a credential: secrets stay in the environment, never in a profile`,
        },
      ];
    }
    return constantFits(value, field.type)
      ? []
      : [{ path: at('from', 'const'), message: `is not a valid ${field.type} value` }];
  }
  let kind: SourceKind;
  if (field.from.startsWith('attributes.')) {
    const name = field.from.slice('attributes.'.length);
    const attribute = attributes.get(name);
    if (attribute === undefined) {
      return [{ path: at('from'), message: `attribute "${name}" is not declared in attributes` }];
    }
    kind = attribute.type;
  } else if (Object.hasOwn(LEAD_FIELD_KINDS, field.from)) {
    kind = LEAD_FIELD_KINDS[field.from as ProfileLeadField | 'lead_key'];
  } else {
    return [
      {
        path: at('from'),
        message: `"${field.from}" is not a lead field: one of ${PROFILE_LEAD_FIELDS.join(', ')}, lead_key, attributes.<name> or { "const": … }`,
      },
    ];
  }
  if (!ACCEPTS[field.type].includes(kind)) {
    const hint =
      kind === 'epoch-ms'
        ? ' (write it as iso-timestamp or epoch-ms)'
        : kind === 'number'
          ? ' (use number)'
          : '';
    return [
      {
        path: at('type'),
        message: `${field.from} holds ${KIND_WORDS[kind]}: it cannot be written as ${field.type}${hint}`,
      },
    ];
  }
  return [];
}

function constantFits(value: string | number | boolean, type: ValueType): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
    case 'epoch-ms':
      return typeof value === 'number' && Number.isSafeInteger(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'iso-timestamp':
      return typeof value === 'string' && !Number.isNaN(Date.parse(value));
  }
}

function checkAnswer(profile: PartnerProfile): ProfileProblem[] {
  const problems: ProfileProblem[] = [];
  const { answer } = profile;
  const seenStatuses = new Set<number>();
  for (const [i, status] of answer.httpStatuses.entries()) {
    if (seenStatuses.has(status)) {
      problems.push({ path: ['answer', 'httpStatuses', i], message: `${status} is listed twice` });
    }
    seenStatuses.add(status);
  }
  const lists = answer.results ?? [];
  const sent = new Set(profile.fields.map((f) => f.from).filter((f) => typeof f === 'string'));
  const paths = new Map<string, number>();
  for (const [i, list] of lists.entries()) {
    const at = (...rest: (string | number)[]) => ['answer', 'results', i, ...rest];
    const earlier = paths.get(list.path);
    if (earlier !== undefined) {
      problems.push({
        path: at('path'),
        message: `"${list.path}" is already read by answer.results[${earlier}]`,
      });
    }
    paths.set(list.path, i);
    if (list.match.by === 'index' && lists.length > 1) {
      problems.push({
        path: at('match'),
        message:
          'matching by index needs a single list of results, in request order (this answer has several)',
      });
    }
    if (list.match.by === 'field' && !sent.has(list.match.value)) {
      problems.push({
        path: at('match', 'value'),
        message: `no mapping sends ${list.match.value}, so the partner cannot echo it back`,
      });
    }
    const { status } = list;
    if ('path' in status) {
      const owner = new Map<string, string>();
      for (const outcome of ['accepted', 'duplicate', 'refused'] as const) {
        for (const value of status[outcome]) {
          const key = JSON.stringify(value);
          const first = owner.get(key);
          if (first !== undefined) {
            problems.push({
              path: at('status', outcome),
              message: `${key} is already listed under ${first}: a status value means one outcome`,
            });
          }
          owner.set(key, outcome);
        }
      }
      if (owner.size === 0) {
        problems.push({ path: at('status'), message: 'lists no status value at all' });
      }
    }
  }
  return problems;
}
