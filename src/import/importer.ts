import { sql } from 'kysely';
import { canVerifyImported } from '../auth/imported-passwords.js';
import type { Storage } from '../store/storage.js';
import { usernameKey } from '../store/username-key.js';

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
  /** Whether users kept their source ids; else `mapping` lists the ids they got (and it lists those that could not keep theirs, with the reason). */
  keptIds: boolean;
  /**
   * unchanged: imported by an earlier run (their links too); deletedSince: imported, then deleted (not brought back);
   * invalid: rows social-link cannot store as they are (NUL characters, lone surrogates, too long, dates outside
   * years 1 to 9999): not imported, not recorded, so that a run after they were corrected in the source imports them.
   */
  users: {
    imported: number;
    unchanged: number;
    deletedSince: number;
    inactive: string[];
    conflicts: Array<{ source_id: string; username: string; reason: string }>;
    invalid: Array<{ source_id: string; username: string; reason: string }>;
  };
  /** reason: set when ids were kept but this user's could not be. */
  mapping: Array<{ source_id: string; user_id: number; reason?: string }>;
  /** Users with no way in after the import: no usable password and no link. */
  noWayIn: string[];
  /** Password hashes social-link cannot verify, by scheme: those users must reset their password. */
  unverifiableHashes: Record<string, number>;
  /**
   * skipped: the links of users not imported; keyedByEmail: Google links python-social-auth keyed by e-mail (they
   * find nobody); invalid: links social-link cannot store as they are (their user is imported without them).
   */
  links: {
    imported: number;
    skipped: number;
    conflicts: Array<{ provider: string; uid: string; reason: string }>;
    invalid: Array<{ source_id: string; provider: string; uid: string; reason: string }>;
    unknownProviders: Record<string, number>;
    keyedByEmail: string[];
  };
  /** Provider tokens found in the source's link data, not copied. */
  tokensDropped: number;
  notKept: readonly string[];
}

/** Keys of a link's data that hold provider tokens or secrets (python-social-auth kept them in clear): never copied. */
const TOKEN_KEY = /token|secret|^code$|verifier|password/i;
/** As the columns hold them (varchar: characters, not UTF-16 units): users.username, username_key, social_associations.provider and uid, imported_users.source_id. */
const MAX_USERNAME_LENGTH = 150;
const MAX_USERNAME_KEY_LENGTH = 200;
const MAX_PROVIDER_LENGTH = 64;
const MAX_UID_LENGTH = 255;
const MAX_SOURCE_ID_LENGTH = 255;
/**
 * The highest source id kept. users.id is PostgreSQL's integer: its identity sequence ends at 2147483647, and a
 * kept id sets where it goes on. Higher ids get new ones (reported), so that 147 million sign-ups remain.
 */
export const MAX_KEPT_ID = 2_000_000_000;

class DryRun extends Error {}

export async function runImport(
  storage: Storage,
  source: ImportSource,
  options: { dryRun: boolean; batchSize: number; progress?(report: ImportReport): void },
): Promise<ImportReport> {
  const report: ImportReport = {
    source: source.name,
    dryRun: options.dryRun,
    keptIds: false,
    users: { imported: 0, unchanged: 0, deletedSince: 0, inactive: [], conflicts: [], invalid: [] },
    mapping: [],
    noWayIn: [],
    unverifiableHashes: {},
    links: { imported: 0, skipped: 0, conflicts: [], invalid: [], unknownProviders: {}, keyedByEmail: [] },
    tokensDropped: 0,
    notKept: source.notKept,
  };
  const work = async (trx: Storage) => {
    // Source ids are kept when the target holds nothing but this source's users (an empty one, or an earlier run's).
    report.keptIds = !(await trx.imports.hasUsersNotFrom(source.name));
    for await (const batch of source.batches(options.batchSize)) {
      await writeBatch(trx, source, batch, report, options.dryRun);
      options.progress?.(report);
    }
  };
  if (!options.dryRun) await work(storage);
  else {
    // A dry run does everything in one transaction, and rolls it back.
    await storage
      .transaction(async (trx) => {
        await work(trx);
        throw new DryRun();
      })
      .catch((error: unknown) => {
        if (!(error instanceof DryRun)) throw error;
      });
  }
  return report;
}

