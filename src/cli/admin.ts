import { isUniqueViolation } from '../store/unique-violation.js';
import { unlinkAccount } from '../core/unlink.js';
import type { Services } from '../core/services.js';
import { withServices, type Command } from './command.js';

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
  const cell = (value: unknown) =>
    value === null || value === undefined ? '-' : typeof value === 'object' ? JSON.stringify(value) : String(value);
  const widths = columns.map((column) =>
    Math.min(60, Math.max(column.length, ...rows.map((row) => cell(row[column]).length))),
  );
  const line = (values: string[]) =>
    values
      .map((value, i) => value.slice(0, 60).padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  console.log(line(columns));
  for (const row of rows) console.log(line(columns.map((column) => cell(row[column]))));
}

const limitOf = (value: unknown, fallback: number) => {
  const limit = Number(value ?? fallback);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
    throw new Error('--limit must be an integer from 1 to 10000');
  return limit;
};

const usageError = (command: Command) => {
  console.error(`usage: social-link ${command.usage}`);
  return 1;
};

/** Renames one of our users; the reason when refused. */
async function renameUser(storage: Services['storage'], id: number, username: string): Promise<string | undefined> {
  if (!/^[\w.@+-]{3,150}$/.test(username)) return 'a username is 3 to 150 letters, digits and . @ + - _';
  try {
    if (!(await storage.users.rename(id, username))) return `no user ${id} of ours (a host app's user keeps its name)`;
  } catch (error) {
    if (isUniqueViolation(error)) return `the name ${username} is taken (whatever its case)`;
    throw error;
  }
  return undefined;
}

export const adminCommands: Record<string, Command> = {
  users: {
    usage:
      'users list [--limit N] [--json] | users show ID|USERNAME [--json] | users collisions | users rename ID NEW_USERNAME',
    summary:
      'list users (newest first), show one with its links, list the names taken twice but for case before usernames were compared without case, ' +
      'or rename a user (3 to 150 letters, digits and . @ + - _; refused when taken, whatever its case)',
    options: { limit: { type: 'string' }, ...json },
    run: ({ positionals: [verb, key, newName], values }) =>
      withServices(async ({ storage }) => {
        if (verb === 'list') {
          const users = await storage.users.list(limitOf(values.limit, 50));
          print(
            users.map(({ id, username, createdAt, lastLoginAt }) => ({
              id,
              username,
              created_at: createdAt,
              last_login_at: lastLoginAt,
            })),
            values.json === true,
          );
          return 0;
        }
        if (verb === 'collisions') {
          print(
            (await storage.users.caseCollisions()).map(({ id, username, sameAs }) => ({
              id,
              username,
              same_as_id: sameAs?.id,
              same_as: sameAs?.username,
            })),
            values.json === true,
          );
          return 0;
        }
        if (verb === 'rename' && key && /^\d+$/.test(key) && newName !== undefined) {
          const refusal = await renameUser(storage, Number(key), newName);
          if (refusal) console.error(refusal);
          else console.log(`user ${key} is now ${newName}`);
          return refusal ? 1 : 0;
        }
        if (verb !== 'show' || !key) return usageError(adminCommands.users!);
        const user = /^\d+$/.test(key)
          ? await storage.users.findById(Number(key))
          : await storage.users.findByUsername(key);
        if (!user) {
          console.error(`no user ${key}`);
          return 1;
        }
        const links = await storage.links.ofUser(user.id);
        const { passwordHash: _hidden, ...visible } = user;
        print(
          [{ ...visible, links: links.map((link) => `${link.provider}:${link.uid}`).join(' ') }],
          values.json === true,
        );
        return 0;
      }),
  },
  associations: {
    usage: 'associations list [--user ID] [--provider P] [--limit N] [--json] | associations unlink PROVIDER UID',
    summary:
      'list social links, or remove one (operators may remove a last login method; the user can then sign in no more)',
    options: { user: { type: 'string' }, provider: { type: 'string' }, limit: { type: 'string' }, ...json },
    run: ({ positionals: [verb, provider, uid], values }) =>
      withServices(async (services) => {
        if (verb === 'list') {
          const userId = typeof values.user === 'string' ? Number(values.user) : undefined;
          const links = await services.storage.links.list({
            userId,
            provider: typeof values.provider === 'string' ? values.provider : undefined,
            limit: limitOf(values.limit, 50),
          });
          print(
            links.map((link) => ({
              id: link.id,
              user_id: link.userId,
              provider: link.provider,
              uid: link.uid,
              created_at: link.createdAt,
              updated_at: link.updatedAt,
            })),
            values.json === true,
          );
          return 0;
        }
        if (verb !== 'unlink' || !provider || !uid) return usageError(adminCommands.associations!);
        const link = await services.storage.links.find(provider, uid);
        if (!link) {
          console.error(`no link ${provider}:${uid}`);
          return 1;
        }
        await unlinkAccount(services, link.userId, provider, uid, {
          client: null,
          hasOtherWayIn: () => true,
          detail: 'by an operator (cli)',
        });
        console.log(`unlinked ${provider}:${uid} from user ${link.userId}`);
        return 0;
      }),
  },
  audit: {
    usage: 'audit [--user ID] [--limit N] [--json]',
    summary: 'the audit log, newest first: links, unlinks, sign-ins, refusals, replayed refresh tokens, deletions',
    options: { user: { type: 'string' }, limit: { type: 'string' }, ...json },
    run: ({ values }) =>
      withServices(async ({ storage }) => {
        const events = await storage.audit.list({
          userId: typeof values.user === 'string' ? Number(values.user) : undefined,
          limit: limitOf(values.limit, 50),
        });
        print(events as unknown as Array<Record<string, unknown>>, values.json === true);
        return 0;
      }),
  },
  webhooks: {
    usage:
      'webhooks list [--status pending|delivered|failed] [--limit N] [--json] | webhooks replay EVENT_ID | webhooks replay --failed',
    summary:
      'the webhook deliveries, newest first (their attempts and last error), and delivering again one event, or every delivery given up',
    options: { status: { type: 'string' }, limit: { type: 'string' }, failed: { type: 'boolean' }, ...json },
    run: ({ positionals: [verb, eventId], values }) =>
      withServices(async ({ storage }) => {
        if (verb === 'list') {
          const status = typeof values.status === 'string' ? values.status : undefined;
          print(
            (await storage.outbox.list({ status, limit: limitOf(values.limit, 50) })) as unknown as Array<
              Record<string, unknown>
            >,
            values.json === true,
          );
          return 0;
        }
        if (verb !== 'replay' || (!eventId && values.failed !== true)) return usageError(adminCommands.webhooks!);
        const count = await storage.outbox.replay(values.failed === true ? 'failed' : { eventId: eventId! });
        console.log(`${count} deliveries queued again (sent by the running servers)`);
        return count > 0 ? 0 : 1;
      }),
  },
};
