/** Where the warnings go (pino's logger fits). */
export interface WarningLog {
  warn(fields: Record<string, unknown>, message: string): void;
}

/** What a client is told to wait before it tries again while the database is away (a restart takes seconds). */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

// PostgreSQL SQLSTATEs of a server that is away, not of a bad query: class 08 (connection exception),
// 53300 too_many_connections, 57P01 admin_shutdown (a restart ended our backend), 57P02 crash_shutdown,
// 57P03 cannot_connect_now (starting up or shutting down), 57P05 idle_session_timeout.
// https://www.postgresql.org/docs/current/errcodes-appendix.html
const POSTGRES_AWAY = /^(08|53300$|57P0[1235]$)/;
// The socket's own faults, as node and pg report them.
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);
// pg's own messages for a connection that broke or never came (it gives them no code).
const PG_MESSAGES = /^(Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|Cannot use a pool after calling end|Client was closed and is not queryable|Connection timeout)/;
// SQLite: locked by another process beyond busy_timeout, the disk full or failing, the file gone.
const SQLITE_AWAY = /^SQLITE_(BUSY|FULL|IOERR|CANTOPEN)/;

/**
 * Is this the database being away (down, restarting, refusing or dropping connections, locked too long) rather
 * than a bug or a refused query? Such a request is answered 503 database_unavailable with Retry-After.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let cause = error, depth = 0; cause && typeof cause === 'object' && depth < 4; cause = (cause as { cause?: unknown }).cause, depth++) {
    const { code, message } = cause as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && (POSTGRES_AWAY.test(code) || NETWORK_CODES.has(code) || SQLITE_AWAY.test(code))) return true;
    if (typeof message === 'string' && PG_MESSAGES.test(message)) return true;
    // A pool's many failed connection attempts (AggregateError, as node's net reports a host with several addresses).
    if (cause instanceof AggregateError && cause.errors.some((inner) => isDatabaseUnavailable(inner))) return true;
  }
  return false;
}

/**
 * Whether the database answers, as the requests see it: an outage is logged once as a warning when it starts
 * (and once a minute while it lasts), and once when the database answers again, with the count of requests
 * answered 503 meanwhile: never a stack trace per request.
 */
export class DatabaseHealth {
  private downSince: number | undefined;
  private lastWarning = 0;
  private refused = 0;

  constructor(private readonly log: WarningLog) {}

  get available(): boolean {
    return this.downSince === undefined;
  }

  /** A query failed because the database is away. */
  fault(error: unknown): void {
    this.refused++;
    const now = Date.now();
    if (this.downSince === undefined) this.downSince = now;
    else if (now - this.lastWarning < 60_000) return;
    this.lastWarning = now;
    const seconds = Math.round((now - this.downSince) / 1000);
    this.log.warn(
      { reason: reasonOf(error), unavailable_for_s: seconds, answered_503: this.refused },
      seconds === 0 ? 'database unavailable: answering 503 database_unavailable until it answers again' : 'database still unavailable',
    );
  }

  /** The database answered a query: an outage, if there was one, is over. */
  answered(): void {
    if (this.downSince === undefined) return;
    const seconds = Math.round((Date.now() - this.downSince) / 1000);
    this.log.warn({ unavailable_for_s: seconds, answered_503: this.refused }, 'database available again');
    this.downSince = undefined;
    this.refused = 0;
  }
}

function reasonOf(error: unknown): string {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return [code, message].filter((part) => typeof part === 'string' && part).join(': ') || String(error);
}
