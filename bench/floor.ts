// `npm run bench:floor`: the work a sign-in cannot skip, measured alone on this machine, with no HTTP, no
// framework and no query builder: the ES256 signature of our access token, the RS256 check of a Google ID
// token, the ES256 check of our access token (associate), and the sign-in's database transaction as raw
// better-sqlite3 statements (find the link and its user; last login, session, refresh token, audit event;
// commit, with the WAL checkpoints that commits cause). Whatever the code around it, a request costs at
// least this much CPU; bench/README.md compares it with the benchmark's baselines.
import { createHash, generateKeyPairSync, randomBytes, randomUUID, sign, verify } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { migrateToLatest, type Database } from '../src/store/database.js';

const ROUNDS = Number(process.env.BENCH_FLOOR_ROUNDS ?? 5000);

/** CPU µs per call (user + system of this process), after a warm-up. */
function cpuMicros(run: () => void, rounds = ROUNDS): number {
  for (let i = 0; i < Math.min(500, rounds); i++) run();
  const before = process.cpuUsage();
  for (let i = 0; i < rounds; i++) run();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / rounds;
}

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingInput = Buffer.from(`${'h'.repeat(80)}.${'p'.repeat(200)}`);
const es256 = sign('sha256', signingInput, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
const rs256 = sign('sha256', signingInput, rsa.privateKey);

const crypto = {
  'ES256 sign (our access token)': cpuMicros(() =>
    sign('sha256', signingInput, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }),
  ),
  'ES256 verify (our access token, associate)': cpuMicros(() =>
    verify('sha256', signingInput, { key: ec.publicKey, dsaEncoding: 'ieee-p1363' }, es256),
  ),
  'RS256 verify (a Google ID token)': cpuMicros(() => verify('sha256', signingInput, rsa.publicKey, rs256)),
};

// The sign-in transaction on the real schema (migrations applied), WAL + synchronous=NORMAL as the server runs.
const dir = mkdtempSync(join(tmpdir(), 'social-link-floor-'));
const path = join(dir, 'floor.sqlite');
const sqlite = new SQLite(path);
for (const pragma of ['journal_mode = WAL', 'synchronous = NORMAL', 'foreign_keys = ON']) sqlite.pragma(pragma);
await migrateToLatest(new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) }));
const now = () => new Date().toISOString();
const USERS = 200;
for (let i = 1; i <= USERS; i++) {
  sqlite.prepare('insert into users (username, created_at, updated_at) values (?, ?, ?)').run(`u${i}`, now(), now());
  sqlite
    .prepare(
      'insert into social_associations (user_id, provider, uid, extra_data, created_at, updated_at) values (?, ?, ?, ?, ?, ?)',
    )
    .run(i, 'google', `g${i}`, '{}', now(), now());
}
const statements = {
  begin: sqlite.prepare('begin immediate'),
  link: sqlite.prepare(
    'select * from social_associations join users on users.id = social_associations.user_id where provider = ? and uid = ?',
  ),
  touch: sqlite.prepare('update users set last_login_at = ? where id = ?'),
  session: sqlite.prepare('insert into sessions (id, user_id, created_at, expires_at) values (?, ?, ?, ?)'),
  refresh: sqlite.prepare(
    'insert into refresh_tokens (session_id, token_hash, created_at, expires_at) values (?, ?, ?, ?)',
  ),
  audit: sqlite.prepare(
    'insert into audit_events (user_id, event, provider, uid, ip, user_agent, created_at) values (?, ?, ?, ?, ?, ?, ?)',
  ),
  commit: sqlite.prepare('commit'),
};
let n = 0;
const signInTransaction = () => {
  const user = (n++ % USERS) + 1;
  const session = randomUUID();
  const at = now();
  statements.begin.run();
  statements.link.get('google', `g${user}`);
  statements.touch.run(at, user);
  statements.session.run(session, user, at, at);
  statements.refresh.run(session, createHash('sha256').update(randomBytes(32)).digest('hex'), at, at);
  statements.audit.run(user, 'social_sign_in', 'google', `g${user}`, '127.0.0.1', 'floor', at);
  statements.commit.run();
};
// Wall time too: a commit that checkpoints waits on fsync, which blocks the event loop but is not CPU.
const wallStarted = performance.now();
const transactionCpu = cpuMicros(signInTransaction, 20_000);
const transactionWall = ((performance.now() - wallStarted) * 1000) / 20_500;
sqlite.close();
rmSync(dir, { recursive: true, force: true });

const rows: Array<[string, number]> = [
  ...Object.entries(crypto),
  ['SQLite sign-in transaction (6 statements + commit), CPU', transactionCpu],
];
console.log('\nThe floor of a sign-in on this machine (µs per operation; lower bounds, nothing around them):\n');
for (const [name, micros] of rows) console.log(`  ${name.padEnd(58)} ${micros.toFixed(0).padStart(6)} µs`);
console.log(
  `  ${'SQLite sign-in transaction, wall (incl. fsync at checkpoints)'.padEnd(58)} ${transactionWall.toFixed(0).padStart(6)} µs`,
);
const authGoogle =
  crypto['RS256 verify (a Google ID token)'] + crypto['ES256 sign (our access token)'] + transactionCpu;
const authFacebook = crypto['ES256 sign (our access token)'] + transactionCpu;
console.log(
  `\n  case 2 (auth/google) floor:   RS256 verify + ES256 sign + transaction = ${authGoogle.toFixed(0)} µs of CPU`,
);
console.log(
  `  case 1 (auth/facebook) floor: ES256 sign + transaction, on top of baseline A's work = ${authFacebook.toFixed(0)} µs of CPU`,
);
process.exit(0);
