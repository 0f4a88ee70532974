export {
  type AlertChannel,
  AlertChannelError,
  type AlertChannelErrorCode,
  createAlertChannels,
  emailBody,
  emailSubject,
  isAlertChannelError,
  type OutgoingAlert,
  slackPayload,
} from './channels.js';
export {
  ALERT_MAX_ATTEMPTS,
  ALERT_RETRY_DELAYS_MS,
  type AlertDispatcher,
  alertRetryDelay,
  createAlertDispatcher,
  type DispatchResult,
  toOutgoing,
} from './dispatcher.js';
export {
  ALERT_SEVERITY,
  type AlertEvent,
  type AlertInput,
  type AlertRecorder,
  CHANNEL_MIN_SEVERITY,
  type ChannelName,
  channelsFor,
  configuredChannels,
  createAlertRecorder,
} from './record.js';
export { sendTestAlert, type TestAlertResult } from './test-alert.js';
