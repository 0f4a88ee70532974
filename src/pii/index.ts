export { maskCompany, maskEmail, maskName, maskPhone } from './mask.js';
export { createPseudonymizer, type Pseudonymizer } from './pseudonym.js';
