/**
 * The partner profile from the operator's side, through the built binary: named in `.env` or for one
 * command, relative to the folder the command runs in; a profile that does not parse, maps a field
 * that does not exist or lacks a part is refused at start (exit 3, the configuration refused) with the
 * file, the path inside it and why, before anything is opened or sent.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SHIPPED_PROFILES_DIR } from '../../src/partner/index.js';
import { runBinary, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const crm = () => JSON.parse(readFileSync(join(SHIPPED_PROFILES_DIR, 'crm-batch-contacts.json'), 'utf8'));

/** A working folder with its own .env (data kept inside it). */
function installation(dotenv: string): { cwd: string; env: Record<string, string> } {
  const cwd = tempDir();
  writeFileSync(join(cwd, '.env'), dotenv);
  return { cwd, env: testEnv(join(cwd, 'data')) };
}

describe('the partner profile, as an operator names it', () => {
  it('a profile file named in .env, relative to the working folder: config show names it and its hash; status runs', async () => {
    const { cwd, env } = installation('VALHALLA_PARTNER_PROFILE=partners/acme.json\n');
    mkdirSync(join(cwd, 'partners'));
    writeFileSync(join(cwd, 'partners', 'acme.json'), JSON.stringify({ ...crm(), name: 'acme' }));
    const shown = await runBinary(['config', 'show', '--json'], { cwd, env });
    expect(shown.code, shown.stderr).toBe(0);
    const profile = (
      JSON.parse(shown.stdout) as { variables: { name: string; value: string; source: string }[] }
    ).variables.find((v) => v.name === 'VALHALLA_PARTNER_PROFILE');
    expect(profile).toMatchObject({ source: '.env' });
    expect(profile!.value).toMatch(
      new RegExp(`^acme \\(${join(cwd, 'partners', 'acme.json')}; sha256 [0-9a-f]{12}…\\)$`),
    );
    const init = await runBinary(['init'], { cwd, env });
    expect(init.code, init.stderr).toBe(0);
    const status = await runBinary(['status'], { cwd, env });
    expect(status.code, status.stderr).toBe(0);
  });

  it('refused at start, exit 3, naming the file, each path inside it and why: a field that does not exist, a missing part, JSON that does not parse', async () => {
    const { cwd, env } = installation('VALHALLA_PARTNER_PROFILE=acme.json\n');
    const file = join(cwd, 'acme.json');
    const wrong = crm();
    wrong.fields[1].from = 'full_name';
    delete wrong.answer;
    writeFileSync(file, JSON.stringify(wrong, null, 2));
    for (const command of [['run', '--once'], ['status'], ['ingest', 'leads.csv']]) {
      const result = await runBinary(command, { cwd, env });
      expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(3);
      expect(result.stderr).toContain(`VALHALLA_PARTNER_PROFILE="${file}": answer: is missing (required)`);
      expect(result.stdout).toBe('');
    }
    // Shape fixed, the mapping's source is checked: the field is named with the one it meant.
    wrong.answer = crm().answer;
    writeFileSync(file, JSON.stringify(wrong, null, 2));
    const unknownField = await runBinary(['run', '--once'], { cwd, env });
    expect(unknownField.code).toBe(3);
    expect(unknownField.stderr).toMatch(
      new RegExp(`VALHALLA_PARTNER_PROFILE="${file}": fields\\[1\\]\\.from: .*full_name`),
    );
    writeFileSync(file, '{\n  "name": "acme",\n  "fields": [\n');
    const notJson = await runBinary(['run', '--once'], { cwd, env });
    expect(notJson.code).toBe(3);
    expect(notJson.stderr).toMatch(/\(the whole file\): is not JSON: .* at line 4, column 1/);
    // Nothing was opened: no database in the data folder.
    expect(() => readFileSync(join(cwd, 'data', 'valhalla.db'))).toThrow();
  });

  it('set for one command: a name no shipped profile has is refused, listing the shipped ones; the shipped CRM profile is taken', async () => {
    const { cwd, env } = installation('');
    const unknown = await runBinary(['status'], {
      cwd,
      env: { ...env, VALHALLA_PARTNER_PROFILE: 'hubspot' },
    });
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain(
      'VALHALLA_PARTNER_PROFILE="hubspot": no shipped profile has this name (shipped: crm-batch-contacts, valhalla); give a profile file\'s path',
    );
    const shipped = await runBinary(['config', 'show'], {
      cwd,
      env: { ...env, VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts' },
    });
    expect(shipped.code, shipped.stderr).toBe(0);
    expect(shipped.stdout).toContain('crm-batch-contacts (');
  });
});
