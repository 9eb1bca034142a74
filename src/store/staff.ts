import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { iso, isoOrNull, now } from './rows.js';
import type { Database } from './schema.js';

export type StaffRole = 'viewer' | 'support' | 'admin';
export const STAFF_ROLES: readonly StaffRole[] = ['viewer', 'support', 'admin'];

export interface StaffMember {
  id: number;
  username: string;
  role: StaffRole;
  passwordHash: string;
  /** Sealed TOTP secret, or null before enrolment (a pending one belongs to the enrolling session: core/staff.ts). */
  sealedTotpSecret: string | null;
  totpEnrolledAt: string | null;
  failedLogins: number;
  lockedUntil: string | null;
  disabledAt: string | null;
  createdAt: string;
}

/** password: TOTP still to give; enrol: TOTP to set up (first sign-in); signed_in: the console is open. */
export type StaffStage = 'password' | 'enrol' | 'signed_in';

export interface StaffSession {
  staffId: number;
  stage: StaffStage;
  csrfToken: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
}

export const sessionHash = (token: string) => createHash('sha256').update(token).digest('hex');

function toStaff(row: {
  id: number;
  username: string;
  role: string;
  password_hash: string;
  totp_secret: string | null;
  totp_enrolled_at: Date | string | null;
  failed_logins: number;
  locked_until: Date | string | null;
  disabled_at: Date | string | null;
  created_at: Date | string;
}): StaffMember {
  return {
    id: row.id,
    username: row.username,
    role: row.role as StaffRole,
    passwordHash: row.password_hash,
    sealedTotpSecret: row.totp_secret,
    totpEnrolledAt: isoOrNull(row.totp_enrolled_at),
    failedLogins: row.failed_logins,
    lockedUntil: isoOrNull(row.locked_until),
    disabledAt: isoOrNull(row.disabled_at),
    createdAt: iso(row.created_at),
  };
}

/** The console's staff accounts (not app users) and their sessions. */
export class Staff {
  constructor(private readonly db: Kysely<Database>) {}