/**
 * One batch in one transaction (a savepoint in a dry run). A row the database refuses although the checks let it
 * through rolls its batch back; the batch is then written again one user per transaction, so that only that user
 * is left out, and listed, instead of the whole import stopping.
 */
async function writeBatch(
  storage: Storage,
  source: ImportSource,
  batch: SourceUser[],
  report: ImportReport,
  dryRun: boolean,
): Promise<void> {
  const undo = undoPoint(report);
  try {
    await atomically(storage, dryRun, (trx) => importBatch(trx, source, batch, report, dryRun));
  } catch (error) {
    const refusal = refusedRow(error);
    if (refusal === undefined) throw error;
    undo();
    if (batch.length > 1) {
      for (const account of batch) await writeBatch(storage, source, [account], report, dryRun);
      return;
    }
    const account = batch[0]!;
    report.users.invalid.push({
      source_id: shown(account.sourceId),
      username: shown(account.username),
      reason: `the database refused it: ${refusal}`,
    });
    report.links.skipped += account.links.length;
  }
}

/**
 * Undoes what a batch added to the report, when the database rolled it back: counts, and lists cut back to their
 * length (a copy of the report at each batch would cost as much as its mapping: one entry per user).
 */
function undoPoint(value: object): () => void {
  const holder = value as Record<string, unknown>;
  const keys = new Set(Object.keys(holder));
  const undos = [() => Object.keys(holder).forEach((key) => keys.has(key) || delete holder[key])];
  for (const [key, item] of Object.entries(holder)) {
    if (Array.isArray(item)) {
      const length = item.length;
      undos.push(() => void (item.length !== length && (item.length = length)));
    } else if (typeof item === 'object' && item !== null) undos.push(undoPoint(item));
    else undos.push(() => void (holder[key] = item));
  }
  return () => undos.forEach((undo) => undo());
}

async function atomically(storage: Storage, dryRun: boolean, work: (storage: Storage) => Promise<void>): Promise<void> {
  if (!dryRun) return storage.transaction(work);
  await sql`savepoint import_batch`.execute(storage.db);
  try {
    await work(storage);
  } catch (error) {
    await sql`rollback to savepoint import_batch`.execute(storage.db);
    throw error;
  } finally {
    await sql`release savepoint import_batch`.execute(storage.db);
  }
}

/** The database's message when it refused a row for its data (PostgreSQL's data exceptions and integrity violations, SQLite's likes); undefined for anything else (a lost connection stops the import). */
function refusedRow(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (
    typeof code !== 'string' ||
    !(/^2[23][0-9A-Z]{3}$/.test(code) || /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/.test(code))
  )
    return undefined;
  return error instanceof Error ? error.message : code;
}

