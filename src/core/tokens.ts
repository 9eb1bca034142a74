import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createSigner, createVerifier } from 'fast-jwt';
import { apiError, sessionEnded, UserDisabledError } from '../lib/errors.js';
import type { AuditEntry, Client, NewSession, Storage, User } from '../store/storage.js';
import { SIGNING_ALG, type SigningKeys } from '../auth/keys.js';
import { tokenClaims, type Claims } from './claims.js';

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: 'Bearer';
  expires_in: number;
}

/** A session just stored: its id and its refresh token, to answer once, and the claims its sign-in added. */
export interface StartedSession {
  id: string;
  refreshToken: string;
  claims?: Claims;
}

export interface AccessClaims {
  userId: number;
  sessionId: string;
  /** The signed-in user, read with the session check. */
  user: User;
  /** The custom claims this session's access tokens carry (claims.ts tokenClaims). */
  claims: Claims;
}

/** The kid of a compact JWS's header, or undefined; only to choose a verifier, which then checks it all. */
function kidOf(token: string): string | undefined {
  try {
    const header = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString()) as {
      kid?: unknown;
    };
    return typeof header.kid === 'string' ? header.kid : undefined;
  } catch {
    return undefined;
  }
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

/**
 * Our own tokens. Access tokens are short-lived ES256 JWTs (sub = user id, sid = session) that any
 * backend can verify with /.well-known/jwks.json. Refresh tokens are opaque random strings, stored
 * hashed, rotated on every use; presenting a rotated one again revokes the whole session.
 *
 * Our tokens are signed and checked with fast-jwt (node:crypto, synchronous): on every sign-in and every
 * authenticated request it costs less than half of jose's WebCrypto path. Third-party ID tokens stay with
 * jose (src/providers/id-token.ts).
 */
export class TokenService {
  private readonly sign: (payload: Record<string, unknown>) => string;
  private readonly verify: (token: string) => Record<string, unknown>;

  constructor(
    keys: SigningKeys,
    private readonly options: { issuer: string; accessTtlSeconds: number; refreshTtlSeconds: number },
  ) {
    this.sign = createSigner({
      key: keys.current.privatePem,
      algorithm: SIGNING_ALG,
      header: { alg: SIGNING_ALG, typ: 'at+jwt', kid: keys.current.kid },
      iss: options.issuer,
      aud: options.issuer,
      expiresIn: options.accessTtlSeconds * 1000,
    });
    // One verifier per key: the token's kid picks it (an unknown kid is refused, never "try every key"),
    // then the verifier checks everything again, the alg included.
    const verifiers = new Map<string, (token: string) => Record<string, unknown>>();
    for (const [kid, pem] of keys.verificationPems) {
      verifiers.set(
        kid,
        createVerifier({
          key: pem,
          algorithms: [SIGNING_ALG],
          allowedIss: options.issuer,
          allowedAud: options.issuer,
          checkTyp: 'at+jwt',
          // fast-jwt skips the iss/aud checks when the claim is absent: require them.
          requiredClaims: ['iss', 'aud', 'exp', 'sub', 'sid'],
          // A client sends the same access token many times: a verified token is not checked again (until
          // its exp). The session is still looked up on every request, so logout takes effect at once.
          cache: 1000,
        }),
      );
    }
    this.verify = (token) => {
      const verifier = verifiers.get(kidOf(token) ?? '');
      if (!verifier) throw new Error('unknown kid');
      return verifier(token);
    };
  }

  /**
   * Starts a session: the one way every sign-in (guest creation, password, social) does it, inside the
   * caller's transaction (`storage`), with its audit entry. The tokens are signed after the commit, with
   * `pairOf`: no lock or connection waits on a signature. The refresh token itself is only ever in the
   * answer; the database keeps its hash.
   */
  async startSession(
    storage: Storage,
    userId: number,
    audit: AuditEntry,
    client: Client | null,
    claims?: Claims,
  ): Promise<StartedSession> {
    const { refreshToken, session } = this.newSession(claims);
    await storage.sessions.start(userId, session, audit, client);
    return { id: session.id, refreshToken, claims };
  }

