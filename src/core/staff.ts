import { randomBytes } from 'node:crypto';
import { dummyPasswordHash, hashPassword, verifyPassword } from '../auth/passwords.js';
import { newTotpSecret, totpStep } from '../auth/totp.js';
import type { Client } from '../store/storage.js';
import {
  sessionHash,
  STAFF_ROLES,
  type StaffMember,
  type StaffRole,
  type StaffSession,
  type StaffStage,
} from '../store/staff.js';
import { isUniqueViolation } from '../store/unique-violation.js';
import { actorName, type Actor } from './admin.js';
import type { Services } from './services.js';

/** Seconds a signed-in password has to be followed by its TOTP code (or enrolment). */
const SECOND_STEP_SECONDS = 300;

/**
 * Why a console sign-in step was refused. The password step says the same for all of them (no hint which was
 * wrong); the code step, past the password, says whether the code was wrong or used already.
 */
export class StaffSignInRefused extends Error {
  /** code: a wrong code; replayed: a code already used (it works once); the step may be tried again. */
  constructor(readonly reason: 'credentials' | 'code' | 'replayed' | 'locked' | 'disabled') {
    super(`staff sign-in refused: ${reason}`);
  }
}

/** A console session, as a page sees it. */
export interface StaffContext {
  staff: StaffMember;
  session: StaffSession;
  actor: Actor;
  token: string;
}

/**
 * The console's staff: accounts (not app users; made by the CLI), sign-in with a password and a TOTP code, the
 * first sign-in enrolling the code, sessions in the database with an idle timeout and an absolute lifetime,
 * lockout after repeated failures. Every sign-in and refusal is audited.
 */
export class StaffAccounts {
  constructor(private readonly services: Services) {}

  private get settings() {
    return this.services.config.admin;
  }

  /** A staff account (CLI, dev mode); with `totpSecret`, already enrolled (dev mode prints it). */
  async create(username: string, password: string, role: StaffRole, totpSecret?: string): Promise<StaffMember> {
    if (!/^[\w.@+-]{3,150}$/.test(username))
      throw new Error('a staff username is 3 to 150 letters, digits and . @ + - _');
    if (!STAFF_ROLES.includes(role)) throw new Error(`a role is one of ${STAFF_ROLES.join(', ')}`);
    checkStrength(password);
    const sealed = totpSecret ? this.seal(username, totpSecret) : null;
    try {
      return await this.services.storage.staff.create(
        username,
        await hashPassword(password),
        role,
        sealed,
        totpSecret !== undefined,
      );
    } catch (error) {
      if (isUniqueViolation(error)) throw new Error(`the staff username ${username} is taken`, { cause: error });
      throw error;
    }
  }

  /** A new password for the account (12 characters at least); its sessions end. False: no such account. */
  async setPassword(username: string, password: string): Promise<boolean> {
    checkStrength(password);
    return this.services.storage.staff.setPassword(username, await hashPassword(password));
  }

  /** Dev mode: the account exists with exactly these credentials, enrolled (made, or reset to them). */
  async ensure(username: string, password: string, role: StaffRole, totpSecret: string): Promise<void> {
    const member = await this.services.storage.staff.findByUsername(username);
    if (!member) await this.create(username, password, role, totpSecret);
    else
      await this.services.storage.staff.resetCredentials(
        member.id,
        await hashPassword(password),
        this.seal(username, totpSecret),
      );
  }

  /**
   * The password step: a session that still needs the TOTP code (or enrolment, at the first sign-in). The
   * same refusal whatever was wrong; failures count toward the lockout.
   */
  async signIn(username: string, password: string, client: Client): Promise<{ token: string; stage: StaffStage }> {
    const { staff } = this.services.storage;
    const member = await staff.findByUsername(username);
    const ok = await verifyPassword(password, member?.passwordHash ?? (await dummyPasswordHash()));
    if (!member) {
      // Audited as a known name's refusal is (one write), so that the time taken does not tell names apart; the
      // name typed is not kept: it may be a password typed in the wrong box.
      await this.services.storage.audit.record(
        { event: 'staff_refused', detail: 'unknown_username', actor: UNKNOWN_STAFF },
        client,
      );
      throw new StaffSignInRefused('credentials');
    }
    await this.refuseIfBarred(member, client);
    if (!ok) return this.refuse(member, 'credentials', client);
    return this.startSession(member, member.totpEnrolledAt ? 'password' : 'enrol', client, SECOND_STEP_SECONDS);
  }

  /**
   * Enrolment: a new secret for the authenticator app, shown once. It belongs to this session, not to the
   * account: sealed bound to the session (the page keeps it in a cookie of its own), so that another holder of
   * the first password, enrolling at the same time, can neither replace it nor read it. The account keeps a
   * secret only once a code confirms it.
   */
  newEnrolment(context: Pick<StaffContext, 'staff' | 'token'>): { secret: string; sealed: string } {
    const secret = newTotpSecret();
    return { secret, sealed: this.services.secrets.seal(secret, enrolmentBinding(context.staff.id, context.token)) };
  }

  /** The secret this session is enrolling (shown again after a mistyped code), if `sealed` is this session's. */
  enrolmentSecret(context: Pick<StaffContext, 'staff' | 'token'>, sealed: string | undefined): string | undefined {
    if (context.staff.totpEnrolledAt || !sealed || sealed.length > 500) return undefined;
    return this.services.secrets.open(sealed, enrolmentBinding(context.staff.id, context.token));
  }

