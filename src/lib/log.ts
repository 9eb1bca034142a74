/** What social-link's core writes to a log: warnings an operator should read (pino's, Fastify's or the CLI's logger fits). */
export interface Log {
  warn(fields: Record<string, unknown>, message: string): void;
}
