import type { FastifyInstance } from 'fastify';
import { buildApp, type AppOptions } from './app.js';
import { openDatabase, migrateToLatest } from './db/index.js';

/** Opens the database, applies pending migrations, builds the app and listens. */
export async function startServer(options: AppOptions & { onClose?: () => Promise<void> }): Promise<FastifyInstance> {
  const { config, onClose } = options;
  const db = options.db ?? openDatabase(config.databaseUrl);
  await migrateToLatest(db);
  const app = await buildApp({ ...options, db });
  app.addHook('onClose', async () => {
    if (!options.db) await db.destroy();
    await onClose?.();
  });
  await app.listen({ host: config.host, port: config.port });
  closeOnSignals(app);
  return app;
}

/** SIGTERM/SIGINT: stop accepting, let in-flight requests finish, close the database, exit. */
export function closeOnSignals(app: { close(): Promise<unknown>; log: { info(msg: string): void } }): void {
  const shutdown = (signal: string) => {
    app.log.info(`${signal} received: closing`);
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}