  /**
   * The TOTP step (or the enrolment's confirmation, with the session's sealed pending secret): the session is
   * signed in, with a new id (the pre-sign-in cookie ends). A code is good once: its time step must come after
   * the last one used. An enrolling session's code is checked against its own pending secret only.
   */
  async confirmCode(token: string, code: string, client: Client, pendingSecret?: string): Promise<{ token: string }> {
    const { staff } = this.services.storage;
    const session = await staff.findSession(sessionHash(token));
    if (!session || session.stage === 'signed_in' || Date.parse(session.expiresAt) <= Date.now())
      throw new StaffSignInRefused('credentials');
    const member = await staff.findById(session.staffId);
    if (!member) throw new StaffSignInRefused('credentials');
    await this.refuseIfBarred(member, client);
    const enrolling = session.stage === 'enrol';
    // Another session enrolled the account meanwhile: this one starts again from the password.
    if (enrolling && member.totpEnrolledAt) return this.refuse(member, 'credentials', client, false);
    const secret = enrolling
      ? this.enrolmentSecret({ staff: member, token }, pendingSecret)
      : this.totpSecretOf(member);
    const step = secret ? totpStep(secret, code.replace(/\s/g, '')) : undefined;
    if (step === undefined) return this.refuse(member, 'code', client);
    const taken = enrolling
      ? await staff.enrol(member.id, this.seal(member.username, secret!), step)
      : await staff.takeTotpStep(member.id, step);
    if (!taken) {
      if (enrolling && (await staff.findById(member.id))?.totpEnrolledAt)
        return this.refuse(member, 'credentials', client, false);
      return this.refuse(member, 'replayed', client);
    }
    await staff.endSession(sessionHash(token));
    await staff.clearFailures(member.id);
    await this.services.storage.audit.record(
      { event: 'staff_signed_in', actor: actorName(actorOf(member)), detail: enrolling ? 'enrolled' : 'totp' },
      client,
    );
    return this.startSession(member, 'signed_in', client, this.settings.lifetimeSeconds);
  }

  /**
   * The session of this cookie at this stage, or undefined: unknown, past its absolute lifetime, idle too long,
   * or its account disabled. A live one is touched (the idle timeout starts again).
   */
  async session(token: string | undefined, stages: readonly StaffStage[]): Promise<StaffContext | undefined> {
    if (!token || token.length > 100) return undefined;
    const { staff } = this.services.storage;
    const hash = sessionHash(token);
    const session = await staff.findSession(hash);
    if (!session || !stages.includes(session.stage)) return undefined;
    const now = Date.now();
    const idle =
      session.stage === 'signed_in' && Date.parse(session.lastSeenAt) + this.settings.idleSeconds * 1000 <= now;
    const member = await staff.findById(session.staffId);
    if (idle || Date.parse(session.expiresAt) <= now || !member || member.disabledAt) {
      await staff.endSession(hash);
      return undefined;
    }
    await staff.touchSession(hash);
    return { staff: member, session, actor: actorOf(member), token };
  }

  async signOut(token: string | undefined): Promise<void> {
    if (token) await this.services.storage.staff.endSession(sessionHash(token));
  }

  private async startSession(member: StaffMember, stage: StaffStage, client: Client, seconds: number) {
    const token = randomBytes(32).toString('base64url');
    await this.services.storage.staff.startSession(
      sessionHash(token),
      member.id,
      stage,
      randomBytes(32).toString('base64url'),
      client.ip,
      new Date(Date.now() + seconds * 1000).toISOString(),
    );
    return { token, stage };
  }

  private async refuseIfBarred(member: StaffMember, client: Client): Promise<void> {
    if (member.disabledAt) await this.refuse(member, 'disabled', client, false);
    if (member.lockedUntil && Date.parse(member.lockedUntil) > Date.now())
      await this.refuse(member, 'locked', client, false);
  }

  private async refuse(
    member: StaffMember,
    reason: StaffSignInRefused['reason'],
    client: Client,
    count = true,
  ): Promise<never> {
    const { staff, audit } = this.services.storage;
    if (count)
      await staff.recordFailure(
        member.id,
        this.settings.maxFailedLogins,
        new Date(Date.now() + this.settings.lockoutSeconds * 1000).toISOString(),
      );
    await audit.record({ event: 'staff_refused', actor: actorName(actorOf(member)), detail: reason }, client);
    throw new StaffSignInRefused(reason);
  }

  // A TOTP secret is sealed bound to its account's name: moved to another row, it opens no more.
  private seal(username: string, secret: string): string {
    return this.services.secrets.seal(secret, `staff-totp:${username}`);
  }

  private totpSecretOf(member: StaffMember): string | undefined {
    return member.sealedTotpSecret
      ? this.services.secrets.open(member.sealedTotpSecret, `staff-totp:${member.username}`)
      : undefined;
  }
}

/** The actor of a refused sign-in whose name is no staff member's (the name itself is not kept). */
export const UNKNOWN_STAFF = 'staff:?';

/** What a pending enrolment's secret is sealed to: this account, and this session (its cookie's hash). */
const enrolmentBinding = (staffId: number, token: string) => `staff-totp-enrol:${staffId}:${sessionHash(token)}`;

function checkStrength(password: string): void {
  if (password.length < 12) throw new Error('a staff password has at least 12 characters');
}

export const actorOf = (member: StaffMember): Actor => ({
  kind: 'staff',
  id: member.id,
  name: member.username,
  role: member.role,
});
