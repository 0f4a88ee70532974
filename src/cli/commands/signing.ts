import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { systemClock } from '../../clock/index.js';
import { isPrivateFileError, writePrivateFile } from '../../files/index.js';
import {
  amendedManifest,
  createKeyPair,
  describeLimits,
  findItem,
  isSigningError,
  keyIdOf,
  type ManifestLimits,
  manifestHash,
  parseSignedDocument,
  type ReleaseManifest,
  readManifestText,
  type SignedDocument,
  type SignedFields,
  signFields,
} from '../../gates/index.js';
import type { SignatureKind, SignerRole } from '../../store/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatTable, writeJson, writeLine } from '../output.js';

const ROLES: readonly SignerRole[] = ['ceo', 'cfo', 'general_counsel', 'risk_officer', 'head_of_operations'];

function role(value: string): SignerRole {
  if (!(ROLES as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`not a role: ${value} (one of ${ROLES.join(', ')})`);
  }
  return value as SignerRole;
}

function day(value: string): string {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) throw new InvalidArgumentError(`not a YYYY-MM-DD date: ${value}`);
  return value;
}

function keyId(value: string): string {
  if (!/^[0-9a-f]{64}$/.test(value)) throw new InvalidArgumentError(`not a key id (64 hex digits): ${value}`);
  return value;
}

const KIND_WORDS: Readonly<Record<SignatureKind, string>> = {
  signoff: 'sign-off',
  attestation: 'attestation',
  activation: 'activation',
  amendment: 'amendment',
};

/** Read a file the operator named; a missing or unreadable one is a usage error. */
function readInput(ctx: Context, path: string, what: string): string {
  try {
    return readFileSync(resolve(ctx.io.cwd, path), 'utf8');
  } catch (error) {
    throw new CliExit(EXIT.usage, `cannot read the ${what} ${path}: ${(error as Error).message}`);
  }
}

/** Unusable keys and documents are the operator's input: a usage error, with the reason. */
function usable<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (isSigningError(error)) throw new CliExit(EXIT.usage, error.message);
    throw error;
  }
}

interface SignOptions {
  role: SignerRole;
  name: string;
  key: string;
  comments: string;
  date?: string;
  out?: string;
  manifest?: string;
}

/**
 * The release manifest a document approves: the file `--manifest` names (written by `valhalla gates
 * manifest --out` on the installation, for a signer on another machine), else this installation's.
 */
async function manifestToSign(ctx: Context, file: string | undefined): Promise<ReleaseManifest> {
  if (file !== undefined) {
    const read = readManifestText(readInput(ctx, file, 'release manifest'), file);
    if (!read.ok) throw new CliExit(EXIT.usage, read.problem);
    return read.value;
  }
  const manifest = await ctx.withApp((app) => app.releaseManifest());
  if (manifest === null) {
    throw new CliExit(
      EXIT.refused,
      'this installation has no id (its store was never initialised): run `valhalla init` first',
    );
  }
  return manifest;
}

/** Sign with the private key file, over the release manifest. */
function signWithKeyFile(
  ctx: Context,
  fields: Omit<SignedFields, 'keyId' | 'policyHash' | 'date'>,
  opts: SignOptions,
  now: number,
): SignedDocument {
  const privateKeyPem = readInput(ctx, opts.key, 'private key');
  // Written to a file, a document recordSignature would refuse anyway is refused now; recorded
  // directly, recordSignature refuses it (and audits the refusal).
  const signed = usable(() =>
    signFields(fields, privateKeyPem, {
      ...(opts.date !== undefined ? { date: opts.date } : {}),
      now,
      checkNow: opts.out !== undefined,
    }),
  );
  if (!signed.ok) throw new CliExit(EXIT.refused, `${KIND_WORDS[fields.kind]} refused: ${signed.problem}`);
  return signed.value;
}

