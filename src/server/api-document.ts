import type { Config } from '../config/config.js';
import type { OperatorErrors } from '../lib/errors.js';
import { buildApp } from './app.js';

/** The document of an app built with this configuration, without a database or a port (the CLI's `openapi`). */
export async function apiDocument(
  config: Config,
  operatorErrors: OperatorErrors = {},
): Promise<Record<string, unknown>> {
  const app = await buildApp({ config: { ...config, databaseUrl: 'sqlite::memory:' }, operatorErrors, logger: false });
  try {
    await app.ready();
    return app.swagger() as unknown as Record<string, unknown>;
  } finally {
    await app.close();
  }
}
