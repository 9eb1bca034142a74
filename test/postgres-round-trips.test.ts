import { createConnection, createServer, Socket, type Server } from 'node:net';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { MARKED_TEXTS_KEPT, PLANNED_EACH_RUN } from '../src/store/database.js';
import { Outbox } from '../src/store/outbox.js';
import { heldRunnerOf, prepared } from '../src/store/prepared.js';
import { Sessions } from '../src/store/sessions.js';
import { Storage } from '../src/store/storage.js';
import { runTransaction } from '../src/store/transaction.js';
import { call, databaseKinds, freshDatabase, guest, startStack, type Stack } from './helpers.js';

// A sign-in waits on PostgreSQL once per round trip, and each costs the server and PostgreSQL a wake-up: the count is
// the figure. It is read off the wire here: a proxy between the server and PostgreSQL that reads the protocol's
// messages (https://www.postgresql.org/docs/current/protocol-flow.html) and counts the times the server writes while
// it waits for no answer (every Query or Sync answered by its ReadyForQuery). BEGIN goes out with the transaction's
// first statement (pg's pipeline mode, store/database.ts): one round trip for both.

/** Counts round trips between clients and a PostgreSQL server; `reset()` starts a new count. */
class RoundTripCounter {
  roundTrips = 0;
  /** Statements run: every Bind (a prepared statement's run) and every simple Query (BEGIN, COMMIT, ROLLBACK). */
  statements = 0;
  /** The SQL of every statement parsed without a name (PostgreSQL plans it again at every run). */
  readonly unnamed: string[] = [];
  /** While set, the SQL of every named statement parsed (a connection parses each once, then runs it by name). */
  named?: Set<string>;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(target: URL) {
    this.server = createServer((client) => {
      const upstream = createConnection(Number(target.port || 5432), target.hostname);
      this.sockets.add(client).add(upstream);
      // Queries and Syncs written, not yet answered by a ReadyForQuery ('Z'); a message written while none is
      // awaited starts a round trip (the messages of one query, and any written before its answer, ride in it).
      let awaiting = 0;
      let idle = true;
      const fromClient = messages(true, (type, body) => {
        // A new connection's startup (answered by a ReadyForQuery too; trust auth: no exchange in between) and an
        // idle connection's goodbye (Terminate, when the pool closes it) are the pool's, not a statement's.
        if (type === 'X') return;
        // Parse: the statement's name, then its SQL, each ending with a zero byte.
        if (type === 'P' && body[0] === 0) this.unnamed.push(body.subarray(1, body.indexOf(0, 1)).toString());
        else if (type === 'P' && this.named) {
          const nameEnd = body.indexOf(0);
          this.named.add(body.subarray(nameEnd + 1, body.indexOf(0, nameEnd + 1)).toString());
        }
        if (type === 'B' || type === 'Q') this.statements++;
        if (idle && type !== 'startup') this.roundTrips++;
        idle = false;
        if (type === 'Q' || type === 'S' || type === 'startup') awaiting++;
      });
      const fromServer = messages(false, (type) => {
        if (type === 'Z' && --awaiting === 0) idle = true;
      });
      client.on('data', (chunk: Buffer) => {
        fromClient(chunk);
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        fromServer(chunk);
        client.write(chunk);
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('close', close).on('error', close);
      upstream.on('close', close).on('error', close);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as { port: number }).port;
  }

  reset(): void {
    this.roundTrips = 0;
    this.statements = 0;
    this.unnamed.length = 0;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/**
 * Splits a byte stream into protocol messages (a type byte, then an int32 length that counts itself) and calls
 * `each` with each type and body. The client's first message, the startup, has no type byte: 'startup'.
 */
function messages(startsUntyped: boolean, each: (type: string, body: Buffer) => void): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0);
  let untyped = startsUntyped;
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      const header = untyped ? 4 : 5;
      if (buffered.length < header) return;
      const length = buffered.readInt32BE(untyped ? 0 : 1);
      const size = untyped ? length : length + 1;
      if (buffered.length < size) return;
      each(untyped ? 'startup' : String.fromCharCode(buffered[0]!), buffered.subarray(header, size));
      untyped = false;
      buffered = buffered.subarray(size);
    }
  };
}

/**
 * The writes (each a system call) this process makes to the server at `port` while `work` runs: what the receiving end
 * cannot count, as the kernel joins writes made in one turn before it reads them.
 */
async function socketWritesTo(port: number, work: () => Promise<unknown>): Promise<number> {
  type Write = (this: Socket, ...args: unknown[]) => void;
  const prototype = Socket.prototype as unknown as { _write: Write; _writev: Write };
  const { _write: write, _writev: writev } = prototype;
  let writes = 0;
  prototype._write = function (...args) {
    if (this.remotePort === port) writes++;
    write.apply(this, args);
  };
  prototype._writev = function (...args) {
    if (this.remotePort === port) writes++;
    writev.apply(this, args);
  };
  try {
    await work();
  } finally {
    prototype._write = write;
    prototype._writev = writev;
  }
  return writes;
}

describe.skipIf(!databaseKinds().includes('postgres'))('round trips to PostgreSQL per sign-in', () => {
  let counter: RoundTripCounter;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let stack: Stack;
  let proxiedUrl: string;

  beforeAll(async () => {
    database = await freshDatabase('postgres', { migrated: true });
    const direct = new URL(database.url);
    counter = new RoundTripCounter(direct);
    const proxied = new URL(direct);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(await counter.listen());
    proxiedUrl = proxied.toString();
    stack = await startStack('postgres', { DATABASE_URL: proxiedUrl });
  });
  afterAll(async () => {
    await stack?.close();
    await counter?.close();
    await database?.drop();
  });
  beforeEach(() => counter.reset());

  /** A new guest, linked to the account of `body` (that provider's token). */
  async function linkedGuest(provider: string, body: Record<string, string>) {
    const user = await guest(stack.api);
    const linked = await call(stack.api, 'POST', `/api/associate/${provider}/`, { token: user.access_token, body });
    expect(linked.status).toBe(200);
    return user;
  }

  it('counts the wire: a query alone is one round trip, a transaction of one statement two', async () => {
    await stack.db.selectFrom('users').select('id').execute();
    expect(counter.roundTrips).toBe(1);
    counter.reset();
    // BEGIN and the statement go together, in one write; COMMIT is awaited alone (its answer says whether it committed).
    await stack.db.transaction().execute((trx) => trx.selectFrom('users').select('id').execute());
    expect(counter.roundTrips).toBe(2);
  });

  it("writes BEGIN with the transaction's first statement: one system call for both", async () => {
    const port = Number(new URL(proxiedUrl).port);
    const writes = await socketWritesTo(port, () =>
      stack.db.transaction().execute((trx) => trx.selectFrom('users').select('id').execute()),
    );
    // BEGIN + the statement, then COMMIT (written apart, the first pair would be 2 writes: 3 in all).
    expect(writes).toBe(2);
  });

  it('a Facebook sign-in of a linked user: 2 (BEGIN with the link and its held user; the session with COMMIT)', async () => {
    const fb = await stack.emulator.mintFacebookToken();
    const user = await linkedGuest('facebook', { access_token: fb.access_token });
    // The same token: the facts kept on the link are the same, so the sign-in writes no new ones (a token minted a
    // second later would carry another expiry, kept with one more statement).
    counter.reset();
    const signedIn = await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
    expect(signedIn.status).toBe(200);
    expect(signedIn.body).toMatchObject({ id: user.id });
    expect(counter.roundTrips).toBe(2);
    // Every statement of it is a named (prepared) one: none is parsed and planned again at each sign-in.
    expect(counter.unnamed).toEqual([]);
    // One system call for each round trip: the session's statement and the COMMIT go in one write.
    const port = Number(new URL(proxiedUrl).port);
    const writes = await socketWritesTo(port, async () => {
      const again = await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } });
      expect(again.status).toBe(200);
    });
    expect(writes).toBe(2);
    // What the session's statement wrote is there, committed: the session answers.
    expect((await call(stack.api, 'GET', '/api/me/', { token: signedIn.body.access_token })).status).toBe(200);
  });

  it('a Facebook sign-in whose token brings new facts: still 2 (the facts go out with the session and COMMIT)', async () => {
    const fb = await stack.emulator.mintFacebookToken();
    await linkedGuest('facebook', { access_token: fb.access_token });
    // Another token of the account, expiring at another time: a fact the link keeps (debug_token's expires_at).
    const later = await stack.emulator.mintFacebookToken({ user: { id: fb.user_id }, expires_in: 7 * 86_400 });
    expect(later.expires_at).not.toBe(fb.expires_at);
    const factsOf = async () =>
      (
        await stack.db
          .selectFrom('social_associations')
          .select('extra_data')
          .where('provider', '=', 'facebook')
          .where('uid', '=', fb.user_id)
          .executeTakeFirstOrThrow()
      ).extra_data;
    const before = await factsOf();
    counter.reset();
    const signedIn = await call(stack.api, 'POST', '/api/auth/facebook/', {
      body: { access_token: later.access_token },
    });
    expect(signedIn.status).toBe(200);
    expect(counter.roundTrips).toBe(2);
    expect(counter.unnamed).toEqual([]);
    const after = await factsOf();
    expect(after).not.toEqual(before);
    expect(JSON.stringify(after)).toContain(String(later.expires_at));
  });

  it('a Google sign-in of a linked user, its new ID token bringing new facts: 2 (the facts go out with the COMMIT)', async () => {
    const first = await stack.emulator.mintIdToken('google');
    const user = await linkedGuest('google', { id_token: first.id_token });
    const again = await stack.emulator.mintIdToken('google', { sub: first.sub, name: 'another token' });
    counter.reset();
    const signedIn = await call(stack.api, 'POST', '/api/auth/google/', { body: { id_token: again.id_token } });
    expect(signedIn.status).toBe(200);
    expect(signedIn.body).toMatchObject({ id: user.id });
    // (With SOCIAL_AUTH_ID_TOKEN_REPLAY=refuse the token's single use is one more statement, its answer awaited.)
    expect(counter.roundTrips).toBe(2);
    expect(counter.unnamed).toEqual([]);
    const link = await stack.db
      .selectFrom('social_associations')
      .select('extra_data')
      .where('provider', '=', 'google')
      .where('uid', '=', first.sub)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(link.extra_data)).toContain('another token');
  });

  it("a Facebook link: 4 (the session; BEGIN with the held user and the account's link; the link with its event; COMMIT)", async () => {
    const user = await guest(stack.api);
    const fb = await stack.emulator.mintFacebookToken();
    counter.reset();
    const linked = await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: fb.access_token },
    });
    expect(linked.status).toBe(200);
    expect(counter.roundTrips).toBe(4);
    expect(counter.unnamed).toEqual([]);
    // The link and its audit event, both written by the one statement.
    const events = await stack.db
      .selectFrom('audit_events')
      .select(['event', 'provider', 'uid', 'ip', 'user_agent'])
      .where('user_id', '=', user.id)
      .where('event', '=', 'associated')
      .execute();
    expect(events).toEqual([
      {
        event: 'associated',
        provider: 'facebook',
        uid: fb.user_id,
        ip: expect.any(String),
        user_agent: expect.any(String),
      },
    ]);
  });

  it('plans every lookup of what an app calls (sign-in, link, refresh, sign-out, …) by its key, on tables never analyzed', async () => {
    // PostgreSQL plans a named statement once per connection and keeps that generic plan until the table is analyzed
    // (never, with autovacuum off). A plan made on a new database's empty tables must still go by the account's and the
    // session's keys: one that went by (provider, user_id) read every link of the provider at each sign-in once there
    // were thousands (migration 0024). New connections, so that each statement is parsed, and recorded, again.
    await stack.close();
    stack = await startStack('postgres', { DATABASE_URL: proxiedUrl });
    counter.named = new Set();
    const fb = await stack.emulator.mintFacebookToken();
    const user = await linkedGuest('facebook', { access_token: fb.access_token });
    expect(
      (await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: fb.access_token } })).status,
    ).toBe(200);
    const google = await stack.emulator.mintIdToken('google');
    const other = await linkedGuest('google', { id_token: google.id_token });
    expect((await call(stack.api, 'GET', '/api/me/', { token: user.access_token })).status).toBe(200);
    // And the rest of what an app calls: a second link and its removal, the lists, a refresh, a nonce, a sign-out, a
    // deleted account.
    const second = await stack.emulator.mintIdToken('google');
    const asUser = { token: user.access_token };
    expect(
      (await call(stack.api, 'POST', '/api/associate/google/', { ...asUser, body: { id_token: second.id_token } }))
        .status,
    ).toBe(200);
    expect((await call(stack.api, 'GET', '/api/associations/', asUser)).status).toBe(200);
    expect((await call(stack.api, 'DELETE', `/api/associations/google/${second.sub}/`, asUser)).status).toBe(204);
    expect((await call(stack.api, 'GET', '/api/audit/', asUser)).status).toBe(200);
    const refreshed = await call(stack.api, 'POST', '/api/token/refresh/', {
      body: { refresh_token: user.refresh_token },
    });
    expect(refreshed.status).toBe(200);
    expect((await call(stack.api, 'POST', '/api/nonce/')).status).toBe(200);
    expect((await call(stack.api, 'POST', '/api/logout/', { token: refreshed.body.access_token })).status).toBe(204);
    expect((await call(stack.api, 'DELETE', '/api/me/', { token: other.access_token })).status).toBe(204);
    const statements = [...counter.named];
    counter.named = undefined;
    expect(statements.some((text) => /"uid" = \$/.test(text))).toBe(true);

    const planner = new pg.Client({ connectionString: database.url });
    await planner.connect();
    const scans: Array<{ scan: string; table: string; condition: string }> = [];
    try {
      // The state the trap needs: tables the planner has no statistics of (autovacuum would analyze them in time).
      const analyzed = await planner.query(
        `select relname from pg_class where relname in ('social_associations', 'sessions') and reltuples >= 0`,
      );
      expect(analyzed.rows).toEqual([]);
      await planner.query('set plan_cache_mode = force_generic_plan');
      for (const [index, text] of statements.entries()) {
        const parameters = Math.max(0, ...[...text.matchAll(/\$(\d+)/g)].map((match) => Number(match[1])));
        await planner.query(`prepare statement_${index} as ${text}`);
        const nulls = Array.from({ length: parameters }, () => 'null').join(', ');
        const plan = await planner.query<{ 'QUERY PLAN': string }>(
          `explain execute statement_${index}${parameters ? `(${nulls})` : ''}`,
        );
        const lines = plan.rows.map((row) => row['QUERY PLAN']);
        // Each scan with the condition it reads by: "Index Scan using sessions_pkey on sessions: (id)::text = $1".
        for (const [at, line] of lines.entries()) {
          const scan =
            /(Seq Scan|Index Scan(?: Backward)?|Index Only Scan(?: Backward)?|Bitmap Heap Scan)(?: using \S+)? on (\S+)/.exec(
              line,
            );
          if (!scan) continue;
          const condition = /(?:Index Cond|Recheck Cond): (.*)/.exec(lines[at + 1] ?? '')?.[1] ?? '';
          scans.push({ scan: line.trim(), table: scan[2]!, condition });
        }
      }
    } finally {
      await planner.end();
    }
    const hot = [
      'users',
      'social_associations',
      'sessions',
      'refresh_tokens',
      'id_token_uses',
      'nonces',
      'audit_events',
    ];
    expect(scans.filter(({ scan, table }) => scan.startsWith('Seq Scan') && hot.includes(table))).toEqual([]);
    // A link is found by its uid (the unique key or the uid index), or its user's: never by its provider alone.
    expect(
      scans.filter(
        ({ table, condition }) => table === 'social_associations' && !/\buid\b|\buser_id\b|\(id =/.test(condition),
      ),
    ).toEqual([]);
    // A session by its key, never through its user's sessions.
    expect(scans.filter(({ table, condition }) => table === 'sessions' && !/\(id\)::text = /.test(condition))).toEqual(
      [],
    );
  });

  it("plans the webhook dispatcher's statements at each run, for the outbox's size then (none is named)", async () => {
    // A named statement keeps the plan made when its connection first ran it: made while the outbox was small, the
    // rows of a claim and their record were read by a walk of the whole table (bench/README "Memory": 120 ms each over
    // 200,000 deliveries; a backlog that grew faster than it drained).
    const endpoint = 'https://hooks.example/planned';
    const storage = new Storage(stack.db, false, [endpoint]);
    const user = await guest(stack.api);
    await storage.transaction((trx) => trx.outbox.emit({ type: 'sign_in', userId: user.id, data: {} }));
    counter.reset();
    counter.named = new Set();
    const due = await storage.transaction((trx) => trx.outbox.claim(endpoint, 50));
    expect(due.map((delivery) => delivery.userId)).toEqual([user.id]);
    await storage.outbox.delivered(due.map((delivery) => delivery.id));
    expect(await storage.outbox.backlog()).toEqual({ pending: 0, oldestCreatedAt: undefined });
    await storage.outbox.purgeDelivered(new Date(0).toISOString());
    const named = [...counter.named];
    counter.named = undefined;
    expect(named.filter((text) => /webhook_deliveries|outbox/.test(text))).toEqual([]);
    // The claim's user fill-in, its walk, its rows; their record; the backlog's count and oldest; the purge.
    expect(counter.unnamed).toHaveLength(7);
    expect(counter.unnamed.filter((text) => !text.startsWith(PLANNED_EACH_RUN))).toEqual([]);
  });

  it('a failing first statement still rolls the transaction back, and the connection serves the next one', async () => {
    await expect(
      stack.db.transaction().execute(async (trx) => {
        await trx
          .selectFrom('no_such_table' as 'users')
          .select('id')
          .execute();
      }),
    ).rejects.toThrow(/no_such_table/);
    const before = await stack.db.selectFrom('users').select('id').execute();
    await expect(
      stack.db.transaction().execute(async (trx) => {
        await trx
          .insertInto('users')
          .values({
            username: 'rolled-back',
            username_key: 'rolled-back',
            created_at: new Date().toISOString(),
            updated_at: new Date().toISOString(),
          })
          .execute();
        throw new Error('abandoned');
      }),
    ).rejects.toThrow('abandoned');
    expect(await stack.db.selectFrom('users').select('id').execute()).toHaveLength(before.length);
  });

  describe('a statement written with the next one (prepared.ts `later`)', () => {
    const insertUser = prepared((db, name: string, at: string) =>
      db.insertInto('users').values({ username: name, username_key: name, created_at: at, updated_at: at }),
    );
    const countUsers = prepared((db, name: string) =>
      db
        .selectFrom('users')
        .select((eb) => eb.fn.count<string>('id').as('count'))
        .where('username_key', '=', name),
    );
    const usersNamed = async (name: string) =>
      Number(
        (
          await stack.db
            .selectFrom('users')
            .select((eb) => eb.fn.countAll<string>().as('count'))
            .where('username_key', '=', name)
            .executeTakeFirstOrThrow()
        ).count,
      );
    const at = () => new Date().toISOString();

    it('goes out with the next statement, which sees it: one round trip for both', async () => {
      const name = `later-${randomUUID()}`;
      const seen = await runTransaction(stack.db, async (trx) => {
        await countUsers(trx, name); // BEGIN with it: the first round trip
        counter.reset();
        await insertUser.later(trx, name, at());
        expect(counter.roundTrips).toBe(0);
        return Number((await countUsers(trx, name)).rows[0]!.count);
      });
      expect(seen).toBe(1);
      expect(counter.roundTrips).toBe(2); // the held insert with the count; COMMIT
      expect(await usersNamed(name)).toBe(1);
    });

    it('is held and run whatever the number of texts marked (the marked texts kept are bounded)', async () => {
      // More texts than database.ts keeps marked: those past the bound are marked and taken off anew at each run.
      // Planned at each run, so that this test's texts take none of the pool's statement names.
      const name = `later-${randomUUID()}`;
      const texts = Array.from(
        { length: MARKED_TEXTS_KEPT + 20 },
        (_, index) =>
          `${PLANNED_EACH_RUN}insert into users (username, username_key, created_at, updated_at) ` +
          `select $1 || '-${index}', $1 || '-${index}', $2, $2`,
      );
      await runTransaction(stack.db, async (trx) => {
        await countUsers(trx, name);
        counter.reset();
        for (const text of texts) await heldRunnerOf(trx)!.later(text, [name, at()]);
        expect(counter.roundTrips).toBe(0);
      });
      expect(counter.roundTrips).toBe(1); // every held insert with the COMMIT
      const written = await stack.db
        .selectFrom('users')
        .select((eb) => eb.fn.countAll<string>().as('count'))
        .where('username', 'like', `${name}-%`)
        .executeTakeFirstOrThrow();
      expect(Number(written.count)).toBe(texts.length);
    });

    it('goes out with the COMMIT: a transaction ending with it makes two round trips and two writes', async () => {
      const name = `later-${randomUUID()}`;
      const port = Number(new URL(proxiedUrl).port);
      const writes = await socketWritesTo(port, () =>
        runTransaction(stack.db, async (trx) => {
          await countUsers(trx, name);
          await insertUser.later(trx, name, at());
        }),
      );
      expect(counter.roundTrips).toBe(2);
      expect(writes).toBe(2);
      expect(await usersNamed(name)).toBe(1);
    });

    it('fails the transaction when it fails: its own error, nothing of the transaction kept, the pool still serves', async () => {
      const taken = `later-${randomUUID()}`;
      await runTransaction(stack.db, (trx) => insertUser(trx, taken, at()));
      const other = `${taken}-other`;
      const failed = runTransaction(stack.db, async (trx) => {
        await insertUser(trx, other, at());
        await insertUser.later(trx, taken, at()); // a unique violation, seen only at the COMMIT
        return 'committed';
      });
      await expect(failed).rejects.toMatchObject({ code: '23505' });
      expect(await usersNamed(other)).toBe(0);
      expect(await usersNamed(taken)).toBe(1);
      // The failure was the statement's, not the connection's: its connection goes back to the pool, kept, and every
      // connection serves again (a COMMIT's own failure drops its connection instead).
      const backendOf = prepared((db) => db.selectNoFrom(sql<number>`pg_backend_pid()`.as('pid')));
      let failedOn: number | undefined;
      await expect(
        runTransaction(stack.db, async (trx) => {
          failedOn = (await backendOf(trx)).rows[0]!.pid;
          await insertUser.later(trx, taken, at());
        }),
      ).rejects.toMatchObject({ code: '23505' });
      const pids = await Promise.all(
        Array.from({ length: 25 }, () => runTransaction(stack.db, async (trx) => (await backendOf(trx)).rows[0]!.pid)),
      );
      expect(pids).toContain(failedOn);
      const all = await Promise.all(
        Array.from({ length: 25 }, () => runTransaction(stack.db, (trx) => countUsers(trx, taken))),
      );
      expect(all.map((result) => Number(result.rows[0]!.count))).toEqual(Array(25).fill(1));
    });

    it("a sign-in's session and its webhook event both go out with the COMMIT: 2 round trips with webhooks on", async () => {
      const user = await guest(stack.api);
      const endpoints = ['https://hooks.example/a', 'https://hooks.example/b'];
      counter.reset();
      const sessionId = randomUUID();
      await runTransaction(stack.db, async (trx) => {
        // The sign-in's first statement (BEGIN with it), then its session, as Sessions.start writes it.
        await countUsers(trx, 'nobody');
        const sessions = new Sessions(trx, new Outbox(trx, endpoints));
        await sessions.start(
          user.id,
          {
            id: sessionId,
            refreshTokenHash: 'hash-' + sessionId,
            refreshExpiresAt: new Date(Date.now() + 60_000).toISOString(),
          },
          { event: 'social_sign_in', userId: user.id, provider: 'facebook', uid: 'u-' + sessionId },
          { ip: '127.0.0.1', userAgent: 'test' },
        );
      });
      expect(counter.roundTrips).toBe(2);
      expect(counter.unnamed).toEqual([]);
      // One event, a pending delivery of it per endpoint, with the event's user.
      const events = await stack.db
        .selectFrom('outbox')
        .select(['id', 'type', 'user_id', 'payload'])
        .where('user_id', '=', user.id)
        .where('type', '=', 'sign_in')
        .execute();
      expect(events).toHaveLength(1);
      expect(JSON.parse(events[0]!.payload)).toMatchObject({ type: 'sign_in', data: { user_id: user.id } });
      const deliveries = await stack.db
        .selectFrom('webhook_deliveries')
        .select(['endpoint', 'status', 'attempts', 'user_id', 'locked_until', 'delivered_at'])
        .where('outbox_id', '=', events[0]!.id)
        .orderBy('endpoint')
        .execute();
      expect(deliveries).toEqual(
        endpoints.map((endpoint) => ({
          endpoint,
          status: 'pending',
          attempts: 0,
          user_id: user.id,
          locked_until: null,
          delivered_at: null,
        })),
      );
      expect(
        await stack.db.selectFrom('sessions').select('user_id').where('id', '=', sessionId).executeTakeFirst(),
      ).toEqual({ user_id: user.id });
    });

    it('is never written when the transaction fails before its next statement: the ROLLBACK alone goes out', async () => {
      const name = `later-${randomUUID()}`;
      await expect(
        runTransaction(stack.db, async (trx) => {
          await countUsers(trx, name);
          counter.reset();
          await insertUser.later(trx, name, at());
          throw new Error('abandoned');
        }),
      ).rejects.toThrow('abandoned');
      expect(counter.roundTrips).toBe(1);
      expect(counter.statements).toBe(1); // the ROLLBACK, not the insert
      expect(await usersNamed(name)).toBe(0);
      // A transaction none of which was written has nothing to roll back: no round trip at all.
      counter.reset();
      await expect(
        runTransaction(stack.db, async () => {
          throw new Error('before any statement');
        }),
      ).rejects.toThrow('before any statement');
      expect(counter.roundTrips).toBe(0);
    });
  });
});
