import { isObject, text } from '../../lib/narrowing.js';
import type { Account, ProviderTools } from '../define.js';
import { bearer } from '../http.js';
import { throttled, userRefusal } from './refusals.js';

/** The media type and the version of the REST API that github.ts and this module read. */
export const HEADERS = { accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' };

type Tools = Pick<ProviderTools, 'http' | 'accepted' | 'refused' | 'unavailable'>;
type User = { user: Record<string, unknown>; email?: string };

/**
 * The profile, read only when needed (profile.ts): GET /user and, when the token's scopes allow, the primary
 * verified e-mail (GET /user/emails: /user shows only the public one). Sources: test/fixtures/providers/github/.
 */
export async function readUser(token: string, apiUrl: string, tools: Tools): Promise<User> {
  const answer = await tools.http.json(`${apiUrl}/user`, bearer(token, HEADERS));
  const user = tools.accepted('/user', answer, userRefusal);
  if (typeof user.id !== 'number') throw tools.unavailable('answered /user without a user id');
  if (!mayReadEmails(answer.headers['x-oauth-scopes'])) return { user };
  return { user, email: await primaryVerifiedEmail(token, apiUrl, tools) };
}

/** The primary e-mail when GitHub has verified it; none otherwise (or without the scope after all: 404). */
async function primaryVerifiedEmail(token: string, apiUrl: string, { http, refused }: Tools) {
  const emails = await http.json(`${apiUrl}/user/emails`, bearer(token, HEADERS));
  const limited = throttled(emails);
  if (limited) throw refused('/user/emails', emails, limited);
  const primary =
    Array.isArray(emails.body) && emails.status === 200
      ? emails.body.find((entry) => isObject(entry) && entry.primary === true && entry.verified === true)
      : undefined;
  return isObject(primary) ? text(primary, 'email') : undefined;
}

/** /user/emails needs the user:email (or user) scope; classic OAuth tokens list theirs in X-OAuth-Scopes. */
function mayReadEmails(scopesHeader: string | string[] | undefined): boolean {
  const scopes = String(scopesHeader ?? '')
    .split(',')
    .map((scope) => scope.trim());
  return scopes.includes('user:email') || scopes.includes('user');
}

/**
 * The profile as the account social-link keeps: the e-mail is the primary one /user/emails marks verified (never
 * /user's public one).
 */
export const userAccount = ({ user, email }: User): Account => ({
  uid: String(user.id),
  name: text(user, 'name'),
  email,
  email_verified: true,
  username: text(user, 'login'),
  extraData: {
    id: user.id,
    login: text(user, 'login') ?? null,
    name: text(user, 'name') ?? null,
    email: email ?? null,
  },
});
