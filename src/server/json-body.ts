import type { FastifyInstance } from 'fastify';
import { ApiError } from './http.js';

/**
 * Deepest nesting a JSON body of the admin API may have. Its bodies are a reason, a list of ids or a
 * signed document (three levels); an upload is streamed and read elsewhere (routes/ingest.ts).
 */
export const MAX_JSON_BODY_DEPTH = 32;

/**
 * Fastify's own JSON parser (prototype poisoning refused), behind a nesting check. JSON.parse takes
 * any depth, but what reads the value afterwards may recurse (JSON.stringify, validation): a 64 KB
 * body of `[` is 65,536 levels, and its RangeError ("Maximum call stack size exceeded") reached the
 * client. Refused here with a 400 naming the limit, before anything reads it.
 */
export function registerJsonBodyParser(server: FastifyInstance): void {
  const parse = server.getDefaultJsonParser('error', 'error');
  server.removeContentTypeParser('application/json');
  server.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    if (nestingDepth(text) > MAX_JSON_BODY_DEPTH) {
      done(
        new ApiError(400, 'VALIDATION', `the body is nested deeper than ${MAX_JSON_BODY_DEPTH} levels`),
        undefined,
      );
      return;
    }
    parse(request, text, done);
  });
}

/** The deepest bracket nesting of JSON text, strings skipped; one linear pass, no recursion. */
export function nestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > deepest) deepest = depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}
