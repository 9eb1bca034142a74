import { readFileSync } from 'node:fs';

/** social-link's version, from its package.json (two folders up from src/config and from dist/config alike). */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** How social-link names itself to providers: GitHub refuses a request without a User-Agent. */
export const USER_AGENT = `social-link/${VERSION}`;
