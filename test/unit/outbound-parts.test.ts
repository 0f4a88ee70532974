import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock/index.js';
import {
  ConcurrencyGate,
  checkPartnerUrl,
  createPartnerClient,
  isOutboundError,
  type PartnerClientOptions,
} from '../../src/outbound/index.js';
import { isLoopbackHost } from '../../src/policy/index.js';
import { NOW } from '../support/world.js';

describe('partner URLs', () => {
  it.each(['localhost', '127.0.0.1', '127.5.6.7', '127.255.255.255', '[::1]'])('%s is loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });

  it.each([
    '10.0.0.1',
    '128.0.0.1',
    'localhost.evil.example',
    '127.0.0.1.nip.io',
    '[::2]',
    'example.com',
    '0.0.0.0',
  ])('%s is not loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(false);
  });

  it('accepts https:// always and http:// only to loopback when allowed', () => {
    expect(checkPartnerUrl('u', 'https://partner.example/v1', false).href).toBe('https://partner.example/v1');
    expect(checkPartnerUrl('u', 'http://127.0.0.1:8080', true).host).toBe('127.0.0.1:8080');
    expect(checkPartnerUrl('u', 'http://[::1]:8080', true).hostname).toBe('[::1]');
    expect(checkPartnerUrl('u', 'http://localhost:1', true).hostname).toBe('localhost');
    // A numeric form of 127.0.0.1 is normalised by the URL parser before the check.
    expect(checkPartnerUrl('u', 'http://2130706433/', true).hostname).toBe('127.0.0.1');
  });

  it.each([
    ['http://10.1.2.3/', true, 'INSECURE_URL'],
    ['http://partner.example/', true, 'INSECURE_URL'],
    ['http://localhost.evil.example/', true, 'INSECURE_URL'],
    ['http://127.0.0.1/', false, 'INSECURE_URL'],
    ['ftp://127.0.0.1/', true, 'INVALID_URL'],
    ['not a url', true, 'INVALID_URL'],
    ['https://user:pw@partner.example/', false, 'INVALID_URL'],
    ['https://partner.example/?token=x', false, 'INVALID_URL'],
  ] as const)('refuses %s (allow loopback http: %s) with %s', (url, allow, code) => {
    let caught: unknown;
    try {
      checkPartnerUrl('partner base URL', url, allow);
    } catch (error) {
      caught = error;
    }
    expect(isOutboundError(caught, code)).toBe(true);
    expect(String((caught as Error).message)).not.toContain('pw');
  });
});

