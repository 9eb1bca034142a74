// Baseline C: the work no Google sign-in can skip, and nothing else — a bare node:http server that verifies the
// RS256 ID token against the cached JWKS (jose, as social-link), runs the sign-in transaction as raw
// better-sqlite3 statements (find the link and its user; touch last_login; insert the session, its refresh
// token's hash and the audit event, as social-link's sign-in writes them) and signs an ES256 access token
// (fast-jwt, as social-link). Started by bench/run.ts with the Google accounts to link; prints {"url": ...}.
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { createSigner } from 'fast-jwt';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const jwksUrl = required('BENCH_GOOGLE_JWKS_URL');
const audience = required('BENCH_GOOGLE_CLIENT_ID');
const subs = JSON.parse(required('BENCH_GOOGLE_SUBS')) as string[];

const dir = mkdtempSync(join(tmpdir(), 'social-link-baseline-c-'));
const db = new Sqlite(join(dir, 'c.sqlite'));
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('foreign_keys = ON');
db.exec(`
  create table users (id integer primary key autoincrement, username text not null unique, created_at text not null, last_login_at text);
  create table social_associations (id integer primary key autoincrement, user_id integer not null references users(id) on delete cascade,
    provider text not null, uid text not null, extra_data text not null, unique (provider, uid));
  create table sessions (id text primary key, user_id integer not null references users(id) on delete cascade, created_at text not null, revoked_at text);
  create table refresh_tokens (id integer primary key autoincrement, session_id text not null references sessions(id) on delete cascade,
    token_hash text not null unique, created_at text not null, expires_at text not null, used_at text);
  create table audit_events (id integer primary key autoincrement, user_id integer, event text not null, provider text, uid text, detail text,
    ip text, user_agent text, created_at text not null);
`);
const makeUser = db.prepare('insert into users (username, created_at) values (?, ?)');
const makeLink = db.prepare(
  "insert into social_associations (user_id, provider, uid, extra_data) values (?, 'google', ?, '{}')",
);
db.transaction(() => {
  for (const sub of subs) makeLink.run(makeUser.run(`guest_${sub}`, new Date().toISOString()).lastInsertRowid, sub);
})();

const findLinked = db.prepare<[string], { id: number; username: string }>(
  "select users.id, users.username from social_associations join users on users.id = social_associations.user_id where provider = 'google' and uid = ?",
);
const touch = db.prepare('update users set last_login_at = ? where id = ?');
const insertSession = db.prepare('insert into sessions (id, user_id, created_at) values (?, ?, ?)');
const insertRefresh = db.prepare(
  'insert into refresh_tokens (session_id, token_hash, created_at, expires_at) values (?, ?, ?, ?)',
);
const insertAudit = db.prepare(
  "insert into audit_events (user_id, event, provider, uid, ip, user_agent, created_at) values (?, 'social_sign_in', 'google', ?, ?, ?, ?)",
);
const signIn = db.transaction((sub: string, ip: string, userAgent: string) => {
  const user = findLinked.get(sub);
  if (!user) return undefined;
  const at = new Date().toISOString();
  const sessionId = randomUUID();
  const refreshToken = randomBytes(32).toString('base64url');
  touch.run(at, user.id);
  insertSession.run(sessionId, user.id, at);
  insertRefresh.run(
    sessionId,
    createHash('sha256').update(refreshToken).digest('hex'),
    at,
    new Date(Date.now() + 30 * 86_400_000).toISOString(),
  );
  insertAudit.run(user.id, sub, ip, userAgent, at);
  return { user, sessionId, refreshToken };
});

const jwks = createRemoteJWKSet(new URL(jwksUrl));
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const sign = createSigner({
  algorithm: 'ES256',
  key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  kid: 'c',
  iss: 'social-link',
  aud: 'social-link',
  expiresIn: 900_000,
});

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    void (async () => {
      if (req.method === 'GET')
        return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      try {
        const { id_token: idToken } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id_token?: string };
        const { payload } = await jwtVerify(String(idToken), jwks, {
          issuer: ['https://accounts.google.com', 'accounts.google.com'],
          audience,
          algorithms: ['RS256'],
        });
        const signedIn = signIn(String(payload.sub), req.socket.remoteAddress ?? '', req.headers['user-agent'] ?? '');
        if (!signedIn)
          return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"user_not_found"}');
        const accessToken = sign({ sub: String(signedIn.user.id), sid: signedIn.sessionId, jti: randomUUID() });
        const body = JSON.stringify({
          id: signedIn.user.id,
          username: signedIn.user.username,
          access_token: accessToken,
          refresh_token: signedIn.refreshToken,
          token_type: 'Bearer',
          expires_in: 900,
        });
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end(body);
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"code":"invalid_token"}');
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
  db.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}
