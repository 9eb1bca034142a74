/**
 * The load balancers of test/chaos/scale-out.test.ts, run from the configurations operators copy:
 * deploy/haproxy.cfg as it is (its addresses are "${VARIABLE-default}", set here through the environment), and
 * deploy/nginx.conf included from a main nginx.conf of the test's own, with only its three upstream addresses
 * and its listen port replaced. Each runs in the foreground as a child of this process, with its pid, socket
 * and log files in a temporary directory; stop() (and this process's exit) ends it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canConnect, freePort } from './harness.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
export const HAPROXY_CONFIG = fileURLToPath(new URL('../../deploy/haproxy.cfg', import.meta.url));
export const NGINX_CONFIG = fileURLToPath(new URL('../../deploy/nginx.conf', import.meta.url));

/** The path of this program on PATH, or in /usr/sbin (where Debian puts haproxy and nginx); undefined if neither. */
export function which(program: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${program}`], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` },
  });
  return found.status === 0 && found.stdout.trim() ? found.stdout.trim() : undefined;
}

export interface Balancer {
  /** e.g. http://127.0.0.1:43210 */
  url: string;
  port: number;
  /** The tail of its log (haproxy: one line per request; nginx: the error log). */
  log(): string;
  stop(): Promise<void>;
}

export interface Haproxy extends Balancer {
  /** Each server's status as the runtime API says it (`show stat`): UP, DOWN, "UP 1/2", "DOWN 1/3", no check, MAINT. */
  servers(): Promise<Record<string, string>>;
  /** Each server's total of requests (sessions) sent to it so far (`show stat` stot). */
  sessions(): Promise<Record<string, number>>;
  /** Polls until `server`'s status is exactly `status` (UP, DOWN); rejects after timeoutMs with the states seen. */
  waitFor(server: string, status: 'UP' | 'DOWN', timeoutMs?: number): Promise<number>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function startProcess(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  logFile: string,
): { child: ChildProcess; exited: Promise<void> } {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const log = createWriteStream(logFile, { flags: 'a' });
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      running.delete(child);
      log.end();
      resolve();
    }),
  );
  return { child, exited };
}

function tail(file: string, chars = 20_000): string {
  try {
    return readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '';
  }
}

async function waitUntilListening(port: number, exited: () => boolean, what: string, log: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await canConnect(port))) {
    if (exited()) throw new Error(`${what} exited before listening:\n${log()}`);
    if (Date.now() > deadline) throw new Error(`${what} not listening on ${port} after 30 s:\n${log()}`);
    await sleep(50);
  }
}

/** One runtime API command over the stats socket; resolves with the whole answer. */
function runtimeApi(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const connection = connect(socket);
    let answer = '';
    connection.setTimeout(5_000, () =>
      connection.destroy(new Error(`haproxy runtime API: no answer to "${command}" in 5 s`)),
    );
    connection.on('connect', () => connection.write(`${command}\n`));
    connection.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    connection.on('end', () => resolve(answer));
    connection.on('error', reject);
  });
}

