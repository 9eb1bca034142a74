import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../src/config/config.js';
import { serverEnvFor } from '../src/config/dev.js';
import { createServices } from '../src/core/services.js';
import { call, databaseKinds, expectError, guest, startStack, type Stack } from './helpers.js';

// Same person, second provider (src/core/email-linking.ts): an unknown account whose provider verified an
// e-mail that a user's link verified too answers 409 link_required, never a sign-in or a silent link.

const idToken = async (stack: Stack, provider: 'google' | 'apple', input: Record<string, unknown>) =>
  (await stack.emulator.mintIdToken(provider, input)).id_token;

/** A user with a Google account of that e-mail linked, and its access token. */
async function googleUser(stack: Stack, email: string, claims: Record<string, unknown> = {}) {
  const user = await guest(stack.api);
  const minted = await stack.emulator.mintIdToken('google', { email, email_verified: true, claims });
  const linked = await call(stack.api, 'POST', '/api/associate/google/', {
    token: user.access_token,
    body: { id_token: minted.id_token },
  });
  expect(linked.status).toBe(200);
  return { ...user, googleSub: minted.sub };
}

async function auditOf(stack: Stack, accessToken: string) {
  const answer = await call(stack.api, 'GET', '/api/audit/', { token: accessToken });
  expect(answer.status).toBe(200);
  return (answer.body.events ?? answer.body) as Array<{ event: string; provider: string | null; uid: string | null }>;
}

