// Baselines C and F: the work no sign-in can skip, and nothing else, on a bare node:http server. Per request:
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
//     (server-prepared) statements, 4 round trips: BEGIN; the link with its user, the user's row held FOR KEY SHARE
//     (social-link's holdOwner); one statement of data-modifying CTEs that touches last_login_at (skipping a row
//     another sign-in is writing), inserts the session, the refresh token's hash and the audit event (the shape of
//     social-link's startSessionPostgres); COMMIT. social-link makes one round trip more: it reads the link
//     before the transaction too (readLink), then holds the user and reads it again inside.
//
// Started by bench/run.ts with the linked accounts (BENCH_GOOGLE_SUBS, BENCH_FACEBOOK_UIDS); prints {"url": ...}.
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { createSigner } from 'fast-jwt';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import pg from 'pg';
import { Agent, request } from 'undici';

const jwksUrl = required('BENCH_GOOGLE_JWKS_URL');
const audience = required('BENCH_GOOGLE_CLIENT_ID');
const googleSubs = JSON.parse(required('BENCH_GOOGLE_SUBS')) as string[];
const graph = `${required('BENCH_FACEBOOK_API_URL')}/${process.env.BENCH_FACEBOOK_API_VERSION ?? 'v23.0'}`;
const appId = required('BENCH_FACEBOOK_APP_ID');
const appSecret = required('BENCH_FACEBOOK_APP_SECRET');
const facebookUids = JSON.parse(required('BENCH_FACEBOOK_UIDS')) as string[];
const postgresUrl = process.env.BENCH_BASELINE_DATABASE_URL;
const timeoutMs = Number(process.env.BENCH_PROVIDER_TIMEOUT_MS ?? 5000);

interface SignedIn {
  user: { id: number; username: string };
  sessionId: string;
  refreshToken: string;
}
type SignIn = (provider: string, uid: string, ip: string, userAgent: string) => Promise<SignedIn | undefined>;

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

function sqliteStorage(): { signIn: SignIn; close(): Promise<void> } {
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
  return {
    signIn: (provider, uid, ip, userAgent) => Promise.resolve(signIn(provider, uid, ip, userAgent)),
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
    'where link.provider = $1 and link.uid = $2 for key share of users',
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

async function postgresStorage(url: string): Promise<{ signIn: SignIn; close(): Promise<void> }> {
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
  return { signIn, close: () => pool.end() };
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

// As ProviderHttp does: one keep-alive pool per provider, a hard deadline on every call.
const agent = new Agent({
  keepAliveTimeout: 30_000,
  connect: { timeout: timeoutMs },
  headersTimeout: timeoutMs,
  bodyTimeout: timeoutMs,
});
async function facebookUid(body: { access_token?: unknown }): Promise<string> {
  const query = new URLSearchParams({ input_token: String(body.access_token), access_token: `${appId}|${appSecret}` });
  const response = await request(`${graph}/debug_token?${query}`, {
    method: 'GET',
    headers: { accept: 'application/json' },
    dispatcher: agent,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`graph answered ${response.statusCode}`);
  const { data } = JSON.parse(text) as { data?: { is_valid?: unknown; app_id?: unknown; user_id?: unknown } };
  if (data?.is_valid !== true || data.app_id !== appId || typeof data.user_id !== 'string' || !data.user_id)
    throw new Error('invalid token');
  return data.user_id;
}

const checks: Record<string, [provider: string, check: (body: Record<string, unknown>) => Promise<string>]> = {
  '/api/auth/google/': ['google', googleUid],
  '/api/auth/facebook/': ['facebook', facebookUid],
};

// ---- the server -----------------------------------------------------------------------------------------------

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const sign = createSigner({
  algorithm: 'ES256',
  key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  kid: 'c',
  iss: 'social-link',
  aud: 'social-link',
  expiresIn: 900_000,
});

const json = (res: ServerResponse, status: number, body: string) =>
  void res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(body);

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    void (async () => {
      if (req.method === 'GET') return json(res, 200, '{"status":"ok"}');
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
  void Promise.allSettled([storage.close(), agent.close()]).finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}
