export { type ContactData, findContactData, REASON_WITHHELD, refuseContactData } from './detect.js';
export {
  MASKED_ATTRIBUTE,
  maskAttributes,
  maskCompany,
  maskEmail,
  maskExternalId,
  maskName,
  maskPhone,
} from './mask.js';
export { createPseudonymizer, type Pseudonymizer } from './pseudonym.js';
