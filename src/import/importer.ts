import { canVerifyImported } from '../auth/imported-passwords.js';
import type { Storage } from '../store/storage.js';

/**
 * `social-link import`: users and their social links from another system (python-social-auth, Firebase Auth,
 * Supabase Auth — one reader each in this folder), written in batches, one transaction each. Which user each
 * source account became is recorded (imported_users): running it again changes nothing, and an interrupted run
 * carries on. Nothing is overwritten: a username or a social account that is taken already is reported.
 * Provider tokens are never copied (they were kept in clear by some sources).
 */
export interface SourceUser {
  /** The account's id in the source. */
  sourceId: string;
  /** A numeric id social-link keeps when nothing but this source's users is in the target. */
  numericId?: number;
  username: string;
  /** The source's password hash as it stored it (verified at sign-in by auth/imported-passwords.ts); null: none. */
  passwordHash: string | null;
  createdAt: string;
  lastLoginAt: string | null;
  /** Disabled in the source (Django's is_active false, Firebase's disabled, Supabase's banned or deleted): not imported. */
  active: boolean;
  links: SourceLink[];
}

export interface SourceLink {
  /** The source's name of the provider (google-oauth2, google.com, google…). */
  provider: string;
  uid: string;
  extraData: Record<string, unknown>;
  createdAt?: string;
}

export interface ImportSource {
  /** psa | firebase | supabase: the key of imported_users. */
  name: string;
  /** Our name of a source's provider name (undefined: imported under its own name, and reported). */
  provider(name: string): string | undefined;
  /** Provider names the source lists that are not social links (Supabase's `email`): skipped, silently. */
  notLinks?: readonly string[];
  /** What the source holds that social-link does not keep (said in the report). */
  notKept: readonly string[];
  /** The users in batches. */
  batches(size: number): AsyncIterable<SourceUser[]>;
}

export interface ImportReport {
  source: string;
  dryRun: boolean;
  /** Whether users kept their source ids; else `mapping` lists the ids they got. */
  keptIds: boolean;
  users: { imported: number; unchanged: number; inactive: string[]; conflicts: Array<{ source_id: string; username: string; reason: string }> };
  mapping: Array<{ source_id: string; user_id: number }>;
  /** Users with no way in after the import: no usable password and no link. */
  noWayIn: string[];
  /** Password hashes social-link cannot verify, by scheme: those users must reset their password. */
  unverifiableHashes: Record<string, number>;
  links: { imported: number; unchanged: number; conflicts: Array<{ provider: string; uid: string; reason: string }>; unknownProviders: Record<string, number> };
  /** Provider tokens found in the source's link data, not copied. */
  tokensDropped: number;
  notKept: readonly string[];
}

/** Keys of a link's data that hold provider tokens (python-social-auth kept them in clear): never copied. */
const TOKEN_KEYS = new Set(['access_token', 'refresh_token', 'id_token', 'access_token_secret', 'oauth_token', 'oauth_token_secret', 'code', 'token', 'secret']);

class DryRun extends Error {}

export async function runImport(storage: Storage, source: ImportSource, options: { dryRun: boolean; batchSize: number; progress?(report: ImportReport): void }): Promise<ImportReport> {
  const report: ImportReport = {
    source: source.name,
    dryRun: options.dryRun,
    keptIds: false,
    users: { imported: 0, unchanged: 0, inactive: [], conflicts: [] },
    mapping: [],
    noWayIn: [],
    unverifiableHashes: {},
    links: { imported: 0, unchanged: 0, conflicts: [], unknownProviders: {} },
    tokensDropped: 0,
    notKept: source.notKept,
  };
  const work = async (trx: Storage) => {
    // Source ids are kept when the target holds nothing but this source's users (an empty one, or an earlier run's).
    report.keptIds = !(await trx.imports.hasUsersNotFrom(source.name));
    for await (const batch of source.batches(options.batchSize)) {
      const write = (batchStorage: Storage) => importBatch(batchStorage, source, batch, report);
      if (options.dryRun) await write(trx);
      else await trx.transaction(write);
      options.progress?.(report);
    }
    if (report.keptIds && !options.dryRun) await trx.imports.renumberAfterKeptIds();
  };
  if (!options.dryRun) await work(storage);
  else {
    // A dry run does everything in one transaction, and rolls it back.
    await storage.transaction(async (trx) => {
      await work(trx);
      throw new DryRun();
    }).catch((error: unknown) => {
      if (!(error instanceof DryRun)) throw error;
    });
  }
  return report;
}

async function importBatch(storage: Storage, source: ImportSource, batch: SourceUser[], report: ImportReport): Promise<void> {
  for (const account of batch) {
    let userId = await storage.imports.userOf(source.name, account.sourceId);
    if (userId !== undefined) report.users.unchanged++;
    else {
      if (!account.active) {
        report.users.inactive.push(account.username);
        continue;
      }
      const taken = await storage.users.findByUsername(account.username);
      if (taken) {
        report.users.conflicts.push({ source_id: account.sourceId, username: account.username, reason: `the username is taken by user ${taken.id}` });
        continue;
      }
      const usable = account.passwordHash && !account.passwordHash.startsWith('!') ? account.passwordHash : null;
      if (usable && !canVerifyImported(usable)) {
        const scheme = usable.split('$')[0] || 'unknown';
        report.unverifiableHashes[scheme] = (report.unverifiableHashes[scheme] ?? 0) + 1;
      }
      const user = await storage.imports.createUser(source.name, account.sourceId, {
        id: report.keptIds ? account.numericId : undefined,
        username: account.username,
        passwordHash: usable,
        createdAt: account.createdAt,
        lastLoginAt: account.lastLoginAt,
      });
      userId = user.id;
      report.users.imported++;
      if (!report.keptIds || account.numericId === undefined) report.mapping.push({ source_id: account.sourceId, user_id: user.id });
      if (!usable && !account.links.some((link) => !source.notLinks?.includes(link.provider))) report.noWayIn.push(account.username);
    }
    for (const link of account.links) await importLink(storage, source, userId, link, report);
  }
}

async function importLink(storage: Storage, source: ImportSource, userId: number, link: SourceLink, report: ImportReport): Promise<void> {
  if (source.notLinks?.includes(link.provider)) return;
  const provider = source.provider(link.provider);
  if (!provider) report.links.unknownProviders[link.provider] = (report.links.unknownProviders[link.provider] ?? 0) + 1;
  const name = provider ?? link.provider;
  const existing = await storage.links.find(name, link.uid);
  if (existing) {
    if (existing.userId === userId) report.links.unchanged++;
    else report.links.conflicts.push({ provider: name, uid: link.uid, reason: `linked to user ${existing.userId} already` });
    return;
  }
  const kept = Object.fromEntries(Object.entries(link.extraData).filter(([key]) => !TOKEN_KEYS.has(key)));
  report.tokensDropped += Object.keys(link.extraData).length - Object.keys(kept).length;
  await storage.links.insert(userId, name, link.uid, kept, null, link.createdAt);
  report.links.imported++;
}
