/**
 * Input suite: where a credential can sit in a printed value. A secret (holding a marker) is placed
 * in a URL's user-info, in a query or fragment parameter named like a secret (any case and spelling),
 * in a keyword DSN, or as an API token pasted anywhere in a VALHALLA_API_TOKENS entry; the one masking
 * rule (`maskSecrets`, `describeTokenEntry`) must hide it, and so must `config show` and every refusal
 * of the real configuration loader.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Config,
  describeConfig,
  isConfigError,
  isSecretParameterName,
  loadConfig,
  maskSecrets,
} from '../../src/config/index.js';
import { fcParams } from '../support/lead-fuzz.js';
import { tempDir } from '../support/tmp.js';

const cwd = tempDir();
const MARKER = 'Zq9SecretMark';
const HASH = 'a'.repeat(64);

/** A secret's text: the marker among characters a password or token may hold (no parameter separator). */
const secret = fc
  .tuple(
    fc.string({ unit: fc.constantFrom(...'abcXYZ019-._~!$()*+,:@/%#'.split('')), maxLength: 8 }),
    fc.string({ unit: fc.constantFrom(...'abcXYZ019-._~!$()*+,:@/%#'.split('')), maxLength: 8 }),
  )
  .map(([a, b]) => `${a}${MARKER}${b}`);
/** A secret that can stand in a query value: what `&`, `;` and white space do not split. */
const querySecret = secret.map((s) => s.replace(/[&;\s]/g, ''));

const secretName = fc.constantFrom(
  'password',
  'PASSWORD',
  'Passwd',
  'pwd',
  'pass',
  'passphrase',
  'client_secret',
  'clientSecret',
  'client-secret',
  'access_token',
  'refresh_token',
  'id_token',
  'token',
  'api_key',
  'apiKey',
  'api-key',
  'X-Amz-Signature',
  'sig',
  'sslkey',
  'sslpassword',
  'auth',
  'authorization',
  'credentials',
  'session',
  'pass%77ord',
);
const plainParam = fc.constantFrom(
  'schema=tenant_a',
  'sslmode=require',
  'application_name=valhalla',
  'a=b',
  'x=',
);
const separator = fc.constantFrom('&', ';');
const scheme = fc.constantFrom('postgres', 'postgresql', 'https', 'http', 'smtp', 'smtps', 'mysql');
const host = fc.constantFrom(
  'db.example',
  'partner.example.test',
  '127.0.0.1:5432',
  '[::1]:25',
  'mail.example:587',
);

/** A URL or DSN with a secret somewhere; `host` is what must still be readable after masking. */
const placement = fc.oneof(
  fc
    .record({ scheme, user: fc.constantFrom('valhalla', 'ops', 'u', ''), secret, host, tail: plainParam })
    .map(({ scheme, user, secret, host, tail }) => ({
      where: 'user-info',
      text: `${scheme}://${user}:${secret}@${host}/db?${tail}`,
      host,
    })),
  fc
    .record({
      scheme,
      host,
      before: fc.array(plainParam, { maxLength: 3 }),
      after: fc.array(plainParam, { maxLength: 3 }),
      name: secretName,
      secret: querySecret,
      sep: separator,
    })
    .map(({ scheme, host, before, after, name, secret, sep }) => ({
      where: 'query',
      text: `${scheme}://${host}/path?${[...before, `${name}=${secret}`, ...after].join(sep)}`,
      host,
    })),
  fc.record({ host, name: secretName, secret: querySecret }).map(({ host, name, secret }) => ({
    where: 'fragment',
    text: `https://${host}/cb#state=1&${name}=${secret}`,
    host,
  })),
  fc.record({ host, name: secretName, secret: querySecret }).map(({ host, name, secret }) => ({
    where: 'keyword DSN',
    text: `host=${host} ${name}=${secret} dbname=valhalla`,
    host,
  })),
);

