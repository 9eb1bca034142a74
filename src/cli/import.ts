import { ConfigError } from '../lib/settings.js';
import { firebaseSource } from '../import/firebase.js';
import { runImport, type ImportReport, type ImportSource } from '../import/importer.js';
import { psaSource } from '../import/psa.js';
import { supabaseSource } from '../import/supabase.js';
import { withServices, type Command } from './command.js';

/** `social-link import`: users and links from python-social-auth, Firebase Auth or Supabase Auth (src/import/). */
export const importCommand: Command = {
  usage:
    'import psa sqlite:PATH|postgres://…|DUMPDATA.json | import firebase EXPORT.json --hash-key B64 --salt-separator B64 --rounds N --mem-cost N [--no-passwords] | ' +
    'import supabase postgres://…   [--dry-run] [--batch N] [--json]',
  summary:
    'users (with their passwords: verified as the source hashed them, upgraded at their next sign-in) and social links from another system; provider tokens are never copied; ' +
    'running it again changes nothing, an interrupted run carries on; taken usernames and social accounts are reported, never overwritten (exit 2); --dry-run writes nothing',
  options: {
    'dry-run': { type: 'boolean' },
    batch: { type: 'string' },
    json: { type: 'boolean' },
    'hash-key': { type: 'string' },
    'salt-separator': { type: 'string' },
    rounds: { type: 'string' },
    'mem-cost': { type: 'string' },
    'no-passwords': { type: 'boolean' },
  },
  run: ({ positionals: [kind, location], values }) =>
    withServices(async ({ storage }) => {
      if (!kind || !location) {
        console.error(`usage: social-link ${importCommand.usage}`);
        return 1;
      }
      const batchSize = Number(values.batch ?? 500);
      if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000)
        throw new ConfigError('--batch must be an integer from 1 to 10000');
      const source = sourceOf(kind, location, values);
      const progress = process.stderr.isTTY
        ? (report: ImportReport) =>
            process.stderr.write(
              `\r${report.users.imported} users and ${report.links.imported} links imported, ${report.users.unchanged} users imported before`,
            )
        : undefined;
      const report = await runImport(storage, source, { dryRun: values['dry-run'] === true, batchSize, progress });
      if (progress) process.stderr.write('\n');
      if (values.json === true) console.log(JSON.stringify(report));
      else print(report);
      return report.users.conflicts.length +
        report.links.conflicts.length +
        report.users.invalid.length +
        report.links.invalid.length >
        0
        ? 2
        : 0;
    }),
};

function sourceOf(kind: string, location: string, values: Record<string, string | boolean | undefined>): ImportSource {
  if (kind === 'psa') return psaSource(location);
  if (kind === 'supabase') return supabaseSource(location);
  if (kind === 'firebase') {
    const given = ['hash-key', 'salt-separator', 'rounds', 'mem-cost'].filter(
      (name) => typeof values[name] === 'string',
    );
    if (given.length > 0 && given.length < 4)
      throw new ConfigError(
        'import firebase: give all four hash parameters: --hash-key, --salt-separator, --rounds, --mem-cost',
      );
    const hash =
      given.length === 4
        ? {
            signerKey: String(values['hash-key']),
            saltSeparator: String(values['salt-separator']),
            rounds: Number(values.rounds),
            memCost: Number(values['mem-cost']),
          }
        : undefined;
    if (
      hash &&
      !(
        Number.isInteger(hash.rounds) &&
        hash.rounds >= 1 &&
        hash.rounds <= 16 &&
        Number.isInteger(hash.memCost) &&
        hash.memCost >= 1 &&
        hash.memCost <= 17
      )
    ) {
      throw new ConfigError(
        "import firebase: --rounds must be an integer from 1 to 16 and --mem-cost from 1 to 17 (Firebase's are 8 and 14)",
      );
    }
    if (hash && ![hash.signerKey, hash.saltSeparator].every((value) => /^[A-Za-z0-9+/]+=*$/.test(value)))
      throw new ConfigError(
        'import firebase: --hash-key and --salt-separator are base64, as the Firebase console shows them',
      );
    return firebaseSource(location, values['no-passwords'] === true ? undefined : hash);
  }
  throw new ConfigError(`import: unknown source "${kind}" (psa, firebase, supabase)`);
}

