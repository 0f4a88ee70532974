import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createLogger, type Logger, type LoggerOptions } from '../../src/log/index.js';
import {
  createPseudonymizer,
  MASKED_ATTRIBUTE,
  maskAttributes,
  maskCompany,
  maskEmail,
  maskExternalId,
  maskName,
  maskPhone,
} from '../../src/pii/index.js';
import { tempDir } from '../support/tmp.js';

describe('maskEmail', () => {
  it.each([
    ['john.doe@example.com', 'j***@example.com'],
    ['jane@example.com', 'j***@example.com'],
    ['a@b.co', 'a***@b.co'],
    ['first.last+tag@sub.example.org', 'f***@sub.example.org'],
    // The last @ splits local part and domain.
    ['"odd@local"@example.com', '"***@example.com'],
    ['not-an-email', '***'],
    ['@example.com', '***'],
    ['', '***'],
  ])('%j → %j', (email, masked) => {
    expect(maskEmail(email)).toBe(masked);
  });

  it('never shows the local part beyond its first character', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9._-]{2,30}$/), fc.domain(), (local, domain) => {
        const masked = maskEmail(`${local}@${domain}`);
        expect(masked).toBe(`${local[0]}***@${domain}`);
        expect(masked).not.toContain(`${local}@`);
      }),
    );
  });
});

describe('maskPhone', () => {
  it.each([
    ['+1 (555) 123-1234', '***-***-1234'],
    ['555.867.5309', '***-***-5309'],
    ['+44 20 7946 0958', '***-***-0958'],
    ['5551234', '***-***-1234'],
    ['123456', '***'],
    ['', ''],
    [null, ''],
    [undefined, ''],
  ])('%j → %j', (phone, masked) => {
    expect(maskPhone(phone)).toBe(masked);
  });

  it('shows at most the last four digits of any phone', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^\+?[0-9 ().-]{7,25}$/), (phone) => {
        const masked = maskPhone(phone);
        expect(masked.replace(/\D/g, '').length).toBeLessThanOrEqual(4);
        const digits = phone.replace(/\D/g, '');
        if (digits.length >= 7) expect(masked).toBe(`***-***-${digits.slice(-4)}`);
      }),
    );
  });
});

describe('maskName', () => {
  it.each([
    ['Jane Q. Doe', 'J*** Q*** D***'],
    ['John', 'J***'],
    ['  Mary   Ann  Smith ', 'M*** A*** S***'],
    ['Émile Zoë', 'É*** Z***'],
    ['李 小龍', '李*** 小***'],
    ['', ''],
  ])('%j → %j', (name, masked) => {
    expect(maskName(name)).toBe(masked);
  });

  it('keeps only the first character of each part', () => {
    fc.assert(
      fc.property(
        fc.array(fc.stringMatching(/^[A-Za-z]{2,12}$/), { minLength: 1, maxLength: 4 }),
        (parts) => {
          const masked = maskName(parts.join(' '));
          expect(masked).toBe(parts.map((p) => `${p[0]}***`).join(' '));
          for (const part of parts) expect(masked).not.toContain(part);
        },
      ),
    );
  });
});

describe('maskExternalId', () => {
  it.each([
    ['CRM-0042-7781', '***7781'],
    ['SYNTHETIC-1-14', '***1-14'],
    ['ABC1234', '***'],
    ['', ''],
    [null, ''],
    [undefined, ''],
  ])('%j → %j', (externalId, masked) => {
    expect(maskExternalId(externalId)).toBe(masked);
  });

  it('never shows a whole external id', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9-]{1,40}$/), (externalId) => {
        expect(maskExternalId(externalId)).not.toContain(externalId);
      }),
    );
  });
});

describe('maskCompany', () => {
  it.each([
    ['Acme Industries', 'Acm***'],
    ['Smith & Sons LLC', 'Smi***'],
    ['IBM', 'IB***'],
    ['Li', 'L***'],
    ['X', '***'],
    ['', ''],
    [null, ''],
    [undefined, ''],
  ])('%j → %j', (company, masked) => {
    expect(maskCompany(company)).toBe(masked);
  });

  it('never shows a whole company name, however short', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z][A-Za-z ]{0,20}[A-Za-z]$|^[A-Za-z]$/), (company) => {
        expect(maskCompany(company)).not.toContain(company);
      }),
    );
  });
});