describe.each(databaseKinds())('e-mail linking on %s', (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(() => stack.close());

  it('Google user, then Apple with the same verified e-mail: 409 naming google; Google sign-in; link with the token; Apple signs in to the same user', async () => {
    const user = await googleUser(stack, 'Ann.Lee@gmail.com');
    const appleSub = '001234.aa11bb22cc33dd44ee55ff6677889900.1111';

    const refused = await call(stack.api, 'POST', '/api/auth/apple/', {
      body: {
        id_token: await idToken(stack, 'apple', { sub: appleSub, email: 'ann.lee@gmail.com', email_verified: true }),
      },
    });
    expectError(refused, 409, 'link_required');
    expect(refused.body.providers).toEqual(['google']);
    expect(refused.body.link_token).toMatch(/^slk_[\w-]{43}$/);
    expect(refused.body.link_token_expires_in).toBe(600);
    // Never signed in by the e-mail, and nothing else of the user is told.
    expect(Object.keys(refused.body).sort()).toEqual([
      'code',
      'errors',
      'link_token',
      'link_token_expires_in',
      'message',
      'providers',
      'request_id',
    ]);

    const signedIn = await call(stack.api, 'POST', '/api/auth/google/', {
      body: { id_token: await idToken(stack, 'google', { sub: user.googleSub }) },
    });
    expect(signedIn.status).toBe(200);
    expect(signedIn.body.id).toBe(user.id);

    const linked = await call(stack.api, 'POST', '/api/associate/link-token/', {
      token: signedIn.body.access_token,
      body: { link_token: refused.body.link_token },
    });
    expect(linked.status).toBe(200);
    expect(linked.body).toEqual({ success: true, association: { provider: 'apple', uid: appleSub, created: true } });

    const apple = await call(stack.api, 'POST', '/api/auth/apple/', {
      body: {
        id_token: await idToken(stack, 'apple', { sub: appleSub, email: 'ann.lee@gmail.com', email_verified: true }),
      },
    });
    expect(apple.status).toBe(200);
    expect(apple.body.id).toBe(user.id);

    // Single use.
    expectError(
      await call(stack.api, 'POST', '/api/associate/link-token/', {
        token: signedIn.body.access_token,
        body: { link_token: refused.body.link_token },
      }),
      400,
      'invalid_link_token',
    );

    // Every step is in the user's audit log.
    const events = (await auditOf(stack, signedIn.body.access_token)).map((entry) => entry.event);
    expect(events).toEqual(expect.arrayContaining(['link_required', 'associated', 'link_token_used', 'refused']));
  });

  it('GitHub (its e-mail comes with the profile, read after the token check): 409; the link token keeps the profile read for it', async () => {
    const user = await googleUser(stack, 'dee.ong@gmail.com');
    const github = await stack.emulator.mintGithubToken({
      user: { login: 'dee-ong', name: 'Dee Ong', primary_email: 'dee.ong@gmail.com' },
    });
    const refused = await call(stack.api, 'POST', '/api/auth/github/', { body: { access_token: github.access_token } });
    expectError(refused, 409, 'link_required');
    expect(refused.body.providers).toEqual(['google']);

    const signedIn = await call(stack.api, 'POST', '/api/auth/google/', {
      body: { id_token: await idToken(stack, 'google', { sub: user.googleSub }) },
    });
    const linked = await call(stack.api, 'POST', '/api/associate/link-token/', {
      token: signedIn.body.access_token,
      body: { link_token: refused.body.link_token },
    });
    expect(linked.status).toBe(200);
    // The profile the sign-in read (on SQLite, in a second run of its transaction), not the token check's facts alone.
    const links = (await call(stack.api, 'GET', '/api/associations/', { token: signedIn.body.access_token }))
      .body as Array<{ provider: string; extra_data: Record<string, unknown> }>;
    expect(links.find((link) => link.provider === 'github')?.extra_data).toMatchObject({
      login: 'dee-ong',
      name: 'Dee Ong',
      email: 'dee.ong@gmail.com',
      profile_read_at: expect.any(Number),
    });
  });

  it('a link token links only for the user it was issued for; unknown and expired ones are refused', async () => {
    const bo = await googleUser(stack, 'bo.chan@gmail.com');
    const refused = await call(stack.api, 'POST', '/api/auth/apple/', {
      body: { id_token: await idToken(stack, 'apple', { email: 'bo.chan@gmail.com', email_verified: true }) },
    });
    expectError(refused, 409, 'link_required');

    const stranger = await guest(stack.api);
    const other = await call(stack.api, 'POST', '/api/associate/link-token/', {
      token: stranger.access_token,
      body: { link_token: refused.body.link_token },
    });
    expectError(other, 400, 'invalid_link_token');
    expectError(
      await call(stack.api, 'POST', '/api/associate/link-token/', {
        token: stranger.access_token,
        body: { link_token: 'slk_nope' },
      }),
      400,
      'invalid_link_token',
    );
    expectError(
      await call(stack.api, 'POST', '/api/associate/link-token/', { body: { link_token: refused.body.link_token } }),
      401,
      'not_authenticated',
    );
    expect((await auditOf(stack, stranger.access_token)).map((entry) => entry.event)).toContain('refused');

    await stack.db
      .updateTable('link_tokens')
      .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
      .execute();
    const owner = await call(stack.api, 'POST', '/api/auth/google/', {
      body: { id_token: await idToken(stack, 'google', { sub: bo.googleSub }) },
    });
    expectError(
      await call(stack.api, 'POST', '/api/associate/link-token/', {
        token: owner.body.access_token,
        body: { link_token: refused.body.link_token },
      }),
      400,
      'invalid_link_token',
    );
  });

  it('a Facebook e-mail never triggers it, either way round', async () => {
    // A user linked to Facebook with an e-mail; Google proves the same e-mail: Facebook never verified it.
    const user = await guest(stack.api);
    const facebook = await stack.emulator.mintFacebookToken({ user: { email: 'cy.diaz@gmail.com' } });
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: facebook.access_token },
        })
      ).status,
    ).toBe(200);
    expectError(
      await call(stack.api, 'POST', '/api/auth/google/', {
        body: { id_token: await idToken(stack, 'google', { email: 'cy.diaz@gmail.com', email_verified: true }) },
      }),
      404,
      'user_not_found',
    );

    // A Google user; a Facebook account with the same e-mail signs in: unknown.
    await googleUser(stack, 'dee.eto@gmail.com');
    const other = await stack.emulator.mintFacebookToken({ user: { email: 'dee.eto@gmail.com' } });
    expectError(
      await call(stack.api, 'POST', '/api/auth/facebook/', { body: { access_token: other.access_token } }),
      404,
      'user_not_found',
    );
  });

  it('an e-mail the provider did not verify, or does not vouch for, never triggers it', async () => {
    await googleUser(stack, 'eve.fox@gmail.com');
    // Apple says it did not verify it.
    expectError(
      await call(stack.api, 'POST', '/api/auth/apple/', {
        body: { id_token: await idToken(stack, 'apple', { email: 'eve.fox@gmail.com', email_verified: false }) },
      }),
      404,
      'user_not_found',
    );

    // Google's email_verified for an address outside Gmail and without a Workspace domain (hd) is not Google's to vouch for.
    await googleUser(stack, 'gus@example.org');
    expectError(
      await call(stack.api, 'POST', '/api/auth/apple/', {
        body: { id_token: await idToken(stack, 'apple', { email: 'gus@example.org', email_verified: true }) },
      }),
      404,
      'user_not_found',
    );
    // With hd (a Workspace account), it is.
    await googleUser(stack, 'hana@corp.example', { hd: 'corp.example' });
    expectError(
      await call(stack.api, 'POST', '/api/auth/apple/', {
        body: { id_token: await idToken(stack, 'apple', { email: 'hana@corp.example', email_verified: true }) },
      }),
      409,
      'link_required',
    );
  });

  it('two users with that verified e-mail: nobody is named (404)', async () => {
    await googleUser(stack, 'ida.ito@gmail.com');
    const second = await guest(stack.api);
    const apple = await idToken(stack, 'apple', { email: 'ida.ito@gmail.com', email_verified: true });
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/apple/', {
          token: second.access_token,
          body: { id_token: apple },
        })
      ).status,
    ).toBe(200);
    expectError(
      await call(stack.api, 'POST', '/api/auth/google/', {
        body: { id_token: await idToken(stack, 'google', { email: 'ida.ito@gmail.com', email_verified: true }) },
      }),
      404,
      'user_not_found',
    );
  });

  it('a link token is refused when the account was linked to another user meanwhile', async () => {
    const jo = await googleUser(stack, 'jo.kim@gmail.com');
    const sub = '001234.bb11bb22cc33dd44ee55ff6677889900.2222';
    const apple = () => idToken(stack, 'apple', { sub, email: 'jo.kim@gmail.com', email_verified: true });
    const refused = await call(stack.api, 'POST', '/api/auth/apple/', { body: { id_token: await apple() } });
    expectError(refused, 409, 'link_required');
    const other = await guest(stack.api);
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/apple/', {
          token: other.access_token,
          body: { id_token: await apple() },
        })
      ).status,
    ).toBe(200);
    const owner = await call(stack.api, 'POST', '/api/auth/google/', {
      body: { id_token: await idToken(stack, 'google', { sub: jo.googleSub }) },
    });
    expectError(
      await call(stack.api, 'POST', '/api/associate/link-token/', {
        token: owner.body.access_token,
        body: { link_token: refused.body.link_token },
      }),
      409,
      'already_associated',
    );
  });
});

