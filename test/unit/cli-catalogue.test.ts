import { PassThrough, Readable } from 'node:stream';
import { Help } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/catalogue.js';
import { buildProgram, commandNameOf } from '../../src/cli/main.js';
import { tempDir } from '../support/tmp.js';

const io = () => ({
  stdout: new PassThrough(),
  stderr: new PassThrough(),
  stdin: Readable.from([]),
  env: {},
  cwd: tempDir(),
});

describe('the command catalogue (what --help lists without loading a command)', () => {
  it('is what the command modules declare: names, order, arguments, options, descriptions', async () => {
    const program = await buildProgram(io());
    const help = new Help();
    const declared = program.commands.map((c) => ({
      name: c.name(),
      term: help.subcommandTerm(c),
      description: c.description(),
      hidden: (c as unknown as { _hidden: boolean })._hidden,
    }));
    const listed = COMMANDS.map((c) => ({
      name: c.name,
      term: [c.name, c.options ? '[options]' : '', c.arguments ?? ''].filter(Boolean).join(' '),
      description: c.description,
      hidden: c.hidden === true,
    }));
    expect(listed).toEqual(declared);
  });

  it('loading one command lists the others by the same terms', async () => {
    const full = (await buildProgram(io())).helpInformation();
    const lazy = (await buildProgram(io(), ['--help'])).helpInformation();
    expect(lazy).toBe(full);
  });
});

describe('which command the arguments run', () => {
  it.each([
    [['status'], 'status'],
    [['--data-dir', 'status', 'leads', 'list'], 'leads'],
    [['--data-dir=x', 'run', '--once'], 'run'],
    [['help', 'gates'], 'gates'],
    [['--help'], null],
    [['--version'], null],
    [[], null],
  ])('%j → %s', (args, name) => {
    expect(commandNameOf(args)).toBe(name);
  });
});
