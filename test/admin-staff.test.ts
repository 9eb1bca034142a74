import { spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTotpSecret, totpCode } from '../src/auth/totp.js';
import { loadConfig } from '../src/config/config.js';
import { createServices, type Services } from '../src/core/services.js';
import { StaffAccounts } from '../src/core/staff.js';
import { BUILT_CLI, BUILT_DEV, call, databaseKinds, expectError, startStack, type Stack } from './helpers.js';

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
      headers: {
        cookie: [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; '),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
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

  cookie(name: string): string | undefined {
    return this.cookies.get(name);
  }

  setCookie(name: string, value: string): void {
    this.cookies.set(name, value);
  }

  async cookieHeader(): Promise<string> {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  csrf(html: string): string {
    return /name="_csrf" value="([^"]*)"/.exec(html)![1]!;
  }

  /** Password, then code: the answer of the code step. */
  async signIn(username: string, code: string) {
    const login = await this.request('GET', '/admin/login');
    const first = await this.request('POST', '/admin/login', {
      _csrf: this.csrf(login.text),
      username,
      password: PASSWORD,
    });
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
    services = createServices({
      config: loadConfig({ DATABASE_URL: stack.databaseUrl, SOCIAL_LINK_ENCRYPTION_KEYS: ENCRYPTION_KEY }),
      log: pino({ level: 'silent' }),
      db: stack.db,
    });
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
    expect(replay.text).toMatch(/This code was already used/);
    const events = await stack.db
      .selectFrom('audit_events')
      .select(['event', 'detail', 'actor'])
      .where('actor', 'like', 'staff:%:rita')
      .orderBy('id')
      .execute();
    expect(events.map((event) => `${event.event}:${event.detail}`)).toEqual([
      'staff_signed_in:totp',
      'staff_refused:replayed',
    ]);
  });

  it('the password step alone opens nothing; a sign-in form without its CSRF cookie is refused', async () => {
    const browser = new Browser(stack.api);
    const login = await browser.request('GET', '/admin/login');
    await browser.request('POST', '/admin/login', {
      _csrf: browser.csrf(login.text),
      username: 'rita',
      password: PASSWORD,
    });
    expect(await browser.request('GET', '/admin/users')).toMatchObject({
      status: 303,
      location: '/admin/login?ended=1&next=%2Fadmin%2Fusers',
    });
    const stranger = new Browser(stack.api);
    expect(
      (await stranger.request('POST', '/admin/login', { _csrf: 'guessed', username: 'rita', password: PASSWORD }))
        .status,
    ).toBe(403);
  });

  it('a page asked for while signed out comes back after the sign-in; a path to elsewhere is ignored', async () => {
    const member = await new StaffAccounts(services).create(`nia${kind}`, PASSWORD, 'viewer', newTotpSecret());
    const secretOf = () => services.secrets.open(member.sealedTotpSecret!, `staff-totp:${member.username}`)!;
    const browser = new Browser(stack.api);
    const asked = await browser.request('GET', '/admin/users?q=ada&provider=facebook');
    expect(asked.location).toBe('/admin/login?next=%2Fadmin%2Fusers%3Fq%3Dada%26provider%3Dfacebook');
    const login = await browser.request('GET', asked.location!);
    const first = await browser.request('POST', '/admin/login', {
      _csrf: browser.csrf(login.text),
      next: '/admin/users?q=ada&provider=facebook',
      username: member.username,
      password: PASSWORD,
    });
    expect(first.location).toBe('/admin/totp?next=%2Fadmin%2Fusers%3Fq%3Dada%26provider%3Dfacebook');
    const totp = await browser.request('GET', first.location!);
    expect(
      (
        await browser.request('POST', '/admin/totp', {
          _csrf: browser.csrf(totp.text),
          next: '/admin/users?q=ada&provider=facebook',
          code: totpCode(secretOf()),
        })
      ).location,
    ).toBe('/admin/users?q=ada&provider=facebook');

    for (const elsewhere of [
      '//evil.example/admin/users',
      '/\\evil.example',
      'https://evil.example/',
      '/admin/users/../../api/x',
      '/api/me/',
    ]) {
      const other = new Browser(stack.api);
      const page = await other.request('GET', `/admin/login?next=${encodeURIComponent(elsewhere)}`);
      expect(page.text).not.toContain('name="next"');
      const step = await other.request('POST', '/admin/login', {
        _csrf: other.csrf(page.text),
        next: elsewhere,
        username: member.username,
        password: PASSWORD,
      });
      expect(step.location).toBe('/admin/totp');
    }
  });

  it('disabling a staff account ends its sessions at once', async () => {
    const member = await new StaffAccounts(services).create('otto', PASSWORD, 'viewer', newTotpSecret());
    const browser = new Browser(stack.api);
    const secretOfOtto = services.secrets.open(member.sealedTotpSecret!, 'staff-totp:otto')!;
    expect((await browser.signIn('otto', totpCode(secretOfOtto))).location).toBe('/admin/');
    expect((await browser.request('GET', '/admin/users')).status).toBe(200);
    expect(await services.storage.staff.disable('otto')).toBe(true);
    expect(await browser.request('GET', '/admin/users')).toMatchObject({
      status: 303,
      location: '/admin/login?ended=1&next=%2Fadmin%2Fusers',
    });
  });

  it("support exports a user's data with a reason (a JSON attachment, audited); without a reason, or as a viewer, refused", async () => {
    const member = await new StaffAccounts(services).create(`vic${kind}`, PASSWORD, 'support', newTotpSecret());
    const browser = new Browser(stack.api);
    expect(
      (
        await browser.signIn(
          member.username,
          totpCode(services.secrets.open(member.sealedTotpSecret!, `staff-totp:${member.username}`)!),
        )
      ).location,
    ).toBe('/admin/');
    const user = (
      await call(stack.api, 'POST', '/api/users/', {
        body: { username: `exported${kind}`, password: 'a long password 1' },
      })
    ).body;
    const page = await browser.request('GET', `/admin/users/${user.id}`);
    expect(
      (await browser.request('POST', `/admin/users/${user.id}/export`, { _csrf: browser.csrf(page.text), reason: '' }))
        .status,
    ).toBe(400);
    const exported = await fetch(`${stack.api}/admin/users/${user.id}/export`, {
      method: 'POST',
      headers: { cookie: await browser.cookieHeader(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ _csrf: browser.csrf(page.text), reason: 'data-access request 9' }).toString(),
    });
    expect(exported.headers.get('content-disposition')).toBe(`attachment; filename="user-${user.id}.json"`);
    expect(((await exported.json()) as { user: { username: string } }).user.username).toBe(`exported${kind}`);
    const audit = await stack.db
      .selectFrom('audit_events')
      .select(['actor', 'reason'])
      .where('user_id', '=', user.id)
      .where('event', '=', 'user_exported')
      .execute();
    expect(audit).toEqual([{ actor: `staff:${member.id}:${member.username}`, reason: 'data-access request 9' }]);

    const viewer = await new StaffAccounts(services).create(`val${kind}`, PASSWORD, 'viewer', newTotpSecret());
    const looking = new Browser(stack.api);
    await looking.signIn(
      viewer.username,
      totpCode(services.secrets.open(viewer.sealedTotpSecret!, `staff-totp:${viewer.username}`)!),
    );
    const seen = await looking.request('GET', `/admin/users/${user.id}`);
    expect(seen.text).not.toContain('Export as JSON');
    expect(
      (
        await looking.request('POST', `/admin/users/${user.id}/export`, {
          _csrf: looking.csrf(seen.text),
          reason: 'curious',
        })
      ).status,
    ).toBe(403);
  });

  it("console errors are pages with a 4xx (never a 500), and their Back link is the console's own", async () => {
    const stranger = await fetch(`${stack.api}/admin/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', referer: `${stack.api}.evil.example/phish` },
      body: 'username=rita&password=x',
    });
    expect(stranger.status).toBe(403);
    const text = await stranger.text();
    expect(text).toContain('href="/admin/"');
    expect(text).not.toContain('evil');
    for (const [type, body, status] of [
      ['application/json', '{"_csrf":{}}', 415],
      ['application/json', '{', 400],
      ['multipart/form-data; boundary=x', '--x--', 415],
      ['application/x-www-form-urlencoded', `a=${'x'.repeat(20_000)}`, 413],
    ] as const) {
      const answer = await fetch(`${stack.api}/admin/login`, {
        method: 'POST',
        headers: { 'content-type': type },
        body,
      });
      expect([answer.status, answer.headers.get('content-type')]).toEqual([status, 'text/html; charset=utf-8']);
    }
    const member = await new StaffAccounts(services).create(`eve${kind}`, PASSWORD, 'viewer', newTotpSecret());
    const browser = new Browser(stack.api);
    await browser.signIn(
      member.username,
      totpCode(services.secrets.open(member.sealedTotpSecret!, `staff-totp:${member.username}`)!),
    );
    expect((await browser.request('GET', '/admin/users?q=a&q=b&provider=x&provider=y')).status).toBe(200);
    expect((await browser.request('GET', '/admin/users?from=2024-13-45&to=2024-02-30')).status).toBe(200);
    expect((await browser.request('GET', '/admin/users?q=abc%00')).status).toBe(400);
    expect((await browser.request('GET', '/admin/links/facebook/a%00b')).status).toBe(400);
    expect((await browser.request('GET', '/admin/users/99999999999')).status).toBe(404);
  });

  it('impossible dates, over-long providers and uids from the console: a page with a 4xx or the date left out, never a 500', async () => {
    const member = await new StaffAccounts(services).create(`ira${kind}`, PASSWORD, 'admin', newTotpSecret());
    const browser = new Browser(stack.api);
    await browser.signIn(
      member.username,
      totpCode(services.secrets.open(member.sealedTotpSecret!, `staff-totp:${member.username}`)!),
    );
    for (const dates of ['from=0000-01-01', 'to=0000-12-31', 'from=2023-02-29&to=2024-02-30']) {
      const page = await browser.request('GET', `/admin/users?${dates}`);
      expect([page.status, page.text]).toEqual([200, expect.stringContaining('A date is not a real day')]);
    }
    const feb30 = Buffer.from(JSON.stringify(['created', ['2024-02-30 00:00:00+00', 1]])).toString('base64url');
    expect((await browser.request('GET', `/admin/users?cursor=${feb30}`)).status).toBe(200);
    const user = (
      await call(stack.api, 'POST', '/api/users/', {
        body: { username: `longuid${kind}`, password: 'a long password 1' },
      })
    ).body;
    const page = await browser.request('GET', `/admin/users/${user.id}`);
    for (const [provider, uid] of [
      ['p'.repeat(65), 'u'],
      ['facebook', 'u'.repeat(256)],
    ]) {
      const answer = await browser.request('POST', `/admin/users/${user.id}/unlink`, {
        _csrf: browser.csrf(page.text),
        provider: provider!,
        uid: uid!,
        reason: 'ticket 5',
        force: '1',
      });
      expect([answer.status, answer.text]).toEqual([400, expect.stringContaining('characters')]);
    }
    // A reason that shows nothing is no reason.
    const invisible = await browser.request('POST', `/admin/users/${user.id}/revoke-sessions`, {
      _csrf: browser.csrf(page.text),
      reason: '\u200b\u200d\u3164 ',
    });
    expect([invisible.status, invisible.text]).toEqual([400, expect.stringContaining('reason_required')]);
  });

  it('an enrolment belongs to its session: a second holder of the first password neither replaces nor reads the key, and cannot enrol the account with its own', async () => {
    const member = await new StaffAccounts(services).create(`newbie${kind}`, PASSWORD, 'support');
    const passwordStep = async (browser: Browser) => {
      const login = await browser.request('GET', '/admin/login');
      expect(
        (
          await browser.request('POST', '/admin/login', {
            _csrf: browser.csrf(login.text),
            username: member.username,
            password: PASSWORD,
          })
        ).location,
      ).toBe('/admin/enrol');
    };
    const keyOn = (html: string) => /id="totp-secret">([A-Z2-7]+)</.exec(html)![1]!;
    const wrongCode = (key: string) =>
      ['000000', '111111', '222222', '333333'].find(
        (code) => ![-30_000, 0, 30_000].some((shift) => totpCode(key, Date.now() + shift) === code),
      )!;
    const victim = new Browser(stack.api);
    const attacker = new Browser(stack.api);
    await passwordStep(victim);
    await passwordStep(attacker);
    const victimPage = await victim.request('GET', '/admin/enrol');
    const victimKey = keyOn(victimPage.text);
    // The attacker opens the enrolment page after the victim: it gets a key of its own, and the victim's stays.
    const attackerPage = await attacker.request('GET', '/admin/enrol');
    const attackerKey = keyOn(attackerPage.text);
    expect(attackerKey).not.toBe(victimKey);
    expect(attackerPage.text).not.toContain(victimKey);

    // The victim mistypes: the page shows the victim's own key again, never the attacker's.
    const mistyped = await victim.request('POST', '/admin/enrol', {
      _csrf: victim.csrf(victimPage.text),
      code: wrongCode(victimKey),
    });
    expect(mistyped.status).toBe(401);
    expect(keyOn(mistyped.text)).toBe(victimKey);
    expect(mistyped.text).not.toContain(attackerKey);
    // The attacker's code in the victim's session is a wrong code; the victim's pending key in the attacker's session opens nothing.
    expect(
      (
        await victim.request('POST', '/admin/enrol', {
          _csrf: victim.csrf(victimPage.text),
          code: totpCode(attackerKey),
        })
      ).text,
    ).toMatch(/Wrong code/);
    // Nor does the victim's pending key, carried to the attacker's session in the victim's cookie: that session ends.
    const cookieName = 'sl_admin_enrol'; // plain HTTP on loopback: not __Host-
    const lurker = new Browser(stack.api);
    await passwordStep(lurker);
    const lurkerPage = await lurker.request('GET', '/admin/enrol');
    const lurkerKey = keyOn(lurkerPage.text);
    lurker.setCookie(cookieName, victim.cookie(cookieName)!);
    expect(
      (await lurker.request('POST', '/admin/enrol', { _csrf: lurker.csrf(lurkerPage.text), code: totpCode(victimKey) }))
        .status,
    ).toBe(401);
    expect((await lurker.request('GET', '/admin/enrol')).location).toBe('/admin/login?ended=step');
    expect(lurkerKey).not.toBe(victimKey);

    // The victim enrols with the key its page showed; then the attacker's confirmation is refused (back to the password).
    expect(
      await victim.request('POST', '/admin/enrol', { _csrf: victim.csrf(victimPage.text), code: totpCode(victimKey) }),
    ).toMatchObject({ status: 303, location: '/admin/' });
    expect((await victim.request('GET', '/admin/users')).status).toBe(200);
    const late = await attacker.request('POST', '/admin/enrol', {
      _csrf: attacker.csrf(attackerPage.text),
      code: totpCode(attackerKey, Date.now() + 30_000),
    });
    expect(late.status).toBe(401);
    expect((await attacker.request('GET', '/admin/users')).status).toBe(303);
    // The account's authenticator is the victim's: its next code signs in, the attacker's key's does not.
    const sealed = (await services.storage.staff.findById(member.id))!.sealedTotpSecret!;
    expect(services.secrets.open(sealed, `staff-totp:${member.username}`)).toBe(victimKey);
    const events = await stack.db
      .selectFrom('audit_events')
      .select(['event', 'detail'])
      .where('actor', '=', `staff:${member.id}:${member.username}`)
      .orderBy('id')
      .execute();
    expect(events.filter((event) => event.event === 'staff_signed_in')).toEqual([
      { event: 'staff_signed_in', detail: 'enrolled' },
    ]);
  });

  it("a lock that ended starts the count again; an unknown name's refusal is audited without the name typed", async () => {
    const member = await new StaffAccounts(services).create(`leo${kind}`, PASSWORD, 'viewer', newTotpSecret());
    await stack.db
      .updateTable('staff')
      .set({ failed_logins: 5, locked_until: new Date(Date.now() - 1000).toISOString() })
      .where('id', '=', member.id)
      .execute();
    const browser = new Browser(stack.api);
    const login = await browser.request('GET', '/admin/login');
    const refused = await browser.request('POST', '/admin/login', {
      _csrf: browser.csrf(login.text),
      username: member.username,
      password: 'wrong',
    });
    expect(refused.status).toBe(401);
    expect(await services.storage.staff.findByUsername(member.username)).toMatchObject({
      failedLogins: 1,
      lockedUntil: null,
    });
    // Each sign-in page carries a fresh token: the one of the page that answered. A password typed in the name's box is not kept.
    const typed = `Tr0ub4dor&3-${kind}`;
    const before = await stack.db
      .selectFrom('audit_events')
      .select(({ fn }) => fn.max('id').as('last'))
      .executeTakeFirstOrThrow();
    expect(
      (
        await browser.request('POST', '/admin/login', {
          _csrf: browser.csrf(refused.text),
          username: typed,
          password: 'wrong',
        })
      ).status,
    ).toBe(401);
    const unknown = await stack.db
      .selectFrom('audit_events')
      .selectAll()
      .where('event', '=', 'staff_refused')
      .where('id', '>', Number(before.last))
      .execute();
    expect(unknown).toEqual([expect.objectContaining({ detail: 'unknown_username', actor: 'staff:?' })]);
    expect(JSON.stringify(await stack.db.selectFrom('audit_events').selectAll().execute())).not.toContain(typed);
  });

  it('a staff session is no service key, and a service key opens no page', async () => {
    const { key } = await services.storage.serviceKeys.create(`k${kind}`, ['read']);
    expectError(
      await call(stack.api, 'GET', '/admin/api/users', { headers: { cookie: 'sl_admin=whatever' } }),
      401,
      'invalid_service_key',
    );
    const page = await fetch(`${stack.api}/admin/users`, {
      headers: { authorization: `Bearer ${key}` },
      redirect: 'manual',
    });
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
    spawnSync(process.execPath, [BUILT_CLI, ...args], {
      env: { ...process.env, LOG_LEVEL: 'silent', DATABASE_URL: stack.databaseUrl },
      input,
      encoding: 'utf8',
      timeout: 30_000,
    });

  it('staff create (password from stdin), list, disable; weak passwords and unknown roles refused', () => {
    expect(cli(['staff', 'create', 'nina', '--role', 'admin'], `${PASSWORD}\n`)).toMatchObject({
      status: 0,
      stdout: expect.stringMatching(/staff nina \(admin\) created/),
    });
    expect(cli(['staff', 'create', 'nina', '--role', 'admin'], `${PASSWORD}\n`)).toMatchObject({
      status: 1,
      stderr: expect.stringMatching(/taken/),
    });
    expect(cli(['staff', 'create', 'short', '--role', 'viewer'], 'short\n')).toMatchObject({
      status: 1,
      stderr: expect.stringMatching(/at least 12/),
    });
    expect(cli(['staff', 'create', 'boss', '--role', 'root'], `${PASSWORD}\n`)).toMatchObject({
      status: 1,
      stderr: expect.stringMatching(/--role must be one of viewer, support, admin/),
    });
    expect(cli(['staff', 'list']).stdout).toMatch(/nina\tadmin\tauthenticator not set up/);
    expect(cli(['staff', 'password', 'nina'], 'short\n')).toMatchObject({
      status: 1,
      stderr: expect.stringMatching(/at least 12/),
    });
    expect(cli(['staff', 'password', 'nina'], 'another long passphrase\n')).toMatchObject({
      status: 0,
      stdout: expect.stringMatching(/new password set/),
    });
    expect(cli(['staff', 'password', 'nobody'], 'another long passphrase\n').status).toBe(1);
    expect(cli(['staff', 'unlock', 'nina']).status).toBe(0);
    expect(cli(['staff', 'reset-totp', 'nina']).stdout).toMatch(/set up again at the next sign-in/);
    expect(cli(['staff', 'unlock', 'nobody']).status).toBe(1);
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
    expect(cli(['keys', 'service', 'create', 'x', '--scopes', 'admin'])).toMatchObject({
      status: 1,
      stderr: expect.stringMatching(/--scopes must be read or write/),
    });
    expect(cli(['keys', 'service', 'revoke', 'billing']).status).toBe(0);
    expectError(await call(stack.api, 'GET', '/admin/api/users', { token: key }), 401, 'invalid_service_key');
  });

  it('staff code prints the code of this moment for a secret (development)', () => {
    const secret = newTotpSecret();
    const out = cli(['staff', 'code', '--secret', secret]).stdout.trim();
    expect([totpCode(secret), totpCode(secret, Date.now() - 30_000)]).toContain(out);
  });
});

describe("dev mode's console account", () => {
  it('npm run dev prints a staff account that signs in; a Facebook uid minted in the emulator is found, unlinked with a reason, and the reason is in the audit', async () => {
    const { spawn } = await import('node:child_process');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { createServer } = await import('node:net');
    const free = async () => {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as { port: number };
      await new Promise((resolve) => server.close(resolve));
      return port;
    };
    const dir = mkdtempSync(join(tmpdir(), 'social-link-dev-'));
    const [port, emulatorPort] = [await free(), await free()];
    const child = spawn(process.execPath, [BUILT_DEV], {
      cwd: dir,
      env: {
        ...process.env,
        PORT: String(port),
        EMULATOR_PORT: String(emulatorPort),
        LOG_LEVEL: 'silent',
        DATABASE_URL: `sqlite:${join(dir, 'dev.sqlite')}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
      await expect.poll(() => out, { timeout: 40_000, interval: 200 }).toMatch(/TOTP secret/);
      const [, username, password] = /staff (\S+) \/ (\S+) \(role admin\)/.exec(out)!;
      const secret = /TOTP secret ([A-Z2-7]+)/.exec(out)![1]!;
      const api = `http://127.0.0.1:${port}`;
      const emulator = `http://127.0.0.1:${emulatorPort}`;

      // The README's round trip: a guest links a Facebook account minted in the emulator.
      const user = (await (await fetch(`${api}/api/users/`, { method: 'POST' })).json()) as {
        id: number;
        access_token: string;
      };
      const facebook = (await (
        await fetch(`${emulator}/_emulator/facebook/tokens`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        })
      ).json()) as { access_token: string; user_id: string };
      const linked = await fetch(`${api}/api/associate/facebook/`, {
        method: 'POST',
        headers: { authorization: `Bearer ${user.access_token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ access_token: facebook.access_token }),
      });
      expect(linked.status).toBe(200);

      const browser = new Browser(api);
      const login = await browser.request('GET', '/admin/login');
      await browser.request('POST', '/admin/login', {
        _csrf: browser.csrf(login.text),
        username: username!,
        password: password!,
      });
      const totp = await browser.request('GET', '/admin/totp');
      expect(
        (await browser.request('POST', '/admin/totp', { _csrf: browser.csrf(totp.text), code: totpCode(secret) }))
          .location,
      ).toBe('/admin/');
      const found = await browser.request('GET', `/admin/users?q=${facebook.user_id}&provider=facebook`);
      expect(found.text).toContain(`href="/admin/users/${user.id}"`);
      const page = await browser.request('GET', `/admin/users/${user.id}`);
      // The guest's only way in: the admin ticks "even if it is the last way in".
      const unlinked = await browser.request('POST', `/admin/users/${user.id}/unlink`, {
        _csrf: browser.csrf(page.text),
        provider: 'facebook',
        uid: facebook.user_id,
        reason: 'user lost the phone (ticket 42)',
        force: '1',
      });
      expect(unlinked.location).toBe(`/admin/users/${user.id}?done=unlinked`);
      const after = await browser.request('GET', `/admin/users/${user.id}`);
      expect(after.text).toMatch(
        /<td>unlinked<\/td><td>facebook:\d+<\/td><td>admin<\/td><td>staff:\d+:dev-admin<\/td><td>user lost the phone \(ticket 42\)<\/td>/,
      );
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe('staff sign-in rate limit', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('sqlite', {
      SOCIAL_LINK_ADMIN: 'true',
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_PASSWORD_PER_MINUTE: '2',
    });
  });
  afterAll(() => stack.close());

  it('sign-in attempts spend the per-IP password budget: past it, 429 before any password is checked', async () => {
    const browser = new Browser(stack.api);
    let page = (await browser.request('GET', '/admin/login')).text;
    const attempt = async () => {
      const answer = await browser.request('POST', '/admin/login', {
        _csrf: browser.csrf(page),
        username: 'anyone',
        password: 'guess',
      });
      page = answer.text;
      return answer;
    };
    expect((await attempt()).status).toBe(401);
    expect((await attempt()).status).toBe(401);
    const limited = await attempt();
    expect(limited.status).toBe(429);
    expect(limited.text).toMatch(/Too many requests/);
  });
});

describe('the dashboard', () => {
  let stack: Stack;
  let services: Services;
  beforeAll(async () => {
    stack = await startStack('sqlite', {
      SOCIAL_LINK_ADMIN: 'true',
      SOCIAL_LINK_ENCRYPTION_KEYS: ENCRYPTION_KEY,
      SOCIAL_AUTH_CIRCUIT_BREAKER_THRESHOLD: '2',
      SOCIAL_AUTH_CIRCUIT_BREAKER_COOLDOWN_MS: '600000',
    });
    services = createServices({
      config: loadConfig({ DATABASE_URL: stack.databaseUrl, SOCIAL_LINK_ENCRYPTION_KEYS: ENCRYPTION_KEY }),
      log: pino({ level: 'silent' }),
      db: stack.db,
    });
  });
  afterAll(async () => {
    await services.close();
    await stack.close();
  });

  it("counts links per provider, today's sign-ins, refusals by code, and shows an open circuit with its error rate", async () => {
    const tokens = [];
    for (let i = 0; i < 2; i++) {
      const user = (await call(stack.api, 'POST', '/api/users/')).body;
      const facebook = await stack.emulator.mintFacebookToken({});
      await call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: facebook.access_token },
      });
      tokens.push(facebook.access_token);
    }
    expect((await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: tokens[0] } })).status).toBe(
      200,
    );
    expectError(
      await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: 'EAAnot-a-token' } }),
      400,
      'invalid_token',
    );
    await stack.emulator.setFault('facebook', { mode: 'error_500' });
    for (let i = 0; i < 2; i++)
      expect((await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: tokens[1] } })).status).toBe(
        502,
      );
    await stack.emulator.clearFaults();

    const member = await new StaffAccounts(services).create('dana', PASSWORD, 'viewer', newTotpSecret());
    const browser = new Browser(stack.api);
    await browser.signIn('dana', totpCode(services.secrets.open(member.sealedTotpSecret!, 'staff-totp:dana')!));
    const page = (await browser.request('GET', '/admin/')).text.replace(/\s+/g, ' ');
    const today = new Date().toISOString().slice(0, 10);
    expect(page).toContain('<tr><td>facebook</td><td class="num">2</td></tr>');
    expect(page).toMatch(new RegExp(`<tr><td>${today}</td><td class="num">1</td></tr>`));
    expect(page).toContain('<tr><td><code>invalid_token</code></td><td class="num">1</td></tr>');
    expect(page).toMatch(
      /<tr><td>facebook<\/td><td class="circuit-open">open<\/td><td class="num">\d+<\/td><td class="num">(\d+\.\d) %<\/td><\/tr>/,
    );
    const rate = Number(
      /<td class="circuit-open">open<\/td><td class="num">\d+<\/td><td class="num">(\d+\.\d) %/.exec(page)![1],
    );
    expect(rate).toBeGreaterThan(0);
    expect(page).toMatch(/<tr><td>twitter<\/td><td class="circuit-closed">closed<\/td>/);
  });
});