  /** A session's values and its first refresh token (only ever in the answer: the database keeps its hash). */
  private newSession(claims?: Claims): { session: NewSession; refreshToken: string } {
    const refreshToken = randomBytes(32).toString('base64url');
    const session = {
      id: randomUUID(),
      refreshTokenHash: sha256(refreshToken),
      refreshExpiresAt: new Date(Date.now() + this.options.refreshTtlSeconds * 1000).toISOString(),
      claims,
    };
    return { session, refreshToken };
  }

  /**
   * The token pair of a stored session: its refresh token and a new access token, with the user's custom claims
   * and its sign-in's (claims.ts; never a reserved name, so ours are the ones a reader sees).
   */
  pairOf(user: Pick<User, 'id' | 'claims'>, session: StartedSession): TokenPair {
    const custom = tokenClaims(user.claims, session.claims);
    // Assigned, not spread ({ ...custom, sub }): see mergeFacts (providers/profile.ts).
    const accessToken = this.sign(
      Object.assign({}, custom, { sub: String(user.id), sid: session.id, jti: randomUUID() }),
    );
    return {
      access_token: accessToken,
      refresh_token: session.refreshToken,
      token_type: 'Bearer',
      expires_in: this.options.accessTtlSeconds,
    };
  }

  async refresh(storage: Storage, refreshToken: string, client: Client): Promise<{ userId: number; pair: TokenPair }> {
    const hash = sha256(refreshToken);
    const record = await storage.sessions.findRefreshToken(hash);
    if (record && !record.sessionRevokedAt && !record.usedAt) {
      // The atomic mark decides the winner among concurrent refreshes of one token; rotation is all or nothing.
      // The user's row first (see Users.hold): a user deleted meanwhile took its tokens along: invalid below.
      // A user disabled meanwhile (its sessions ending in the same commit) rotates nothing: user_disabled below.
      // The user's claims as they are now: a refresh carries what an operator changed since.
      const pair = await storage.transaction(async (trx) => {
        const user = await trx.users.hold(record.userId);
        return user && !user.disabledAt && (await trx.sessions.useRefreshToken(hash))
          ? this.rotate(trx, user, record.sessionId, record.sessionClaims)
          : undefined;
      });
      if (pair) return { userId: record.userId, pair };
    }
    const current = record && (await storage.sessions.findRefreshToken(hash));
    // Ended because an operator disabled the user, still disabled: the app can tell the user why.
    if (current?.sessionRevokedReason === 'user_disabled' && (await storage.users.findById(current.userId))?.disabledAt)
      throw new UserDisabledError(current.userId);
    if (current?.usedAt && !current.sessionRevokedAt) {
      // A rotated token came back: it was stolen, or the client is broken. Either way the session ends.
      await storage.sessions.revoke(current.sessionId, 'refresh_token_reused');
      await storage.audit.record(
        { event: 'refresh_token_reused', userId: current.userId, detail: 'session revoked' },
        client,
      );
      throw apiError('refresh_token_reused');
    }
    throw apiError('invalid_refresh_token');
  }

  /** Checks an access token and that its session is still active (so logout takes effect at once). */
  async authenticate(storage: Storage, authorization: string | undefined): Promise<AccessClaims> {
    const match = /^Bearer ([^\s]+)$/i.exec(authorization ?? '');
    if (!match) throw apiError('not_authenticated');
    let userId: number;
    let sessionId: string;
    try {
      const payload = this.verify(match[1]!);
      userId = Number(payload.sub);
      if (!Number.isSafeInteger(userId) || typeof payload.sid !== 'string') throw new Error('malformed claims');
      sessionId = payload.sid;
    } catch {
      throw apiError('invalid_access_token');
    }
    // Deleting a user deletes its sessions: an active session always has its user.
    const found = await storage.sessions.findUser(sessionId, userId);
    if (!found) throw sessionEnded();
    return { userId, sessionId, user: found.user, claims: tokenClaims(found.user.claims, found.sessionClaims) };
  }

  /** Rotation: a new refresh token in the same session, and a new access token. */
  private async rotate(storage: Storage, user: User, sessionId: string, claims: Claims): Promise<TokenPair> {
    const { refreshToken, session } = this.newSession();
    await storage.sessions.addRefreshToken(sessionId, session.refreshTokenHash, session.refreshExpiresAt);
    return this.pairOf(user, { id: sessionId, refreshToken, claims });
  }
}