describe.each(databaseKinds())('e-mail linking settings on %s', (kind) => {
  it('SOCIAL_AUTH_EMAIL_LINKING=false keeps the 404', async () => {
    const stack = await startStack(kind, { SOCIAL_AUTH_EMAIL_LINKING: 'false' });
    try {
      await googleUser(stack, 'kai.lu@gmail.com');
      expectError(
        await call(stack.api, 'POST', '/api/auth/apple/', {
          body: { id_token: await idToken(stack, 'apple', { email: 'kai.lu@gmail.com', email_verified: true }) },
        }),
        404,
        'user_not_found',
      );
    } finally {
      await stack.close();
    }
  });

  it('SOCIAL_AUTH_APPLE_EMAIL_TRUST=never: Apple e-mails are not evidence', async () => {
    const stack = await startStack(kind, { SOCIAL_AUTH_APPLE_EMAIL_TRUST: 'never' });
    try {
      await googleUser(stack, 'lea.mo@gmail.com');
      expectError(
        await call(stack.api, 'POST', '/api/auth/apple/', {
          body: { id_token: await idToken(stack, 'apple', { email: 'lea.mo@gmail.com', email_verified: true }) },
        }),
        404,
        'user_not_found',
      );
    } finally {
      await stack.close();
    }
  });

  it('with SOCIAL_AUTH_CREATE_USER=true, link_required comes before a second user is made', async () => {
    const stack = await startStack(kind, { SOCIAL_AUTH_CREATE_USER: 'true' });
    try {
      await googleUser(stack, 'max.ng@gmail.com');
      const before = await stack.db
        .selectFrom('users')
        .select(({ fn }) => fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      expectError(
        await call(stack.api, 'POST', '/api/auth/apple/', {
          body: { id_token: await idToken(stack, 'apple', { email: 'max.ng@gmail.com', email_verified: true }) },
        }),
        409,
        'link_required',
      );
      const after = await stack.db
        .selectFrom('users')
        .select(({ fn }) => fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      expect(Number(after.n)).toBe(Number(before.n));
    } finally {
      await stack.close();
    }
  });
});

describe.each(databaseKinds())('link tokens and the provider grants they keep, on %s', (kind) => {
  const encryptionKey = randomBytes(32).toString('base64');
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(kind, { SOCIAL_LINK_ENCRYPTION_KEYS: encryptionKey });
  });
  afterAll(() => stack.close());

  /** The server's sweep, run now (it runs every minute by itself): the same configuration and database. */
  const sweep = async () => {
    const config = loadConfig({
      ...serverEnvFor(stack.emulatorUrl, stack.apps),
      DATABASE_URL: stack.databaseUrl,
      SOCIAL_LINK_ENCRYPTION_KEYS: encryptionKey,
    });
    const services = createServices({ config, db: stack.db, log: { warn: () => {} } });
    await services.sweep();
    await services.close();
  };
  const revokedCount = async () => (await stack.emulator.appleRevocations()).revoked.length;

  it('an Apple code redeemed for a 409 keeps its grant for the link; expired unused, the grant is revoked', async () => {
    await googleUser(stack, 'nia.oh@gmail.com');
    const before = await revokedCount();
    const refused = await call(stack.api, 'POST', '/api/auth/apple/', {
      body: { code: (await stack.emulator.mintAppleCode({ email: 'nia.oh@gmail.com' })).code },
    });
    expectError(refused, 409, 'link_required');
    expect(await revokedCount(), 'not revoked: the link token keeps it').toBe(before);
    await stack.db
      .updateTable('link_tokens')
      .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
      .execute();
    await sweep();
    expect(await revokedCount()).toBe(before + 1);
    expect(await stack.db.selectFrom('link_tokens').selectAll().execute()).toEqual([]);
  });

  it('asked twice, linked with the second token: the first is forgotten, and no grant of the linked account is revoked', async () => {
    const owner = await googleUser(stack, 'oz.pak@gmail.com');
    const sub = '001234.cc11bb22cc33dd44ee55ff6677889900.3333';
    const codes = [
      await stack.emulator.mintAppleCode({ sub, email: 'oz.pak@gmail.com' }),
      await stack.emulator.mintAppleCode({ sub, email: 'oz.pak@gmail.com' }),
    ];
    const tokens = [];
    for (const code of codes) {
      const refused = await call(stack.api, 'POST', '/api/auth/apple/', { body: { code: code.code } });
      expectError(refused, 409, 'link_required');
      tokens.push(refused.body.link_token as string);
    }
    const before = await revokedCount();
    const signedIn = await call(stack.api, 'POST', '/api/auth/google/', {
      body: { id_token: await idToken(stack, 'google', { sub: owner.googleSub }) },
    });
    expect(
      (
        await call(stack.api, 'POST', '/api/associate/link-token/', {
          token: signedIn.body.access_token,
          body: { link_token: tokens[1] },
        })
      ).status,
    ).toBe(200);
    expectError(
      await call(stack.api, 'POST', '/api/associate/link-token/', {
        token: signedIn.body.access_token,
        body: { link_token: tokens[0] },
      }),
      400,
      'invalid_link_token',
    );
    await stack.db
      .updateTable('link_tokens')
      .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
      .execute();
    await sweep();
    expect(await revokedCount(), "revoking any of Apple's tokens would end the linked account's authorization").toBe(
      before,
    );
    // The kept grant went with the link: Apple signs in.
    expect(
      (
        await call(stack.api, 'POST', '/api/auth/apple/', {
          body: { id_token: await idToken(stack, 'apple', { sub }) },
        })
      ).body.id,
    ).toBe(owner.id);
  });

  it('the ID token of a 409 is used as a sign-in uses it: under the default, sent again it answers 409 again (a link token is no way in)', async () => {
    await googleUser(stack, 'pia.qu@gmail.com');
    const token = await idToken(stack, 'apple', { email: 'pia.qu@gmail.com', email_verified: true });
    expectError(await call(stack.api, 'POST', '/api/auth/apple/', { body: { id_token: token } }), 409, 'link_required');
    expectError(
      await call(stack.api, 'POST', '/api/auth/apple/', {
        body: { id_token: token },
        headers: { 'user-agent': 'another phone' },
      }),
      409,
      'link_required',
    );
  });

  it('an e-mail longer than any address is no verified e-mail (no 500)', async () => {
    const long = `${'a'.repeat(330)}@gmail.com`;
    const user = await guest(stack.api);
    const linked = await call(stack.api, 'POST', '/api/associate/google/', {
      token: user.access_token,
      body: { id_token: await idToken(stack, 'google', { claims: { email: long, email_verified: true } }) },
    });
    expect(linked.status).toBe(200);
  });
});
