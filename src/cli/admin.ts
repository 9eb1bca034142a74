import { withDatabase, type Command } from './command.js';
import { Storage } from '../store/storage.js';

/** Operators' commands: read users, links and the audit log, and unlink, straight from the database. */

const json = { json: { type: 'boolean' } } as const;

/** Prints rows as an aligned table, or as JSON lines with --json. */
function print(rows: Array<Record<string, unknown>>, asJson: boolean): void {
  if (asJson) {
    for (const row of rows) console.log(JSON.stringify(row));
    return;
  }
  if (rows.length === 0) {
    console.log('(none)');
    return;
  }
  const columns = Object.keys(rows[0]!);
  const cell = (value: unknown) => (value === null || value === undefined ? '-' : typeof value === 'object' ? JSON.stringify(value) : String(value));
  const widths = columns.map((column) => Math.min(60, Math.max(column.length, ...rows.map((row) => cell(row[column]).length))));
  const line = (values: string[]) => values.map((value, i) => value.slice(0, 60).padEnd(widths[i]!)).join('  ').trimEnd();
  console.log(line(columns));
  for (const row of rows) console.log(line(columns.map((column) => cell(row[column]))));
}

const limitOf = (value: unknown, fallback: number) => {
  const limit = Number(value ?? fallback);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new Error('--limit must be an integer from 1 to 10000');
  return limit;
};

export const adminCommands: Record<string, Command> = {
  users: {
    usage: 'users list [--limit N] [--json] | users show ID|USERNAME [--json]',
    summary: 'list users (newest first), or show one with its links',
    options: { limit: { type: 'string' }, ...json },
    run: ({ positionals, values }) =>
      withDatabase(async (db) => {
        const storage = new Storage(db);
        if (positionals[0] === 'list') {
          const users = await db.selectFrom('users').select(['id', 'username', 'created_at', 'last_login_at']).orderBy('id', 'desc').limit(limitOf(values.limit, 50)).execute();
          print(users.map((user) => ({ ...user, created_at: new Date(user.created_at).toISOString() })), values.json === true);
          return 0;
        }
        if (positionals[0] === 'show' && positionals[1]) {
          const key = positionals[1];
          const user = /^\d+$/.test(key) ? await storage.findUserById(Number(key)) : await storage.findUserByUsername(key);
          if (!user) {
            console.error(`no user ${key}`);
            return 1;
          }
          const links = await storage.listAssociations(user.id);
          const { passwordHash: _hidden, ...visible } = user;
          print([{ ...visible, links: links.map((link) => `${link.provider}:${link.uid}`).join(' ') }], values.json === true);
          return 0;
        }
        console.error(`usage: social-link ${adminCommands.users!.usage}`);
        return 1;
      }),
  },
  associations: {
    usage: 'associations list [--user ID] [--provider P] [--limit N] [--json] | associations unlink PROVIDER UID',
    summary: 'list social links, or remove one (operators may remove a last login method; the user can then sign in no more)',
    options: { user: { type: 'string' }, provider: { type: 'string' }, limit: { type: 'string' }, ...json },
    run: ({ positionals, values }) =>
      withDatabase(async (db) => {
        if (positionals[0] === 'list') {
          let query = db.selectFrom('social_associations').select(['id', 'user_id', 'provider', 'uid', 'created_at', 'updated_at']).orderBy('id', 'desc').limit(limitOf(values.limit, 50));
          if (typeof values.user === 'string') query = query.where('user_id', '=', Number(values.user));
          if (typeof values.provider === 'string') query = query.where('provider', '=', values.provider);
          const rows = await query.execute();
          print(rows.map((row) => ({ ...row, created_at: new Date(row.created_at).toISOString(), updated_at: new Date(row.updated_at).toISOString() })), values.json === true);
          return 0;
        }
        if (positionals[0] === 'unlink' && positionals[1] && positionals[2]) {
          const [, provider, uid] = positionals as [string, string, string];
          const storage = new Storage(db);
          const link = await storage.findAssociation(provider, uid);
          if (!link) {
            console.error(`no link ${provider}:${uid}`);
            return 1;
          }
          await storage.transaction(async (trx) => {
            await trx.deleteAssociation(link.userId, provider, uid);
            await trx.recordAudit({ event: 'unlinked', userId: link.userId, provider, uid, detail: 'by an operator (cli)' }, null);
          });
          console.log(`unlinked ${provider}:${uid} from user ${link.userId}`);
          return 0;
        }
        console.error(`usage: social-link ${adminCommands.associations!.usage}`);
        return 1;
      }),
  },
  audit: {
    usage: 'audit [--user ID] [--limit N] [--json]',
    summary: 'the audit log, newest first: links, unlinks, sign-ins, refusals, replayed refresh tokens, deletions',
    options: { user: { type: 'string' }, limit: { type: 'string' }, ...json },
    run: ({ values }) =>
      withDatabase(async (db) => {
        const events = await new Storage(db).listAudit({
          userId: typeof values.user === 'string' ? Number(values.user) : undefined,
          limit: limitOf(values.limit, 50),
        });
        print(events as unknown as Array<Record<string, unknown>>, values.json === true);
        return 0;
      }),
  },
};
