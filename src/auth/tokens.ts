import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, createLocalJWKSet, jwtVerify } from 'jose';
import { ApiError, notAuthenticated } from '../errors.js';
import type { Client, Storage } from '../storage.js';
import { SIGNING_ALG, type SigningKeys } from './keys.js';

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: 'Bearer';
  expires_in: number;
}

export interface AccessClaims {
  userId: number;
  sessionId: string;
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

/**
 * Our own tokens. Access tokens are short-lived ES256 JWTs (sub = user id, sid = session) that any
 * backend can verify with /.well-known/jwks.json. Refresh tokens are opaque random strings, stored
 * hashed, rotated on every use; presenting a rotated one again revokes the whole session.
 */
export class TokenService {
  private readonly verificationKeys;

  constructor(
    private readonly keys: SigningKeys,
    private readonly options: { issuer: string; accessTtlSeconds: number; refreshTtlSeconds: number },
  ) {
    this.verificationKeys = createLocalJWKSet(keys.publicJwks);
  }

  /** Starts a new session for the user and returns its first token pair. */
  async startSession(storage: Storage, userId: number): Promise<TokenPair> {
    const sessionId = randomUUID();
    await storage.createSession(sessionId, userId);
    return this.issue(storage, userId, sessionId);
  }

  async refresh(storage: Storage, refreshToken: string, client: Client): Promise<{ userId: number; pair: TokenPair }> {
    const hash = sha256(refreshToken);
    const record = await storage.findRefreshToken(hash);
    if (record && !record.sessionRevokedAt && !record.usedAt) {
      // The atomic mark decides the winner among concurrent refreshes of one token; rotation is all or nothing.
      const pair = await storage.transaction(async (trx) =>
        (await trx.markRefreshTokenUsed(hash)) ? this.issue(trx, record.userId, record.sessionId) : undefined,
      );
      if (pair) return { userId: record.userId, pair };
    }
    const current = record && (await storage.findRefreshToken(hash));
    if (current?.usedAt && !current.sessionRevokedAt) {
      // A rotated token came back: it was stolen, or the client is broken. Either way the session ends.
      await storage.revokeSession(current.sessionId, 'refresh_token_reused');
      await storage.recordAudit({ event: 'refresh_token_reused', userId: current.userId, detail: 'session revoked' }, client);
      throw new ApiError(401, 'refresh_token_reused', 'The refresh token was already used; the session is revoked');
    }
    throw new ApiError(401, 'invalid_refresh_token', 'The refresh token is invalid, expired or revoked');
  }

  /** Checks an access token and that its session is still active (so logout takes effect at once). */
  async authenticate(storage: Storage, authorization: string | undefined): Promise<AccessClaims> {
    const match = /^Bearer ([^\s]+)$/i.exec(authorization ?? '');
    if (!match) throw notAuthenticated();
    let claims: AccessClaims;
    try {
      const { payload } = await jwtVerify(match[1]!, this.verificationKeys, {
        algorithms: [SIGNING_ALG],
        issuer: this.options.issuer,
        audience: this.options.issuer,
        typ: 'at+jwt',
      });
      const userId = Number(payload.sub);
      if (!Number.isSafeInteger(userId) || typeof payload.sid !== 'string') throw new Error('malformed claims');
      claims = { userId, sessionId: payload.sid };
    } catch {
      throw new ApiError(401, 'invalid_access_token', 'The access token is invalid or expired');
    }
    if (!(await storage.isSessionActive(claims.sessionId, claims.userId))) {
      throw new ApiError(401, 'invalid_access_token', 'The session of this access token has ended');
    }
    return claims;
  }

  private async issue(storage: Storage, userId: number, sessionId: string): Promise<TokenPair> {
    const refreshToken = randomBytes(32).toString('base64url');
    const expiresAt = new Date(Date.now() + this.options.refreshTtlSeconds * 1000).toISOString();
    await storage.insertRefreshToken(sessionId, sha256(refreshToken), expiresAt);
    const accessToken = await new SignJWT({ sid: sessionId })
      .setProtectedHeader({ alg: SIGNING_ALG, kid: this.keys.current.kid, typ: 'at+jwt' })
      .setSubject(String(userId))
      .setIssuer(this.options.issuer)
      .setAudience(this.options.issuer)
      .setIssuedAt()
      .setExpirationTime(`${this.options.accessTtlSeconds}s`)
      .setJti(randomUUID())
      .sign(this.keys.current.key);
    return { access_token: accessToken, refresh_token: refreshToken, token_type: 'Bearer', expires_in: this.options.accessTtlSeconds };
  }
}
