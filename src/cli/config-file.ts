import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, type Env } from '../lib/settings.js';
import { ERRORS, type OperatorErrors } from '../lib/errors.js';
import type { PipelineStep } from '../core/pipeline-step.js';

/**
 * The optional configuration file, beside the environment: `social-link.config.json` (settings only),
 * or `social-link.config.js` / `.mjs` / `.ts` (settings and pipeline steps; `.ts` needs a TypeScript
 * loader such as tsx, as `npm run dev` has). SOCIAL_LINK_CONFIG names another path.
 *
 *   export default defineConfig({
 *     settings: { SOCIAL_AUTH_GOOGLE_KEY: ['ios-id', 'android-id'], SOCIAL_AUTH_CREATE_USER: true },
 *     pipeline: [refuseBannedDomains, ...defaultPipeline],
 *     errors: { email_domain_refused: { status: 403, message: 'Only example.com accounts may be linked' } },
 *   });
 *
 * Settings use the environment's names; a variable set in the environment wins over the file. `errors` lists
 * the codes the pipeline's own steps answer (refuse()), so that the API document lists them too.
 */
export interface ConfigFile {
  settings?: Record<string, string | number | boolean | string[]>;
  pipeline?: PipelineStep[];
  errors?: OperatorErrors;
}

export const defineConfig = (config: ConfigFile): ConfigFile => config;

const NAMES = ['social-link.config.ts', 'social-link.config.mjs', 'social-link.config.js', 'social-link.config.json'];
const PLAIN_SETTINGS = new Set([
  'DATABASE_URL',
  'HOST',
  'PORT',
  'LOG_LEVEL',
  'REDIS_URL',
  'CORS_ORIGINS',
  'TRUST_PROXY',
  'METRICS_TOKEN',
  'METRICS_PORT',
  'METRICS_HOST',
]);

export interface LoadedConfigFile {
  path?: string;
  /** The file's settings as environment strings. */
  settings: Env;
  pipeline?: PipelineStep[];
  errors?: OperatorErrors;
}

export async function loadConfigFile(env: Env = process.env, cwd = process.cwd()): Promise<LoadedConfigFile> {
  const path = env.SOCIAL_LINK_CONFIG
    ? resolve(cwd, env.SOCIAL_LINK_CONFIG)
    : NAMES.map((name) => resolve(cwd, name)).find(existsSync);
  if (!path) return { settings: {} };
  if (!existsSync(path)) throw new ConfigError(`SOCIAL_LINK_CONFIG: no file at ${path}`);
  let loaded: unknown;
  try {
    loaded = path.endsWith('.json')
      ? JSON.parse(readFileSync(path, 'utf8'))
      : ((await import(pathToFileURL(path).href)) as { default?: unknown }).default;
  } catch (error) {
    throw new ConfigError(`${path}: cannot be read: ${(error as Error).message}`);
  }
  return { path, ...validate(loaded, path) };
}

function validate(value: unknown, path: string): Omit<LoadedConfigFile, 'path'> {
  const fail = (message: string): never => {
    throw new ConfigError(`${path}: ${message}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail('must export (or contain) an object {settings?, pipeline?, errors?}');
  const { settings = {}, pipeline, errors, ...unknown } = value as ConfigFile & Record<string, unknown>;
  const extra = Object.keys(unknown);
  if (extra.length > 0)
    fail(`unknown key ${extra.map((key) => `"${key}"`).join(', ')} (expected settings, pipeline, errors)`);
  if (typeof settings !== 'object' || settings === null || Array.isArray(settings))
    fail('settings must be an object of NAME: value');
  const env: Env = {};
  for (const [name, setting] of Object.entries(settings)) {
    if (!PLAIN_SETTINGS.has(name) && !/^(SOCIAL_AUTH|SOCIAL_LINK|RATE_LIMIT)_[A-Z0-9_]+$/.test(name)) {
      fail(`settings.${name} is not a social-link setting (see README "Configuration")`);
    }
    if (Array.isArray(setting) && setting.every((item) => typeof item === 'string')) env[name] = setting.join(',');
    else if (['string', 'number', 'boolean'].includes(typeof setting)) env[name] = String(setting);
    else fail(`settings.${name} must be a string, number, boolean or list of strings`);
  }
  if (pipeline !== undefined && (!Array.isArray(pipeline) || !pipeline.every((step) => typeof step === 'function'))) {
    fail('pipeline must be a list of step functions (see src/core/pipeline.ts)');
  }
  if (errors !== undefined) {
    if (typeof errors !== 'object' || errors === null || Array.isArray(errors))
      fail('errors must be an object of code: {status, message}');
    for (const [code, entry] of Object.entries(errors)) {
      if (code in ERRORS || !/^[a-z][a-z0-9_]{0,63}$/.test(code))
        fail(`errors.${code}: a code of your own, in snake_case (not one of social-link's)`);
      const { status, message } = (entry ?? {}) as { status?: unknown; message?: unknown };
      if (![400, 401, 403, 404, 409, 422].includes(status as number))
        fail(`errors.${code}.status must be 400, 401, 403, 404, 409 or 422 (as refuse() allows)`);
      if (typeof message !== 'string' || message === '')
        fail(`errors.${code}.message must be the message refuse() answers`);
    }
  }
  return { settings: env, pipeline, errors };
}
