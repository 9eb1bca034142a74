import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../src/cli/config-file.js';
import { defaultPipeline } from '../src/core/pipeline.js';
import { loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/lib/settings.js';
import { call, expectError, startStack } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'social-link-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const write = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return name;
};

describe('the configuration file', () => {
  it('is optional', async () => {
    expect(await loadConfigFile({}, mkdtempSync(join(tmpdir(), 'empty-')))).toEqual({ settings: {} });
  });

  it('social-link.config.json gives settings under their environment names; the environment wins', async () => {
    const name = write(
      'settings.json',
      JSON.stringify({
        settings: { PORT: 8100, SOCIAL_AUTH_CREATE_USER: true, SOCIAL_AUTH_GOOGLE_KEY: ['ios', 'android'] },
      }),
    );
    const file = await loadConfigFile({ SOCIAL_LINK_CONFIG: name }, dir);
    expect(file.settings).toEqual({
      PORT: '8100',
      SOCIAL_AUTH_CREATE_USER: 'true',
      SOCIAL_AUTH_GOOGLE_KEY: 'ios,android',
    });
    const config = loadConfig({ ...file.settings, PORT: '8200' });
    expect(config).toMatchObject({ port: 8200, createUser: true });
    expect(config.providers.map((provider) => provider.name)).toEqual(['google']);
  });

  it.each([
    ['{"setings": {}}', 'unknown key "setings"'],
    ['{"errors": {"user_not_found": {"status": 404, "message": "x"}}}', "not one of social-link's"],
    [
      '{"errors": {"domain_refused": {"status": 500, "message": "x"}}}',
      'status must be 400, 401, 403, 404, 409 or 422',
    ],
    ['{"errors": {"domain_refused": {"status": 403}}}', 'message must be'],
    ['{"settings": {"SECRET_SAUCE": "x"}}', 'settings.SECRET_SAUCE is not a social-link setting'],
    ['{"settings": {"PORT": {"value": 1}}}', 'settings.PORT must be a string'],
    ['[1, 2]', 'must export (or contain) an object'],
    ['{"settings": ', 'cannot be read'],
  ])('refuses %s with a clear error', async (text, message) => {
    const name = write(`bad-${Math.random()}.json`, text);
    await expect(loadConfigFile({ SOCIAL_LINK_CONFIG: name }, dir)).rejects.toThrow(ConfigError);
    await expect(loadConfigFile({ SOCIAL_LINK_CONFIG: name }, dir)).rejects.toThrow(message);
  });

  it('names a missing SOCIAL_LINK_CONFIG file', async () => {
    await expect(loadConfigFile({ SOCIAL_LINK_CONFIG: 'nope.json' }, dir)).rejects.toThrow(
      'SOCIAL_LINK_CONFIG: no file',
    );
  });

  it('a .mjs file adds pipeline steps, which the server runs', async () => {
    const pipelineModule = join(process.cwd(), 'src/core/pipeline.ts');
    write(
      'social-link.config.mjs',
      `import { defaultPipeline } from ${JSON.stringify(pipelineModule)};
       import { refuse } from ${JSON.stringify(join(process.cwd(), 'src/lib/errors.ts'))};
       const onlyExampleCom = (context) => {
         if (!String(context.identity.details.email ?? '').endsWith('@example.com')) {
           throw refuse(403, 'email_domain_refused', 'Only example.com accounts may be linked');
         }
       };
       export default {
         settings: { LOG_LEVEL: 'warn' },
         pipeline: [onlyExampleCom, ...defaultPipeline],
         errors: { email_domain_refused: { status: 403, message: 'Only example.com accounts may be linked' } },
       };`,
    );
    const file = await loadConfigFile({}, dir);
    expect(file.path).toMatch(/social-link\.config\.mjs$/);
    expect(file.pipeline).toHaveLength(defaultPipeline.length + 1);
    expect(file.errors).toEqual({
      email_domain_refused: { status: 403, message: 'Only example.com accounts may be linked' },
    });
    // The API document lists the code, where the pipeline runs: the 403 below keeps the contract.
    const stack = await startStack('sqlite', {}, { pipeline: file.pipeline, operatorErrors: file.errors });
    try {
      const user = (await call(stack.api, 'POST', '/api/users/')).body;
      const outsider = await stack.emulator.mintFacebookToken({ user: { email: 'eve@elsewhere.test' } });
      expectError(
        await call(stack.api, 'POST', '/api/associate/facebook/', {
          token: user.access_token,
          body: { access_token: outsider.access_token },
        }),
        403,
        'email_domain_refused',
      );
      const insider = await stack.emulator.mintFacebookToken({ user: { email: 'ada@example.com' } });
      expect(
        (
          await call(stack.api, 'POST', '/api/associate/facebook/', {
            token: user.access_token,
            body: { access_token: insider.access_token },
          })
        ).status,
      ).toBe(200);
    } finally {
      await stack.close();
    }
  });
});
