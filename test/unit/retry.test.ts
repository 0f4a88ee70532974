import { describe, expect, it } from 'vitest';
import {
  backoffDelayMs,
  classifyNetworkError,
  classifyStatus,
  isTlsVersionRefusal,
  parseRetryAfter,
  RETRYABLE_NETWORK_CODES,
  retriesLeft,
  STATUS_RULES,
  TLS_VERSION_REFUSAL_CODES,
  TLS_VERSION_REFUSAL_REASON,
} from '../../src/policy/index.js';
import { NOW } from '../support/world.js';

const POLICY_BACKOFF = [1, 2, 4, 8];

describe('classifyStatus', () => {
  it.each([
    [200, 'success'],
    [201, 'success'],
    [202, 'success'],
    [204, 'success'],
    [299, 'success'],
    [408, 'retryable'],
    [429, 'retryable'],
    [500, 'retryable'],
    [502, 'retryable'],
    [503, 'retryable'],
    [504, 'retryable'],
    [599, 'retryable'],
    [401, 'auth'],
    [400, 'permanent'],
    [403, 'permanent'],
    [404, 'permanent'],
    [409, 'permanent'],
    [413, 'permanent'],
    [422, 'permanent'],
    [418, 'permanent'],
    [451, 'permanent'],
    [499, 'permanent'],
    [301, 'permanent'],
    [302, 'permanent'],
    [304, 'permanent'],
    [100, 'permanent'],
    [0, 'permanent'],
    [99, 'permanent'],
    [600, 'permanent'],
    [200.5, 'permanent'],
  ])('HTTP %s is %s', (status, kind) => {
    expect(classifyStatus(status).kind).toBe(kind);
  });

  it('names every explicit row with a reason and a class other than success', () => {
    for (const [status, rule] of Object.entries(STATUS_RULES)) {
      expect(classifyStatus(Number(status))).toEqual(rule);
      expect(rule.reason.length).toBeGreaterThan(0);
    }
    expect(Object.keys(STATUS_RULES).map(Number).sort()).toEqual([
      400, 401, 403, 404, 408, 409, 413, 422, 429,
    ]);
  });

  it('marks only 401 as auth across the whole status range', () => {
    const auth = [];
    for (let status = 100; status <= 599; status++) {
      if (classifyStatus(status).kind === 'auth') auth.push(status);
    }
    expect(auth).toEqual([401]);
  });
});

