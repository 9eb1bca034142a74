/**
 * A write that broke a unique key: PostgreSQL's 23505 or SQLite's SQLITE_CONSTRAINT_UNIQUE. A race lost to another
 * writer (a name taken meanwhile, a link made meanwhile) reads as this, and each caller says what it means.
 */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}
