import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import QRCode from 'qrcode';
import { totpUri } from '../auth/totp.js';
import { StaffSignInRefused, type StaffContext } from '../core/staff.js';
import { clientOf } from '../http/request.js';
import type { ConsoleContext } from './context.js';
import { returnPath, type Form } from './session.js';

/**
 * Staff sign in in two steps (core/staff.ts keeps the session's stage): the password, then the authenticator's
 * code (`/totp`) or, the first time, the authenticator's enrolment (`/enrol`: a QR code, then its first code). Each
 * step has a new session token; a step left for 5 minutes ends, and the password is asked again.
 */
const SIGN_IN_REFUSED = 'Wrong username, password or code, or this account is locked for a while.';
const CODE_REFUSED: Record<string, string> = {
  code: 'Wrong code: type the 6 digits your authenticator app shows now.',
  replayed: 'This code was already used: wait for the next one (a new code comes every 30 seconds).',
};
const ENDED: Record<string, string> = {
  '1': 'Your session has ended: sign in again.',
  step: 'Signing in took longer than 5 minutes: start again.',
};
const STEP_ENDED = '/admin/login?ended=step';

export function signInRoutes(scope: FastifyInstance, context: ConsoleContext): void {
  passwordStep(scope, context);
  codePages(scope, context);
  for (const stage of ['password', 'enrol'] as const) codeStep(scope, context, stage);
  signOut(scope, context);
}

/** The sign-in page, with a new CSRF token for its form. */
function loginPage(
  { render, sessions }: ConsoleContext,
  reply: FastifyReply,
  status: number,
  texts: { error?: string; notice?: string; next?: string },
) {
  return render(
    reply,
    'login',
    { title: 'Sign in', loginCsrf: sessions.loginCsrf(reply), ...texts },
    undefined,
    status,
  );
}

/** The enrolment page: the secret as a QR code and as text, for the authenticator app. */
async function enrolPage(
  { render }: ConsoleContext,
  reply: FastifyReply,
  staff: StaffContext,
  secret: string,
  error?: string,
  next?: string,
) {
  const qrSvg = await QRCode.toString(totpUri(secret, staff.staff.username, 'social-link'), {
    type: 'svg',
    margin: 2,
    errorCorrectionLevel: 'M',
  });
  return render(
    reply,
    'enrol',
    {
      title: 'Set up your authenticator',
      csrf: staff.session.csrfToken,
      secret,
      secretGroups: secret.match(/.{1,4}/g)!.join(' '),
      qrSvg,
      error,
      next,
    },
    undefined,
    error ? 401 : 200,
  );
}

/** The first step: username and password (rate-limited as the API's password sign-in is). */
function passwordStep(scope: FastifyInstance, context: ConsoleContext): void {
  const { sessions, staff, limits } = context;
  scope.get<{ Querystring: { ended?: string; next?: string } }>(
    '/login',
    { schema: { hide: true } },
    async (request, reply) =>
      loginPage(context, reply, 200, {
        notice: ENDED[String(request.query.ended)],
        next: returnPath(request.query.next),
      }),
  );

  scope.post<{ Body: Form }>('/login', { schema: { hide: true } }, async (request, reply) => {
    const form = request.body ?? {};
    // A sign-in page left open past its token's 15 minutes, or a form posted from elsewhere: a fresh form.
    const next = returnPath(form.next);
    if (!sessions.loginCsrfMatches(form, request))
      return loginPage(context, reply, 403, {
        error: 'This page was open too long, or the form came from elsewhere: sign in again.',
        next,
      });
    await limits.checkPassword(request);
    try {
      const { token, stage } = await staff.signIn(
        String(form.username ?? ''),
        String(form.password ?? ''),
        clientOf(request),
      );
      sessions.start(reply, token);
      const step = stage === 'enrol' ? '/admin/enrol' : '/admin/totp';
      return reply.redirect(next ? `${step}?${new URLSearchParams({ next })}` : step, 303);
    } catch (error) {
      if (error instanceof StaffSignInRefused) return loginPage(context, reply, 401, { error: SIGN_IN_REFUSED, next });
      throw error;
    }
  });
}

