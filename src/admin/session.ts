import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { CookieSerializeOptions } from '@fastify/cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { StaffAccounts, StaffContext } from '../core/staff.js';
import { apiError } from '../lib/errors.js';
import type { StaffStage } from '../store/staff.js';

/** A posted form of the console (urlencoded): one value per name. */
export type Form = Record<string, string | undefined>;

/**
 * The console's cookies: the staff session (HttpOnly, SameSite=Strict, Secure), the sign-in form's CSRF token and
 * the authenticator secret being enrolled. Every form that changes something carries the session's CSRF token
 * (core/staff.ts keeps it with the session).
 */
export class Sessions {
  private readonly cookie: CookieSerializeOptions & { path: string };
  private readonly sessionCookie: string;
  private readonly loginCookie: string;
  // The authenticator secret being enrolled, sealed to its session (core/staff.ts): the session's, not the account's.
  private readonly enrolCookie: string;

  constructor(
    publicUrl: string,
    private readonly staff: StaffAccounts,
  ) {
    // Secure cookies, but where the public URL is plain HTTP on a loopback address (development): browsers would
    // drop them there. Production refuses the console without an https public URL (config.ts).
    const url = new URL(publicUrl);
    const secure = !(url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname));
    this.sessionCookie = secure ? '__Host-sl_admin' : 'sl_admin';
    this.loginCookie = secure ? '__Host-sl_admin_login' : 'sl_admin_login';
    this.enrolCookie = secure ? '__Host-sl_admin_enrol' : 'sl_admin_enrol';
    this.cookie = { path: '/', httpOnly: true, secure, sameSite: 'strict' };
  }

  /** The signed-in staff member of this request, or a redirect to the sign-in page (said why when it ended). */
  async signedIn(request: FastifyRequest, reply: FastifyReply): Promise<StaffContext | undefined> {
    const token = request.cookies[this.sessionCookie];
    const context = await this.staff.session(token, ['signed_in']);
    if (!context) {
      // A page asked for comes back after the sign-in (an action's form does not: it is posted again by hand).
      const params = new URLSearchParams({
        ...(token ? { ended: '1' } : {}),
        ...(request.method === 'GET' && returnPath(request.url) ? { next: request.url } : {}),
      });
      void reply.redirect(`/admin/login${params.size ? `?${params}` : ''}`, 303);
      return undefined;
    }
    request.staff = context;
    return context;
  }

  /** The session of a staff member midway through signing in (past the password: a code to type, or to enrol). */
  midway(request: FastifyRequest, stages: StaffStage[]): Promise<StaffContext | undefined> {
    return this.staff.session(request.cookies[this.sessionCookie], stages);
  }

  /** The session's token goes in its cookie (a new one at each step of the sign-in). */
  start(reply: FastifyReply, token: string): void {
    reply.setCookie(this.sessionCookie, token, this.cookie);
  }

  end(reply: FastifyReply): void {
    reply.clearCookie(this.sessionCookie, this.cookie);
  }

  /** A new CSRF token for the sign-in form: in a cookie of its own and in the form (no session exists yet). */
  loginCsrf(reply: FastifyReply): string {
    const token = randomBytes(24).toString('base64url');
    reply.setCookie(this.loginCookie, token, { ...this.cookie, maxAge: 900 });
    return token;
  }

  /** Does the sign-in form carry the token of its cookie? (Unset past its 15 minutes.) */
  loginCsrfMatches(form: Form, request: FastifyRequest): boolean {
    return csrfMatches(form, request.cookies[this.loginCookie]);
  }

  /** 403 unless the form carries the session's CSRF token (a page of another site cannot know it). */
  checkCsrf(form: Form, context: StaffContext): void {
    if (!csrfMatches(form, context.session.csrfToken))
      throw apiError('forbidden', {
        about: 'the form is stale or came from another site (CSRF token); reload the page and try again',
      });
  }

  /** The sealed authenticator secret being enrolled, as its cookie holds it (5 minutes). */
  enrolment(request: FastifyRequest): string | undefined {
    return request.cookies[this.enrolCookie];
  }

  keepEnrolment(reply: FastifyReply, sealed: string): void {
    reply.setCookie(this.enrolCookie, sealed, { ...this.cookie, maxAge: 300 });
  }

  dropEnrolment(reply: FastifyReply): void {
    reply.clearCookie(this.enrolCookie, this.cookie);
  }
}

/** Does the form carry this CSRF token? Compared in constant time; no token expected matches nothing. */
function csrfMatches(form: Form, expected: string | undefined): boolean {
  const given = Buffer.from(typeof form._csrf === 'string' ? form._csrf : '');
  const wanted = Buffer.from(expected ?? '');
  return wanted.length > 0 && given.length === wanted.length && timingSafeEqual(given, wanted);
}

/** A console page to return to after signing in: a path of ours, never another site (`//host`, `/\\host`) nor `..`. */
export function returnPath(value: unknown): string | undefined {
  return typeof value === 'string' &&
    value.length <= 500 &&
    !value.includes('/.') &&
    /^\/admin\/(users|links)(\/[\w%.:@-]+)*(\?[\w%.=&+-]*)?$/.test(value)
    ? value
    : undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The console's signed-in staff member (admin/session.ts). */
    staff?: StaffContext;
  }
}