/** haproxy -db (foreground) with deploy/haproxy.cfg, in front of 127.0.0.1:<each of ports>. */
export async function startHaproxy(ports: number[]): Promise<Haproxy> {
  if (ports.length !== 3) throw new Error('deploy/haproxy.cfg names three instances');
  const dir = mkdtempSync(join(tmpdir(), 'social-link-haproxy-'));
  const port = await freePort();
  const socket = join(dir, 'admin.sock');
  const logFile = join(dir, 'haproxy.log');
  const env = {
    ...process.env,
    SOCIAL_LINK_BIND: `127.0.0.1:${port}`,
    SOCIAL_LINK_APP1: `127.0.0.1:${ports[0]}`,
    SOCIAL_LINK_APP2: `127.0.0.1:${ports[1]}`,
    SOCIAL_LINK_APP3: `127.0.0.1:${ports[2]}`,
    SOCIAL_LINK_HAPROXY_SOCKET: socket,
  };
  const haproxy = which('haproxy');
  if (!haproxy) throw new Error('haproxy is not installed (Debian: apt-get install haproxy)');
  const check = spawnSync(haproxy, ['-c', '-f', HAPROXY_CONFIG], { env, encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`haproxy -c -f deploy/haproxy.cfg: ${check.stdout}${check.stderr}`);
  const { child, exited } = startProcess(haproxy, ['-db', '-f', HAPROXY_CONFIG], env, logFile);
  let gone = false;
  void exited.then(() => (gone = true));
  const log = () => tail(logFile);
  await waitUntilListening(port, () => gone, 'haproxy', log);

  const column = async (wanted: string) => {
    const csv = await runtimeApi(socket, 'show stat');
    const [header, ...rows] = csv.trim().split('\n');
    const columns = header!.replace(/^# /, '').split(',');
    const [name, kind, value] = ['svname', 'type', wanted].map((title) => columns.indexOf(title));
    const result: Record<string, string> = {};
    for (const row of rows) {
      const cells = row.split(',');
      if (cells[kind!] === '2') result[cells[name!]!] = cells[value!]!; // type 2: a server
    }
    return result;
  };
  const servers = () => column('status');
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log,
    servers,
    sessions: async () =>
      Object.fromEntries(Object.entries(await column('stot')).map(([name, count]) => [name, Number(count)])),
    async waitFor(server, status, timeoutMs = 60_000) {
      const started = Date.now();
      let seen: Record<string, string> = {};
      while (Date.now() - started < timeoutMs) {
        seen = await servers();
        if (seen[server] === status) return Date.now();
        await sleep(100);
      }
      throw new Error(`haproxy: ${server} not ${status} after ${timeoutMs} ms: ${JSON.stringify(seen)}`);
    },
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5_000)]);
      child.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * nginx in the foreground with a main nginx.conf of its own (prefix, pid, temp and log paths in a temporary
 * directory) that includes deploy/nginx.conf with its three upstream addresses and its listen port replaced.
 */
export async function startNginx(ports: number[]): Promise<Balancer> {
  if (ports.length !== 3) throw new Error('deploy/nginx.conf names three instances');
  const dir = mkdtempSync(join(tmpdir(), 'social-link-nginx-'));
  chmodSync(dir, 0o755); // nginx's workers (nobody, when the test runs as root) use its temp directories
  const port = await freePort();
  let site = readFileSync(NGINX_CONFIG, 'utf8');
  const replace = (from: string, to: string) => {
    if (site.split(from).length !== 2) throw new Error(`deploy/nginx.conf: expected "${from}" exactly once`);
    site = site.replace(from, to);
  };
  ports.forEach((instance, i) => replace(`server 10.0.0.1${i + 1}:3000 `, `server 127.0.0.1:${instance} `));
  replace('    listen 80;', `    listen 127.0.0.1:${port};`);
  const siteFile = join(dir, 'social-link.conf');
  writeFileSync(siteFile, site);
  const errorLog = join(dir, 'error.log');
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      'daemon off;',
      'worker_processes 1;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${errorLog} warn;`,
      'events { worker_connections 1024; }',
      'http {',
      `  access_log ${join(dir, 'access.log')};`,
      `  client_body_temp_path ${join(dir, 'client_body')};`,
      `  proxy_temp_path ${join(dir, 'proxy')};`,
      `  fastcgi_temp_path ${join(dir, 'fastcgi')};`,
      `  uwsgi_temp_path ${join(dir, 'uwsgi')};`,
      `  scgi_temp_path ${join(dir, 'scgi')};`,
      `  include ${join(dir, 'social-link.conf')};`,
      '}',
      '',
    ].join('\n'),
  );
  const nginx = which('nginx');
  if (!nginx) throw new Error('nginx is not installed (Debian: apt-get install nginx-light)');
  const args = ['-p', dir, '-c', join(dir, 'nginx.conf')];
  const check = spawnSync(nginx, ['-t', ...args], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`nginx -t: ${check.stdout}${check.stderr}`);
  const { child, exited } = startProcess(nginx, args, process.env, join(dir, 'nginx.out'));
  let gone = false;
  void exited.then(() => (gone = true));
  const log = () => tail(errorLog) + tail(join(dir, 'nginx.out'), 2_000);
  await waitUntilListening(port, () => gone, 'nginx', log);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log,
    async stop() {
      child.kill('SIGTERM'); // nginx: fast shutdown
      await Promise.race([exited, sleep(5_000)]);
      child.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