describe('classifyNetworkError', () => {
  const retryable = [
    'ECONNRESET',
    'ECONNREFUSED',
    'ECONNABORTED',
    'ETIMEDOUT',
    'EPIPE',
    'EHOSTUNREACH',
    'ENETUNREACH',
    'ENETDOWN',
    'EAI_AGAIN',
    'ENOTFOUND',
    'UND_ERR_CONNECT_TIMEOUT',
    'UND_ERR_HEADERS_TIMEOUT',
    'UND_ERR_BODY_TIMEOUT',
    'UND_ERR_SOCKET',
    'UND_ERR_CLOSED',
    'UND_ERR_ABORTED',
  ];

  it.each(retryable)('%s is retryable', (code) => {
    expect(classifyNetworkError(code)).toEqual({ kind: 'retryable', reason: RETRYABLE_NETWORK_CODES[code] });
  });

  it('has exactly the listed retryable codes in its table', () => {
    expect(Object.keys(RETRYABLE_NETWORK_CODES).sort()).toEqual([...retryable].sort());
  });

  it.each(['ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'ERR_SSL_UNSUPPORTED_PROTOCOL'])(
    'TLS version refusal %s is permanent, with its own reason',
    (code) => {
      expect(isTlsVersionRefusal(code)).toBe(true);
      expect(classifyNetworkError(code)).toEqual({
        kind: 'permanent',
        reason: 'the partner does not offer TLS 1.2 or newer',
      });
      expect(TLS_VERSION_REFUSAL_REASON).toBe('the partner does not offer TLS 1.2 or newer');
    },
  );

  it('names exactly the measured TLS version refusals; a server not speaking TLS, or our own settings, are not', () => {
    expect([...TLS_VERSION_REFUSAL_CODES].sort()).toEqual([
      'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
      'ERR_SSL_UNSUPPORTED_PROTOCOL',
    ]);
    // Plain HTTP (or another protocol) on the port; our process offering no version at all.
    for (const code of ['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_NO_PROTOCOLS_AVAILABLE']) {
      expect(isTlsVersionRefusal(code)).toBe(false);
      expect(classifyNetworkError(code)).toEqual({
        kind: 'permanent',
        reason: 'TLS handshake or certificate refused',
      });
    }
    for (const code of [
      'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
      'CERT_HAS_EXPIRED',
      'ECONNRESET',
      'EPROTO',
      '',
      null,
      undefined,
      'toString',
    ]) {
      expect(isTlsVersionRefusal(code)).toBe(false);
    }
  });

  it.each([
    'ERR_SSL_WRONG_VERSION_NUMBER',
    'ERR_TLS_CERT_ALTNAME_INVALID',
    'CERT_HAS_EXPIRED',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'DEPTH_ZERO_SELF_SIGNED_CERT',
    'SELF_SIGNED_CERT_IN_CHAIN',
    'EPROTO',
  ])('TLS failure %s is permanent (never retried blindly)', (code) => {
    expect(classifyNetworkError(code)).toEqual({
      kind: 'permanent',
      reason: 'TLS handshake or certificate refused',
    });
  });

  it.each(['UND_ERR_RES_EXCEEDED_MAX_SIZE', 'UND_ERR_INVALID_ARG', 'EACCES', 'UNKNOWN', '', null, undefined])(
    'unknown or missing code %s is permanent',
    (code) => {
      expect(classifyNetworkError(code)).toEqual({
        kind: 'permanent',
        reason: 'unrecognised network failure',
      });
    },
  );

  it('does not treat inherited object keys as codes', () => {
    expect(classifyNetworkError('toString').kind).toBe('permanent');
    expect(classifyNetworkError('constructor').kind).toBe('permanent');
  });
});

describe('parseRetryAfter', () => {
  it('reads delta-seconds', () => {
    expect(parseRetryAfter('0', NOW)).toBe(0);
    expect(parseRetryAfter('1', NOW)).toBe(1000);
    expect(parseRetryAfter('120', NOW)).toBe(120_000);
    expect(parseRetryAfter(' 7 ', NOW)).toBe(7000);
    expect(parseRetryAfter(['3', '9'], NOW)).toBe(3000);
  });

  it('reads an IMF-fixdate, an RFC 850 date and an asctime date', () => {
    expect(parseRetryAfter(new Date(NOW + 30_000).toUTCString(), NOW)).toBe(30_000);
    expect(parseRetryAfter('Fri, 20 Nov 2026 12:00:05 GMT', NOW)).toBe(5000);
    expect(parseRetryAfter('Friday, 20-Nov-26 12:00:10 GMT', NOW)).toBe(10_000);
    expect(parseRetryAfter('Fri Nov 20 12:01:00 2026', NOW)).toBe(60_000);
    expect(parseRetryAfter('Fri Nov  6 12:00:00 2026', Date.parse('2026-11-06T11:59:58Z'))).toBe(2000);
  });

  it('never returns a negative wait for a date in the past', () => {
    expect(parseRetryAfter('Fri, 20 Nov 2026 11:59:00 GMT', NOW)).toBe(0);
    expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', NOW)).toBe(0);
  });

  it.each([
    undefined,
    null,
    '',
    '   ',
    '-5',
    '1.5',
    '1e3',
    'soon',
    '2026-11-20T12:00:05Z',
    'Fri, 20 Nov 2026 12:00:05',
    'Fri, 20 Nov 2026 12:00:05 PST',
    'Fri, 32 Foo 2026 12:00:05 GMT',
    '99999999999999999999',
  ])('returns null for %j', (header) => {
    expect(parseRetryAfter(header, NOW)).toBeNull();
  });
});

describe('backoffDelayMs', () => {
  it('follows the schedule 1 s, 2 s, 4 s, 8 s and repeats the last entry past its end', () => {
    expect([1, 2, 3, 4, 5, 9].map((n) => backoffDelayMs(n, POLICY_BACKOFF, null))).toEqual([
      1000, 2000, 4000, 8000, 8000, 8000,
    ]);
  });

  it('honours a longer Retry-After and ignores a shorter one', () => {
    expect(backoffDelayMs(1, POLICY_BACKOFF, 5000)).toBe(5000);
    expect(backoffDelayMs(3, POLICY_BACKOFF, 1000)).toBe(4000);
    expect(backoffDelayMs(2, POLICY_BACKOFF, 2000)).toBe(2000);
    expect(backoffDelayMs(2, POLICY_BACKOFF, 0)).toBe(2000);
    expect(backoffDelayMs(1, [0], 0)).toBe(0);
    expect(backoffDelayMs(1, [0.5], null)).toBe(500);
  });

  it('is max(schedule, Retry-After) for any input', () => {
    for (let retry = 1; retry <= 6; retry++) {
      for (const after of [null, 0, 999, 1000, 1001, 3000, 7999, 8000, 60_000]) {
        const scheduled = (POLICY_BACKOFF[Math.min(retry, 4) - 1] ?? 0) * 1000;
        expect(backoffDelayMs(retry, POLICY_BACKOFF, after)).toBe(Math.max(scheduled, after ?? 0));
      }
    }
  });

  it('refuses a retry number below 1 or not whole, and an empty or negative schedule', () => {
    expect(() => backoffDelayMs(0, POLICY_BACKOFF, null)).toThrow(RangeError);
    expect(() => backoffDelayMs(1.5, POLICY_BACKOFF, null)).toThrow(RangeError);
    expect(() => backoffDelayMs(1, [], null)).toThrow(RangeError);
    expect(() => backoffDelayMs(1, [1, -2], null)).toThrow(RangeError);
    expect(() => backoffDelayMs(1, [Number.NaN], null)).toThrow(RangeError);
  });
});

describe('retriesLeft', () => {
  it('counts the first send as an attempt: 1 + maxRetries attempts in all', () => {
    expect([0, 1, 2, 3, 4, 5].map((attempts) => retriesLeft(attempts, 3))).toEqual([3, 3, 2, 1, 0, 0]);
    expect(retriesLeft(1, 0)).toBe(0);
  });

  it('refuses negative or fractional counts', () => {
    expect(() => retriesLeft(-1, 3)).toThrow(RangeError);
    expect(() => retriesLeft(1, -1)).toThrow(RangeError);
    expect(() => retriesLeft(1.5, 3)).toThrow(RangeError);
  });
});