async function recordOrWrite(ctx: Context, doc: SignedDocument, out: string | undefined): Promise<void> {
  const what = KIND_WORDS[doc.kind];
  if (out !== undefined) {
    const path = resolve(ctx.io.cwd, out);
    try {
      writePrivateFile(path, `${JSON.stringify(doc, null, 2)}\n`);
    } catch (error) {
      if (isPrivateFileError(error) && error.code === 'EXISTS')
        throw new CliExit(EXIT.refused, `${out} exists: not overwritten`);
      if (isPrivateFileError(error)) throw new CliExit(EXIT.refused, error.message);
      throw new CliExit(EXIT.failure, `cannot write ${out}: ${(error as Error).message}`);
    }
    writeLine(
      ctx.io.stdout,
      `wrote the ${what} by ${doc.name} (${doc.role}) to ${out}; nothing recorded: record it with \`valhalla signoff submit ${out}\``,
    );
    return;
  }
  await submit(ctx, doc);
}

async function submit(ctx: Context, doc: SignedDocument): Promise<void> {
  await ctx.withApp(async (app) => {
    const result = await app.recordSignature(doc);
    const what = KIND_WORDS[doc.kind];
    if (!result.ok) throw new CliExit(EXIT.refused, `${what} refused: ${result.reason}`);
    const limits = doc.kind === 'amendment' ? `, approving ${describeLimits(doc.manifest.limits)}` : '';
    writeLine(
      ctx.io.stdout,
      `recorded ${what} #${result.id} by ${doc.name} (${doc.role})${doc.item ? ` for item ${doc.item}` : ''} over release manifest ${manifestHash(doc.manifest).slice(0, 12)}…${limits} (audited)`,
    );
  });
}

