/**
 * PostgreSQL, inside a transaction: a write whose answer nothing reads is not waited for. It goes out at once (pg's
 * pipeline mode, store/database.ts) and what follows goes out behind it, COMMIT included: a sign-in's session and its
 * COMMIT in one round trip. PostgreSQL runs them in order, so what follows sees the write; a write that fails aborts
 * the transaction, COMMIT then rolls it back, and the write's own error is the transaction's (Storage.transaction).
 */
export class WritesInFlight {
  private readonly writes: Array<Promise<unknown>> = [];

  send(write: Promise<unknown>): void {
    // Waited for by `failure()`; never an unhandled rejection meanwhile.
    write.catch(() => {});
    this.writes.push(write);
  }

  /** Once every write sent has its answer: the first one's error, or undefined when they all succeeded. */
  async failure(): Promise<{ error: unknown } | undefined> {
    for (const outcome of await Promise.allSettled(this.writes))
      if (outcome.status === 'rejected') return { error: outcome.reason };
    return undefined;
  }
}
