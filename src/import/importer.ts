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
  /** null when the source's date is unreadable (then: the import's time). */
  createdAt: string | null;
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
  /** unchanged: imported by an earlier run (their links too); deletedSince: imported, then deleted (not brought back). */
  users: { imported: number; unchanged: number; deletedSince: number; inactive: string[]; conflicts: Array<{ source_id: string; username: string; reason: string }> };
  mapping: Array<{ source_id: string; user_id: number }>;
  /** Users with no way in after the import: no usable password and no link. */
  noWayIn: string[];
  /** Password hashes social-link cannot verify, by scheme: those users must reset their password. */
  unverifiableHashes: Record<string, number>;
  /** skipped: the links of users not imported; keyedByEmail: Google links python-social-auth keyed by e-mail (they find nobody). */
  links: { imported: number; skipped: number; conflicts: Array<{ provider: string; uid: string; reason: string }>; unknownProviders: Record<string, number>; keyedByEmail: string[] };
  /** Provider tokens found in the source's link data, not copied. */
  tokensDropped: number;
  notKept: readonly string[];
}

/** Keys of a link's data that hold provider tokens or secrets (python-social-auth kept them in clear): never copied. */
const TOKEN_KEY = /token|secret|^code$|verifier|password/i;
/** As users.username holds it. */
const MAX_USERNAME_LENGTH = 150;

class DryRun extends Error {}

export async function runImport(storage: Storage, source: ImportSource, options: { dryRun: boolean; batchSize: number; progress?(report: ImportReport): void }): Promise<ImportReport> {
  const report: ImportReport = {
    source: source.name,
    dryRun: options.dryRun,
    keptIds: false,
    users: { imported: 0, unchanged: 0, deletedSince: 0, inactive: [], conflicts: [] },
    mapping: [],
    noWayIn: [],
    unverifiableHashes: {},
    links: { imported: 0, skipped: 0, conflicts: [], unknownProviders: {}, keyedByEmail: [] },
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
  let keptAnId = false;
  for (const account of batch) {
    const known = await storage.imports.userOf(source.name, account.sourceId);
    // Imported before (its links then too: one that was removed since stays removed), or deleted since.
    if (known !== undefined) {
      if (known === null) report.users.deletedSince++;
      else report.users.unchanged++;
      continue;
    }
    const links = account.links.filter((link) => !source.notLinks?.includes(link.provider));
    const refuse = (reason: string) => {
      report.users.conflicts.push({ source_id: account.sourceId, username: account.username, reason });
      report.links.skipped += links.length;
    };
    if (!account.active) {
      report.users.inactive.push(account.username);
      report.links.skipped += links.length;
      continue;
    }
    if (account.username.length > MAX_USERNAME_LENGTH) {
      refuse(`the username is longer than ${MAX_USERNAME_LENGTH} characters`);
      continue;
    }
    const taken = await storage.users.findByUsername(account.username);
    if (taken) {
      refuse(`the username is taken by user ${taken.id}`);
      continue;
    }
    const usable = account.passwordHash && !account.passwordHash.startsWith('!') ? account.passwordHash : null;
    if (usable && !canVerifyImported(usable)) {
      const scheme = usable.split('$')[0] || usable.slice(0, 4);
      report.unverifiableHashes[scheme] = (report.unverifiableHashes[scheme] ?? 0) + 1;
    }
    // The source's id, unless a user has it already (one made while an earlier run was interrupted).
    const keepId = report.keptIds && account.numericId !== undefined && !(await storage.imports.idTaken(account.numericId));
    const user = await storage.imports.createUser(source.name, account.sourceId, {
      id: keepId ? account.numericId : undefined,
      username: account.username,
      passwordHash: usable,
      createdAt: account.createdAt ?? new Date().toISOString(),
      lastLoginAt: account.lastLoginAt,
    });
    keptAnId ||= keepId;
    report.users.imported++;
    if (!keepId) report.mapping.push({ source_id: account.sourceId, user_id: user.id });
    if (!usable && links.length === 0) report.noWayIn.push(account.username);
    for (const link of links) await importLink(storage, source, user.id, link, report);
  }
  // New users (a sign-up while this runs) are numbered after the kept ids, from this batch on.
  if (keptAnId) await storage.imports.renumberAfterKeptIds();
}

async function importLink(storage: Storage, source: ImportSource, userId: number, link: SourceLink, report: ImportReport): Promise<void> {
  const provider = source.provider(link.provider);
  if (!provider) report.links.unknownProviders[link.provider] = (report.links.unknownProviders[link.provider] ?? 0) + 1;
  const name = provider ?? link.provider;
  // python-social-auth keys Google links by e-mail unless USE_UNIQUE_USER_ID: Google sign-ins find accounts by sub.
  if (name === 'google' && link.uid.includes('@')) report.links.keyedByEmail.push(link.uid);
  const existing = await storage.links.find(name, link.uid);
  if (existing) {
    report.links.conflicts.push({ provider: name, uid: link.uid, reason: `linked to user ${existing.userId} already` });
    return;
  }
  const dropped = { count: 0 };
  const kept = withoutTokens(link.extraData, dropped) as Record<string, unknown>;
  report.tokensDropped += dropped.count;
  if (await storage.links.insert(userId, name, link.uid, kept, null, link.createdAt)) report.links.imported++;
  else report.links.conflicts.push({ provider: name, uid: link.uid, reason: 'linked by another request meanwhile' });
}

/** The data without any key that names a token or a secret, at any depth (python-social-auth kept them in clear). */
function withoutTokens(value: unknown, dropped: { count: number }): unknown {
  if (Array.isArray(value)) return value.map((item) => withoutTokens(item, dropped));
  if (typeof value !== 'object' || value === null) return value;
  const kept: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (TOKEN_KEY.test(key)) dropped.count++;
    else kept[key] = withoutTokens(item, dropped);
  }
  return kept;
}
