import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { call, databaseKinds, expectError, guest } from '../helpers.js';
import { sharedStack } from './flows.js';

// Issue 24 (security round 3): provider callbacks played again under another spelling, dated in the future, or
// forged by the thousand. Each attack is sent raw through HTTP (src/core/provider-callbacks.ts, src/http/hooks.ts).

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The same base64url text but for its last character's lowest unused bit: decoders give the same bytes. */
const lowBitFlipped = (text: string) => text.slice(0, -1) + ALPHABET[ALPHABET.indexOf(text.at(-1)!) ^ 1]!;

describe.each(databaseKinds())('provider callbacks played again, re-spelled, on %s', (kind) => {
  const stack = sharedStack(kind, {
    SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
    SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`,
  });

  const seconds = () => Math.floor(Date.now() / 1000);
  const signed = (payload: Record<string, unknown>) => {
    const body = Buffer.from(JSON.stringify({ algorithm: 'HMAC-SHA256', ...payload })).toString('base64url');
    return { signature: createHmac('sha256', stack.apps.facebook.appSecret).update(body).digest('base64url'), body };
  };
  const postFacebook = (path: string, signedRequest: string) =>
    fetch(`${stack.api}/api/providers/facebook/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ signed_request: signedRequest }).toString(),
    });
  const links = (provider: string, uid: string) =>
    stack.db
      .selectFrom('social_associations')
      .select('id')
      .where('provider', '=', provider)
      .where('uid', '=', uid)
      .execute();
  const deletionRequests = async (uid: string) =>
    (
      await stack.db
        .selectFrom('provider_deletion_requests')
        .select('confirmation_code')
        .where('uid', '=', uid)
        .execute()
    ).length;
  const providerEvents = async (userId: number) =>
    (await stack.db.selectFrom('outbox').select('type').where('user_id', '=', userId).execute()).filter(
      (row) => row.type === 'provider.event',
    ).length;

  it("Facebook data deletion: a signed_request re-spelled ('+/', the last character's unused bits, wrong padding, whitespace) is refused (400 invalid_request); padded as base64 pads is the same request; the link the person re-created stays", async () => {
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    const link = () =>
      call(stack.api, 'POST', '/api/associate/facebook/', {
        token: user.access_token,
        body: { access_token: facebook.access_token },
      });
    await link();
    // A signature with a '-' or '_' in it, so that the '+/' alphabet can spell it too.
    let request = signed({ issued_at: seconds(), user_id: facebook.user_id });
    for (let n = 0; !/[-_]/.test(request.signature); n++)
      request = signed({ issued_at: seconds(), user_id: facebook.user_id, n });
    const { signature, body } = request;
    expect((await postFacebook('data-deletion', `${signature}.${body}`)).status).toBe(200);
    expect(await links('facebook', facebook.user_id)).toHaveLength(0);
    // Spelled as Facebook spells it, its id is the one recorded before this fix: a request seen then is seen still.
    const seen = await stack.db
      .selectFrom('provider_callbacks_seen')
      .select('id')
      .where('id', '=', `facebook:${createHash('sha256').update(`${signature}.${body}`).digest('hex')}`)
      .execute();
    expect(seen).toHaveLength(1);
    await link(); // the person came back and linked the account again
    expect(await links('facebook', facebook.user_id)).toHaveLength(1);
    const before = await deletionRequests(facebook.user_id);

    const respelled = {
      'the +/ alphabet': signature.replace(/-/g, '+').replace(/_/g, '/'),
      "the last character's unused bits": lowBitFlipped(signature),
      'two = where one is due': `${signature}==`,
      'three =': `${signature}===`,
      'a space inside': `${signature.slice(0, 10)} ${signature.slice(10)}`,
    };
    for (const [how, spelled] of Object.entries(respelled)) {
      expect(Buffer.from(spelled, 'base64url').equals(Buffer.from(signature, 'base64url')), how).toBe(true); // a lenient decoder's bytes: the same
      for (const path of ['data-deletion', 'deauthorize']) {
        const answer = await postFacebook(path, `${spelled}.${body}`);
        expect(answer.status, `${how} (${path})`).toBe(400);
        expect(((await answer.json()) as { code: string }).code, how).toBe('invalid_request');
      }
    }
    // Padded as base64 pads (one gist says Meta's signatures arrive so: test/fixtures/callbacks/facebook/): the same request, played again.
    expect((await postFacebook('data-deletion', `${signature}=.${body}`)).status).toBe(200);
    expect(await links('facebook', facebook.user_id)).toHaveLength(1);
    expect(await deletionRequests(facebook.user_id)).toBe(before + 1); // the replay's confirmation, as for any replay; none for the refused
  });

  it('an Apple notification without jti (account-delete), re-spelled (unused bits, padding, whitespace), acts once: the link the person re-created stays', async () => {
    const sub = (await stack.emulator.mintIdToken('apple', {})).sub;
    const linked = async () => {
      const user = await guest(stack.api);
      const minted = await stack.emulator.mintIdToken('apple', { sub });
      expect(
        (
          await call(stack.api, 'POST', '/api/associate/apple/', {
            token: user.access_token,
            body: { id_token: minted.id_token },
          })
        ).status,
      ).toBe(200);
      return user;
    };
    await linked();
    // Signed by Apple's key, for our client id, with no jti: its id is the hash of what was sent.
    const { id_token: payload } = await stack.emulator.mintIdToken('apple', {
      sub,
      claims: { events: JSON.stringify({ type: 'account-delete', sub, event_time: Date.now() }) },
    });
    expect(JSON.parse(Buffer.from(payload.split('.')[1]!, 'base64url').toString())).not.toHaveProperty('jti');
    const notify = (body: string) =>
      fetch(`${stack.api}/api/providers/apple/notifications`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ payload: body }),
      });
    expect((await notify(payload)).status).toBe(200);
    expect(await links('apple', sub)).toHaveLength(0);
    const back = await linked(); // the person came back (a new install) and linked the Apple account again
    const cut = payload.lastIndexOf('.') + 1;
    const signature = payload.slice(cut);
    for (const spelled of [
      lowBitFlipped(signature),
      `${signature}==`,
      `${signature.slice(0, 20)} ${signature.slice(20)}`,
    ]) {
      expect((await notify(payload.slice(0, cut) + spelled)).status).toBe(200); // it verifies: Apple signed it
      expect(await links('apple', sub)).toHaveLength(1);
    }
    expect((await call(stack.api, 'GET', '/api/me/', { token: back.access_token })).status).toBe(200);
    expect(await providerEvents(back.id)).toBe(0);
  });

  it('a Google security event token without jti, re-spelled, acts once: the sessions started since live on', async () => {
    const user = await guest(stack.api);
    const minted = await stack.emulator.mintIdToken('google', {});
    await call(stack.api, 'POST', '/api/associate/google/', {
      token: user.access_token,
      body: { id_token: minted.id_token },
    });
    const subject = { subject_type: 'iss-sub', iss: 'https://accounts.google.com/', sub: minted.sub };
    const { id_token: token } = await stack.emulator.mintIdToken('google', {
      sub: minted.sub,
      iss: 'https://accounts.google.com/',
      claims: { events: { 'https://schemas.openid.net/secevent/risc/event-type/sessions-revoked': { subject } } },
    });
    const send = (body: string) =>
      fetch(`${stack.api}/api/providers/google/risc`, {
        method: 'POST',
        headers: { 'content-type': 'application/secevent+jwt' },
        body,
      });
    expect((await send(token)).status).toBe(202);
    expect((await call(stack.api, 'GET', '/api/me/', { token: user.access_token })).status).toBe(401);
    const fresh = await stack.emulator.mintIdToken('google', { sub: minted.sub, iat_offset: 1 });
    const again = await call(stack.api, 'POST', '/api/auth/google/', { body: { id_token: fresh.id_token } });
    expect(again.body.id).toBe(user.id);
    const cut = token.lastIndexOf('.') + 1;
    for (const spelled of [lowBitFlipped(token.slice(cut)), `${token.slice(cut)}==`])
      expect((await send(token.slice(0, cut) + spelled)).status).toBe(202);
    expect((await call(stack.api, 'GET', '/api/me/', { token: again.body.access_token })).status).toBe(200);
    expect(await providerEvents(user.id)).toBe(1);
  });

  it('a Facebook signed_request dated in the future (past the clock tolerance) is refused (400 invalid_token) and changes nothing; within it, taken', async () => {
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({});
    await call(stack.api, 'POST', '/api/associate/facebook/', {
      token: user.access_token,
      body: { access_token: facebook.access_token },
    });
    const at = (issuedAt: number) => {
      const { signature, body } = signed({ issued_at: issuedAt, user_id: facebook.user_id });
      return `${signature}.${body}`;
    };
    // Dated a year ahead, it would pass for recent long after its id is forgotten (7 days): played again then, it would delete again.
    for (const path of ['data-deletion', 'deauthorize']) {
      const answer = await postFacebook(path, at(seconds() + 365 * 86_400));
      expect(answer.status, path).toBe(400);
      expect(((await answer.json()) as { code: string }).code).toBe('invalid_token');
    }
    expect((await postFacebook('data-deletion', at(seconds() + 120))).status).toBe(400); // past the default 60 s
    expect(await links('facebook', facebook.user_id)).toHaveLength(1);
    expect(await deletionRequests(facebook.user_id)).toBe(0);
    expect(await providerEvents(user.id)).toBe(0);
    expect((await postFacebook('data-deletion', at(seconds() + 30))).status).toBe(200); // a clock a little ahead of ours
    expect(await links('facebook', facebook.user_id)).toHaveLength(0);
  });
});

