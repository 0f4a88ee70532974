/** An error the API reports as `{ error: { code, message } }` with its status. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const SESSION_COOKIE = 'valhalla_session';
/** A dashboard sign-in lasts a working day; then the token is asked for again. */
export const SESSION_TTL_MS = 8 * 3_600_000;

/** Paging and listing parameters shared by the read routes. */
export const limitParam = (max: number, fallback: number) =>
  ({ type: 'integer', minimum: 1, maximum: max, default: fallback }) as const;
export const cursorParam = { type: 'integer', minimum: 1 } as const;
export const reasonBody = { type: 'string', minLength: 1, maxLength: 500 } as const;
/** A response described for the OpenAPI document, serialised as it is. */
export const anyObject = (description: string) =>
  ({ description, type: 'object', additionalProperties: true }) as const;
