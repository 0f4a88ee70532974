import { Command, CommanderError } from 'commander';
import { type AppErrorCode, isAppError } from '../app/index.js';
import { isConfigError } from '../config/index.js';
import { isPrivateFileError } from '../files/index.js';
import { isIngestFileError } from '../ingest/index.js';
import { isStoreError } from '../store/index.js';
import { registerAlerts } from './commands/alerts.js';
import { registerArchive } from './commands/archive.js';
import { registerAudit } from './commands/audit.js';
import { registerConfig } from './commands/config.js';
import { registerCycle } from './commands/cycle.js';
import { registerDb } from './commands/db.js';
import { registerGates } from './commands/gates.js';
import { registerIngest } from './commands/ingest.js';
import { registerInit } from './commands/init.js';
import { registerLeads } from './commands/leads.js';
import { registerMode } from './commands/mode.js';
import { registerQuarantine } from './commands/quarantine.js';
import { registerRun } from './commands/run.js';
import { registerSandbox } from './commands/sandbox.js';
import { registerServe } from './commands/serve.js';
import { registerSigning } from './commands/signing.js';
import { registerSimulate } from './commands/simulate.js';
import { registerStability } from './commands/stability.js';
import { registerStatus } from './commands/status.js';
import { createContext, type GlobalOptions } from './context.js';
import { CliExit, type CliIo, EXIT, type ExitCode, escapeText, writeLine } from './output.js';

export { EXIT } from './output.js';

/** Build the `valhalla` command tree around one context. */
export function buildProgram(io: CliIo): Command {
  const program: Command = new Command('valhalla');
  const ctx = createContext(io, () => program.opts<GlobalOptions>());
  program
    .description('Valhalla: the safe outbound gate for scored leads (Phase 3 DRY-RUN, gated Phase 4 LIVE)')
    .addHelpText(
      'after',
      '\nExit codes: 0 ok, 1 failure, 2 usage, 3 refused by policy (configuration or phase).\nConfiguration: VALHALLA_* environment variables and .env; see `valhalla config show`.',
    )
    .option(
      '--data-dir <dir>',
      "the installation to act on (its data folder); else VALHALLA_DATA_DIR, VALHALLA_ENV_FILE's, or ./data of the current directory",
    )
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(escapeText(s)),
      writeErr: (s) => io.stderr.write(escapeText(s)),
    });
  registerInit(program, ctx);
  registerConfig(program, ctx);
  registerIngest(program, ctx);
  registerLeads(program, ctx);
  registerArchive(program, ctx);
  registerStatus(program, ctx);
  registerAudit(program, ctx);
  registerRun(program, ctx);
  registerCycle(program, ctx);
  registerQuarantine(program, ctx);
  registerMode(program, ctx);
  registerGates(program, ctx);
  registerSigning(program, ctx);
  registerSandbox(program, ctx);
  registerAlerts(program, ctx);
  registerStability(program, ctx);
  registerServe(program, ctx);
  registerSimulate(program, ctx);
  registerDb(program, ctx);
  for (const command of program.commands) applyExitOverride(command, io);
  return program;
}

function applyExitOverride(command: Command, io: CliIo): void {
  command.exitOverride().configureOutput({
    writeOut: (s) => io.stdout.write(escapeText(s)),
    writeErr: (s) => io.stderr.write(escapeText(s)),
  });
  for (const sub of command.commands) applyExitOverride(sub, io);
}

/** Run the CLI with these arguments (without `node` and the script); resolves to the exit code. */
export async function runCli(args: string[], io: CliIo): Promise<ExitCode> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(args, { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    return exitCodeFor(error, io);
  }
}

/** The exit code of each app error: a refusal by the installation's own rules is 3, like the policy's. */
const APP_ERROR_EXIT: Readonly<Record<AppErrorCode, ExitCode>> = {
  NOT_INITIALIZED: EXIT.failure,
  SECRET_CHANGED: EXIT.failure,
  DEDUP_RULE_CHANGED: EXIT.refused,
  AUDIT_CHAIN_BROKEN: EXIT.failure,
  UPLOADS_BUSY: EXIT.failure,
};

function exitCodeFor(error: unknown, io: CliIo): ExitCode {
  if (error instanceof CommanderError) {
    // commander has already printed the message or the help. `--help` and `help` exit 0; the help
    // shown because a command is missing (`valhalla`, `valhalla leads`) is a usage error.
    return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (error instanceof CliExit) {
    writeLine(io.stderr, `valhalla: ${error.message}`);
    return error.exitCode;
  }
  if (isConfigError(error)) {
    writeLine(io.stderr, `valhalla: ${error.message}`);
    return EXIT.refused;
  }
  if (isAppError(error)) {
    writeLine(io.stderr, `valhalla: ${error.message}`);
    return APP_ERROR_EXIT[error.code];
  }
  if (isIngestFileError(error) || isStoreError(error) || isPrivateFileError(error)) {
    writeLine(io.stderr, `valhalla: ${error.message}`);
    return EXIT.failure;
  }
  // Unexpected: say what it was without dumping objects that could hold data.
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  writeLine(io.stderr, `valhalla: unexpected error: ${message}`);
  return EXIT.failure;
}

/** The process entry point: the only place that sets the process's exit code. */
export async function main(): Promise<void> {
  const code = await runCli(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
  });
  process.exitCode = code;
}
