import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkHostHeader } from '../policy/index.js';

export interface MetricsServerOptions {
  /** The exposition text (createMetrics().render). */
  render: () => Promise<string>;
  contentType: string;
  /** 0: any free port (tests); the chosen one is in the result. */
  port: number;
  /** Loopback by default: the metrics are for a local Prometheus or an SSH tunnel, not the network. */
  host?: string;
  /**
   * A name besides the loopback ones that the scrape may arrive under (a proxy's); by default none:
   * a page on another site resolving its name to 127.0.0.1 (DNS rebinding) is refused.
   */
  publicHost?: string | null;
  /** Told of a failed scrape (the client only gets a short 500); for the caller's log. */
  onError?: (error: unknown) => void;
}

export interface MetricsServer {
  /** The scrape URL, `http://host:port/metrics`. */
  readonly url: string;
  readonly port: number;
  /** Stop listening and drop idle keep-alive connections; safe to call twice. */
  close(): Promise<void>;
}

const HOST_REFUSALS = {
  HOST_MISSING: 'no Host header',
  HOST_DUPLICATE: 'more than one Host header',
  HOST_NOT_ALLOWED: 'metrics are served under the loopback names only',
} as const;

/** Serve `GET /metrics` over plain HTTP; every other path is a 404. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1';
  let closing = false;

  const server = createServer((request, response) => {
    void respond(request, response);
  });

  async function respond(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const host = checkHostHeader(request.rawHeaders, options.publicHost ?? null);
    if (!host.allowed) {
      send(response, host.status, 'text/plain; charset=utf-8', `refused: ${HOST_REFUSALS[host.code]}\n`);
      return;
    }
    const path = new URL(request.url ?? '/', 'http://metrics.invalid').pathname;
    if (request.method !== 'GET' || path !== '/metrics') {
      send(response, 404, 'text/plain; charset=utf-8', 'not found: GET /metrics\n');
      return;
    }
    let body: string;
    try {
      body = await options.render();
    } catch (error) {
      options.onError?.(error);
      // No message or stack from the error: it may name tables, hosts or connection strings.
      send(response, 500, 'text/plain; charset=utf-8', 'metrics unavailable: the scrape failed\n');
      return;
    }
    send(response, 200, options.contentType, body);
  }

  function send(response: ServerResponse, status: number, contentType: string, body: string): void {
    response.statusCode = status;
    response.setHeader('Content-Type', contentType);
    response.setHeader('Cache-Control', 'no-store');
    // A response finished while closing must not leave a keep-alive connection holding close() open.
    if (closing) response.setHeader('Connection', 'close');
    response.end(body);
  }

  server.listen(options.port, host);
  try {
    await once(server, 'listening');
  } catch (cause) {
    throw new Error(`cannot serve metrics on ${host}:${options.port}: ${(cause as Error).message}`, {
      cause,
    });
  }
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  let closed: Promise<void> | null = null;
  return {
    url: `http://${urlHost}:${port}/metrics`,
    port,
    close() {
      closed ??= new Promise<void>((resolve, reject) => {
        closing = true;
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeIdleConnections();
      });
      return closed;
    },
  };
}
