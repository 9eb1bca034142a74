// Baselines C, F and L: the work no sign-in (or link) can skip, and nothing else, on a bare node:http server. Per request:
//
//   C  POST /api/auth/google/ {id_token}: verify the RS256 ID token against the cached JWKS (jose, as social-link);
//   F  POST /api/auth/facebook/ {access_token}: the one Graph call of a linked user's sign-in,
//      GET {graph}/debug_token?input_token=…&access_token=APP_ID|SECRET, through a keep-alive undici Agent with the
//      settings of src/providers/http.ts; check is_valid, app_id (ours) and user_id;
//
// then, both: the sign-in transaction (below), and an ES256 access token signed with fast-jwt (as social-link).
//
// The transaction, on the storage of the case it is compared with:
//   - SQLite (default; a temporary file, WAL, synchronous=NORMAL): one better-sqlite3 transaction, in process:
//     BEGIN, find the link with its user, update last_login_at, insert the session, the refresh token's hash and
//     the audit event, COMMIT — 7 synchronous statements.
//   - PostgreSQL (BENCH_BASELINE_DATABASE_URL, a throwaway database): a pg.Pool of 20 (social-link's size), named
//     (server-prepared) statements, 4 round trips: BEGIN; the link with its user, the user's and the link's rows held
//     FOR KEY SHARE (social-link's holdLinkWithUser); one statement of data-modifying CTEs that touches last_login_at
//     (skipping a row another sign-in is writing), inserts the session, the refresh token's hash and the audit event
//     (the shape of social-link's startSessionPostgres); COMMIT. social-link makes 3: it writes BEGIN together with
//     the first statement (pipelined).
//
// Baseline L, a link's unavoidable work (case 3's): POST /api/associate/facebook/ with a Bearer token of a user of its
// own (made by POST /api/users/, as the bench makes social-link's guests): verify the ES256 access token (fast-jwt)
// and read its session with its user (one statement); the two Graph calls of the Facebook check (/me with
// appsecret_proof and /debug_token, together, as baseline A); then one transaction: the user's row held, the link of
// (provider, uid) looked for (another user's: 409), the link inserted with its profile, the audit event. SQLite: BEGIN
// IMMEDIATE and 5 synchronous statements. PostgreSQL: 4 round trips — BEGIN; the user's row held FOR KEY SHARE with
// the link looked for in the same statement; the link and the audit event inserted in one statement; COMMIT.
//
// Started by bench/run.ts with the linked accounts (BENCH_GOOGLE_SUBS, BENCH_FACEBOOK_UIDS); prints {"url": ...}.
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { createSigner, createVerifier } from 'fast-jwt';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import pg from 'pg';
import { Graph } from './graph.js';

const jwksUrl = required('BENCH_GOOGLE_JWKS_URL');
const audience = required('BENCH_GOOGLE_CLIENT_ID');
const googleSubs = JSON.parse(required('BENCH_GOOGLE_SUBS')) as string[];
const facebookUids = JSON.parse(required('BENCH_FACEBOOK_UIDS')) as string[];
const postgresUrl = process.env.BENCH_BASELINE_DATABASE_URL;

interface SignedIn {
  user: { id: number; username: string };
  sessionId: string;
  refreshToken: string;
}
type SignIn = (provider: string, uid: string, ip: string, userAgent: string) => Promise<SignedIn | undefined>;

/** Baseline L's storage: a guest and its session; the session's user; the link, in one transaction. */
interface LinkStorage {
  makeGuest(sessionId: string): Promise<number>;
  sessionUser(sessionId: string, userId: number): Promise<{ id: number; username: string } | undefined>;
  /** created: a new link; false: this user's already; 'taken': another user's. */
  link(
    userId: number,
    provider: string,
    uid: string,
    extraData: string,
    ip: string,
    userAgent: string,
  ): Promise<boolean | 'taken'>;
}

/** The new session's values: its id, refresh token (the answer's) and that token's hash (the database's). */
function newSession() {
  const refreshToken = randomBytes(32).toString('base64url');
  return {
    sessionId: randomUUID(),
    refreshToken,
    hash: createHash('sha256').update(refreshToken).digest('hex'),
    at: new Date().toISOString(),
    expiresAt: new Date(Date.now() + 30 * 86_400_000).toISOString(),
  };
}