/** A source's odd text for a terminal: control characters and lone surrogates as \uXXXX. */
const printable = (text: string) =>
  text.replace(/[\p{Cc}\p{Surrogate}]/gu, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);

function print(report: ImportReport): void {
  const lines = [
    `${report.dryRun ? 'DRY RUN (nothing written): ' : ''}import from ${report.source}`,
    `users: ${report.users.imported} imported, ${report.users.unchanged} imported before${report.users.deletedSince ? `, ${report.users.deletedSince} imported before and deleted since (not brought back)` : ''}${report.keptIds ? (report.mapping.length ? ` (ids kept but ${report.mapping.length}: below)` : ' (ids kept)') : ''}`,
    `links: ${report.links.imported} imported${report.links.skipped ? `, ${report.links.skipped} of users not imported` : ''}`,
    `provider tokens not copied: ${report.tokensDropped}`,
  ];
  if (report.mapping.length > 0)
    lines.push(
      'user ids (source → social-link):',
      ...report.mapping.map(
        (entry) => `  ${entry.source_id} → ${entry.user_id}${entry.reason ? ` (${entry.reason})` : ''}`,
      ),
    );
  if (report.users.conflicts.length > 0)
    lines.push(
      'users NOT imported (conflicts):',
      ...report.users.conflicts.map((entry) => `  ${entry.username} (${entry.source_id}): ${entry.reason}`),
    );
  if (report.links.conflicts.length > 0)
    lines.push(
      'links NOT imported (conflicts):',
      ...report.links.conflicts.map((entry) => `  ${entry.provider}:${entry.uid}: ${entry.reason}`),
    );
  if (report.users.invalid.length > 0) {
    lines.push(
      'users NOT imported (rows social-link cannot store as they are: correct them in the source and run the import again, it imports only them):',
      ...report.users.invalid.map(
        (entry) => `  ${printable(entry.username)} (${printable(entry.source_id)}): ${printable(entry.reason)}`,
      ),
    );
  }
  if (report.links.invalid.length > 0) {
    lines.push(
      'links NOT imported (social-link cannot store them as they are; their users were imported without them, and another run does not bring them: the user links the account again once signed in):',
      ...report.links.invalid.map(
        (entry) =>
          `  ${printable(entry.provider)}:${printable(entry.uid)} of ${printable(entry.source_id)}: ${printable(entry.reason)}`,
      ),
    );
  }
  if (report.users.inactive.length > 0)
    lines.push(`inactive users not imported: ${report.users.inactive.map(printable).join(', ')}`);
  if (report.noWayIn.length > 0)
    lines.push(`imported with no way to sign in (no usable password, no link): ${report.noWayIn.join(', ')}`);
  for (const [scheme, count] of Object.entries(report.unverifiableHashes))
    lines.push(
      `${count} password hashes of scheme ${scheme} cannot be verified here: those users must reset their password`,
    );
  if (report.links.keyedByEmail.length > 0) {
    lines.push(
      `${report.links.keyedByEmail.length} Google links are keyed by e-mail (python-social-auth without USE_UNIQUE_USER_ID): Google sign-ins find accounts by their id, so these users must link Google again: ${report.links.keyedByEmail.join(', ')}`,
    );
  }
  for (const [provider, count] of Object.entries(report.links.unknownProviders))
    lines.push(`${count} links of provider "${provider}" (unknown to social-link) imported under that name`);
  lines.push(`not kept: ${report.notKept.join('; ')}`);
  console.log(lines.join('\n'));
}