/** An API token pasted somewhere in VALHALLA_API_TOKENS, among good entries. */
const tokenPlacement = fc
  .record({
    token: querySecret.map((s) => `vh_${s.replace(/[:,]/g, '')}`),
    shape: fc.constantFrom(
      (t: string) => t,
      (t: string) => `alice:operator:${t}`,
      (t: string) => `${t}:operator:${HASH}`,
      (t: string) => `alice:${t}:${HASH}`,
      (t: string) => `alice:operator:${HASH}:${t}`,
      (t: string) => `${t}:admin`,
      (t: string) => ` ${t} `,
      (t: string) => `alice:${t}`,
    ),
    before: fc.boolean(),
  })
  .map(({ token, shape, before }) =>
    [...(before ? [`ok:viewer:${HASH}`] : []), shape(token), `ci:admin:${'b'.repeat(64)}`].join(','),
  );

const hidden = (text: string) => !text.toLowerCase().includes(MARKER.toLowerCase());

/** What the operator sees: `config show` of a loaded configuration, or the refusal's message and issues. */
function shown(env: Record<string, string>): string {
  let config: Config;
  try {
    config = loadConfig({ env, cwd });
  } catch (error) {
    expect(isConfigError(error), String(error)).toBe(true);
    return `${(error as Error).message}\n${JSON.stringify((error as { issues: unknown }).issues)}`;
  }
  return JSON.stringify(describeConfig(config));
}

describe('the masking rule over secret placements', () => {
  it('maskSecrets hides a secret in the user-info, a secret-named parameter or a keyword DSN, and keeps the host', () => {
    fc.assert(
      fc.property(placement, ({ text, host }) => {
        const masked = maskSecrets(text);
        expect(hidden(masked), `${text} → ${masked}`).toBe(true);
        // An `@` after the host makes `host:port` read as user-info: masking too much is allowed there.
        const after = text.slice(text.indexOf(host) + host.length);
        if (!after.includes('@')) expect(masked).toContain(host);
      }),
      fcParams(2_000, 20270101),
    );
  });

  it('config show and every refusal hide them, in each variable a URL or DSN is given in', () => {
    const variable = fc.constantFrom(
      'VALHALLA_DATABASE_URL',
      'VALHALLA_PARTNER_URL',
      'VALHALLA_PARTNER_TOKEN_URL',
      'VALHALLA_SMTP_URL',
      'VALHALLA_SLACK_WEBHOOK_URL',
      'VALHALLA_DATA_DIR',
      'VALHALLA_LOG_FILE',
    );
    fc.assert(
      fc.property(variable, placement, (name, { text }) => {
        const env: Record<string, string> = { [name]: text };
        if (name === 'VALHALLA_SMTP_URL') env.VALHALLA_ALERT_EMAIL_TO = 'ops@example.com';
        if (name === 'VALHALLA_LOG_FILE') env.VALHALLA_LOG_LEVEL = 'silent';
        const out = shown(env);
        expect(hidden(out), out).toBe(true);
      }),
      fcParams(300, 20270102),
    );
  });

  it('a token pasted anywhere in VALHALLA_API_TOKENS is never echoed', () => {
    fc.assert(
      fc.property(tokenPlacement, (tokens) => {
        const out = shown({ VALHALLA_API_TOKENS: tokens });
        expect(hidden(out), out).toBe(true);
      }),
      fcParams(300, 20270103),
    );
  });

  it('keeps what is not a secret: the user, the host, plain parameters', () => {
    expect(maskSecrets('postgres://valhalla:pa@ss/w@db.example/x?password=p&schema=a;sslmode=require')).toBe(
      'postgres://valhalla:***@db.example/x?password=***&schema=a;sslmode=require',
    );
    expect(maskSecrets('https://idp.example/oauth/token?client_id=valhalla&client_secret=s3cr#et')).toBe(
      'https://idp.example/oauth/token?client_id=valhalla&client_secret=***',
    );
    expect(maskSecrets('/srv/valhalla/data')).toBe('/srv/valhalla/data');
    expect(['schema', 'sslmode', 'client_id', 'user', 'host', 'dbname'].some(isSecretParameterName)).toBe(
      false,
    );
  });
});
