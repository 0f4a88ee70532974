/**
 * Local stand-ins for the alert channels' far ends: an HTTP receiver in place of Slack's incoming
 * webhook, and a real SMTP server (smtp-server). Both listen on 127.0.0.1 and record what arrives.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';

export interface SlackReceiver {
  webhookUrl: string;
  /** How it answers the next requests: 200 ok, 500, or never (the socket stays open until close). */
  mode: 'ok' | 'fail' | 'hang';
  /** Delay before answering (ms), to make two dispatchers overlap. */
  delayMs: number;
  requests: { path: string; contentType: string | undefined; body: string; at: number }[];
  close(): Promise<void>;
}

/** An HTTP receiver on 127.0.0.1 answering like a Slack webhook; `webhookUrl` ends with `path`. */
export async function startSlackReceiver(path: string): Promise<SlackReceiver> {
  const receiver: SlackReceiver = {
    webhookUrl: '',
    mode: 'ok',
    delayMs: 0,
    requests: [],
    close: async () => undefined,
  };
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      receiver.requests.push({
        path: req.url ?? '',
        contentType: req.headers['content-type'],
        body: Buffer.concat(chunks).toString('utf8'),
        at: performance.now(),
      });
      const mode = receiver.mode;
      if (mode === 'hang') return;
      setTimeout(() => {
        if (mode === 'fail') res.writeHead(500, { 'content-type': 'text/plain' }).end('internal_error');
        else res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      }, receiver.delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  receiver.webhookUrl = `http://127.0.0.1:${port}${path}`;
  let closed = false;
  receiver.close = async () => {
    if (closed) return;
    closed = true;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return receiver;
}

export interface ReceivedMail {
  from: string;
  to: string[];
  raw: string;
  subject: string;
  /** The body, transfer-decoded (quoted-printable or base64): what a reader sees. */
  text: string;
  at: number;
}

export interface MailServer {
  url: string;
  port: number;
  messages: ReceivedMail[];
  close(): Promise<void>;
}

/** A real SMTP server on 127.0.0.1 (any port) that keeps every message it receives. */
export async function startSmtpServer(options: Partial<SMTPServerOptions> = {}): Promise<MailServer> {
  const messages: ReceivedMail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    closeTimeout: 500,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const mailFrom = session.envelope.mailFrom;
        messages.push({
          from: mailFrom === false ? '' : mailFrom.address,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw,
          ...decodeMail(raw),
          at: performance.now(),
        });
        callback();
      });
    },
    ...options,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.server.address() as AddressInfo;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { url: `smtp://127.0.0.1:${port}`, port, messages, close };
}

/** Just enough MIME for a single text part: the Subject (encoded words) and the transfer-decoded body. */
export function decodeMail(raw: string): { subject: string; text: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const body = raw.slice(split + 4);
  const header = (name: string) =>
    head
      .split('\r\n')
      .find((line) => line.toLowerCase().startsWith(`${name.toLowerCase()}:`))
      ?.slice(name.length + 1)
      .trim() ?? '';
  const subject = header('Subject')
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_, _charset: string, enc: string, data: string) =>
      enc.toUpperCase() === 'B'
        ? Buffer.from(data, 'base64').toString('utf8')
        : quotedPrintable(data.replaceAll('_', ' ')),
    );
  const encoding = header('Content-Transfer-Encoding').toLowerCase();
  const text =
    encoding === 'base64'
      ? Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8')
      : encoding === 'quoted-printable'
        ? quotedPrintable(body.replace(/=\r\n/g, ''))
        : body;
  return { subject, text: text.replace(/\r\n/g, '\n') };
}

function quotedPrintable(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const hex = text.slice(i + 1, i + 3);
    if (text[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(text[i]!, 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}