/** The second step's pages: the code to type, or the authenticator to set up (a new secret each time it is shown). */
function codePages(scope: FastifyInstance, context: ConsoleContext): void {
  const { sessions, staff, render } = context;
  scope.get<{ Querystring: { next?: string } }>('/totp', { schema: { hide: true } }, async (request, reply) => {
    const midway = await sessions.midway(request, ['password']);
    if (!midway) return reply.redirect(STEP_ENDED, 303);
    return render(reply, 'totp', {
      title: 'Authentication code',
      csrf: midway.session.csrfToken,
      next: returnPath(request.query.next),
    });
  });

  scope.get<{ Querystring: { next?: string } }>('/enrol', { schema: { hide: true } }, async (request, reply) => {
    const midway = await sessions.midway(request, ['enrol']);
    if (!midway) return reply.redirect(STEP_ENDED, 303);
    const { secret, sealed } = staff.newEnrolment(midway);
    sessions.keepEnrolment(reply, sealed);
    return enrolPage(context, reply, midway, secret, undefined, returnPath(request.query.next));
  });
}

/** The second step's form: a code of the authenticator, signed in at last (`password`), or enrolled too (`enrol`). */
function codeStep(scope: FastifyInstance, context: ConsoleContext, stage: 'password' | 'enrol'): void {
  const { sessions, staff } = context;
  scope.post<{ Body: Form }>(
    stage === 'enrol' ? '/enrol' : '/totp',
    { schema: { hide: true } },
    async (request, reply) => {
      const midway = await sessions.midway(request, [stage]);
      if (!midway) return reply.redirect(STEP_ENDED, 303);
      const form = request.body ?? {};
      sessions.checkCsrf(form, midway);
      const next = returnPath(form.next);
      try {
        const enrolment = stage === 'enrol' ? sessions.enrolment(request) : undefined;
        const { token } = await staff.confirmCode(midway.token, String(form.code ?? ''), clientOf(request), enrolment);
        sessions.start(reply, token);
        if (stage === 'enrol') sessions.dropEnrolment(reply);
        return reply.redirect(next ?? '/admin/', 303);
      } catch (error) {
        if (!(error instanceof StaffSignInRefused)) throw error;
        return codeRefused(context, request, reply, midway, stage, error, next);
      }
    },
  );
}

/**
 * A mistyped or used code: the same step again (the failure counts toward the lockout); the same key while
 * enrolling, so that what the authenticator holds stays good. Locked or disabled: this step ends (its pending key
 * with it), and the password is asked again.
 */
async function codeRefused(
  context: ConsoleContext,
  request: FastifyRequest,
  reply: FastifyReply,
  midway: StaffContext,
  stage: 'password' | 'enrol',
  error: StaffSignInRefused,
  next: string | undefined,
) {
  const { sessions, staff, render } = context;
  const again = CODE_REFUSED[error.reason];
  if (again && stage === 'password')
    return render(
      reply,
      'totp',
      { title: 'Authentication code', csrf: midway.session.csrfToken, error: again, next },
      undefined,
      401,
    );
  const secret = again && staff.enrolmentSecret(midway, sessions.enrolment(request));
  if (secret) return enrolPage(context, reply, midway, secret, again, next);
  await staff.signOut(midway.token);
  sessions.dropEnrolment(reply);
  return loginPage(context, reply, 401, { error: SIGN_IN_REFUSED });
}

/** Signing out ends the session (its CSRF token with it). */
function signOut(scope: FastifyInstance, { sessions, staff }: ConsoleContext): void {
  scope.post<{ Body: Form }>('/logout', { schema: { hide: true } }, async (request, reply) => {
    const context = await sessions.signedIn(request, reply);
    if (!context) return reply;
    sessions.checkCsrf(request.body ?? {}, context);
    await staff.signOut(context.token);
    sessions.end(reply);
    return reply.redirect('/admin/login', 303);
  });
}
