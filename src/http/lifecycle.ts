import type { FastifyInstance, FastifyRequest } from 'fastify';

declare module 'fastify' {
  interface FastifyInstance {
    lifecycle: Lifecycle;
  }
}

/**
 * How an instance stops without failing a request behind a balancer (server.ts closeOnSignals drives it):
 * 1. draining (SIGTERM, for the grace): everything is answered as before, but /readyz says 503, so that balancers
 *    stop sending, and every answer says `Connection: close`, so that no balancer keeps a connection to reuse;
 * 2. closing (app.close()): no new connection is accepted; requests under way, and any still arriving on a
 *    connection accepted just before, are served (each answer closing its connection); then the app's onClose
 *    waits for the last handler (a client that hung up included) before the webhooks and the database stop.
 */
export interface Lifecycle {
  readonly draining: boolean;
  drain(): void;
  /** Resolves once no route handler runs (or after timeoutMs), whether or not its client is still there. */
  handlersDone(timeoutMs: number): Promise<void>;
}

export function stopInStages(app: FastifyInstance): Lifecycle {
  let draining = false;
  app.addHook('preClose', async () => {
    draining = true;
  });
  // A handler runs from preHandler until its answer is sent (onSend runs then, even when the client has hung up).
  let handling = 0;
  const waiters: Array<() => void> = [];
  const handled = new WeakSet<FastifyRequest>();
  app.addHook('preHandler', (request, _reply, done) => {
    handled.add(request);
    handling++;
    done();
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    // Also the answers of requests that were under way when draining began: no connection stays for reuse.
    if (draining) reply.header('connection', 'close');
    if (handled.delete(request) && --handling === 0) for (const wake of waiters.splice(0)) wake();
    done(null, payload);
  });
  return {
    get draining() {
      return draining;
    },
    drain() {
      draining = true;
    },
    handlersDone(timeoutMs) {
      if (handling === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}
