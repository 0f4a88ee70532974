// The credentials each auth kind needs, named once: the client option that carries each one and the
// variable an operator sets it with. The configuration, the app and the client all read this table.
import type { PartnerProfile } from './profile-schema.js';

export type AuthKind = PartnerProfile['auth']['kind'];

/** One credential: the partner client's option (and the configuration's field) and its variable. */
export interface Credential {
  option: 'tokenUrl' | 'clientId' | 'clientSecret' | 'apiKey' | 'bearerToken';
  variable: string;
  /** Sent as it is in a header on every request (`STATIC_CREDENTIAL` says what it may be). */
  static: boolean;
}

export const AUTH_CREDENTIALS: Readonly<Record<AuthKind, readonly Credential[]>> = {
  oauth2_client_credentials: [
    { option: 'tokenUrl', variable: 'VALHALLA_PARTNER_TOKEN_URL', static: false },
    { option: 'clientId', variable: 'VALHALLA_PARTNER_CLIENT_ID', static: false },
    { option: 'clientSecret', variable: 'VALHALLA_PARTNER_CLIENT_SECRET', static: false },
  ],
  api_key: [{ option: 'apiKey', variable: 'VALHALLA_PARTNER_API_KEY', static: true }],
  bearer: [{ option: 'bearerToken', variable: 'VALHALLA_PARTNER_BEARER_TOKEN', static: true }],
};

/** The static credentials of every auth kind: checked wherever they are set, whatever the profile. */
export const STATIC_CREDENTIALS: readonly Credential[] = Object.values(AUTH_CREDENTIALS)
  .flat()
  .filter((c) => c.static);

/**
 * What a static credential (an API key, a bearer token) may be: it travels in a header, so a line
 * break would end the header and a space would not fit a bearer token.
 */
export const STATIC_CREDENTIAL = /^[\x21-\x7e]{1,4096}$/;
export const STATIC_CREDENTIAL_RULE = 'must be 1 to 4,096 printable ASCII characters without spaces';
