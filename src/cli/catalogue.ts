import type { Command } from 'commander';
import type { Context } from './context.js';

/** Registers one command module's commands (a module may own several top-level commands). */
export type Register = (program: Command, ctx: Context) => void;

/**
 * The modules of the commands, each imported only when one of its commands runs: `valhalla --help`
 * and `valhalla status` must not pay for the dashboard, the synthetic generator or the partner client.
 */
export const COMMAND_MODULES = {
  alerts: async () => (await import('./commands/alerts.js')).registerAlerts,
  archive: async () => (await import('./commands/archive.js')).registerArchive,
  audit: async () => (await import('./commands/audit.js')).registerAudit,
  config: async () => (await import('./commands/config.js')).registerConfig,
  cycle: async () => (await import('./commands/cycle.js')).registerCycle,
  db: async () => (await import('./commands/db.js')).registerDb,
  gates: async () => (await import('./commands/gates.js')).registerGates,
  ingest: async () => (await import('./commands/ingest.js')).registerIngest,
  init: async () => (await import('./commands/init.js')).registerInit,
  leads: async () => (await import('./commands/leads.js')).registerLeads,
  mode: async () => (await import('./commands/mode.js')).registerMode,
  partner: async () => (await import('./commands/partner.js')).registerPartner,
  quarantine: async () => (await import('./commands/quarantine.js')).registerQuarantine,
  run: async () => (await import('./commands/run.js')).registerRun,
  sandbox: async () => (await import('./commands/sandbox.js')).registerSandbox,
  serve: async () => (await import('./commands/serve.js')).registerServe,
  signing: async () => (await import('./commands/signing.js')).registerSigning,
  simulate: async () => (await import('./commands/simulate.js')).registerSimulate,
  stability: async () => (await import('./commands/stability.js')).registerStability,
  status: async () => (await import('./commands/status.js')).registerStatus,
  worker: async () => (await import('./commands/worker.js')).registerWorker,
} satisfies Record<string, () => Promise<Register>>;

export type CommandModule = keyof typeof COMMAND_MODULES;

/**
 * One top-level command as the help lists it, without loading it. A test registers every module and
 * checks this list against what they declare, so the two cannot drift apart.
 */
export interface CommandEntry {
  readonly name: string;
  readonly module: CommandModule;
  /** Its arguments as the help writes them (`<file>`), if any. */
  readonly arguments?: string;
  /** Whether it takes options (the help then writes `[options]`). */
  readonly options: boolean;
  readonly hidden?: true;
  readonly description: string;
}

