import { Command, CommanderError, Help } from 'commander';
import { COMMAND_MODULES, COMMANDS, type CommandEntry, type CommandModule } from './catalogue.js';
import type { GlobalOptions } from './context.js';
import { CliExit, type CliIo, EXIT, type ExitCode, escapeText, writeLine } from './output.js';
import { packageVersion } from './version.js';

export { EXIT } from './output.js';

/** The global options that take a value: the word after them is not a command's name. */
const GLOBAL_OPTIONS_WITH_VALUE = new Set(['--data-dir']);

/**
 * The top-level command these arguments run (`help X` asks about X), or null for none (`--help`,
 * `--version`, no command): only its module is loaded.
 */
export function commandNameOf(args: readonly string[]): string | null {
  let helpFor = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--') return args[i + 1] ?? null;
    if (GLOBAL_OPTIONS_WITH_VALUE.has(arg)) {
      i++;
      continue;
    }
    if (arg.startsWith('-')) continue;
    if (arg === 'help' && !helpFor) {
      helpFor = true;
      continue;
    }
    return arg;
  }
  return null;
}

/**
 * Build the `valhalla` command tree. With `args`, only the module of the command they run is
 * imported; the others appear by name and description (what `--help` lists). Without, every
 * module is loaded (the whole tree, for tests that walk it).
 */
export async function buildProgram(io: CliIo, args?: readonly string[]): Promise<Command> {
  const program: Command = new Command('valhalla');
  program
    .description('Valhalla: the safe outbound gate for scored leads (Phase 3 DRY-RUN, gated Phase 4 LIVE)')
    .version(packageVersion(), '-V, --version', 'print the version of Valhalla')
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

  const wanted = new Set<CommandModule>();
  if (args === undefined) {
    for (const entry of COMMANDS) wanted.add(entry.module);
  } else {
    const name = commandNameOf(args);
    const entry = COMMANDS.find((c) => c.name === name);
    if (entry) wanted.add(entry.module);
  }
  const registers = new Map(
    await Promise.all([...wanted].map(async (module) => [module, await COMMAND_MODULES[module]()] as const)),
  );
  // The context (configuration, app) is imported only with a command that uses it.
  const ctx =
    registers.size > 0
      ? (await import('./context.js')).createContext(io, () => program.opts<GlobalOptions>())
      : null;
  const stubs = new Map<Command, CommandEntry>();
  const registered = new Set<CommandModule>();
  for (const entry of COMMANDS) {
    const register = registers.get(entry.module);
    if (register && ctx) {
      if (!registered.has(entry.module)) register(program, ctx);
      registered.add(entry.module);
      continue;
    }
    stubs.set(stubCommand(program, entry), entry);
  }
  program.configureHelp({
    subcommandTerm: (cmd) => {
      const stub = stubs.get(cmd);
      if (!stub) return new Help().subcommandTerm(cmd);
      return [stub.name, stub.options ? '[options]' : '', stub.arguments ?? ''].filter(Boolean).join(' ');
    },
  });
  for (const command of program.commands) applyExitOverride(command, io);
  return program;
}

/** A command listed by name and description only; its module was not loaded, so it cannot run. */
function stubCommand(program: Command, entry: CommandEntry): Command {
  return program
    .command(entry.name, entry.hidden ? { hidden: true } : {})
    .description(entry.description)
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new CliExit(EXIT.failure, `the command ${entry.name} was not loaded`);
    });
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
  try {
    const program = await buildProgram(io, args);
    await program.parseAsync(args, { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    return exitCodeFor(error, io);
  }
}

async function exitCodeFor(error: unknown, io: CliIo): Promise<ExitCode> {
  if (error instanceof CommanderError) {
    // commander has already printed the message, the help or the version. `--help`, `help` and
    // `--version` exit 0; the help shown because a command is missing (`valhalla`) is a usage error.
    return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (error instanceof CliExit) {
    writeLine(io.stderr, `valhalla: ${error.message}`);
    return error.exitCode;
  }
  // The other errors come from modules a command has loaded already: naming them costs nothing then.
  const { errorExitCode } = await import('./errors.js');
  const known = errorExitCode(error);
  if (known !== null) {
    writeLine(io.stderr, `valhalla: ${(error as Error).message}`);
    return known;
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