describe('maskAttributes', () => {
  const DECLARED = [
    { name: 'title', pii: true },
    { name: 'country', pii: false },
    { name: 'seats', pii: false },
    { name: 'consent', pii: true },
  ];

  it('shows an attribute declared not personal as it is, masks a personal one, keeps null', () => {
    expect(
      maskAttributes(
        { title: 'Head of Sales', country: 'DE', seats: 12, consent: true, note: null },
        DECLARED,
      ),
    ).toEqual({ title: MASKED_ATTRIBUTE, country: 'DE', seats: 12, consent: MASKED_ATTRIBUTE, note: null });
  });

  it('masks an attribute whose class is not known (no longer declared), whatever its type', () => {
    expect(maskAttributes({ legacy: 'Ragnhild', age: 41, vip: false }, DECLARED)).toEqual({
      legacy: MASKED_ATTRIBUTE,
      age: MASKED_ATTRIBUTE,
      vip: MASKED_ATTRIBUTE,
    });
    expect(maskAttributes({ country: 'DE' }, [])).toEqual({ country: MASKED_ATTRIBUTE });
  });

  it('a lead without attributes shows none; a stored __proto__ key stays a plain key', () => {
    expect(maskAttributes(null, DECLARED)).toEqual({});
    const masked = maskAttributes(JSON.parse('{"__proto__": "x", "country": "DE"}'), DECLARED);
    expect(Object.getPrototypeOf(masked)).toBe(Object.prototype);
    expect(Object.entries(masked)).toEqual([
      ['__proto__', MASKED_ATTRIBUTE],
      ['country', 'DE'],
    ]);
  });

  it('never shows any part of a personal value', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (value) => {
        const masked = maskAttributes({ title: value }, DECLARED);
        expect(masked.title).toBe(MASKED_ATTRIBUTE);
      }),
    );
  });
});

describe('createPseudonymizer', () => {
  const SECRET_A = 'pseudonym-secret-a-0123456789abcdef01234567';
  const SECRET_B = 'pseudonym-secret-b-0123456789abcdef01234567';

  it('gives a stable 32-hex dedup key for the same secret and identity', () => {
    const a1 = createPseudonymizer(SECRET_A);
    const a2 = createPseudonymizer(SECRET_A);
    const key = a1.dedupKey('email', 'jane.doe@example.com');
    expect(key).toMatch(/^[0-9a-f]{32}$/);
    expect(a2.dedupKey('email', 'jane.doe@example.com')).toBe(key);
    expect(a1.dedupKey('email', 'jane.doe@example.com')).toBe(key);
  });

  it('keeps the derivation fixed: a change would let every stored lead be ingested again', () => {
    const p = createPseudonymizer('known-answer-secret-0123456789abcdef01234567');
    // The first 16 bytes of the keyed hash releases before 0015 stored whole
    // (f273d4b5716338233a930185823af5c2644e8349e87985c20ccd036947f6842c): the keys stored before are
    // those bytes, so a lead stored then is still found.
    expect(p.dedupKey('email', 'jane.doe@example.com')).toBe('f273d4b5716338233a930185823af5c2');
    expect(p.fingerprint).toBe('b6300730e286988aaacc523b07e3b5e0');
  });

  it('depends on the secret', () => {
    const a = createPseudonymizer(SECRET_A);
    const b = createPseudonymizer(SECRET_B);
    expect(b.dedupKey('email', 'jane.doe@example.com')).not.toBe(a.dedupKey('email', 'jane.doe@example.com'));
    expect(b.fingerprint).not.toBe(a.fingerprint);
    expect(a.fingerprint).toMatch(/^[0-9a-f]{32}$/);
  });

  it('gives different keys for different identities', () => {
    const p = createPseudonymizer(SECRET_A);
    expect(p.dedupKey('email', 'jane.doe@example.com')).not.toBe(p.dedupKey('email', 'john.doe@example.com'));
  });

  it('gives a different dedup key for the same value under another kind', () => {
    const p = createPseudonymizer(SECRET_A);
    expect(p.dedupKey('email', 'X-1001')).not.toBe(p.dedupKey('external_id', 'X-1001'));
    expect(p.dedupKey('external_id', 'X-1001')).toMatch(/^[0-9a-f]{32}$/);
  });

  it('derives the pseudonym from the dedup key, without the identity in it', () => {
    const p = createPseudonymizer(SECRET_A);
    const key = p.dedupKey('email', 'jane.doe@example.com');
    const pseudonym = p.pseudonym(key);
    expect(pseudonym).toBe(`L-${key.slice(0, 20)}`);
    expect(pseudonym).toMatch(/^L-[0-9a-f]{20}$/);
    expect(p.pseudonym(key)).toBe(pseudonym);
    expect(pseudonym).not.toContain('jane');
    expect(p.pseudonym(p.dedupKey('email', 'john.doe@example.com'))).not.toBe(pseudonym);
  });

  it('never puts the secret or the identity into its outputs', () => {
    fc.assert(
      fc.property(fc.emailAddress(), (email) => {
        const p = createPseudonymizer(SECRET_A);
        const key = p.dedupKey('email', email);
        for (const out of [key, p.pseudonym(key), p.fingerprint]) {
          expect(out).not.toContain(email);
          expect(out).not.toContain(SECRET_A);
        }
      }),
      { numRuns: 50 },
    );
  });
});