/** Every top-level command, in the order of `valhalla --help`. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'init',
    module: 'init',
    options: true,
    description:
      'create the data folder, the pseudonym secret (mode 0600) and the database; safe to run again',
  },
  { name: 'config', module: 'config', options: false, description: 'show the configuration in force' },
  {
    name: 'ingest',
    module: 'ingest',
    arguments: '<file>',
    options: true,
    description: 'read leads from a CSV or JSONL file (or - for standard input) into the store',
  },
  {
    name: 'leads',
    module: 'leads',
    options: false,
    description: "generate synthetic leads, list stored ones (masked), or erase a person's data",
  },
  {
    name: 'archive',
    module: 'archive',
    options: true,
    description:
      'archive completed leads (exported, expired, below threshold, dropped) whose last change is before a date: state archived, personal data erased, the row kept; pending, in-flight and quarantined leads are never touched. Committed in chunks, each audited; safe to stop and run again',
  },
  {
    name: 'status',
    module: 'status',
    options: true,
    description:
      'phase, mode, ramp stage, leads per state, ingest totals, the audit chain and the last cycles',
  },
  {
    name: 'audit',
    module: 'audit',
    options: false,
    description: 'verify or export the hash-chained audit log',
  },
  {
    name: 'run',
    module: 'run',
    options: true,
    description:
      'run the service: a supervisor and its worker; Phase 3 records dry runs, Phase 4 sends only through every gate',
  },
  {
    name: 'worker',
    module: 'worker',
    options: true,
    hidden: true,
    description: 'the worker process that `valhalla run` supervises (not for direct use)',
  },
  { name: 'cycle', module: 'cycle', options: false, description: 'operator actions on cycles' },
  {
    name: 'quarantine',
    module: 'quarantine',
    options: false,
    description: 'leads whose retries are spent or that the partner refused',
  },
  {
    name: 'pause',
    module: 'mode',
    options: true,
    description: 'pause outbound (Phase 4): nothing is claimed or sent; the queue is kept',
  },
  {
    name: 'resume',
    module: 'mode',
    options: true,
    description: 'resume after a pause (not after a rollback: see rearm)',
  },
  {
    name: 'rollback',
    module: 'mode',
    options: true,
    description:
      'roll back to DRY-RUN now, the queue kept; reports whether the running worker acknowledged it. Exit 0 confirmed by the running worker, 4 recorded but no worker running, 1 a running worker did not confirm within --wait',
  },
  {
    name: 'rearm',
    module: 'mode',
    options: true,
    description:
      're-arm after a rollback: Phase 4, the gates verified, and the worker restarted since the rollback',
  },
  {
    name: 'drill',
    module: 'mode',
    options: false,
    description: 'rehearsals whose results are gate evidence',
  },
  {
    name: 'gates',
    module: 'gates',
    options: false,
    description: 'the nine go-live gates: status, verification (verify_phase4_gates), evidence report',
  },
  { name: 'keys', module: 'signing', options: false, description: 'Ed25519 signing keys for stakeholders' },
  {
    name: 'signers',
    module: 'signing',
    options: false,
    description: 'the registered signers and their public keys',
  },
  {
    name: 'signoff',
    module: 'signing',
    options: true,
    description:
      'sign the current policy (policy §6): recorded now, or with --out written to a file to submit later',
  },
  {
    name: 'attest',
    module: 'signing',
    options: true,
    description: 'attest a gate item your role answers for (its gate is taken from the item)',
  },
  {
    name: 'activate',
    module: 'signing',
    options: true,
    description: "the CEO's activation of Phase 4 (policy: after all five sign-offs)",
  },
  {
    name: 'amend',
    module: 'signing',
    options: true,
    description:
      "the CFO's amendment raising limits (policy: rate limits adjusted with CFO approval): the other sign-offs carry over",
  },
  {
    name: 'sandbox-partner',
    module: 'sandbox',
    options: true,
    description:
      'run the sandbox partner (HTTPS partner API with OAuth2, idempotency and faults on demand) until SIGINT/SIGTERM',
  },
  {
    name: 'partner',
    module: 'partner',
    options: false,
    description: 'partner profiles: check what a profile would send',
  },
  { name: 'alerts', module: 'alerts', options: false, description: 'ops alerts: Slack and e-mail (gate 5)' },
  {
    name: 'stability',
    module: 'stability',
    options: false,
    description: "gate 9: the policy's 72-hour Phase 3 stability test",
  },
  {
    name: 'serve',
    module: 'serve',
    options: true,
    description:
      'serve the admin API and dashboard alone (valhalla run serves them too), on VALHALLA_SERVER_HOST:VALHALLA_SERVER_PORT',
  },
  { name: 'dashboard', module: 'serve', options: false, description: 'the dashboard' },
  {
    name: 'tokens',
    module: 'serve',
    options: false,
    description: 'API tokens for the admin API and dashboard',
  },
  {
    name: 'simulate',
    module: 'simulate',
    options: true,
    description:
      "rehearse go-live: the real engine under a virtual clock against an in-process sandbox partner playing the installation's partner profile, from private databases; days of policy time in seconds",
  },
  {
    name: 'db',
    module: 'db',
    options: false,
    description: 'database administration as the schema owner: migrations, the runners role grants',
  },
];
