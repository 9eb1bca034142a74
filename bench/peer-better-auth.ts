// The peer of `npm run bench:peer`: Better Auth (the version pinned in package.json) configured as its documentation
// says for native ID-token sign-in with Google (`socialProviders.google`, POST /api/auth/sign-in/social with
// `idToken`), on node:http through its own `toNodeHandler`. Started by bench/peer.ts; prints {"url": ...} on one
// stdout line when listening. GET /healthz answers 200 (for bench/processes.ts's waitForHealthy).
//
// Environment: BENCH_PEER_DATABASE_URL (sqlite:<file> or postgres://…), BENCH_PEER_GOOGLE_JWKS_URL (the emulator's
// Google JWKS), BENCH_PEER_GOOGLE_CLIENT_IDS (comma-separated), BETTER_AUTH_SECRET, PORT. BENCH_PEER_TRACE=1 prints
// every SQL statement the driver runs (one JSON line each, {"sql": …}; better-sqlite3's `verbose`, pg's
// client.query): bench/peer.ts uses it once to list them for one sign-in.
//
// Better Auth verifies a Google ID token against https://www.googleapis.com/oauth2/v3/certs, fetched on every
// sign-in. Nothing may leave loopback here, so the provider's documented `verifyIdToken` option does the same check
// (Better Auth's own options for Google: RS256, Google's issuers, the client ids, required claims, 30 s clock
// tolerance, at most an hour old) with jose's createRemoteJWKSet on the emulator's JWKS: keys cached in memory,
// as social-link caches them.
import { createServer } from 'node:http';
import SQLite from 'better-sqlite3';
import { betterAuth, type BetterAuthOptions } from 'better-auth';
import { getMigrations } from 'better-auth/db/migration';
import { toNodeHandler } from 'better-auth/node';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import pg from 'pg';

const required = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};
const databaseUrl = required('BENCH_PEER_DATABASE_URL');
const jwks = createRemoteJWKSet(new URL(required('BENCH_PEER_GOOGLE_JWKS_URL')));
const clientIds = required('BENCH_PEER_GOOGLE_CLIENT_IDS').split(',');
const trace = process.env.BENCH_PEER_TRACE === '1';
const port = Number(process.env.PORT ?? 0);

/** Prints one SQL statement (BENCH_PEER_TRACE=1). */
const log = (sql: unknown) =>
  console.log(JSON.stringify({ sql: typeof sql === 'string' ? sql : (sql as { text?: string }).text }));

/** better-sqlite3 with social-link's settings (WAL, synchronous NORMAL, busy timeout), or a pg Pool of its size (20). */
function database(): { sqlite?: SQLite.Database; pool?: pg.Pool } {
  if (databaseUrl.startsWith('sqlite:')) {
    const sqlite = new SQLite(databaseUrl.slice('sqlite:'.length), trace ? { verbose: log } : {});
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    return { sqlite };
  }
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 20 });
  if (trace)
    pool.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as { query: unknown }).query = (...args: unknown[]) => (log(args[0]), query(...args));
    });
  return { pool };
}

// The database object itself, as Better Auth documents it: it wraps it in its Kysely adapter (with transactions).
const { sqlite, pool } = database();

const options = {
  baseURL: `http://127.0.0.1:${port}`,
  secret: required('BETTER_AUTH_SECRET'),
  database: sqlite ?? pool!,
  // As social-link under the bench (RATE_LIMIT_ENABLED=false): one client address sends everything.
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  logger: { level: 'warn' },
  socialProviders: {
    google: {
      clientId: clientIds[0]!,
      clientSecret: 'unused: ID-token sign-in only',
      // Better Auth's own check of a Google ID token, on the emulator's keys (cached by jose).
      verifyIdToken: async (token: string) => {
        try {
          await jwtVerify(token, jwks, {
            issuer: ['https://accounts.google.com', 'accounts.google.com'],
            audience: clientIds,
            algorithms: ['RS256'],
            maxTokenAge: '1h',
            requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
            clockTolerance: 30,
          });
          return true;
        } catch {
          return false;
        }
      },
    },
  },
} satisfies BetterAuthOptions;

const { runMigrations } = await getMigrations(options);
await runMigrations();
const auth = betterAuth(options);
const handler = toNodeHandler(auth);

const server = createServer((request, response) => {
  if (request.url === '/healthz') {
    response.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  void handler(request, response);
});
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  const listening = address && typeof address === 'object' ? address.port : port;
  console.log(JSON.stringify({ url: `http://127.0.0.1:${listening}` }));
});

const stop = () => {
  server.closeAllConnections();
  server.close(() => {
    sqlite?.close();
    void (pool?.end() ?? Promise.resolve()).finally(() => process.exit(0));
  });
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