const linked: Array<[provider: string, uid: string]> = [
  ...googleSubs.map((sub) => ['google', sub] as [string, string]),
  ...facebookUids.map((uid) => ['facebook', uid] as [string, string]),
];

// ---- SQLite: better-sqlite3, synchronous, in process --------------------------------------------------------

function sqliteStorage(): LinkStorage & { signIn: SignIn; close(): Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), 'social-link-baseline-c-'));
  const db = new Sqlite(join(dir, 'c.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.exec(`
    create table users (id integer primary key autoincrement, username text not null unique, created_at text not null, last_login_at text);
    create table social_associations (id integer primary key autoincrement, user_id integer not null references users(id) on delete cascade,
      provider text not null, uid text not null, extra_data text not null, unique (provider, uid));
    create table sessions (id text primary key, user_id integer not null references users(id) on delete cascade, created_at text not null,
      ip text, user_agent text, revoked_at text);
    create table refresh_tokens (id integer primary key autoincrement, session_id text not null references sessions(id) on delete cascade,
      token_hash text not null unique, created_at text not null, expires_at text not null, used_at text);
    create table audit_events (id integer primary key autoincrement, user_id integer, event text not null, provider text, uid text, detail text,
      ip text, user_agent text, created_at text not null);
  `);
  const makeUser = db.prepare('insert into users (username, created_at) values (?, ?)');
  const makeLink = db.prepare(
    "insert into social_associations (user_id, provider, uid, extra_data) values (?, ?, ?, '{}')",
  );
  db.transaction(() => {
    for (const [provider, uid] of linked)
      makeLink.run(makeUser.run(`guest_${provider}_${uid}`, new Date().toISOString()).lastInsertRowid, provider, uid);
  })();

  const findLinked = db.prepare<[string, string], { id: number; username: string }>(
    'select users.id, users.username from social_associations join users on users.id = social_associations.user_id where provider = ? and uid = ?',
  );
  const touch = db.prepare('update users set last_login_at = ? where id = ?');
  const insertSession = db.prepare(
    'insert into sessions (id, user_id, created_at, ip, user_agent) values (?, ?, ?, ?, ?)',
  );
  const insertRefresh = db.prepare(
    'insert into refresh_tokens (session_id, token_hash, created_at, expires_at) values (?, ?, ?, ?)',
  );
  const insertAudit = db.prepare(
    "insert into audit_events (user_id, event, provider, uid, ip, user_agent, created_at) values (?, 'social_sign_in', ?, ?, ?, ?, ?)",
  );
  const signIn = db.transaction((provider: string, uid: string, ip: string, userAgent: string) => {
    const user = findLinked.get(provider, uid);
    if (!user) return undefined;
    const { sessionId, refreshToken, hash, at, expiresAt } = newSession();
    touch.run(at, user.id);
    insertSession.run(sessionId, user.id, at, ip, userAgent);
    insertRefresh.run(sessionId, hash, at, expiresAt);
    insertAudit.run(user.id, provider, uid, ip, userAgent, at);
    return { user, sessionId, refreshToken };
  });
  const makeGuest = db.transaction((sessionId: string) => {
    const at = new Date().toISOString();
    const userId = Number(makeUser.run(`guest_${randomBytes(8).toString('hex')}`, at).lastInsertRowid);
    insertSession.run(sessionId, userId, at, null, null);
    return userId;
  });
  const sessionUser = db.prepare<[string, number], { id: number; username: string }>(
    'select users.id, users.username from sessions join users on users.id = sessions.user_id ' +
      'where sessions.id = ? and sessions.user_id = ? and sessions.revoked_at is null',
  );
  const holdUser = db.prepare<[number], { id: number }>('select id from users where id = ?');
  const findLink = db.prepare<[string, string], { user_id: number }>(
    'select user_id from social_associations where provider = ? and uid = ?',
  );
  const insertLink = db.prepare(
    'insert into social_associations (user_id, provider, uid, extra_data) values (?, ?, ?, ?)',
  );
  const insertLinkAudit = db.prepare(
    "insert into audit_events (user_id, event, provider, uid, ip, user_agent, created_at) values (?, 'associated', ?, ?, ?, ?, ?)",
  );
  const link = db.transaction(
    (userId: number, provider: string, uid: string, extraData: string, ip: string, userAgent: string) => {
      if (!holdUser.get(userId)) throw new Error('no such user');
      const owner = findLink.get(provider, uid);
      if (owner) return owner.user_id === userId ? false : 'taken';
      insertLink.run(userId, provider, uid, extraData);
      insertLinkAudit.run(userId, provider, uid, ip, userAgent, new Date().toISOString());
      return true;
    },
  );
  return {
    signIn: (provider, uid, ip, userAgent) => Promise.resolve(signIn(provider, uid, ip, userAgent)),
    makeGuest: (sessionId) => Promise.resolve(makeGuest(sessionId)),
    sessionUser: (sessionId, userId) => Promise.resolve(sessionUser.get(sessionId, userId)),
    // BEGIN IMMEDIATE, as social-link's transactions on SQLite: the write lock from the start.
    link: (...args) => Promise.resolve(link.immediate(...args)),
    close: async () => {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---- PostgreSQL: the plain pg driver, 4 round trips -----------------------------------------------------------

const FIND_AND_HOLD = {
  name: 'baseline-find-and-hold',
  text:
    'select users.id, users.username from social_associations link join users on users.id = link.user_id ' +
    'where link.provider = $1 and link.uid = $2 for key share of users, link',
};
const WRITE = {
  name: 'baseline-write',
  text: `with touch as (
      update users set last_login_at = $2 where id in (
        select id from users where id = $1 and (last_login_at is null or last_login_at < $2) for no key update skip locked)
    ), session as (
      insert into sessions (id, user_id, created_at, ip, user_agent) values ($3, $1, $4, $5, $6)
    ), refresh as (
      insert into refresh_tokens (session_id, token_hash, created_at, expires_at) values ($3, $7, $4, $8)
    )
    insert into audit_events (user_id, event, provider, uid, ip, user_agent, created_at)
    values ($1, 'social_sign_in', $9, $10, $5, $6, $4)`,
};

const MAKE_GUEST = {
  name: 'baseline-make-guest',
  text: `with u as (insert into users (username, created_at) values ($1, $2) returning id)
    insert into sessions (id, user_id, created_at) select $3, id, $2 from u returning user_id`,
};
const SESSION_USER = {
  name: 'baseline-session-user',
  text:
    'select users.id, users.username from sessions join users on users.id = sessions.user_id ' +
    'where sessions.id = $1 and sessions.user_id = $2 and sessions.revoked_at is null',
};
const HOLD_AND_FIND_LINK = {
  name: 'baseline-hold-and-find-link',
  text:
    'select users.id, link.user_id as owner from users left join social_associations link ' +
    'on link.provider = $2 and link.uid = $3 where users.id = $1 for key share of users',
};
const INSERT_LINK = {
  name: 'baseline-insert-link',
  text: `with link as (insert into social_associations (user_id, provider, uid, extra_data) values ($1, $2, $3, $4))
    insert into audit_events (user_id, event, provider, uid, ip, user_agent, created_at)
    values ($1, 'associated', $2, $3, $5, $6, $7)`,
};

async function postgresStorage(url: string): Promise<LinkStorage & { signIn: SignIn; close(): Promise<void> }> {
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  pool.on('error', () => {});
  await pool.query(`
    create table users (id serial primary key, username varchar(200) not null unique, created_at timestamptz not null,
      last_login_at timestamptz);
    create table social_associations (id serial primary key, user_id integer not null references users(id) on delete cascade,
      provider varchar(64) not null, uid varchar(255) not null, extra_data text not null, unique (provider, uid));
    create table sessions (id varchar(36) primary key, user_id integer not null references users(id) on delete cascade,
      created_at timestamptz not null, ip varchar(64), user_agent varchar(256), revoked_at timestamptz);
    create table refresh_tokens (id serial primary key, session_id varchar(36) not null references sessions(id) on delete cascade,
      token_hash varchar(64) not null unique, created_at timestamptz not null, expires_at timestamptz not null, used_at timestamptz);
    create table audit_events (id serial primary key, user_id integer, event varchar(32) not null, provider varchar(64),
      uid varchar(255), detail varchar(255), ip varchar(64), user_agent varchar(256), created_at timestamptz not null);
  `);
  await pool.query(
    `with u as (
       insert into users (username, created_at)
       select 'guest_' || p || '_' || uid, now() from unnest($1::text[], $2::text[]) as l(p, uid)
       returning id, username)
     insert into social_associations (user_id, provider, uid, extra_data)
     select u.id, l.p, l.uid, '{}' from unnest($1::text[], $2::text[]) as l(p, uid)
       join u on u.username = 'guest_' || l.p || '_' || l.uid`,
    [linked.map(([provider]) => provider), linked.map(([, uid]) => uid)],
  );

  const signIn: SignIn = async (provider, uid, ip, userAgent) => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: number; username: string }>({
        ...FIND_AND_HOLD,
        values: [provider, uid],
      });
      const user = rows[0];
      if (!user) {
        await client.query('ROLLBACK');
        return undefined;
      }
      const { sessionId, refreshToken, hash, at, expiresAt } = newSession();
      await client.query({
        ...WRITE,
        values: [user.id, at, sessionId, at, ip, userAgent, hash, expiresAt, provider, uid],
      });
      await client.query('COMMIT');
      return { user, sessionId, refreshToken };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  };
  const link: LinkStorage['link'] = async (userId, provider, uid, extraData, ip, userAgent) => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: number; owner: number | null }>({
        ...HOLD_AND_FIND_LINK,
        values: [userId, provider, uid],
      });
      const held = rows[0];
      if (!held) throw new Error('no such user');
      if (held.owner !== null) {
        await client.query('ROLLBACK');
        return held.owner === userId ? false : 'taken';
      }
      await client.query({
        ...INSERT_LINK,
        values: [userId, provider, uid, extraData, ip, userAgent, new Date().toISOString()],
      });
      await client.query('COMMIT');
      return true;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  };
  return {
    signIn,
    makeGuest: async (sessionId) =>
      (
        await pool.query<{ user_id: number }>({
          ...MAKE_GUEST,
          values: [`guest_${randomBytes(8).toString('hex')}`, new Date().toISOString(), sessionId],
        })
      ).rows[0]!.user_id,
    sessionUser: async (sessionId, userId) =>
      (await pool.query<{ id: number; username: string }>({ ...SESSION_USER, values: [sessionId, userId] })).rows[0],
    link,
    close: () => pool.end(),
  };
}

const storage = postgresUrl ? await postgresStorage(postgresUrl) : sqliteStorage();

// ---- the provider checks --------------------------------------------------------------------------------------

const jwks = createRemoteJWKSet(new URL(jwksUrl));
async function googleUid(body: { id_token?: unknown }): Promise<string> {
  const { payload } = await jwtVerify(String(body.id_token), jwks, {
    issuer: ['https://accounts.google.com', 'accounts.google.com'],
    audience,
    algorithms: ['RS256'],
  });
  return String(payload.sub);
}

// Facebook's Graph API, called as social-link's ProviderHttp calls it (bench/graph.ts).
const graph = new Graph();

/** Baseline F: debug_token proves the token valid, ours, and whose. */
async function facebookUid(body: { access_token?: unknown }): Promise<string> {
  const info = await graph.debugToken(String(body.access_token));
  if (info.status !== 200) throw new Error(`graph answered ${info.status}`);
  const data = info.body.data as { is_valid?: unknown; app_id?: unknown; user_id?: unknown } | undefined;
  if (data?.is_valid !== true || data.app_id !== graph.appId || typeof data.user_id !== 'string' || !data.user_id)
    throw new Error('invalid token');
  return data.user_id;
}

/** Baseline L: the Facebook check of a link (baseline A's two calls, together) — the account and its profile. */
async function facebookLink(token: string): Promise<{ uid: string; profile: Record<string, unknown> }> {
  const [profile, info] = await Promise.all([graph.me(token), graph.debugToken(token)]);
  if (profile.status !== 200 || info.status !== 200) throw new Error(`graph answered ${profile.status}/${info.status}`);
  const data = info.body.data as { is_valid?: unknown; app_id?: unknown; user_id?: unknown } | undefined;
  const uid = profile.body.id;
  if (data?.is_valid !== true || data.app_id !== graph.appId || typeof uid !== 'string' || data.user_id !== uid)
    throw new Error('invalid token');
  return { uid, profile: profile.body };
}

const checks: Record<string, [provider: string, check: (body: Record<string, unknown>) => Promise<string>]> = {
  '/api/auth/google/': ['google', googleUid],
  '/api/auth/facebook/': ['facebook', facebookUid],
};

// ---- the server -----------------------------------------------------------------------------------------------

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const sign = createSigner({
  algorithm: 'ES256',
  key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  header: { alg: 'ES256', typ: 'at+jwt', kid: 'c' },
  iss: 'social-link',
  aud: 'social-link',
  expiresIn: 900_000,
});
// Baseline L's access tokens, checked as social-link checks its own (core/tokens.ts).
const verify = createVerifier({
  key: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  algorithms: ['ES256'],
  allowedIss: 'social-link',
  allowedAud: 'social-link',
  checkTyp: 'at+jwt',
  requiredClaims: ['iss', 'aud', 'exp', 'sub', 'sid'],
  cache: 1000,
});

/** Baseline L: POST /api/users/ (a guest and its session) and POST /api/associate/facebook/. */
async function linkRoutes(url: string, headers: IncomingHttpHeaders, body: string, res: ServerResponse) {
  if (url === '/api/users/') {
    const sessionId = randomUUID();
    const userId = await storage.makeGuest(sessionId);
    return json(res, 201, JSON.stringify({ id: userId, access_token: sign({ sub: String(userId), sid: sessionId }) }));
  }
  let claims: { sub: string; sid: string };
  try {
    claims = verify((headers.authorization ?? '').replace(/^Bearer /, '')) as { sub: string; sid: string };
  } catch {
    return json(res, 401, '{"code":"not_authenticated"}');
  }
  const user = await storage.sessionUser(claims.sid, Number(claims.sub));
  if (!user) return json(res, 401, '{"code":"session_ended"}');
  let account: Awaited<ReturnType<typeof facebookLink>>;
  try {
    account = await facebookLink(String((JSON.parse(body) as { access_token?: unknown }).access_token));
  } catch {
    return json(res, 400, '{"code":"invalid_token"}');
  }
  const created = await storage.link(
    user.id,
    'facebook',
    account.uid,
    JSON.stringify(account.profile),
    '',
    headers['user-agent'] ?? '',
  );
  if (created === 'taken') return json(res, 409, '{"code":"already_associated"}');
  json(res, 200, JSON.stringify({ success: true, association: { provider: 'facebook', uid: account.uid, created } }));
}

const json = (res: ServerResponse, status: number, body: string) =>
  void res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(body);

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    void (async () => {
      if (req.method === 'GET') return json(res, 200, '{"status":"ok"}');
      if (req.url === '/api/users/' || req.url === '/api/associate/facebook/')
        return linkRoutes(req.url, req.headers, Buffer.concat(chunks).toString('utf8'), res).catch((error: unknown) => {
          console.error(`link failed: ${(error as Error).message}`);
          json(res, 503, '{"code":"database_unavailable"}');
        });
      const route = checks[req.url ?? ''];
      if (!route) return json(res, 404, '{"code":"not_found"}');
      const [provider, check] = route;
      let uid: string;
      try {
        uid = await check(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>);
      } catch {
        return json(res, 400, '{"code":"invalid_token"}');
      }
      try {
        const signedIn = await storage.signIn(
          provider,
          uid,
          req.socket.remoteAddress ?? '',
          req.headers['user-agent'] ?? '',
        );
        if (!signedIn) return json(res, 404, '{"code":"user_not_found"}');
        const accessToken = sign({ sub: String(signedIn.user.id), sid: signedIn.sessionId, jti: randomUUID() });
        json(
          res,
          200,
          JSON.stringify({
            id: signedIn.user.id,
            username: signedIn.user.username,
            access_token: accessToken,
            refresh_token: signedIn.refreshToken,
            token_type: 'Bearer',
            expires_in: 900,
          }),
        );
      } catch (error) {
        console.error(`sign-in failed: ${(error as Error).message}`);
        json(res, 503, '{"code":"database_unavailable"}');
      }
    })();
  });
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('not listening on TCP');
  console.log(JSON.stringify({ url: `http://127.0.0.1:${address.port}` }));
});

const stop = () => {
  server.close();
  void Promise.allSettled([storage.close(), graph.close()]).finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}
