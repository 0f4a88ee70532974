// Partner profiles: one validated JSON file that says how to speak to a partner, the request a batch
// becomes under it, and how the partner's reply is read. Pure: no network, no I/O beyond the file.
export {
  type AnswerProblem,
  type LeadAnswer,
  type LeadAnswerOutcome,
  MAX_ANSWER_REASON_CHARS,
  MAX_REASON_CHARS,
  oneLine,
  type PartnerAnswer,
  readPartnerAnswer,
} from './answer.js';
export {
  AUTH_CREDENTIALS,
  type AuthKind,
  type Credential,
  STATIC_CREDENTIAL,
  STATIC_CREDENTIAL_RULE,
  STATIC_CREDENTIALS,
} from './credentials.js';
export {
  isPartnerProfileError,
  PartnerProfileError,
  type PartnerProfileErrorCode,
  type PartnerProfileIssue,
} from './errors.js';
export { loadPartnerProfile, parsePartnerProfile, profileSha256 } from './load-profile.js';
export type {
  FieldMapping,
  LeadOutcome,
  PartnerProfile,
  ProfileAttribute,
  ProfileLeadField,
  ResultList,
  ValueType,
} from './profile-schema.js';
export {
  type AttributeValue,
  buildPartnerRequest,
  type PartnerRequest,
  type ProfileLead,
  type RequestBuild,
  type RequestProblem,
} from './request.js';
export {
  DEFAULT_PROFILE_NAME,
  profileFileFor,
  SHIPPED_PROFILES_DIR,
  shippedDefaultProfile,
  shippedProfile,
  shippedProfileNames,
  shippedProfileSha256,
} from './shipped.js';
