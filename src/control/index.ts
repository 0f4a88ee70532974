export { createLimitsInForce, type LimitsInForce, type LimitsReload } from './limits.js';
export { changeOperatorMode, type OperatorModeChange } from './mode-change.js';
export { checkPolicyChange, type PolicyCheck } from './policy-change.js';
export { rearmRefusal } from './rearm.js';
