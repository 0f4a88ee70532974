export { type Heartbeat, type HeartbeatOptions, startHeartbeat, workerRunnerId } from './heartbeat.js';
export { createMetrics, type Metrics, type MetricsExposition, type WorkerProbe } from './metrics.js';
export { type MetricsServer, type MetricsServerOptions, startMetricsServer } from './metrics-server.js';
export { MODE_POLL_MS, type ModeAcknowledger, type ModeWatch, watchMode } from './mode-watch.js';
export {
  createRequestMonitor,
  errorRateRule,
  type MonitoredRequest,
  type RequestMonitor,
  requestClass,
} from './request-monitor.js';
export {
  crashBackoffMs,
  createSupervisor,
  type HeartbeatMessage,
  procRss,
  type Supervisor,
  type SupervisorEvent,
  type SupervisorOptions,
  type WorkerHandle,
} from './supervisor.js';
export { isWorkerState, WORKER_STATES, type WorkerState } from './worker-state.js';
