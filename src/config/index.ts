/**
 * The configuration folder's front door: loading the Config from the environment and the policy
 * file, describing it for operators, and the settings, paths and errors its callers use.
 */
export type { DatabaseTarget } from './database.js';
export { describeConfig } from './describe.js';
export { ConfigError, type ConfigIssue, isConfigError } from './errors.js';
export { type LoadConfigOptions, loadConfig } from './load.js';
export { describeTokenEntry, isSecretParameterName, looksLikeApiToken, MASK, maskSecrets } from './mask.js';
export type { AlertSettings, MetricsSettings } from './monitoring.js';
export {
  type PartnerSettings,
  type ProfileIdentity,
  type ProfileSettings,
  profileIdentity,
} from './partner.js';
export { DEFAULT_POLICY_FILE, PACKAGE_ROOT } from './paths.js';
export type { Phase } from './phase.js';
export {
  loadPolicyFile,
  MANIFEST_LIMIT_FIELDS,
  type PolicyDocument,
  policyHash,
  policySchema,
} from './policy-file.js';
export { API_ROLES, type ApiRole, type ApiTokenEntry, type ServerSettings } from './server.js';
export type { Config, DedupKeyKind } from './types.js';
export { KNOWN_VARIABLES, type SettingSource, type VariableName } from './variables.js';
