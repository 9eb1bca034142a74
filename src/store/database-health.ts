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
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
]);
// pg's own messages for a connection that broke, never came, or stopped answering (it gives them no code).
const PG_MESSAGES =
  /^(Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|Cannot use a pool after calling end|Client was closed and is not queryable|Connection timeout|Query read timeout)/;
// SQLite: locked by another process beyond busy_timeout, the disk full or failing, the file gone.
const SQLITE_AWAY = /^SQLITE_(BUSY|FULL|IOERR|CANTOPEN)/;

const FROM_DATABASE = Symbol('social-link: thrown by the database client');
const POOL_BUSY = Symbol('social-link: every pooled connection was busy');

/**
 * Marks an error thrown by the PostgreSQL client (database.ts wraps its every call): only such an error's
 * network code or message says the database is away — an ECONNRESET from a phone hanging up says nothing of it.
 * `poolBusy`: the wait was for a free connection of a full pool, not for the server.
 */
export function fromDatabase(error: unknown, poolBusy = false): unknown {
  if (error && typeof error === 'object')
    Object.assign(error, { [FROM_DATABASE]: true, ...(poolBusy ? { [POOL_BUSY]: true } : {}) });
  return error;
}

/**
 * Is this the database being away (down, restarting, refusing or dropping connections, not answering, locked
 * too long) rather than a bug or a refused query? Such a request is answered 503 database_unavailable with
 * Retry-After.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!error || typeof error !== 'object') return false;
  const { code, message, severity } = error as { code?: unknown; message?: unknown; severity?: unknown };
  if (typeof code === 'string' && SQLITE_AWAY.test(code)) return true;
  // An error the PostgreSQL server sent (pg's DatabaseError): its SQLSTATE says.
  if (typeof severity === 'string' && typeof code === 'string') return POSTGRES_AWAY.test(code);
  if (!(FROM_DATABASE in error)) return false;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) return true;
  if (typeof message === 'string' && PG_MESSAGES.test(message)) return true;
  // Every address of the host refused (node's net reports them together).
  return (
    error instanceof AggregateError &&
    error.errors.some(
      (inner) =>
        typeof (inner as { code?: unknown }).code === 'string' && NETWORK_CODES.has((inner as { code: string }).code),
    )
  );
}

/**
 * Whether the database answers, as the requests see it: an outage is logged as a warning when it starts (once a
 * minute at most, while it lasts or flaps), and when the database answers again, with the count of requests
 * answered 503 meanwhile: never a stack trace per request.
 */
export class DatabaseHealth {
  private downSince: number | undefined;
  private lastWarning = -Infinity;
  private warnedThisOutage = false;
  private refused = 0;

  constructor(private readonly log: WarningLog) {}

  get available(): boolean {
    return this.downSince === undefined;
  }

  /**
   * A query failed because the database is away. `answered503`: a request was answered 503 for it (the count
   * logged); readiness checks and background chores say so too, without counting.
   */
  fault(error: unknown, answered503 = false): void {
    if (answered503) this.refused++;
    const now = Date.now();
    const starting = this.downSince === undefined;
    if (starting) this.downSince = now;
    // Once a minute at most, whether the outage goes on or flaps (a saturated pool comes and goes).
    if (now - this.lastWarning < 60_000) return;
    this.lastWarning = now;
    this.warnedThisOutage = true;
    const busy = typeof error === 'object' && error !== null && POOL_BUSY in error;
    const seconds = Math.round((now - this.downSince!) / 1000);
    const message = busy
      ? 'database connections exhausted: every pooled connection stayed busy for 5 s (queries too slow, or the pool too small for the load); answering 503 database_unavailable'
      : starting
        ? 'database unavailable: answering 503 database_unavailable until it answers again'
        : 'database still unavailable';
    this.log.warn({ reason: reasonOf(error), unavailable_for_s: seconds, answered_503: this.refused }, message);
  }

  /** The database answered a query: an outage, if there was one, is over. */
  answered(): void {
    if (this.downSince === undefined) return;
    const seconds = Math.round((Date.now() - this.downSince) / 1000);
    if (this.warnedThisOutage)
      this.log.warn({ unavailable_for_s: seconds, answered_503: this.refused }, 'database available again');
    this.downSince = undefined;
    this.refused = 0;
    this.warnedThisOutage = false;
  }
}

function reasonOf(error: unknown): string {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return [code, message].filter((part) => typeof part === 'string' && part).join(': ') || String(error);
}
