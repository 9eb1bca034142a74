import { randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import type { BlockingHookConfig, BlockingHookName } from '../config/config.js';
import { apiError } from '../lib/errors.js';
import type { Log } from '../lib/log.js';
import { SignedPoster } from '../lib/signed-post.js';
import { isObject } from '../lib/narrowing.js';
import { AnswerTooLarge, isTimeout, readCapped } from '../providers/http.js';
import type { SocialIdentity } from '../providers/types.js';
import type { Client, User } from '../store/storage.js';
import { claimsProblem, type Claims } from './claims.js';

/**
 * Blocking hooks: the app's own backend, in any language, asked during a sign-in or a link whether it may go on
 * (a banned device, a region rule, a fraud check) — Firebase's blocking functions, Supabase's auth hooks. Each is
 * an operator's URL, called before the transaction (nothing is written while it thinks, and nothing at all when it
 * refuses), signed as the Standard Webhooks specification says (the asynchronous webhooks' signature), with a
 * deadline. Its answer allows (maybe adding claims to the session: claims.ts), or refuses with its own code and
 * message (403 hook_refused). A hook that fails — no answer in time, 5xx, an answer that is not one — refuses with
 * 503 hook_unavailable (fail closed, the default) or lets the sign-in go on (fail open), per hook; either way it is
 * logged and counted, and it is never a provider's failure (no circuit breaker trips).
 */

/** How a call ended (the metrics' label). */
export type HookOutcome = 'allowed' | 'refused' | 'timeout' | 'unavailable' | 'malformed';

/** Told of every call: the hook, its outcome and its seconds. */
export type HookObserver = (hook: BlockingHookName, outcome: HookOutcome, seconds: number) => void;

/** What a hook is told about (the body's `data`, README "Blocking hooks"). */
export interface HookSubject {
  provider: string;
  identity: SocialIdentity;
  /** The user who signs in or links; null for a user not made yet. */
  user: Pick<User, 'id' | 'username' | 'claims'> | null;
  /** The sign-in makes a new user (before_user_created, and the before_sign_in that follows it). */
  newUser: boolean;
  client: Client;
}

/** An answer longer than this is no verdict (a verdict is a few hundred bytes). */
const MAX_ANSWER_BYTES = 64 * 1024;
/** A refusal's code, as refuse() wants an operator's own code (lib/errors.ts). */
const CODE = /^[a-z][a-z0-9_]{0,63}$/;
const MESSAGE_MAX = 500;

type Verdict = { allow: true; claims: Claims } | { allow: false; code: string; message: string };

/** A failed call: why, for the log and the metric. */
class HookFailure extends Error {
  constructor(
    readonly outcome: Exclude<HookOutcome, 'allowed' | 'refused'>,
    detail: string,
  ) {
    super(detail);
  }
}

export class BlockingHooks {
  private readonly hooks: ReadonlyMap<BlockingHookName, { config: BlockingHookConfig; signer: Webhook }>;
  private readonly poster = new SignedPoster();

  constructor(
    configs: readonly BlockingHookConfig[],
    private readonly log: Log,
    private readonly observe: HookObserver = () => {},
  ) {
    this.hooks = new Map(configs.map((config) => [config.name, { config, signer: new Webhook(config.secret) }]));
  }

  /** Is a hook asked on auth (before_user_created, before_sign_in)? */
  get asksOnSignIn(): boolean {
    return this.hooks.has('before_user_created') || this.hooks.has('before_sign_in');
  }

  has(name: BlockingHookName): boolean {
    return this.hooks.has(name);
  }

  /**
   * Asks the hook, when it is configured: the sign-in's claims, those a hook before it added (`added`) and its own
   * over them (`added` alone when it adds none, fails open, or is not configured); together they must fit the
   * limits, else its answer is malformed. Throws 403 hook_refused when it refuses, 503 hook_unavailable when it
   * failed and fails closed.
   */
  async ask(name: BlockingHookName, subject: HookSubject, added: Claims = {}): Promise<Claims> {
    const hook = this.hooks.get(name);
    if (!hook) return added;
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    let verdict: Verdict;
    try {
      verdict = verdictOf(name, await this.call(hook.config, hook.signer, subject), added);
    } catch (error) {
      const failure =
        error instanceof HookFailure
          ? error
          : isTimeout(error)
            ? new HookFailure('timeout', `no answer within ${hook.config.timeoutMs} ms`)
            : new HookFailure('unavailable', (error as { code?: string }).code ?? (error as Error).message);
      this.observe(name, failure.outcome, seconds());
      const open = hook.config.failOpen;
      this.log.warn(
        { hook: name, outcome: failure.outcome, reason: failure.message, provider: subject.provider },
        open
          ? `the ${name} hook failed: the sign-in goes on (fail open)`
          : `the ${name} hook failed: the sign-in is refused with 503 (fail closed)`,
      );
      if (open) return added;
      throw apiError('hook_unavailable', { detail: `the ${name} hook failed (${failure.outcome})` });
    }
    this.observe(name, verdict.allow ? 'allowed' : 'refused', seconds());
    if (!verdict.allow) throw apiError('hook_refused', { about: verdict.message, extra: { reason: verdict.code } });
    return verdict.claims;
  }

  /** Closes the pool's keep-alive connections (they would hold the process open). */
  async close(): Promise<void> {
    await this.poster.close();
  }

  /** One signed POST (never a redirect followed); its JSON answer (undefined: 204), or a HookFailure. */
  private async call(config: BlockingHookConfig, signer: Webhook, subject: HookSubject): Promise<unknown> {
    const id = `msg_${randomUUID()}`;
    const at = new Date();
    const body = JSON.stringify({ type: config.name, timestamp: at.toISOString(), data: dataOf(subject) });
    const response = await this.poster.post(config.url, { id, at, body }, signer, config.timeoutMs);
    let text: string;
    try {
      text = await readCapped(response, MAX_ANSWER_BYTES);
    } catch (error) {
      if (error instanceof AnswerTooLarge)
        throw new HookFailure('malformed', `an answer of more than ${MAX_ANSWER_BYTES} bytes`);
      throw error;
    }
    if (response.statusCode === 204) return undefined;
    if (response.statusCode !== 200) throw new HookFailure('unavailable', `HTTP ${response.statusCode}`);
    try {
      return JSON.parse(text);
    } catch {
      throw new HookFailure('malformed', 'an answer that is not JSON');
    }
  }
}

/** The body's `data`: who, which account, what its provider told (never a token), from where. */
function dataOf({ provider, identity, user, newUser, client }: HookSubject) {
  return {
    provider,
    uid: identity.uid,
    user: user && { id: user.id, username: user.username, claims: user.claims },
    new_user: newUser,
    profile: identity.details,
    facts: identity.extraData,
    client: { ip: client.ip, user_agent: client.userAgent },
  };
}

/**
 * A verdict: 204, or 200 with {"decision": "allow", "claims"?: {...}} or {"decision": "refuse", "code"?: "...",
 * "message"?: "..."}. Anything else is malformed; claims only where a session starts (not before_link).
 */
function verdictOf(name: BlockingHookName, answer: unknown, added: Claims): Verdict {
  if (answer === undefined) return { allow: true, claims: added };
  if (!isObject(answer)) throw new HookFailure('malformed', 'an answer that is not a JSON object');
  if (answer.decision === 'allow') {
    if (answer.claims === undefined) return { allow: true, claims: added };
    if (name === 'before_link') throw new HookFailure('malformed', 'claims from before_link, where no session starts');
    const own = claimsProblem(answer.claims);
    if (own) throw new HookFailure('malformed', `its claims: ${own}`);
    const claims = { ...added, ...(answer.claims as Claims) };
    const together = claimsProblem(claims);
    if (together) throw new HookFailure('malformed', `its claims with those of the hook before it: ${together}`);
    return { allow: true, claims };
  }
  if (answer.decision === 'refuse') {
    const { code = 'refused', message = 'Refused by the rules of this app' } = answer;
    if (typeof code !== 'string' || !CODE.test(code))
      throw new HookFailure('malformed', 'a refusal whose code is not snake_case (1 to 64 characters)');
    if (typeof message !== 'string' || message.length === 0 || message.length > MESSAGE_MAX)
      throw new HookFailure('malformed', `a refusal whose message is not 1 to ${MESSAGE_MAX} characters`);
    // Apps show it to people: no control character, no bidirectional override that would reorder what they read.
    if (/[\p{Cc}\u202A-\u202E\u2066-\u2069]/u.test(message))
      throw new HookFailure('malformed', 'a refusal whose message holds control or bidirectional override characters');
    return { allow: false, code, message };
  }
  throw new HookFailure('malformed', 'an answer whose decision is neither "allow" nor "refuse"');
}