describe('the logger keeps PII out of log lines', () => {
  const RAW = {
    email: 'ragnhild.logged@leak.example',
    phone: '+47 912 00 111',
    name: 'Ragnhild Logged',
    company: 'Logged AS',
  };

  function logLines(write: (logger: Logger) => void, level: LoggerOptions['level'] = 'trace'): string {
    const file = join(tempDir(), 'valhalla.log');
    const logger = createLogger({ level, file });
    write(logger);
    logger.flush();
    return readFileSync(file, 'utf8');
  }

  it('redacts lead fields at the top level and one level down', () => {
    const text = logLines((logger) => {
      logger.info({ ...RAW, runId: 1 }, 'top level');
      logger.trace(
        { lead: RAW, row: { ...RAW }, raw: 'ragnhild.logged@leak.example,+47 912 00 111' },
        'nested',
      );
      logger.info({
        attributes: { title: 'Ragnhild Title' },
        lead: { attributes: { title: 'Ragnhild Title' } },
      });
    });
    expect(text).not.toContain('Ragnhild Title');
    expect(text).toContain('"runId":1');
    expect(text).toContain('[redacted]');
    for (const value of Object.values(RAW)) expect(text).not.toContain(value);
    expect(text).not.toContain('ragnhild.logged');
  });

  it('logs an error by type, code and message only, under err or error', () => {
    const parseError = Object.assign(new Error('Invalid Closing Quote'), {
      code: 'CSV_INVALID_CLOSING_QUOTE',
      record: [RAW.name, RAW.email, RAW.phone],
      lines: 3,
    });
    const text = logLines((logger) => {
      logger.error({ err: parseError }, 'as err');
      logger.error({ error: parseError }, 'as error');
    });
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0].err).toEqual({
      type: 'Error',
      code: 'CSV_INVALID_CLOSING_QUOTE',
      message: 'Invalid Closing Quote',
    });
    expect(lines[1].error).toEqual({
      type: 'Error',
      code: 'CSV_INVALID_CLOSING_QUOTE',
      message: 'Invalid Closing Quote',
    });
    for (const value of Object.values(RAW)) expect(text).not.toContain(value);
  });

  it('honours the level: nothing below it is written', () => {
    const text = logLines((logger) => {
      logger.debug({ runId: 2 }, 'hidden');
      logger.warn({ runId: 3 }, 'shown');
    }, 'info');
    expect(text).not.toContain('hidden');
    expect(text).toContain('shown');
  });
});
