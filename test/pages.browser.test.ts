import { existsSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type BrowserContext, type Page, type Response, type Route } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTotpSecret, totpCode } from '../src/auth/totp.js';
import { loadConfig } from '../src/config/config.js';
import type { Env } from '../src/lib/settings.js';
import { createServices, type Services } from '../src/core/services.js';
import { StaffAccounts } from '../src/core/staff.js';
import { call, guest, startStack, type Stack } from './helpers.js';

// Every page the server serves, loaded in a real browser (Debian's Chromium driven by playwright-core, as
// test/admin-console.test.ts does): the API docs (/docs, Swagger UI), the document (/openapi.json), the staff
// console's pages signed out and signed in, its error page, and the Facebook data-deletion status page. A page
// fails on any sub-resource answering 4xx/5xx, any script, stylesheet, image or font with an empty body, any
// console error (CSP violations among them) or uncaught page error, and any request that fails; and the test
// fails on a GET route it does not know how to visit (a new page must be added here).

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const present = existsSync(CHROMIUM);
if (!present) {
  if (process.env.REQUIRE_BROWSER === '1')
    throw new Error(`REQUIRE_BROWSER is set but ${CHROMIUM} is missing (apt-get install chromium)`);
  console.warn(
    `page browser tests skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`,
  );
}
const ENCRYPTION_KEY = Buffer.alloc(32, 12).toString('base64');
const PASSWORD = 'correct horse battery staple';
const ASSETS = new Set(['script', 'stylesheet', 'image', 'font']);
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
/** Generous: the machine may be busy; nothing here measures time. */
const PAGE_TIMEOUT = 30_000;

/**
 * The GET routes of the app (Fastify's route tree, printed), as full paths: `/admin/users/:id`, `/docs/*`.
 * A route registered with a trailing slash (`/admin/`) prints without it (the router ignores trailing slashes).
 */
function getRoutes(app: FastifyInstance): string[] {
  const routes: string[] = [];
  const parents: string[] = [];
  for (const line of app.printRoutes({ method: 'GET', commonPrefix: false }).split('\n')) {
    const match = /^((?:[│ ] {3})*)[├└]── (.+?)(?: \(([^)]*)\))?$/.exec(line);
    if (!match) continue;
    const depth = match[1]!.length / 4;
    parents.length = depth;
    parents.push(match[2]!);
    if (match[3]?.split(', ').includes('GET')) routes.push(parents.join(''));
  }
  return routes;
}

/** A route's pattern matches a URL path (`:param` one segment, `*` the rest). */
const routeMatches = (route: string, path: string) =>
  new RegExp(
    `^${route
      .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
      .replace(/:[^/]+/g, '[^/]+')
      .replace(/\*/g, '.*')}/?$`,
  ).test(path);

/**
 * What is not a page, by route: the API and the documents answer JSON (or YAML, CSS, text), and Swagger UI's
 * files are what /docs loads (checked there). Anything else the server answers GET to is visited as a page.
 */
function notAPage(route: string): string | undefined {
  if (route.startsWith('/admin/api/')) return 'the admin API (JSON)';
  if (route.startsWith('/api/') && route !== '/api/providers/facebook/data-deletion/:code') return 'the API (JSON)';
  const fixed: Record<string, string> = {
    '/.well-known/jwks.json': 'the public keys (JSON)',
    '/healthz': 'liveness (JSON)',
    '/readyz': 'readiness (JSON)',
    '/metrics': 'Prometheus metrics (text)',
    '/docs/json': "Swagger UI's copy of the document (JSON), loaded by /docs",
    '/docs/yaml': 'the document as YAML',
    '/docs/static/swagger-initializer.js': 'a script of /docs',
    '/docs/*':
      "Swagger UI's static files, loaded by /docs (its oauth2-redirect.html is the popup of OAuth2 flows, which the API has none of)",
    '/admin/static/console.css': "the console's stylesheet, loaded by every console page",
  };
  return fixed[route];
}