describe('createPartnerClient options', () => {
  const base: PartnerClientOptions = {
    baseUrl: 'https://partner.example',
    tokenUrl: 'https://auth.partner.example/token',
    clientId: 'id',
    clientSecret: 'secret',
    allowPlainHttpLoopback: false,
    rateLimitPerSecond: 5,
    rateWindowMs: 1000,
    maxConcurrent: 5,
    timeoutMs: 30_000,
    clock: new ManualClock(NOW),
  };

  it('creates and closes (twice) a client at the hard caps', async () => {
    const client = createPartnerClient(base);
    await client.close();
    await client.close();
    await expect(client.sendBatch({ batchKey: 'b1', leads: [lead()] })).rejects.toMatchObject({
      code: 'CLIENT_CLOSED',
    });
    await expect(client.health()).rejects.toMatchObject({ code: 'CLIENT_CLOSED' });
  });

  it.each([
    [{ maxConcurrent: 6 }, /maxConcurrent/],
    [{ maxConcurrent: 0 }, /maxConcurrent/],
    [{ timeoutMs: 30_001 }, /timeoutMs/],
    [{ timeoutMs: 0 }, /timeoutMs/],
    [{ rateLimitPerSecond: 5.5 }, /rateLimitPerSecond/],
    [{ rateLimitPerSecond: 0 }, /rateLimitPerSecond/],
    [{ rateWindowMs: 500 }, /above the hard cap/],
    [{ rateMarginMs: 0 }, /allows 10 in one second/],
    [{ maxResponseBytes: 0 }, /maxResponseBytes/],
    [{ clientSecret: '' }, /clientSecret/],
    [{ tokenRefreshMarginMs: -1 }, /tokenRefreshMarginMs/],
    [{ caPem: 'not a pem' }, /caPem/],
    [{ caPem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' }, /does not parse/],
  ] as const)('refuses %j', (override, message) => {
    let caught: unknown;
    try {
      createPartnerClient({ ...base, ...override });
    } catch (error) {
      caught = error;
    }
    expect(isOutboundError(caught, 'INVALID_OPTIONS')).toBe(true);
    expect((caught as Error).message).toMatch(message);
  });

  it('refuses http:// to a host that is not loopback at creation, even when loopback http is allowed', () => {
    expect(() =>
      createPartnerClient({ ...base, baseUrl: 'http://partner.example', allowPlainHttpLoopback: true }),
    ).toThrow(expect.objectContaining({ code: 'INSECURE_URL' }));
    expect(() =>
      createPartnerClient({ ...base, tokenUrl: 'http://10.0.0.7/token', allowPlainHttpLoopback: true }),
    ).toThrow(expect.objectContaining({ code: 'INSECURE_URL' }));
  });

  it('refuses malformed batches before sending anything', async () => {
    const client = createPartnerClient(base);
    try {
      for (const batch of [
        { batchKey: '', leads: [lead()] },
        { batchKey: 'has space', leads: [lead()] },
        { batchKey: 'k'.repeat(256), leads: [lead()] },
        { batchKey: 'ok', leads: [] },
        { batchKey: 'ok', leads: Array.from({ length: 101 }, lead) },
      ]) {
        await expect(client.sendBatch(batch)).rejects.toMatchObject({ code: 'INVALID_BATCH' });
      }
    } finally {
      await client.close();
    }
  });
});

describe('ConcurrencyGate', () => {
  it('never lets more than max through, hands slots over FIFO, and refuses after close', async () => {
    const gate = new ConcurrencyGate(2);
    const order: string[] = [];
    const r1 = await gate.acquire();
    const r2 = await gate.acquire();
    expect(gate.inFlight).toBe(2);
    const third = gate.acquire().then((release) => {
      order.push('third');
      return release;
    });
    const fourth = gate.acquire().then((release) => {
      order.push('fourth');
      return release;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual([]);
    r1();
    r1();
    const r3 = await third;
    expect(gate.inFlight).toBe(2);
    expect(order).toEqual(['third']);
    r2();
    const r4 = await fourth;
    expect(order).toEqual(['third', 'fourth']);
    r3();
    r4();
    expect(gate.inFlight).toBe(0);
    const blockerA = await gate.acquire();
    const blockerB = await gate.acquire();
    const queued = gate.acquire();
    gate.close();
    gate.close();
    await expect(queued).rejects.toMatchObject({ code: 'CLIENT_CLOSED' });
    await expect(gate.acquire()).rejects.toMatchObject({ code: 'CLIENT_CLOSED' });
    blockerA();
    blockerB();
    expect(gate.inFlight).toBe(0);
  });

  it('an aborted waiter leaves the queue and does not take a slot', async () => {
    const gate = new ConcurrencyGate(1);
    const release = await gate.acquire();
    const abort = new AbortController();
    const waiting = gate.acquire(abort.signal);
    abort.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'CANCELLED' });
    release();
    expect(gate.inFlight).toBe(0);
    expect(() => new ConcurrencyGate(0)).toThrow(/maxConcurrent/);
  });
});

function lead() {
  return {
    lead_key: 'lead-key',
    external_id: null,
    name: 'Ada Example',
    email: 'ada@example.com',
    phone: null,
    company: null,
    score: 80,
    source_ts: Date.parse('2026-11-19T00:00:00Z'),
    value: 100,
    attributes: {},
  };
}