  async create(
    username: string,
    passwordHash: string,
    role: StaffRole,
    sealedTotpSecret: string | null = null,
    enrolled = false,
  ): Promise<StaffMember> {
    const at = now();
    const row = await this.db
      .insertInto('staff')
      .values({
        username,
        password_hash: passwordHash,
        role,
        totp_secret: sealedTotpSecret,
        totp_enrolled_at: enrolled ? at : null,
        created_at: at,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return toStaff(row);
  }

  async findByUsername(username: string): Promise<StaffMember | undefined> {
    const row = await this.db.selectFrom('staff').selectAll().where('username', '=', username).executeTakeFirst();
    return row && toStaff(row);
  }

  async findById(id: number): Promise<StaffMember | undefined> {
    const row = await this.db.selectFrom('staff').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toStaff(row);
  }

  async list(): Promise<StaffMember[]> {
    return (await this.db.selectFrom('staff').selectAll().orderBy('id').execute()).map(toStaff);
  }

  /** Disables the account and ends its sessions; false when there is no such active account. */
  async disable(username: string): Promise<boolean> {
    const row = await this.db
      .updateTable('staff')
      .set({ disabled_at: now() })
      .where('username', '=', username)
      .where('disabled_at', 'is', null)
      .returning('id')
      .executeTakeFirst();
    if (row) await this.db.deleteFrom('staff_sessions').where('staff_id', '=', row.id).execute();
    return row !== undefined;
  }

  /** New credentials, enrolled and unlocked (dev mode keeps its account's as printed); a disabled account stays so. */
  async resetCredentials(id: number, passwordHash: string, sealedTotpSecret: string): Promise<void> {
    await this.db
      .updateTable('staff')
      .set({
        password_hash: passwordHash,
        totp_secret: sealedTotpSecret,
        totp_enrolled_at: now(),
        failed_logins: 0,
        locked_until: null,
      })
      .where('id', '=', id)
      .execute();
  }

  /**
   * A failed password or code: counted; at `max` in a row the account is locked until `lockUntil`. A lock that
   * ended starts the count again (one more failure does not lock it anew).
   */
  async recordFailure(id: number, max: number, lockUntil: string): Promise<void> {
    const at = now();
    const count = sql<number>`case when locked_until is not null and locked_until <= ${at} then 1 else failed_logins + 1 end`;
    await this.db
      .updateTable('staff')
      .set({
        failed_logins: count,
        locked_until: sql`case when ${count} >= ${max} then ${lockUntil} when locked_until is not null and locked_until <= ${at} then null else locked_until end`,
      })
      .where('id', '=', id)
      .execute();
  }

  /** A new password (staff password): unlocks, and ends the account's sessions. */
  async setPassword(username: string, passwordHash: string): Promise<boolean> {
    const row = await this.db
      .updateTable('staff')
      .set({ password_hash: passwordHash, failed_logins: 0, locked_until: null })
      .where('username', '=', username)
      .returning('id')
      .executeTakeFirst();
    if (row) await this.db.deleteFrom('staff_sessions').where('staff_id', '=', row.id).execute();
    return row !== undefined;
  }

  /** Ends a lockout at once (staff unlock). */
  async unlock(username: string): Promise<boolean> {
    const result = await this.db
      .updateTable('staff')
      .set({ failed_logins: 0, locked_until: null })
      .where('username', '=', username)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** Forgets the authenticator: the next sign-in enrols a new one (staff reset-totp, a lost phone); ends the sessions. */
  async resetTotp(username: string): Promise<boolean> {
    const row = await this.db
      .updateTable('staff')
      .set({ totp_secret: null, totp_enrolled_at: null })
      .where('username', '=', username)
      .returning('id')
      .executeTakeFirst();
    if (row) await this.db.deleteFrom('staff_sessions').where('staff_id', '=', row.id).execute();
    return row !== undefined;
  }

  async clearFailures(id: number): Promise<void> {
    await this.db.updateTable('staff').set({ failed_logins: 0, locked_until: null }).where('id', '=', id).execute();
  }

  /**
   * Enrolment confirmed: the account keeps this secret and its first step, once; false when another session
   * enrolled it first or the step is not after the last one taken (the same race as takeTotpStep's, on one row).
   */
  async enrol(id: number, sealed: string, step: number): Promise<boolean> {
    const result = await this.db
      .updateTable('staff')
      .set({ totp_secret: sealed, totp_enrolled_at: now(), last_totp_step: step })
      .where('id', '=', id)
      .where('totp_enrolled_at', 'is', null)
      .where((where) => where.or([where('last_totp_step', 'is', null), where('last_totp_step', '<', step)]))
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /**
   * Takes the TOTP step for this account: true once per step and only for a step after the last one taken,
   * so that a code (even one seen over a shoulder) signs in once; concurrent attempts race on one row.
   */
  async takeTotpStep(id: number, step: number): Promise<boolean> {
    const result = await this.db
      .updateTable('staff')
      .set({ last_totp_step: step })
      .where('id', '=', id)
      .where('totp_enrolled_at', 'is not', null)
      .where((where) => where.or([where('last_totp_step', 'is', null), where('last_totp_step', '<', step)]))
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async startSession(
    tokenHash: string,
    staffId: number,
    stage: StaffStage,
    csrfToken: string,
    ip: string,
    expiresAt: string,
  ): Promise<void> {
    const at = now();
    await this.db
      .insertInto('staff_sessions')
      .values({
        id_hash: tokenHash,
        staff_id: staffId,
        stage,
        csrf_token: csrfToken,
        ip: ip.slice(0, 64),
        created_at: at,
        last_seen_at: at,
        expires_at: expiresAt,
      })
      .execute();
  }

  async findSession(tokenHash: string): Promise<StaffSession | undefined> {
    const row = await this.db
      .selectFrom('staff_sessions')
      .selectAll()
      .where('id_hash', '=', tokenHash)
      .executeTakeFirst();
    return (
      row && {
        staffId: row.staff_id,
        stage: row.stage as StaffStage,
        csrfToken: row.csrf_token,
        createdAt: iso(row.created_at),
        lastSeenAt: iso(row.last_seen_at),
        expiresAt: iso(row.expires_at),
      }
    );
  }

  async touchSession(tokenHash: string): Promise<void> {
    await this.db.updateTable('staff_sessions').set({ last_seen_at: now() }).where('id_hash', '=', tokenHash).execute();
  }

  async endSession(tokenHash: string): Promise<void> {
    await this.db.deleteFrom('staff_sessions').where('id_hash', '=', tokenHash).execute();
  }

  /** Forgets sessions past their absolute lifetime (swept with the other expired records). */
  async purgeSessions(): Promise<void> {
    await this.db.deleteFrom('staff_sessions').where('expires_at', '<', now()).execute();
  }
}
