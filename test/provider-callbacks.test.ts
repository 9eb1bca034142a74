import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifySignedRequest } from '../src/providers/signed-request.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// The providers' lifecycle callbacks (src/core/provider-callbacks.ts), checked against the cited vectors of
// test/fixtures/callbacks/ and driven through HTTP by the emulator, which signs them as the provider does.

const vectors = JSON.parse(readFileSync(new URL('./fixtures/callbacks/facebook/signed_request.vectors.json', import.meta.url), 'utf8')) as {
  vectors: Array<{ id: string; secret: string; signed_request: string; expect: { verify: string; payload?: Record<string, unknown>; recommended?: string } }>;
};

describe("Facebook's signed_request", () => {
  it.each(vectors.vectors.map((vector) => [vector.id, vector] as const))('%s', (_id, vector) => {
    const payload = verifySignedRequest(vector.signed_request, vector.secret);
    const accept = vector.expect.verify === 'accept' || vector.expect.recommended === 'accept';
    if (accept) expect(payload).toEqual(vector.expect.payload ?? expect.any(Object));
    else expect(payload).toBeUndefined();
  });
});

describe.each(databaseKinds())('Facebook callbacks on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, { SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks', SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 3).toString('base64')}` });
  });
  afterAll(() => stack.close());

  async function linked() {
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', { token: user.access_token, body: { access_token: facebook.access_token } });
    return { user, uid: facebook.user_id };
  }

  it('data deletion: the link and what it kept are deleted; the answer is {url, confirmation_code}; the status page says so', async () => {
    const { user, uid } = await linked();
    const sent = await stack.emulator.sendFacebookCallback({ kind: 'data_deletion', user_id: uid, url: `${stack.api}/api/providers/facebook/data-deletion` });
    expect(sent.status).toBe(200);
    const answer = JSON.parse(sent.body) as { url: string; confirmation_code: string };
    expect(Object.keys(answer).sort()).toEqual(['confirmation_code', 'url']);
    expect(answer.confirmation_code).toMatch(/^[0-9a-f]{24}$/);
    expect(await stack.db.selectFrom('social_associations').select('id').where('provider', '=', 'facebook').where('uid', '=', uid).execute()).toEqual([]);
    const page = await fetch(answer.url.replace(/^https?:\/\/[^/]+/, stack.api));
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('Done');
    const events = await stack.db.selectFrom('outbox').select(['type', 'payload']).where('user_id', '=', user.id).execute();
    expect(events.map((event) => event.type)).toContain('link.removed');
    // Again (Facebook may retry): a new confirmation, nothing left to delete.
    expect((await stack.emulator.sendFacebookCallback({ kind: 'data_deletion', user_id: uid, url: `${stack.api}/api/providers/facebook/data-deletion` })).status).toBe(200);
  });

  it('deauthorize: recorded for the app (provider.event), the link stays', async () => {
    const { user, uid } = await linked();
    const sent = await stack.emulator.sendFacebookCallback({ kind: 'deauthorize', user_id: uid, url: `${stack.api}/api/providers/facebook/deauthorize` });
    expect(sent.status).toBe(200);
    const events = await stack.db.selectFrom('outbox').select(['type', 'payload']).where('user_id', '=', user.id).execute();
    expect(events.some((event) => event.type === 'provider.event' && JSON.parse(event.payload).data.kind === 'deauthorized')).toBe(true);
    expect(await stack.db.selectFrom('social_associations').select('id').where('uid', '=', uid).execute()).toHaveLength(1);
  });

  it('a signed_request not signed with our app secret, or none, is refused (400) and deletes nothing', async () => {
    const { uid } = await linked();
    const forged = vectors.vectors.find((vector) => vector.id === 'data-deletion-wrong-secret')!;
    for (const body of [`signed_request=${encodeURIComponent(forged.signed_request)}`, 'nothing=here', '']) {
      const answer = await fetch(`${stack.api}/api/providers/facebook/data-deletion`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
      expect(answer.status).toBe(400);
      expect(((await answer.json()) as { code: string }).code).toBe('invalid_request');
    }
    expect(await stack.db.selectFrom('social_associations').select('id').where('uid', '=', uid).execute()).toHaveLength(1);
    expectError(await call(stack.api, 'GET', '/api/providers/facebook/data-deletion/0123456789abcdef01234567'), 404, 'not_found');
  });
});