/** Two configurations: the test suite's, and dev mode's (`npm run dev`: rate limits on, the console on, no shutdown grace). */
const CONFIGS: Array<[string, Env]> = [
  ['the test configuration', {}],
  [
    'a dev-like configuration',
    { RATE_LIMIT_ENABLED: 'true', SOCIAL_AUTH_CIRCUIT_BREAKER_THRESHOLD: '5', SOCIAL_LINK_SHUTDOWN_GRACE_MS: '0' },
  ],
];

describe.skipIf(!present)('every page the server serves, in Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // As test/admin-console.test.ts: no sandbox as root, nothing that reaches for the network; and no name
      // resolves but loopback's (a page that reaches out fails its requests, and so the test).
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
      ],
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  describe.each(CONFIGS)('%s', (_name, env) => {
    let stack: Stack;
    let services: Services;
    const secret = newTotpSecret();
    /** A user with a Facebook account linked through the API (against the emulator). */
    let target: { id: number; username: string; uid: string };
    /** The confirmation code of a Facebook data-deletion request, for its status page. */
    let deletionCode: string;
    /** Every URL path visited as a page, signed in or not. */
    const visited: string[] = [];

    beforeAll(async () => {
      stack = await startStack('sqlite', {
        SOCIAL_LINK_ADMIN: 'true',
        SOCIAL_LINK_ENCRYPTION_KEYS: ENCRYPTION_KEY,
        ...env,
      });
      services = createServices({
        config: loadConfig({ DATABASE_URL: stack.databaseUrl, SOCIAL_LINK_ENCRYPTION_KEYS: ENCRYPTION_KEY }),
        log: pino({ level: 'silent' }),
        db: stack.db,
      });
      await new StaffAccounts(services).create('ada', PASSWORD, 'admin', secret);
      await new StaffAccounts(services).create('newbie', PASSWORD, 'viewer'); // no authenticator yet: enrols

      const username = `pages${Date.now()}`;
      const user = (await call(stack.api, 'POST', '/api/users/', { body: { username, password: 'a long password 1' } }))
        .body;
      const facebook = await stack.emulator.mintFacebookToken({
        user: { name: 'Ada Lovelace', email: 'ada@example.com' },
      });
      expect(
        (
          await call(stack.api, 'POST', '/api/associate/facebook/', {
            token: user.access_token,
            body: { access_token: facebook.access_token },
          })
        ).status,
      ).toBe(200);
      target = { id: user.id, username, uid: facebook.user_id };

      const leaving = await guest(stack.api);
      const leavingFacebook = await stack.emulator.mintFacebookToken({});
      expect(
        (
          await call(stack.api, 'POST', '/api/associate/facebook/', {
            token: leaving.access_token,
            body: { access_token: leavingFacebook.access_token },
          })
        ).status,
      ).toBe(200);
      const deletion = await stack.emulator.sendFacebookCallback({
        kind: 'data_deletion',
        user_id: leavingFacebook.user_id,
        url: `${stack.api}/api/providers/facebook/data-deletion`,
      });
      expect(deletion.status, deletion.body).toBe(200);
      deletionCode = (JSON.parse(deletion.body) as { confirmation_code: string }).confirmation_code;
    }, 60_000);
    afterAll(async () => {
      await services?.close();
      await stack?.close();
    });

    /**
     * A browser context of its own (cookies), watched: what goes wrong on any page it loads is in `problems`.
     * Requests off loopback are refused (and a problem).
     */
    async function open(): Promise<{
      context: BrowserContext;
      page: Page;
      visit: (path: string, status?: number) => Promise<Response>;
      done: () => Promise<string[]>;
    }> {
      const context = await browser.newContext({ baseURL: stack.api });
      context.setDefaultTimeout(PAGE_TIMEOUT);
      context.setDefaultNavigationTimeout(PAGE_TIMEOUT);
      const problems: string[] = [];
      const checks = new Set<Promise<void>>();
      let at = '(no page yet)';
      await context.route(
        (url) => !LOOPBACK.has(url.hostname) && url.protocol !== 'data:',
        async (route) => {
          problems.push(`${at}: a request off loopback, refused: ${route.request().url()}`);
          await route.abort('blockedbyclient');
        },
      );
      // Chromium reports a CSP violation on the console too; this names the directive, whatever the page.
      await context.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (event) =>
          console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || '(inline)'}`),
        );
      });
      const page = await context.newPage();
      page.on('console', (message) => {
        if (message.type() !== 'error') return;
        // Chromium's line for a page answered with an error status (the console's 404 page): visit() checks that status.
        if (
          /^Failed to load resource: the server responded with a status of \d+/.test(message.text()) &&
          message.location().url === page.url()
        )
          return;
        problems.push(`${at}: console error: ${message.text()} (${message.location().url})`);
      });
      page.on('framenavigated', (frame) => {
        if (frame === page.mainFrame()) at = frame.url().replace(stack.api, '');
      });
      page.on('pageerror', (error) => problems.push(`${at}: page error: ${error.message}`));
      page.on('requestfailed', (request) =>
        problems.push(`${at}: request failed: ${request.method()} ${request.url()}: ${request.failure()?.errorText}`),
      );
      page.on('response', (response) => {
        const request = response.request();
        const status = response.status();
        // The page itself is checked by visit() (the console's error page is a 404 on purpose).
        const isPage = request.isNavigationRequest() && request.frame() === page.mainFrame();
        if (!isPage && status >= 400)
          problems.push(`${at}: ${status} for ${request.resourceType()} ${request.method()} ${request.url()}`);
        if (ASSETS.has(request.resourceType()) && status >= 200 && status < 300) {
          const where = at;
          const check = response
            .body()
            // Chromium forgets a response's body once the page that loaded it is gone (on a busy machine the next
            // visit can come first: "No resource with given identifier found"): the same request again then.
            .catch(async (error: Error) => {
              if (!/No resource with given identifier/.test(error.message)) throw error;
              return (await context.request.get(request.url())).body();
            })
            .then(
              (body) =>
                void (body.length === 0 && problems.push(`${where}: empty ${request.resourceType()} ${request.url()}`)),
            )
            .catch(
              (error: Error) =>
                void problems.push(`${at}: the body of ${request.url()} could not be read: ${error.message}`),
            )
            .finally(() => checks.delete(check));
          checks.add(check);
        }
      });
      const visit = async (path: string, status = 200) => {
        at = path;
        // `load`: the page and everything it names (Swagger UI fetches its document later: its test waits for it).
        const response = await page.goto(path, { waitUntil: 'load' });
        expect(response, path).not.toBeNull();
        expect(response!.status(), `${path} answered ${response!.status()}; the server logged: ${serverErrors()}`).toBe(
          status,
        );
        // The route asked for answered (perhaps with a redirect), and the one shown.
        visited.push(new URL(path, stack.api).pathname, new URL(page.url()).pathname);
        return response!;
      };
      const done = async () => {
        await page.waitForLoadState('networkidle');
        while (checks.size > 0) await Promise.all([...checks]);
        await context.close();
        return problems;
      };
      return { context, page, visit, done };
    }

    /** What the server logged as errors (for a page that answered 5xx). */
    const serverErrors = () =>
      stack.logs
        .filter((line) => /"level":(5|6)\d/.test(line))
        .join('\n')
        .slice(-4000) || '(nothing)';

    /** The page is a console page, whole: its stylesheet applied, a heading, and the text of its main part. */
    async function expectConsolePage(page: Page, heading: RegExp): Promise<void> {
      const styled = await page.evaluate(() =>
        [...document.styleSheets].some(
          (sheet) => sheet.href?.endsWith('/admin/static/console.css') && sheet.cssRules.length > 0,
        ),
      );
      expect(styled, `${page.url()}: console.css applied`).toBe(true);
      expect(await page.locator('h1').first().textContent(), page.url()).toMatch(heading);
      expect((await page.locator('main').innerText()).trim().length, `${page.url()}: a blank page`).toBeGreaterThan(20);
    }

    it('the watch itself catches each breakage: an asset answering 404, an empty stylesheet, a CSP violation, a request off loopback, a script error', async () => {
      const { context, page, visit, done } = await open();
      // The sign-in page, spoiled on its way to the browser (the server is not touched); without its CSP for what the CSP would stop first.
      const spoil = (extra: string, dropCsp: boolean) => async (route: Route) => {
        const response = await route.fetch();
        const headers = { ...response.headers() };
        if (dropCsp) delete headers['content-security-policy'];
        await route.fulfill({ response, headers, body: (await response.text()).replace('</main>', `${extra}</main>`) });
      };
      await context.route(
        (url) => url.pathname === '/admin/login' && url.searchParams.has('spoiled'),
        spoil(
          '<img src="/admin/static/missing.png" alt=""><link rel="stylesheet" href="/admin/static/empty.css"><script>void 0</script>',
          false,
        ),
      );
      await context.route(
        (url) => url.pathname === '/admin/login' && url.searchParams.has('scripted'),
        spoil('<img src="http://example.invalid/x.png" alt=""><script>throw new Error("boom")</script>', true),
      );
      await context.route('**/admin/static/empty.css', (route) =>
        route.fulfill({ status: 200, contentType: 'text/css', body: '' }),
      );
      await visit('/admin/login?spoiled=1');
      await page.waitForLoadState('networkidle');
      await visit('/admin/login?scripted=1');
      const problems = await done();
      for (const caught of [
        /404 for image GET \S+\/missing\.png/,
        /empty stylesheet \S+\/empty\.css/,
        /CSP violation: script-src/,
        /off loopback, refused: http:\/\/example\.invalid/,
        /request failed: GET http:\/\/example\.invalid/,
        /page error: boom/,
      ]) {
        expect(
          problems.some((problem) => caught.test(problem)),
          `${caught} among ${JSON.stringify(problems, null, 1)}`,
        ).toBe(true);
      }
    }, 60_000);

    it('/docs (and /docs/static/index.html, the same page): Swagger UI renders every operation of the document', async () => {
      const { page, visit, done } = await open();
      const document = (await (await fetch(`${stack.api}/openapi.json`)).json()) as {
        paths: Record<string, Record<string, unknown>>;
      };
      const operations = Object.values(document.paths).reduce((sum, methods) => sum + Object.keys(methods).length, 0);
      for (const path of ['/docs', '/docs/static/index.html']) {
        await visit(path);
        await page.locator('.opblock').first().waitFor();
        await expect.poll(() => page.locator('.opblock').count(), { timeout: PAGE_TIMEOUT }).toBe(operations);
        expect(await page.locator('.info .title').first().textContent()).toMatch(/social-link/);
        // An operation opens (its answers render from the document).
        await page.locator('.opblock-summary').first().click();
        await page.locator('.opblock .responses-wrapper').first().waitFor();
      }
      expect(await done()).toEqual([]);
    }, 120_000);

    it('/openapi.json: the document, as JSON', async () => {
      const { page, visit, done } = await open();
      const response = await visit('/openapi.json');
      expect(response.headers()['content-type']).toMatch(/^application\/json/);
      const document = JSON.parse(await page.locator('body').innerText()) as {
        openapi: string;
        paths: Record<string, unknown>;
      };
      expect(document.openapi).toBe('3.1.0');
      expect(Object.keys(document.paths)).toContain('/admin/api/usernames/{username}');
      expect(await done()).toEqual([]);
    }, 60_000);

    it("the console signed out: sign-in, its notices, the first sign-in's enrolment, and the authenticator code step", async () => {
      const { page, visit, done } = await open();
      await visit('/admin/login');
      await expectConsolePage(page, /Sign in/);
      await visit('/admin/login?ended=1&next=%2Fadmin%2Fusers');
      expect(await page.getByRole('status').textContent()).toMatch(/session has ended/);
      // A page asked for without a session: the sign-in page.
      await visit('/admin/users');
      expect(new URL(page.url()).pathname).toBe('/admin/login');

      // A new staff member: the password, then the authenticator to set up (QR code and key).
      await page.getByLabel('Username').fill('newbie');
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.waitForURL(/\/admin\/enrol(\?|$)/); // with ?next=/admin/users: the page asked for above
      visited.push('/admin/enrol');
      await expectConsolePage(page, /authenticator/i);
      expect(await page.locator('figure.qr svg').count()).toBe(1);
      expect(await done()).toEqual([]);
    }, 90_000);

    it('the console signed in: the dashboard, users, a search, a user with a Facebook link, its link, the audit with reads, the error page, and every other console page', async () => {
      const { context, page, visit, done } = await open();
      await visit('/admin/login');
      await page.getByLabel('Username').fill('ada');
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.waitForURL('**/admin/totp');
      visited.push('/admin/totp');
      await expectConsolePage(page, /code/i);
      await page.getByLabel(/6-digit code/).fill(totpCode(secret));
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL('**/admin/');

      const pages: Array<[string, RegExp]> = [
        ['/admin/', /Dashboard/],
        ['/admin/users', /Users/],
        [`/admin/users?${new URLSearchParams({ q: target.uid, provider: 'facebook' })}`, /Users/],
        [`/admin/users/${target.id}`, new RegExp(target.username)],
        [`/admin/users/${target.id}?reads=1`, new RegExp(target.username)],
        [`/admin/links/facebook/${encodeURIComponent(target.uid)}`, new RegExp(target.uid)],
      ];
      for (const [path, heading] of pages) {
        await visit(path);
        await expectConsolePage(page, heading);
      }
      await visit(`/admin/users/${target.id}`);
      expect(await page.locator('main').textContent()).toContain('ada@example.com');
      expect(await page.getByRole('link', { name: target.uid }).count()).toBeGreaterThan(0);

      // The console's own error page (an unknown page; a user that does not exist).
      await visit('/admin/no-such-page', 404);
      await expectConsolePage(page, /Not found/);
      await visit('/admin/users/999999999', 404);
      await expectConsolePage(page, /Not found/);

      // Console pages this test does not name (a page added since): those without a parameter are visited too.
      const named = [
        '/admin',
        '/admin/login',
        '/admin/totp',
        '/admin/enrol',
        '/admin/users',
        '/admin/users/:id',
        '/admin/links/:provider/:uid',
      ];
      for (const route of getRoutes(stack.app)) {
        if (!route.startsWith('/admin') || notAPage(route) || named.includes(route) || /[:*]/.test(route)) continue;
        const answer = await context.request.get(route, { maxRedirects: 0 });
        if (!/text\/html/.test(answer.headers()['content-type'] ?? '')) continue;
        await visit(route, answer.status());
        await expectConsolePage(page, /./);
      }
      expect(await done()).toEqual([]);
    }, 120_000);

    it('the Facebook data-deletion status page', async () => {
      const { page, visit, done } = await open();
      await visit(`/api/providers/facebook/data-deletion/${deletionCode}`);
      expect(await page.locator('h1').textContent()).toContain(deletionCode);
      expect(await page.locator('body').innerText()).toMatch(/Done|In progress/);
      expect(await done()).toEqual([]);
    }, 60_000);

    it('every GET route that answers a page was visited above (a new one must be added to this test)', () => {
      const missed = getRoutes(stack.app).filter(
        (route) => !notAPage(route) && !visited.some((path) => routeMatches(route, path)),
      );
      expect(missed).toEqual([]);
    });
  });
});
