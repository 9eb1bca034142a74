// `npm run bench:admin-search`: the console's and admin API's search with 1,000,000 users on PostgreSQL.
// Seeds a throwaway database (users, their social links, e-mails in the kept facts), then asks the admin API
// over HTTP with a service key, one request at a time, and reports each kind of search's latency (p50, p95,
// max). Target (issue 16): p95 < 50 ms. A benchmark, not a test: it reports, and exits 0 either way.
import { writeFileSync, mkdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import { loadConfig } from '../src/config/config.js';
import { startServer } from '../src/server/server.js';
import { migrateToLatest, openDatabase } from '../src/store/database.js';
import { Storage } from '../src/store/storage.js';
import { throwawayPostgres } from './throwaway-database.js';

const serverUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const USERS = Number(process.env.BENCH_USERS ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 200);
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

async function main() {
  const database = await throwawayPostgres(serverUrl, 'social_link_bench_admin');
  const db = openDatabase(database.url);
  try {
    await migrateToLatest(db);
    const started = performance.now();
    // Users over two years: 60 % guests (guest_<hex>), the rest named; links: Facebook for half, Google (with a
    // verified e-mail in its facts) for 40 %, Apple 20 %, LINE 10 %.
    await sql`
      insert into users (username, username_key, password_hash, created_at, updated_at, last_login_at)
      select name, lower(name), null, at, at, at + interval '1 day'
      from (select i, case when i % 5 < 3 then 'guest_' || substr(md5(i::text), 1, 16) else 'user' || i end as name,
                   now() - (${USERS} - i) * interval '63 seconds' as at
            from generate_series(1, ${USERS}) as i) as s`.execute(db);
    const link = (provider: string, every: string, uid: string, extra: string, email: string) =>
      sql.raw(`insert into social_associations (user_id, provider, uid, extra_data, verified_email, created_at, updated_at)
               select id, '${provider}', ${uid}, ${extra}::jsonb, ${email}, created_at, created_at from users where ${every}`);
    await link(
      'facebook',
      'id % 2 = 0',
      `(10150000000000000 + id)::text`,
      `json_build_object('id', (10150000000000000 + id)::text, 'name', 'User ' || id)::text`,
      'null',
    ).execute(db);
    await link(
      'google',
      'id % 5 < 2',
      `(100000000000000000000 + id::numeric)::text`,
      `json_build_object('email', 'user' || id || '@gmail.com', 'email_verified', true)::text`,
      `'user' || id || '@gmail.com'`,
    ).execute(db);
    await link(
      'apple',
      'id % 5 = 4',
      `'000' || id || '.' || substr(md5(id::text), 1, 32) || '.0420'`,
      `'{}'`,
      'null',
    ).execute(db);
    await link(
      'line',
      'id % 10 = 3',
      `'U' || md5(id::text)`,
      `json_build_object('displayName', 'User ' || id)::text`,
      'null',
    ).execute(db);
    await sql`analyze`.execute(db);
    const seeded = await sql<{
      users: string;
      links: string;
    }>`select (select count(*) from users) as users, (select count(*) from social_associations) as links`.execute(db);
    const seedSeconds = (performance.now() - started) / 1000;
    console.log(`seeded ${seeded.rows[0]!.users} users, ${seeded.rows[0]!.links} links in ${seedSeconds.toFixed(0)} s`);

    const { key } = await new Storage(db).serviceKeys.create('bench', ['read']);
    const config = loadConfig({
      DATABASE_URL: database.url,
      PORT: '0',
      LOG_LEVEL: 'warn',
      SOCIAL_LINK_ADMIN: 'true',
      RATE_LIMIT_ENABLED: 'false',
    });
    const app = await startServer({ config, logger: false });
    const address = app.server.address() as { port: number };
    const api = `http://127.0.0.1:${address.port}`;
    const random = (n: number) => 1 + Math.floor(Math.random() * n);
    const even = () => 2 * random(USERS / 2);
    const kinds: Record<string, () => string> = {
      'user id': () => `q=${random(USERS)}`,
      'Facebook uid (any provider)': () => `q=${10150000000000000 + even()}`,
      'Facebook uid, provider given': () => `q=${10150000000000000 + even()}&provider=facebook`,
      'e-mail in extra_data': () => `q=user${5 * random(USERS / 5 - 1)}%40gmail.com`,
      'username, exact': () => `q=user${5 * random(USERS / 5 - 1) + 3}`,
      'username prefix (many matches)': () => `q=guest_${Math.floor(Math.random() * 16).toString(16)}`,
      'nothing matches': () => `q=nobody-${random(USERS)}`,
      'browse, newest first': () => '',
      'browse, provider LINE': () => 'provider=line',
      'browse, created in one day': () => {
        const day = new Date(Date.now() - random(700) * 86_400_000).toISOString().slice(0, 10);
        return `created_from=${day}&created_to=${new Date(Date.parse(day) + 86_400_000).toISOString().slice(0, 10)}`;
      },
    };
    const get = async (query: string) => {
      const response = await fetch(`${api}/admin/api/users?${query}`, { headers: { authorization: `Bearer ${key}` } });
      if (response.status !== 200) throw new Error(`${query}: ${response.status} ${await response.text()}`);
      return (await response.json()) as { users: unknown[]; next: string | null };
    };
    // Warm up the pool and the plans.
    for (const make of Object.values(kinds)) for (let i = 0; i < 10; i++) await get(make());
    const rows: Array<{ kind: string; p50: number; p95: number; max: number; results: number }> = [];
    for (const [kind, make] of Object.entries(kinds)) {
      const times: number[] = [];
      let results = 0;
      for (let i = 0; i < ROUNDS; i++) {
        const t = performance.now();
        results += (await get(make())).users.length;
        times.push(performance.now() - t);
      }
      times.sort((a, b) => a - b);
      rows.push({
        kind,
        p50: percentile(times, 50),
        p95: percentile(times, 95),
        max: times.at(-1)!,
        results: results / ROUNDS,
      });
    }
    // Deep keyset paging: page 200 of the newest-first listing costs what page 1 does.
    let cursor: string | null = null;
    const pages: number[] = [];
    for (let page = 0; page < 200; page++) {
      const t = performance.now();
      cursor = (await get(`limit=50${cursor ? `&cursor=${cursor}` : ''}`)).next;
      pages.push(performance.now() - t);
    }
    pages.sort((a, b) => a - b);
    rows.push({
      kind: 'browse pages 1 to 200 (keyset)',
      p50: percentile(pages, 50),
      p95: percentile(pages, 95),
      max: pages.at(-1)!,
      results: 50,
    });
    await app.close();

    const worst = Math.max(...rows.map((row) => row.p95));
    const table = [
      `# Admin search with ${USERS.toLocaleString('en')} users on PostgreSQL`,
      '',
      `${new Date().toISOString()} · ${seeded.rows[0]!.links} links · ${ROUNDS} requests per kind, one at a time, over HTTP with a service key (each also writes its audit event)`,
      '',
      '| search | p50 ms | p95 ms | max ms | users per answer |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...rows.map(
        (row) =>
          `| ${row.kind} | ${row.p50.toFixed(1)} | ${row.p95.toFixed(1)} | ${row.max.toFixed(1)} | ${row.results.toFixed(1)} |`,
      ),
      '',
      `Worst p95: ${worst.toFixed(1)} ms — target p95 < 50 ms: ${worst < 50 ? 'PASS' : 'MISS'}`,
      '',
    ].join('\n');
    console.log(table);
    mkdirSync('bench/results', { recursive: true });
    writeFileSync('bench/results/admin-search.md', table);
  } finally {
    await db.destroy();
    await database.drop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
