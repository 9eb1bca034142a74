import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';

/**
 * A new, empty database on the PostgreSQL server of `serverUrl` (e.g. postgres://postgres@127.0.0.1:5432/test);
 * `drop()` removes it. `serverPid`: that server's postmaster on this machine (its processes' CPU is measured),
 * undefined when it runs elsewhere.
 */
export async function throwawayPostgres(
  serverUrl: string,
  prefix = 'social_link_bench',
): Promise<{ url: string; serverPid?: number; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: serverUrl });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    serverPid: await postmasterOf(serverUrl),
    drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/** The postmaster of the server: the parent of our backend, read while the backend lives. */
async function postmasterOf(serverUrl: string): Promise<number | undefined> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
    return parentOf(rows[0]!.pid);
  } finally {
    await client.end();
  }
}

/** The parent of a process of this machine (a backend's is its postmaster), or undefined. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) || undefined;
  } catch {
    return undefined;
  }
}
