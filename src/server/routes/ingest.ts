import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { Dashboard } from '../../app/index.js';
import { isIngestFileError, type SourceFormat } from '../../ingest/index.js';
import { ApiError, anyObject } from '../http.js';
import { apiActor } from './actions.js';

/** An upload is read whole before any row is stored, so one over the limit changes nothing. */
export const INGEST_BODY_LIMIT_BYTES = 10 * 1024 * 1024;
const UPLOAD_TYPES = ['text/csv', 'application/x-ndjson', 'application/jsonl'];

/**
 * One element as a JSONL line. An element nested too deeply to serialise (JSON.stringify runs out
 * of stack) becomes a line the reader rejects as not an object, as that element sent as NDJSON is.
 */
function jsonLine(element: unknown): string {
  try {
    return JSON.stringify(element) ?? 'null';
  } catch {
    return '"(nested too deeply to read)"';
  }
}

/** `POST /api/ingest`: the CLI's ingest (validation, dedup, row outcomes, audit) over HTTP. */
export function registerIngestRoutes(server: FastifyInstance, deps: { dashboard: Dashboard }): void {
  server.addContentTypeParser(
    UPLOAD_TYPES,
    // The route's own bodyLimit applies; other routes keep the server's small one.
    { parseAs: 'buffer' },
    (_request, body, done) => done(null, body),
  );

  server.post(
    '/api/ingest',
    {
      bodyLimit: INGEST_BODY_LIMIT_BYTES,
      config: { role: 'operator' },
      schema: {
        tags: ['ingest'],
        summary:
          'ingest leads: text/csv (with a header), application/x-ndjson (one lead per line) or application/json (an array of leads); at most 10 MB',
        response: {
          200: anyObject(
            'the run: read = accepted + duplicate + rejected, the states accepted leads start in, and the first rejected rows (line, field, reason)',
          ),
        },
      },
    },
    async (request) => {
      const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      let format: SourceFormat;
      let text: Buffer;
      if (type === 'text/csv') {
        format = 'csv';
        text = request.body as Buffer;
      } else if (type === 'application/x-ndjson' || type === 'application/jsonl') {
        format = 'jsonl';
        text = request.body as Buffer;
      } else if (type === 'application/json') {
        if (!Array.isArray(request.body)) {
          throw new ApiError(
            400,
            'VALIDATION',
            'an application/json upload must be an array of lead objects',
          );
        }
        // One line per element: each is then read, validated and counted exactly like a JSONL row.
        format = 'jsonl';
        text = Buffer.from(request.body.map((lead) => `${jsonLine(lead)}\n`).join(''));
      } else {
        throw new ApiError(
          415,
          'UNSUPPORTED_MEDIA_TYPE',
          `send text/csv, application/x-ndjson or application/json, not ${type || 'no type'}`,
        );
      }
      try {
        return await deps.dashboard.ingestUpload({
          body: Readable.from([text]),
          format,
          actor: apiActor(request.principal!.name),
        });
      } catch (error) {
        if (isIngestFileError(error)) throw new ApiError(422, error.code, error.message);
        throw error;
      }
    },
  );
}
