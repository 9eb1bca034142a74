import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpCode } from '../src/auth/totp.js';
import { loadConfig } from '../src/config/config.js';
import { createServices, type Services } from '../src/core/services.js';
import { StaffAccounts } from '../src/core/staff.js';
import { newTotpSecret } from '../src/auth/totp.js';
import { call, startStack, type Stack } from './helpers.js';

// The staff console (/admin/) in a real browser: Debian's Chromium driven by playwright-core (.ci/run installs
// it). Screenshots of each page go to test-results/admin/.

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = 'test-results/admin';
const present = existsSync(CHROMIUM);
if (!present) {
  if (process.env.REQUIRE_BROWSER === '1')
    throw new Error(`REQUIRE_BROWSER is set but ${CHROMIUM} is missing (apt-get install chromium)`);
  console.warn(
    `console browser tests skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`,
  );
}
const ENCRYPTION_KEY = Buffer.alloc(32, 11).toString('base64');
const PASSWORD = 'correct horse battery staple';

describe.skipIf(!present)('staff console in Chromium', () => {
  let stack: Stack;
  let browser: Browser;
  let services: Services;
  const staff: Record<string, { secret: string }> = {};

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    stack = await startStack('sqlite', { SOCIAL_LINK_ADMIN: 'true', SOCIAL_LINK_ENCRYPTION_KEYS: ENCRYPTION_KEY });
    // Staff with their authenticator set up, sealed with the server's key (the enrolment itself is a test below).
    services = createServices({
      config: loadConfig({ DATABASE_URL: stack.databaseUrl, SOCIAL_LINK_ENCRYPTION_KEYS: ENCRYPTION_KEY }),
      log: pino({ level: 'silent' }),
      db: stack.db,
    });
    for (const [name, role] of [
      ['vera', 'viewer'],
      ['sam', 'support'],
      ['ada', 'admin'],
      ['lou', 'support'],
      ['max', 'admin'],
      ['dora', 'support'],
    ] as const) {
      staff[name] = { secret: newTotpSecret() };
      await new StaffAccounts(services).create(name, PASSWORD, role, staff[name]!.secret);
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // As this machine's probe runs it: no sandbox as root, nothing that reaches for the network.
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
      ],
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await services?.close();
    await stack?.close();
  });

  /** A new browser context (its own cookies) and page; CSP violations and script errors are collected. */
  async function open(): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
    const context = await browser.newContext({ baseURL: stack.api });
    context.setDefaultTimeout(20_000);
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
    page.on('pageerror', (error) => problems.push(error.message));
    return { context, page, problems };
  }

  const shot = (page: Page, name: string) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

  /** Signs in with the password, then the TOTP code of the step `ahead` steps from now (each code works once). */
  async function signIn(page: Page, name: string, ahead = 0) {
    await page.goto('/admin/login');
    await page.getByLabel('Username').fill(name);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL('**/admin/totp');
    await page.getByLabel(/6-digit code/).fill(totpCode(staff[name]!.secret, Date.now() + ahead * 30_000));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL('**/admin/');
  }

  /** A user with a password and a Facebook account linked through the API; its Facebook uid. */
  async function userWithFacebook(email?: string) {
    const username = `u${Date.now()}${Math.floor(Math.random() * 1000)}`;
    const user = (await call(stack.api, 'POST', '/api/users/', { body: { username, password: 'a long password 1' } }))
      .body;
    const facebook = await stack.emulator.mintFacebookToken({
      user: { name: 'Ada Lovelace', ...(email ? { email } : {}) },
    });
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: facebook.access_token },
        })
      ).status,
    ).toBe(200);
    return { id: user.id as number, username, uid: facebook.user_id };
  }

  it('first sign-in enrols the authenticator (QR code and key shown once), then the code signs in', async () => {
    await new StaffAccounts(services).create('newbie', PASSWORD, 'viewer');
    const { context, page, problems } = await open();
    await page.goto('/admin/');
    await page.waitForURL('**/admin/login');
    await shot(page, 'login');
    await page.getByLabel('Username').fill('newbie');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL('**/admin/enrol');
    await expect.poll(() => page.locator('figure.qr svg').count()).toBe(1);
    const secret = (await page.locator('#totp-secret').textContent())!.trim();
    await shot(page, 'enrol');
    await page.getByLabel('The 6-digit code').fill(totpCode(secret));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.waitForURL('**/admin/');
    await expect.poll(() => page.getByRole('heading', { name: 'Dashboard' }).count()).toBe(1);
    const cookie = (await context.cookies()).find((entry) => entry.name === 'sl_admin')!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(problems).toEqual([]);
    await context.close();
  });

  it('a wrong code is refused (and counted); the right one then signs in', async () => {
    const { context, page } = await open();
    await page.goto('/admin/login');
    await page.getByLabel('Username').fill('vera');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL('**/admin/totp');
    await shot(page, 'totp');
    const right = totpCode(staff.vera!.secret);
    await page.getByLabel(/6-digit code/).fill(String((Number(right) + 500_000) % 1_000_000).padStart(6, '0'));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toMatch(/Wrong code/);
    expect(page.url()).not.toMatch(/\/admin\/$/);
    await page.getByLabel(/6-digit code/).fill(right);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL('**/admin/');
    const refusal = await stack.db
      .selectFrom('audit_events')
      .selectAll()
      .where('event', '=', 'staff_refused')
      .where('actor', 'like', 'staff:%:vera')
      .executeTakeFirst();
    expect(refusal?.detail).toBe('code');
    await context.close();
  });

  it('finds a user by a Facebook uid minted in the emulator; shows the user and the link pages', async () => {
    const target = await userWithFacebook('ada@example.com');
    const { context, page, problems } = await open();
    await signIn(page, 'sam');
    await shot(page, 'dashboard');
    await page.getByLabel('User id, uid, e-mail or username').fill(target.uid);
    await page.getByLabel('Provider', { exact: true }).selectOption('facebook');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/\/admin\/users\?/);
    const row = page.getByRole('row', { name: new RegExp(target.username) });
    await expect.poll(() => row.count()).toBe(1);
    expect(await row.textContent()).toMatch(/uid/);
    await shot(page, 'users');
    // Custom claims an operator set (the admin API's; here straight into the row): shown as JSON, markup as text.
    const claims = { role: 'editor', note: '<img src=x onerror=alert(1)>' };
    await stack.db
      .updateTable('users')
      .set({ claims: JSON.stringify(claims) })
      .where('id', '=', target.id)
      .execute();
    await page.getByRole('link', { name: target.username }).click();
    await page.waitForURL(`**/admin/users/${target.id}`);
    expect(await page.locator('main').textContent()).toContain('ada@example.com');
    expect(JSON.parse((await page.locator('pre.claims').textContent())!)).toEqual(claims);
    expect(await page.locator('main img').count()).toBe(0);
    await shot(page, 'user');
    await page.getByRole('link', { name: target.uid }).click();
    await page.waitForURL(/\/admin\/links\/facebook\//);
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toContain(target.uid);
    await shot(page, 'link');
    expect(problems).toEqual([]);
    await context.close();
  });

  it("unlinks with a reason, and the reason is in the user's audit; a support role cannot force a last way in", async () => {
    const target = await userWithFacebook();
    const { context, page } = await open();
    await signIn(page, 'sam', 1);
    await page.goto(`/admin/users/${target.id}`);
    // Only an admin is offered to remove a last way in.
    expect(await page.getByText('remove it even though the user then has no way to sign in').count()).toBe(0);
    await page.getByLabel('Reason').first().fill('ticket 4711: lost phone, user asked');
    await page.getByRole('button', { name: 'Unlink facebook' }).click();
    await page.waitForURL(`**/admin/users/${target.id}?done=unlinked`);
    const audit = page.locator('table.audit');
    const unlinked = audit.getByRole('row', { name: /unlinked/ });
    await expect.poll(() => unlinked.count()).toBe(1);
    expect(await unlinked.textContent()).toMatch(/ticket 4711: lost phone, user asked/);
    expect(await unlinked.textContent()).toMatch(/staff:\d+:sam/);
    await shot(page, 'user-after-unlink');
    await context.close();
  });

  it('a viewer sees no actions, and is refused one posted anyway (403)', async () => {
    const target = await userWithFacebook();
    const { context, page } = await open();
    await signIn(page, 'vera', 1);
    await page.goto(`/admin/users/${target.id}`);
    expect(await page.getByRole('button', { name: /Unlink|Revoke|Delete|Disable|Enable/ }).count()).toBe(0);
    const csrf = await page.locator('form.signout input[name=_csrf]').getAttribute('value');
    const refused = await context.request.post(`/admin/users/${target.id}/unlink`, {
      form: { _csrf: csrf!, provider: 'facebook', uid: target.uid, reason: 'curious' },
      maxRedirects: 0,
    });
    expect(refused.status()).toBe(403);
    expect(await refused.text()).toMatch(/a viewer may only read/);
    expect(
      await stack.db.selectFrom('social_associations').select('id').where('uid', '=', target.uid).execute(),
    ).toHaveLength(1);
    await context.close();
  });

  it("a form without the session's CSRF token is refused (403), and does nothing", async () => {
    const target = await userWithFacebook();
    const { context, page } = await open();
    await signIn(page, 'ada');
    for (const csrf of ['', 'forged-token']) {
      const refused = await context.request.post(`/admin/users/${target.id}/revoke-sessions`, {
        form: { _csrf: csrf, reason: 'csrf test' },
        maxRedirects: 0,
      });
      expect(refused.status()).toBe(403);
      expect(await refused.text()).toMatch(/CSRF token/);
    }
    const active = await stack.db
      .selectFrom('sessions')
      .select('id')
      .where('user_id', '=', target.id)
      .where('revoked_at', 'is', null)
      .execute();
    expect(active).toHaveLength(1);
    await context.close();
  });

  it('a session idle for 15 minutes, or past its lifetime, ends: the next page asks to sign in again', async () => {
    const { context, page } = await open();
    await signIn(page, 'lou');
    const idle = new Date(Date.now() - 15 * 60_000 - 1000).toISOString();
    await stack.db
      .updateTable('staff_sessions')
      .set({ last_seen_at: idle })
      .where('stage', '=', 'signed_in')
      .where('staff_id', '=', (await services.storage.staff.findByUsername('lou'))!.id)
      .execute();
    await page.goto('/admin/users');
    await page.waitForURL(/\/admin\/login\?ended=1&next=%2Fadmin%2Fusers$/);
    expect(await page.getByRole('status').textContent()).toMatch(/Your session has ended/);
    await shot(page, 'session-ended');

    await signIn(page, 'lou', 1);
    await stack.db
      .updateTable('staff_sessions')
      .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
      .where('staff_id', '=', (await services.storage.staff.findByUsername('lou'))!.id)
      .execute();
    await page.goto('/admin/');
    await page.waitForURL(/\/admin\/login\?ended=1$/);
    await context.close();
  });

  it("ends one session (the lost phone's) and keeps the other; deletes a user only once its username is typed", async () => {
    const target = await userWithFacebook();
    const second = (
      await call(stack.api, 'POST', '/api/token/', {
        body: { username: target.username, password: 'a long password 1' },
        headers: { 'user-agent': 'NewPhone/2.0' },
      })
    ).body;
    const { context, page } = await open();
    await signIn(page, 'max');
    await page.goto(`/admin/users/${target.id}`);
    const lost = page.getByRole('row', { name: /node/ }).first();
    await lost.getByLabel(/Reason/).fill('lost phone, ticket 77');
    await lost.getByRole('button', { name: 'End this session' }).click();
    await page.waitForURL(`**/admin/users/${target.id}?done=session-revoked`);
    expect((await call(stack.api, 'GET', '/api/me/', { token: second.access_token })).status).toBe(200);
    expect(await page.getByRole('row', { name: /NewPhone/ }).count()).toBe(1);

    await page.getByLabel('Reason for deleting this user').fill('erasure request 78');
    await page.getByLabel(/Type the username/).fill('not-the-name');
    await page.getByRole('button', { name: /Delete user/ }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toMatch(/type the username/);
    expect(await stack.db.selectFrom('users').select('id').where('id', '=', target.id).execute()).toHaveLength(1);
    await page.goto(`/admin/users/${target.id}`);
    await shot(page, 'user-delete');
    await page.getByLabel('Reason for deleting this user').fill('erasure request 78');
    await page.getByLabel(/Type the username/).fill(target.username);
    await page.getByRole('button', { name: /Delete user/ }).click();
    await page.waitForURL('**/admin/users?done=deleted');
    expect(await page.getByRole('status').textContent()).toMatch(/deleted/);
    expect(await stack.db.selectFrom('users').select('id').where('id', '=', target.id).execute()).toHaveLength(0);
    await context.close();
  });

  it('disables a user with a reason (its sessions end, sign-in refused) and enables it again; lists show names, e-mails and who is disabled', async () => {
    const target = await userWithFacebook(`grace.${Date.now()}@example.com`);
    const phone = (
      await call(stack.api, 'POST', '/api/token/', {
        body: { username: target.username, password: 'a long password 1' },
      })
    ).body;
    const { context, page, problems } = await open();
    await signIn(page, 'dora');
    await page.goto(`/admin/users?q=${target.uid}`);
    const row = page.getByRole('row', { name: new RegExp(target.username) });
    expect(await row.textContent()).toContain('Ada Lovelace');
    expect(await row.textContent()).toMatch(/grace\.\d+@example\.com/);

    await page.goto(`/admin/users/${target.id}`);
    // The provider's facts as a table: its token's expiry as a date, not a Unix number alone.
    const facts = page.locator('table.kept-facts').first();
    expect(await facts.getByRole('row', { name: /expires_at/ }).textContent()).toMatch(
      /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d{10}\)/,
    );
    expect(await facts.getByRole('row', { name: /^name/ }).textContent()).toContain('Ada Lovelace');
    await page.getByLabel('Reason for disabling this user').fill('chargeback fraud, ticket 91');
    await page.getByRole('button', { name: 'Disable user' }).click();
    await page.waitForURL(`**/admin/users/${target.id}?done=disabled`);
    expect(await page.getByRole('status').textContent()).toMatch(/disabled/);
    expect(await page.locator('dl.facts').textContent()).toMatch(/Disabled since .* UTC: chargeback fraud, ticket 91/);
    await shot(page, 'user-disabled');
    expect((await call(stack.api, 'GET', '/api/me/', { token: phone.access_token })).status).toBe(401);
    expect(
      (
        await call(stack.api, 'POST', '/api/token/', {
          body: { username: target.username, password: 'a long password 1' },
        })
      ).body.code,
    ).toBe('user_disabled');
    await page.goto(`/admin/users?q=${target.uid}`);
    expect(await page.getByRole('row', { name: new RegExp(target.username) }).textContent()).toMatch(/disabled/);

    await page.goto(`/admin/users/${target.id}`);
    await page.getByLabel('Reason for enabling this user').fill('refund cleared');
    await page.getByRole('button', { name: 'Enable user' }).click();
    await page.waitForURL(`**/admin/users/${target.id}?done=enabled`);
    expect(await page.locator('dl.facts').textContent()).toMatch(/Status\s*Active/);
    const audit = page.locator('table.audit');
    expect(await audit.getByRole('row', { name: /user_enabled/ }).textContent()).toMatch(/refund cleared/);
    expect(await audit.getByRole('row', { name: /user_disabled.*chargeback/ }).textContent()).toMatch(
      /staff:\d+:dora.*chargeback fraud/,
    );
    expect(
      (
        await call(stack.api, 'POST', '/api/token/', {
          body: { username: target.username, password: 'a long password 1' },
        })
      ).status,
    ).toBe(200);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('search works with the keyboard alone', async () => {
    const target = await userWithFacebook();
    const { context, page } = await open();
    await signIn(page, 'ada', 1);
    await page.goto('/admin/users');
    // From the top of the page: Tab to the search field, type, Enter; Tab to the result, Enter.
    await page.locator('body').focus();
    const focusedId = () => page.evaluate(() => document.activeElement?.id ?? '');
    for (let i = 0; i < 15 && (await focusedId()) !== 'q'; i++) await page.keyboard.press('Tab');
    expect(await focusedId()).toBe('q');
    await page.keyboard.type(target.uid);
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/admin\/users\?q=/);
    const focusedText = () => page.evaluate(() => document.activeElement?.textContent ?? '');
    for (let i = 0; i < 30 && (await focusedText()) !== target.username; i++) await page.keyboard.press('Tab');
    expect(await focusedText()).toBe(target.username);
    // The focus is visible (the console's :focus-visible outline).
    expect(await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle)).toBe('solid');
    await page.keyboard.press('Enter');
    await page.waitForURL(`**/admin/users/${target.id}`);
    await context.close();
  });

  it('repeated wrong passwords lock the account for a while, even for the right password', async () => {
    const { context, page } = await open();
    await new StaffAccounts(services).create('mallory-target', PASSWORD, 'viewer', newTotpSecret());
    for (let attempt = 0; attempt < 5; attempt++) {
      await page.goto('/admin/login');
      await page.getByLabel('Username').fill('mallory-target');
      await page.getByLabel('Password').fill(`wrong password ${attempt}`);
      await page.getByRole('button', { name: 'Continue' }).click();
      await expect.poll(() => page.getByRole('alert').count()).toBe(1);
    }
    await page.goto('/admin/login');
    await page.getByLabel('Username').fill('mallory-target');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toMatch(/locked for a while/);
    expect(page.url()).toMatch(/\/admin\/login$/);
    expect((await services.storage.staff.findByUsername('mallory-target'))!.lockedUntil).toEqual(expect.any(String));
    await context.close();
  });

  it('pages carry a strict Content-Security-Policy and no-store', async () => {
    const answer = await fetch(`${stack.api}/admin/login`);
    expect(answer.headers.get('content-security-policy')).toBe(
      "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    expect(answer.headers.get('cache-control')).toBe('no-store');
    expect(await answer.text()).not.toMatch(/<script/i);
  });
});