export function registerSigning(program: Command, ctx: Context): void {
  const keys = program.command('keys').description('Ed25519 signing keys for stakeholders');
  keys
    .command('create')
    .description('create a key pair: PREFIX.key (private, mode 0600) and PREFIX.pub; needs no database')
    .requiredOption('--out <prefix>', 'path prefix of the two files')
    .action((opts: { out: string }) => {
      const keyPath = resolve(ctx.io.cwd, `${opts.out}.key`);
      const pubPath = resolve(ctx.io.cwd, `${opts.out}.pub`);
      for (const path of [keyPath, pubPath]) {
        if (existsSync(path)) throw new CliExit(EXIT.refused, `${path} exists: not overwritten`);
      }
      const pair = createKeyPair();
      try {
        // Never replace a key that appeared meanwhile, never through a link; 0600: the private key is
        // its owner's alone (the public one is copied out by its owner).
        writePrivateFile(keyPath, pair.privateKeyPem);
        writePrivateFile(pubPath, pair.publicKeyPem);
      } catch (error) {
        throw new CliExit(EXIT.failure, `cannot write the key files: ${(error as Error).message}`);
      }
      writeLine(ctx.io.stdout, `private key ${keyPath} (mode 0600: keep it to yourself)`);
      writeLine(ctx.io.stdout, `public key  ${pubPath} (give it to the operator: valhalla signers add)`);
      writeLine(ctx.io.stdout, `key id ${pair.keyId}`);
    });

  const signers = program.command('signers').description('the registered signers and their public keys');
  signers
    .command('add')
    .description('register a public key for a role (audited)')
    .requiredOption('--role <role>', ROLES.join(' | '), role)
    .requiredOption('--name <name>', "the signer's name, as the documents will carry it")
    .requiredOption('--key <file>', 'the public key (.pub)')
    .action(async (opts: { role: SignerRole; name: string; key: string }) => {
      const publicKeyPem = readInput(ctx, opts.key, 'public key');
      usable(() => keyIdOf(publicKeyPem));
      await ctx.withApp(async (app) => {
        const result = await app.addSigner({ role: opts.role, name: opts.name, publicKeyPem });
        if (!result.ok) throw new CliExit(EXIT.refused, `signer not added: ${result.reason}`);
        writeLine(
          ctx.io.stdout,
          `added signer ${result.signer.name} (${result.signer.role}), key id ${result.signer.key_id} (audited)`,
        );
      });
    });
  signers
    .command('list')
    .description('every signer, revoked ones included')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      await ctx.withApp(async (app) => {
        const rows = await app.listSigners();
        const iso = (at: number | null) => (at === null ? null : new Date(at).toISOString());
        if (opts.json) {
          return writeJson(ctx.io.stdout, {
            signers: rows.map((s) => ({
              role: s.role,
              name: s.name,
              keyId: s.key_id,
              publicKey: s.public_key,
              addedAt: iso(s.added_at),
              addedBy: s.added_by,
              revokedAt: iso(s.revoked_at),
              revokedBy: s.revoked_by,
              revokeReason: s.revoke_reason,
            })),
          });
        }
        if (rows.length === 0) return writeLine(ctx.io.stdout, 'no signers registered');
        writeLine(
          ctx.io.stdout,
          formatTable(
            ['ROLE', 'NAME', 'KEY ID', 'ADDED', 'REVOKED'],
            rows.map((s) => [
              s.role,
              s.name,
              s.key_id,
              iso(s.added_at),
              s.revoked_at === null ? '' : `${iso(s.revoked_at)}: ${s.revoke_reason}`,
            ]),
          ),
        );
      });
    });
  signers
    .command('revoke')
    .description("revoke a signer's key (audited): every signature made with it becomes void")
    .requiredOption('--key-id <id>', 'the key id (valhalla signers list)', keyId)
    .requiredOption('--reason <text>', 'why (audited)')
    .action(async (opts: { keyId: string; reason: string }) => {
      await ctx.withApp(async (app) => {
        const result = await app.revokeSigner({ keyId: opts.keyId, reason: opts.reason });
        if (!result.ok) throw new CliExit(EXIT.refused, `not revoked: ${result.reason}`);
        writeLine(
          ctx.io.stdout,
          `revoked the key of ${result.signer.name} (${result.signer.role}); ${result.voided} signature(s) made with it are void (audited)`,
        );
      });
    });

  // No requiredOption here: commander checks a parent's mandatory options for its subcommands too,
  // and `signoff submit FILE` needs none of them.
  const signoff = program
    .command('signoff')
    .description(
      'sign the current policy (policy §6): recorded now, or with --out written to a file to submit later',
    )
    .option('--role <role>', ROLES.join(' | '), role)
    .option('--name <name>', 'your name, as registered')
    .option('--key <file>', 'your private key (.key)')
    .option('--comments <text>', 'comments (signed)', '')
    .option('--date <YYYY-MM-DD>', 'the date signed (UTC; default today)', day)
    .option('--out <file>', 'write the signed document here and record nothing')
    .option('--manifest <file>', MANIFEST_OPTION)
    .action(async (opts: Partial<SignOptions> & { comments: string }) => {
      const missing = (['role', 'name', 'key'] as const).filter((k) => opts[k] === undefined);
      if (missing.length > 0) {
        throw new CliExit(EXIT.usage, `signoff needs ${missing.map((k) => `--${k}`).join(', ')}`);
      }
      const o = opts as SignOptions;
      const manifest = await manifestToSign(ctx, o.manifest);
      const doc = signWithKeyFile(
        ctx,
        {
          kind: 'signoff',
          role: o.role,
          name: o.name,
          comments: o.comments,
          gate: null,
          item: null,
          manifest,
        },
        o,
        systemClock.now(),
      );
      await recordOrWrite(ctx, doc, o.out);
    });
  signoff
    .command('submit')
    .description(
      'record a signed document written with --out (a sign-off, attestation, activation or amendment)',
    )
    .argument('<file>', 'the signed document (JSON)')
    .action(async (file: string) => {
      const doc = usable(() => parseSignedDocument(readInput(ctx, file, 'signed document')));
      await submit(ctx, doc);
    });

  program
    .command('attest')
    .description('attest a gate item your role answers for (its gate is taken from the item)')
    .requiredOption('--item <id>', 'the item, e.g. 3.gdpr_checklist (valhalla gates status)')
    .requiredOption('--role <role>', ROLES.join(' | '), role)
    .requiredOption('--name <name>', 'your name, as registered')
    .requiredOption('--key <file>', 'your private key (.key)')
    .option('--comments <text>', 'comments (signed)', '')
    .option('--date <YYYY-MM-DD>', 'the date signed (UTC; default today)', day)
    .option('--out <file>', 'write the signed document here and record nothing')
    .option('--manifest <file>', MANIFEST_OPTION)
    .action(async (opts: SignOptions & { item: string }) => {
      const item = findItem(opts.item);
      if (!item) throw new CliExit(EXIT.usage, `no gate item ${opts.item} (see valhalla gates status)`);
      const manifest = await manifestToSign(ctx, opts.manifest);
      const doc = signWithKeyFile(
        ctx,
        {
          kind: 'attestation',
          role: opts.role,
          name: opts.name,
          comments: opts.comments,
          gate: item.gate,
          item: item.id,
          manifest,
        },
        opts,
        systemClock.now(),
      );
      await recordOrWrite(ctx, doc, opts.out);
    });

  program
    .command('activate')
    .description("the CEO's activation of Phase 4 (policy: after all five sign-offs)")
    .requiredOption('--name <name>', "the CEO's name, as registered")
    .requiredOption('--key <file>', "the CEO's private key (.key)")
    .option('--comments <text>', 'comments (signed)', '')
    .option('--date <YYYY-MM-DD>', 'the date signed (UTC; default today)', day)
    .action(async (opts: Omit<SignOptions, 'role' | 'out' | 'manifest'>) => {
      const manifest = await manifestToSign(ctx, undefined);
      const doc = signWithKeyFile(
        ctx,
        {
          kind: 'activation',
          role: 'ceo',
          name: opts.name,
          comments: opts.comments,
          gate: null,
          item: null,
          manifest,
        },
        { ...opts, role: 'ceo' },
        systemClock.now(),
      );
      await submit(ctx, doc);
    });

  program
    .command('amend')
    .description(
      "the CFO's amendment raising limits (policy: rate limits adjusted with CFO approval): the other sign-offs carry over",
    )
    .requiredOption('--name <name>', "the CFO's name, as registered")
    .requiredOption('--key <file>', "the CFO's private key (.key)")
    .option('--leads-per-cycle <n>', 'the new leads/cycle', wholeNumber)
    .option('--actions-per-cycle <n>', 'the new actions/cycle', wholeNumber)
    .option('--rate <n>', 'the new requests/s', positiveNumber)
    .option('--comments <text>', 'comments (signed)', '')
    .option('--date <YYYY-MM-DD>', 'the date signed (UTC; default today)', day)
    .option('--out <file>', 'write the signed document here and record nothing')
    .option('--manifest <file>', MANIFEST_OPTION)
    .action(
      async (
        opts: Omit<SignOptions, 'role'> & { leadsPerCycle?: number; actionsPerCycle?: number; rate?: number },
      ) => {
        const changes: Partial<ManifestLimits> = {
          ...(opts.leadsPerCycle !== undefined ? { leadsPerCycle: opts.leadsPerCycle } : {}),
          ...(opts.actionsPerCycle !== undefined ? { actionsPerCycle: opts.actionsPerCycle } : {}),
          ...(opts.rate !== undefined ? { rateLimitPerSecond: opts.rate } : {}),
        };
        if (Object.keys(changes).length === 0) {
          throw new CliExit(
            EXIT.usage,
            'amend needs at least one of --leads-per-cycle, --actions-per-cycle, --rate',
          );
        }
        const base = await manifestToSign(ctx, opts.manifest);
        // The limits not named stay as approved now (not as running: a limit lowered for a while
        // must not lower the approval with it); from a manifest file, as the file has them.
        const approved =
          opts.manifest === undefined
            ? await ctx.withApp(async (app) => (await app.gatesReport()).manifest.approvedLimits)
            : null;
        const amended = amendedManifest(base, approved, changes);
        if (!amended.ok) throw new CliExit(EXIT.refused, `amendment refused: ${amended.problem}`);
        const manifest = amended.value;
        const doc = signWithKeyFile(
          ctx,
          {
            kind: 'amendment',
            role: 'cfo',
            name: opts.name,
            comments: opts.comments,
            gate: null,
            item: null,
            manifest,
          },
          { ...opts, role: 'cfo' },
          systemClock.now(),
        );
        await recordOrWrite(ctx, doc, opts.out);
      },
    );
}

const MANIFEST_OPTION =
  'sign over this release manifest (written by `valhalla gates manifest --out` on the installation) instead of reading the installation here';

function wholeNumber(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`not a whole number: ${value}`);
  return Number(value);
}

function positiveNumber(value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value) || !(Number(value) > 0)) {
    throw new InvalidArgumentError(`not a number above 0: ${value}`);
  }
  return Number(value);
}
