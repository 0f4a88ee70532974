import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { type Dashboard, isAppError } from '../../app/index.js';
import { isIngestFileError, type SourceFormat } from '../../ingest/index.js';
import { ApiError, anyObject } from '../http.js';
import { apiActor } from './actions.js';

/**
 * The largest upload. Checked against Content-Length before a byte is read, so one over the limit
 * changes nothing; an upload without a length (chunked) is refused for the same reason: its rows
 * would be stored as they stream in, before the limit could be seen to be passed.
 */
export const INGEST_BODY_LIMIT_BYTES = 10 * 1024 * 1024;
const STREAM_TYPES: Record<string, { format: SourceFormat; jsonArray: boolean }> = {
  'text/csv': { format: 'csv', jsonArray: false },
  'application/x-ndjson': { format: 'jsonl', jsonArray: false },
  'application/jsonl': { format: 'jsonl', jsonArray: false },
  // Each element is read, validated and counted exactly like a JSONL row.
  'application/json': { format: 'jsonl', jsonArray: true },
};

/** `POST /api/ingest`: the CLI's ingest (validation, dedup, row outcomes, audit) over HTTP. */
export function registerIngestRoutes(server: FastifyInstance, deps: { dashboard: Dashboard }): void {
  // A scope of its own: here every body stays a stream (application/json included), handed to the
  // upload thread as it arrives; the other routes keep the server's parsers and its small limit.
  // Nothing of an upload is parsed or held whole on this process's event loop, which must answer
  // pause, rollback and /healthz within 100 ms whatever is uploaded.
  void server.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(Object.keys(STREAM_TYPES), (request, payload, done) => {
      const length = request.headers['content-length'];
      if (length === undefined) {
        done(
          new ApiError(411, 'LENGTH_REQUIRED', 'send the upload with a Content-Length (at most 10 MB)'),
          undefined,
        );
      } else if (Number(length) > INGEST_BODY_LIMIT_BYTES) {
        done(
          new ApiError(413, 'BODY_TOO_LARGE', `an upload is at most ${INGEST_BODY_LIMIT_BYTES} bytes`),
          undefined,
        );
      } else {
        done(null, payload);
      }
    });
    // Any other type is refused before its body is read.
    scope.addContentTypeParser('*', (request, _payload, done) => {
      done(unsupported(mediaType(request.headers['content-type'])), undefined);
    });

    scope.post(
      '/api/ingest',
      {
        config: { role: 'operator' },
        schema: {
          tags: ['ingest'],
          summary:
            'ingest leads: text/csv (with a header), application/x-ndjson (one lead per line) or application/json (an array of leads); at most 10 MB, with a Content-Length; stopped early (422 TOO_MANY_REJECTS) when 1,000 rows are rejected and they are most of those read',
          response: {
            200: anyObject(
              'the run: read = accepted + duplicate + rejected, the states accepted leads start in, and the first rejected rows (line, field, reason)',
            ),
          },
        },
      },
      async (request) => {
        const type = mediaType(request.headers['content-type']);
        const kind = STREAM_TYPES[type];
        if (kind === undefined || request.body === undefined) throw unsupported(type);
        try {
          return await deps.dashboard.ingestUpload({
            body: request.body as Readable,
            ...kind,
            actor: apiActor(request.principal!.name),
          });
        } catch (error) {
          if (isIngestFileError(error)) {
            if (error.code === 'NOT_AN_ARRAY') {
              throw new ApiError(
                400,
                'VALIDATION',
                'an application/json upload must be an array of lead objects',
              );
            }
            throw new ApiError(422, error.code, error.message);
          }
          if (isAppError(error) && error.code === 'UPLOADS_BUSY') {
            throw new ApiError(503, error.code, error.message);
          }
          throw error;
        }
      },
    );
  });
}

const mediaType = (header: string | undefined) => (header ?? '').split(';')[0]!.trim().toLowerCase();

function unsupported(type: string): ApiError {
  return new ApiError(
    415,
    'UNSUPPORTED_MEDIA_TYPE',
    `send text/csv, application/x-ndjson or application/json, not ${type || 'no type'}`,
  );
}
