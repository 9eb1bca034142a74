import { spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTotpSecret, totpCode } from '../src/auth/totp.js';
import { loadConfig } from '../src/config/config.js';
import { createServices, type Services } from '../src/core/services.js';
import { StaffAccounts } from '../src/core/staff.js';
import { call, databaseKinds, expectError, startStack, type Stack } from './helpers.js';

// Staff sign-in and sessions over plain HTTP (the browser tests are in admin-console.test.ts), and the CLI.

const ENCRYPTION_KEY = Buffer.alloc(32, 5).toString('base64');
const PASSWORD = 'a staff password of some length';

/** A cookie jar of one: the console's cookies of one browser. */
class Browser {
  private cookies = new Map<string, string>();
  constructor(private readonly base: string) {}

  async request(method: string, path: string, form?: Record<string, string>) {
    const response = await fetch(`${this.base}${path}`, {
      method,
      redirect: 'manual',
      headers: { cookie: [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; '), ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      body: form && new URLSearchParams(form).toString(),
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const [name, value] = pair!.split('=');
      if (value) this.cookies.set(name!, value);
      else this.cookies.delete(name!);
    }
    return { status: response.status, location: response.headers.get('location'), text: await response.text() };
  }

  csrf(html: string): string {
    return /name="_csrf" value="([^"]*)"/.exec(html)![1]!;
  }

  /** Password, then code: the answer of the code step. */
  async signIn(username: string, code: string) {
    const login = await this.request('GET', '/admin/login');
    const first = await this.request('POST', '/admin/login', { _csrf: this.csrf(login.text), username, password: PASSWORD });
    expect(first.location).toBe('/admin/totp');
    const page = await this.request('GET', '/admin/totp');
    return this.request('POST', '/admin/totp', { _csrf: this.csrf(page.text), code });
  }
}

describe.each(databaseKinds())('staff sign-in on %s', (kind) => {
  let stack: Stack;
  let services: Services;
  let secret: string;
  beforeAll(async () => {
    stack = await startStack(kind, { SOCIAL_LINK_ADMIN: 'true', SOCIAL_LINK_ENCRYPTION_KEYS: ENCRYPTION_KEY });
    services = createServices({ config: loadConfig({ DATABASE_URL: stack.databaseUrl, SOCIAL_LINK_ENCRYPTION_KEYS: ENCRYPTION_KEY }), log: pino({ level: 'silent' }), db: stack.db });
    secret = newTotpSecret();
    await new StaffAccounts(services).create('rita', PASSWORD, 'support', secret);
  });
  afterAll(async () => {
    await services.close();
    await stack.close();
  });

  it('a TOTP code signs in once: replayed in another browser, it is refused', async () => {
    const code = totpCode(secret, Date.now() + 30_000);
    const first = await new Browser(stack.api).signIn('rita', code);
    expect(first).toMatchObject({ status: 303, location: '/admin/' });
    const replay = await new Browser(stack.api).signIn('rita', code);
    expect(replay.status).toBe(401);
    expect(replay.text).toMatch(/Wrong username, password or code/);
    const events = await stack.db.selectFrom('audit_events').select(['event', 'detail', 'actor']).where('actor', 'like', 'staff:%:rita').orderBy('id').execute();
    expect(events.map((event) => `${event.event}:${event.detail}`)).toEqual(['staff_signed_in:totp', 'staff_refused:code']);
  });

  it('the password step alone opens nothing; a sign-in form without its CSRF cookie is refused', async () => {
    const browser = new Browser(stack.api);
    const login = await browser.request('GET', '/admin/login');
    await browser.request('POST', '/admin/login', { _csrf: browser.csrf(login.text), username: 'rita', password: PASSWORD });
    expect(await browser.request('GET', '/admin/users')).toMatchObject({ status: 303, location: '/admin/login?ended=1' });
    const stranger = new Browser(stack.api);
    expect((await stranger.request('POST', '/admin/login', { _csrf: 'guessed', username: 'rita', password: PASSWORD })).status).toBe(403);
  });

  it('disabling a staff account ends its sessions at once', async () => {
    const member = await new StaffAccounts(services).create('otto', PASSWORD, 'viewer', newTotpSecret());
    const browser = new Browser(stack.api);
    const secretOfOtto = services.secrets.open(member.sealedTotpSecret!, 'staff-totp:otto')!;
    expect((await browser.signIn('otto', totpCode(secretOfOtto))).location).toBe('/admin/');
    expect((await browser.request('GET', '/admin/users')).status).toBe(200);
    expect(await services.storage.staff.disable('otto')).toBe(true);
    expect(await browser.request('GET', '/admin/users')).toMatchObject({ status: 303, location: '/admin/login?ended=1' });
  });

  it('a staff session is no service key, and a service key opens no page', async () => {
    const { key } = await services.storage.serviceKeys.create(`k${kind}`, ['read']);
    expectError(await call(stack.api, 'GET', '/admin/api/users', { headers: { cookie: 'sl_admin=whatever' } }), 401, 'invalid_service_key');
    const page = await fetch(`${stack.api}/admin/users`, { headers: { authorization: `Bearer ${key}` }, redirect: 'manual' });
    expect(page.status).toBe(303);
  });
});

describe('staff and service keys from the CLI', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', { SOCIAL_LINK_ADMIN: 'true' });
  });
  afterAll(() => stack.close());

  const cli = (args: string[], input?: string) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { env: { ...process.env, LOG_LEVEL: 'silent', DATABASE_URL: stack.databaseUrl }, input, encoding: 'utf8', timeout: 30_000 });

  it('staff create (password from stdin), list, disable; weak passwords and unknown roles refused', () => {
    expect(cli(['staff', 'create', 'nina', '--role', 'admin'], `${PASSWORD}\n`)).toMatchObject({ status: 0, stdout: expect.stringMatching(/staff nina \(admin\) created/) });
    expect(cli(['staff', 'create', 'nina', '--role', 'admin'], `${PASSWORD}\n`)).toMatchObject({ status: 1, stderr: expect.stringMatching(/taken/) });
    expect(cli(['staff', 'create', 'short', '--role', 'viewer'], 'short\n')).toMatchObject({ status: 1, stderr: expect.stringMatching(/at least 12/) });
    expect(cli(['staff', 'create', 'boss', '--role', 'root'], `${PASSWORD}\n`)).toMatchObject({ status: 1, stderr: expect.stringMatching(/--role must be one of viewer, support, admin/) });
    expect(cli(['staff', 'list']).stdout).toMatch(/nina\tadmin\tauthenticator not set up/);
    expect(cli(['staff', 'disable', 'nina']).status).toBe(0);
    expect(cli(['staff', 'list']).stdout).toMatch(/nina\tadmin\tdisabled/);
  });

  it('keys service create shows the key once; the API takes it until keys service revoke', async () => {
    const created = cli(['keys', 'service', 'create', 'billing', '--scopes', 'read']);
    expect(created.status).toBe(0);
    const key = created.stdout.trim();
    expect(key).toMatch(/^slk_[\w-]{43}$/);
    expect(created.stderr).toMatch(/shown once/);
    expect((await call(stack.api, 'GET', '/admin/api/users', { token: key })).status).toBe(200);
    expect(cli(['keys', 'service', 'list']).stdout).toMatch(/^billing\tread\tcreated \S+\tlast used \d{4}-/m);
    expect(cli(['keys', 'service', 'create', 'billing', '--scopes', 'read'])).toMatchObject({ status: 1 });
    expect(cli(['keys', 'service', 'create', 'x', '--scopes', 'admin'])).toMatchObject({ status: 1, stderr: expect.stringMatching(/--scopes must be read or write/) });
    expect(cli(['keys', 'service', 'revoke', 'billing']).status).toBe(0);
    expectError(await call(stack.api, 'GET', '/admin/api/users', { token: key }), 401, 'invalid_service_key');
  });

  it('staff code prints the code of this moment for a secret (development)', () => {
    const secret = newTotpSecret();
    const out = cli(['staff', 'code', '--secret', secret]).stdout.trim();
    expect([totpCode(secret), totpCode(secret, Date.now() - 30_000)]).toContain(out);
  });
});
