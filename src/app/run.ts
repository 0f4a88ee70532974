// `valhalla run`: the supervisor (supervisor.ts) and the worker it starts (worker.ts).
export { BIN, runSupervisor, type SupervisorRunOptions } from './supervisor.js';
export {
  prepareSyntheticLeads,
  type RunResult,
  runWorker,
  SYNTHETIC_LEADS,
  type WorkerRunOptions,
} from './worker.js';