async function importBatch(
  storage: Storage,
  source: ImportSource,
  batch: SourceUser[],
  report: ImportReport,
  dryRun: boolean,
): Promise<void> {
  let keptAnId = false;
  for (const account of batch) {
    const links = account.links.filter((link) => !source.notLinks?.includes(link.provider));
    const invalid = (reason: string) => {
      report.users.invalid.push({ source_id: shown(account.sourceId), username: shown(account.username), reason });
      report.links.skipped += links.length;
    };
    // Before any query: PostgreSQL refuses a NUL even in a lookup.
    const oddId = oddText('the source id', account.sourceId, MAX_SOURCE_ID_LENGTH);
    if (oddId) {
      invalid(oddId);
      continue;
    }
    const known = await storage.imports.userOf(source.name, account.sourceId);
    // Imported before (its links then too: one that was removed since stays removed), or deleted since.
    if (known !== undefined) {
      if (known === null) report.users.deletedSince++;
      else report.users.unchanged++;
      continue;
    }
    if (!account.active) {
      report.users.inactive.push(shown(account.username));
      report.links.skipped += links.length;
      continue;
    }
    const odd = oddUser(account);
    if (odd) {
      invalid(odd);
      continue;
    }
    const taken = await storage.users.findByUsername(account.username);
    if (taken) {
      report.users.conflicts.push({
        source_id: account.sourceId,
        username: account.username,
        reason: `the username is taken by user ${taken.id}`,
      });
      report.links.skipped += links.length;
      continue;
    }
    const usable = account.passwordHash && !account.passwordHash.startsWith('!') ? account.passwordHash : null;
    if (usable && !canVerifyImported(usable)) {
      const scheme = usable.split('$')[0] || usable.slice(0, 4);
      report.unverifiableHashes[scheme] = (report.unverifiableHashes[scheme] ?? 0) + 1;
    }
    const notKept =
      report.keptIds && account.numericId !== undefined ? await whyIdNotKept(storage, account.numericId) : undefined;
    const keepId = report.keptIds && account.numericId !== undefined && notKept === undefined;
    let id = keepId ? account.numericId : undefined;
    if (notKept !== undefined) {
      // A new id after the kept ones. A dry run names it without moving the sequence: setval outlives a rollback.
      if (dryRun) id = await storage.imports.nextIdAfterKeptIds(MAX_KEPT_ID);
      else await storage.imports.renumberAfterKeptIds(MAX_KEPT_ID);
    }
    const user = await storage.imports.createUser(source.name, account.sourceId, {
      id,
      username: account.username,
      passwordHash: usable,
      createdAt: account.createdAt ?? new Date().toISOString(),
      lastLoginAt: account.lastLoginAt,
    });
    keptAnId ||= keepId;
    report.users.imported++;
    if (!keepId)
      report.mapping.push({ source_id: account.sourceId, user_id: user.id, ...(notKept ? { reason: notKept } : {}) });
    let linked = 0;
    for (const link of links) if (await importLink(storage, source, account.sourceId, user.id, link, report)) linked++;
    if (!usable && linked === 0) report.noWayIn.push(account.username);
  }
  // New users (a sign-up while this runs) are numbered after the kept ids, from this batch on. Not in a dry run:
  // PostgreSQL's setval is not rolled back with it.
  if (keptAnId && !dryRun) await storage.imports.renumberAfterKeptIds(MAX_KEPT_ID);
}

/** Why this source id cannot be kept (undefined: it can). */
async function whyIdNotKept(storage: Storage, id: number): Promise<string | undefined> {
  if (!Number.isSafeInteger(id) || id < 1) return 'the source id is not a positive integer';
  if (id > MAX_KEPT_ID)
    return `the source id is above ${MAX_KEPT_ID}: kept, it would leave too few ids for new users (they end at 2147483647)`;
  // One made while an earlier run was interrupted, or given to a user of this import whose id was not kept.
  if (await storage.imports.idTaken(id)) return 'the source id is taken by another user';
  return undefined;
}