describe.each(databaseKinds())('forged provider callbacks on %s', (kind) => {
  const stack = sharedStack(kind, {
    RATE_LIMIT_ENABLED: 'true',
    RATE_LIMIT_CALLBACKS_PER_MINUTE: '6',
    SOCIAL_LINK_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
    SOCIAL_LINK_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 8).toString('base64')}`,
  });

  const metric = async (provider: string, outcome: string) => {
    const text = await (await fetch(`${stack.api}/metrics`)).text();
    const line = text
      .split('\n')
      .find(
        (row) =>
          row.startsWith('social_link_provider_callbacks_total{') &&
          row.includes(`provider="${provider}"`) &&
          row.includes(`outcome="${outcome}"`),
      );
    return line ? Number(line.split(' ').at(-1)) : 0;
  };

  it('are rate-limited per client IP (429 rate_limited, Retry-After) and counted in social_link_provider_callbacks_total, not audited; a genuine one keeps its audit row', async () => {
    const user = await guest(stack.api);
    const minted = await stack.emulator.mintIdToken('apple', {});
    await call(stack.api, 'POST', '/api/associate/apple/', {
      token: user.access_token,
      body: { id_token: minted.id_token },
    });
    const url = `${stack.api}/api/providers/apple/notifications`;
    expect((await stack.emulator.sendAppleNotification({ type: 'email-disabled', sub: minted.sub, url })).status).toBe(
      200,
    );
    const answers = [];
    for (let i = 0; i < 8; i++)
      answers.push(
        (
          await stack.emulator.sendAppleNotification({
            type: 'account-delete',
            sub: minted.sub,
            url,
            forge: 'bad_signature',
          })
        ).status,
      );
    expect(answers).toEqual([400, 400, 400, 400, 400, 429, 429, 429]);
    const limited = await call(stack.api, 'POST', '/api/providers/apple/notifications', { body: { payload: 'a.b.c' } });
    expectError(limited, 429, 'rate_limited');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    // The forged calls wrote nothing; the genuine one its audit row and its webhook event.
    const audit = await stack.db.selectFrom('audit_events').select(['event', 'user_id', 'detail']).execute();
    expect(audit.filter((row) => row.event === 'refused')).toEqual([]);
    expect(audit.filter((row) => row.event === 'provider_event')).toEqual([
      { event: 'provider_event', user_id: user.id, detail: 'apple email-disabled' },
    ]);
    expect(
      (await stack.db.selectFrom('outbox').select('type').where('user_id', '=', user.id).execute()).map(
        (row) => row.type,
      ),
    ).toContain('provider.event');
    expect(
      await stack.db.selectFrom('social_associations').select('id').where('uid', '=', minted.sub).execute(),
    ).toHaveLength(1);
    expect([
      await metric('apple', 'ok'),
      await metric('apple', 'refused'),
      await metric('apple', 'rate_limited'),
    ]).toEqual([1, 5, 4]);
    // Other routes keep their own budgets.
    expect((await call(stack.api, 'GET', '/api/me/', { token: user.access_token })).status).toBe(200);
  });
});
