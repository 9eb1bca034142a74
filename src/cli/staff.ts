import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { totpCode } from '../auth/totp.js';
import { StaffAccounts } from '../core/staff.js';
import { STAFF_ROLES, type StaffRole } from '../store/staff.js';
import type { ServiceScope } from '../store/service-keys.js';
import { withServices, type Command } from './command.js';

/** The console's staff accounts and the admin API's service keys, from the command line. */

/** A password typed at a prompt (not echoed), or the first line of stdin when it is not a terminal. */
async function readPassword(prompt: string): Promise<string> {
  if (!process.stdin.isTTY) {
    let text = '';
    for await (const chunk of process.stdin) text += String(chunk);
    return text.split(/\r?\n/)[0] ?? '';
  }
  let muted = false;
  const output = new Writable({
    write: (chunk, _encoding, done) => (muted ? undefined : process.stderr.write(chunk), done()),
  });
  const reader = createInterface({ input: process.stdin, output, terminal: true });
  process.stderr.write(prompt);
  muted = true;
  const answer = await new Promise<string>((resolve) => reader.question('', resolve));
  reader.close();
  process.stderr.write('\n');
  return answer;
}

export const staffCommand: Command = {
  usage:
    'staff create USERNAME --role viewer|support|admin | staff list | staff password USERNAME | staff disable USERNAME | staff unlock USERNAME | staff reset-totp USERNAME | staff code --secret BASE32',
  summary:
    'console (/admin/) staff accounts: create (password from a prompt, or the first line of stdin; 12 characters at least; ' +
    'the authenticator is set up at the first sign-in), list, password (a new one, from a prompt or stdin; unlocks, ends its sessions), disable (ends its sessions), unlock (ends a lockout), reset-totp (a lost authenticator: the next sign-in enrols a new one; ends its sessions); code: the TOTP code of this moment for a secret (development)',
  options: { role: { type: 'string' }, secret: { type: 'string' } },
  async run({ positionals: [verb, username], values }) {
    if (verb === 'code' && typeof values.secret === 'string') {
      console.log(totpCode(values.secret));
      return 0;
    }
    if (verb === 'create' && username) {
      const role = String(values.role ?? '') as StaffRole;
      if (!STAFF_ROLES.includes(role)) {
        console.error(`--role must be one of ${STAFF_ROLES.join(', ')}`);
        return 1;
      }
      const password = await readPassword(`password for ${username}: `);
      return withServices(async (services) => {
        try {
          const member = await new StaffAccounts(services).create(username, password, role);
          console.log(
            `staff ${member.username} (${member.role}) created: sign in at /admin/ to set up the authenticator`,
          );
          return 0;
        } catch (error) {
          console.error((error as Error).message);
          return 1;
        }
      });
    }
    if (verb === 'password' && username) {
      const password = await readPassword(`new password for ${username}: `);
      return withServices(async (services) => {
        try {
          const done = await new StaffAccounts(services).setPassword(username, password);
          console[done ? 'log' : 'error'](
            done ? `staff ${username}: new password set; its sessions ended` : `no staff ${username}`,
          );
          return done ? 0 : 1;
        } catch (error) {
          console.error((error as Error).message);
          return 1;
        }
      });
    }
    if (verb === 'list') {
      return withServices(async ({ storage }) => {
        for (const member of await storage.staff.list()) {
          const state = member.disabledAt
            ? 'disabled'
            : member.lockedUntil && Date.parse(member.lockedUntil) > Date.now()
              ? `locked until ${member.lockedUntil}`
              : member.totpEnrolledAt
                ? 'active'
                : 'authenticator not set up';
          console.log(`${member.id}\t${member.username}\t${member.role}\t${state}`);
        }
        return 0;
      });
    }
    if (verb === 'disable' && username) {
      return withServices(async ({ storage }) => {
        const done = await storage.staff.disable(username);
        console[done ? 'log' : 'error'](
          done ? `staff ${username} disabled; its sessions ended` : `no active staff ${username}`,
        );
        return done ? 0 : 1;
      });
    }
    if ((verb === 'unlock' || verb === 'reset-totp') && username) {
      return withServices(async ({ storage }) => {
        const done = verb === 'unlock' ? await storage.staff.unlock(username) : await storage.staff.resetTotp(username);
        console[done ? 'log' : 'error'](
          done
            ? `staff ${username}: ${verb === 'unlock' ? 'unlocked' : 'authenticator forgotten, set up again at the next sign-in'}`
            : `no staff ${username}`,
        );
        return done ? 0 : 1;
      });
    }
    console.error(`usage: social-link ${staffCommand.usage}`);
    return 1;
  },
};

/** `keys service …`: the admin API's keys (the other `keys` verbs sign our tokens). */
export async function serviceKeysCommand(positionals: string[], scopesOption: string | undefined): Promise<number> {
  const [verb, name] = positionals;
  if (verb === 'create' && name) {
    if (!/^[\w.-]{1,64}$/.test(name)) {
      console.error('a key name is 1 to 64 letters, digits and . - _');
      return 1;
    }
    const scopes: ServiceScope[] | undefined =
      scopesOption === 'read'
        ? ['read']
        : scopesOption === 'write' || scopesOption === 'read,write'
          ? ['read', 'write']
          : undefined;
    if (!scopes) {
      console.error('--scopes must be read or write (write can read too)');
      return 1;
    }
    return withServices(async ({ storage }) => {
      const exists = (await storage.serviceKeys.list()).some((key) => key.name === name);
      if (exists) {
        console.error(`a service key named ${name} exists (revoked keys keep their name)`);
        return 1;
      }
      const { key } = await storage.serviceKeys.create(name, scopes);
      console.error(`service key ${name} (${scopes.join(' ')}): shown once, keep it in your backend's secrets:`);
      console.log(key);
      return 0;
    });
  }
  if (verb === 'list') {
    return withServices(async ({ storage }) => {
      for (const key of await storage.serviceKeys.list()) {
        console.log(
          `${key.name}\t${key.scopes.join(' ')}\tcreated ${key.createdAt}\tlast used ${key.lastUsedAt ?? 'never'}${key.revokedAt ? `\trevoked ${key.revokedAt}` : ''}`,
        );
      }
      return 0;
    });
  }
  if (verb === 'revoke' && name) {
    return withServices(async ({ storage }) => {
      const done = await storage.serviceKeys.revoke(name);
      console[done ? 'log' : 'error'](done ? `service key ${name} revoked` : `no active service key ${name}`);
      return done ? 0 : 1;
    });
  }
  console.error(
    'usage: social-link keys service create NAME --scopes read|write | keys service list | keys service revoke NAME',
  );
  return 1;
}