/** Whether the link was written. */
async function importLink(
  storage: Storage,
  source: ImportSource,
  sourceId: string,
  userId: number,
  link: SourceLink,
  report: ImportReport,
): Promise<boolean> {
  const provider = source.provider(link.provider);
  const name = provider ?? link.provider;
  const dropped = { count: 0 };
  const kept = withoutTokens(link.extraData, dropped) as Record<string, unknown>;
  const odd =
    oddText('the provider name', name, MAX_PROVIDER_LENGTH) ??
    oddText('the uid', link.uid, MAX_UID_LENGTH) ??
    oddDate('the link date', link.createdAt) ??
    oddData(kept, 'extra_data');
  if (odd) {
    report.links.invalid.push({ source_id: shown(sourceId), provider: shown(name), uid: shown(link.uid), reason: odd });
    return false;
  }
  if (!provider) report.links.unknownProviders[link.provider] = (report.links.unknownProviders[link.provider] ?? 0) + 1;
  // python-social-auth keys Google links by e-mail unless USE_UNIQUE_USER_ID: Google sign-ins find accounts by sub.
  if (name === 'google' && link.uid.includes('@')) report.links.keyedByEmail.push(link.uid);
  const existing = await storage.links.find(name, link.uid);
  if (existing) {
    report.links.conflicts.push({ provider: name, uid: link.uid, reason: `linked to user ${existing.userId} already` });
    return false;
  }
  report.tokensDropped += dropped.count;
  if (await storage.links.insert(userId, name, link.uid, kept, null, link.createdAt)) {
    report.links.imported++;
    return true;
  }
  report.links.conflicts.push({ provider: name, uid: link.uid, reason: 'linked by another request meanwhile' });
  return false;
}

/** Why social-link cannot store this user's row as it is (undefined: it can). */
function oddUser(account: SourceUser): string | undefined {
  if (typeof account.username !== 'string' || account.username === '') return 'it has no username';
  const odd =
    oddText('the username', account.username, MAX_USERNAME_LENGTH) ??
    (characters(usernameKey(account.username)) > MAX_USERNAME_KEY_LENGTH
      ? `the username is longer than ${MAX_USERNAME_KEY_LENGTH} characters once normalised (NFKC)`
      : undefined) ??
    (account.passwordHash === null ? undefined : oddText('the password hash', account.passwordHash)) ??
    oddDate('the date joined', account.createdAt) ??
    oddDate('the last sign-in date', account.lastLoginAt);
  return odd;
}

// With the u flag, a surrogate pair is one code point: this finds only lone halves, which are no Unicode text
// (written as UTF-8 they become U+FFFD, a silent change; in JSON PostgreSQL refuses them).
const LONE_SURROGATE = /\p{Surrogate}/u;

/** Characters as PostgreSQL's varchar counts them (code points; JavaScript's length counts UTF-16 units). */
const characters = (text: string) => [...text].length;

/** Why this text cannot be stored (undefined: it can). */
function oddText(what: string, value: unknown, max?: number): string | undefined {
  if (typeof value !== 'string') return `${what} is not text`;
  // PostgreSQL's text and jsonb cannot hold U+0000.
  if (value.includes('\0')) return `${what} holds a NUL character (\\u0000)`;
  if (LONE_SURROGATE.test(value)) return `${what} holds a lone UTF-16 surrogate (not Unicode text)`;
  if (max !== undefined && characters(value) > max)
    return `${what} is longer than ${max} characters (${characters(value)})`;
  return undefined;
}

/** Why this date cannot be stored: PostgreSQL has no year 0, and social-link keeps years 1 to 9999 (toISOString writes others as ±YYYYYY). */
function oddDate(what: string, iso: string | null | undefined): string | undefined {
  if (iso === null || iso === undefined) return undefined;
  const year = /^(\d{4})-/.exec(iso);
  if (!year || Number(year[1]) < 1 || Number.isNaN(Date.parse(iso)))
    return `${what} ${shown(iso)} is outside years 1 to 9999`;
  return undefined;
}

/** Why this link data cannot be stored (a key or a string at any depth), undefined: it can. */
function oddData(value: unknown, path: string): string | undefined {
  if (typeof value === 'string') return oddText(path, value);
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const odd = oddData(item, `${path}[${index}]`);
      if (odd) return odd;
    }
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      const odd = oddText(`a key of ${path}`, key) ?? oddData(item, `${path}.${key}`);
      if (odd) return odd;
    }
  }
  return undefined;
}

/** A value of a row not imported, as the report shows it: at most 100 characters (a uid may be megabytes). */
function shown(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  const points = [...text];
  return points.length > 100 ? `${points.slice(0, 100).join('')}… (${points.length} characters)` : text;
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
