import type { AppleApi } from '../providers/apple/api.js';
import { text } from '../lib/narrowing.js';
import type { SocialIdentity } from '../providers/types.js';
import type { SecretBox } from '../auth/secret-box.js';
import type { Client, Storage } from '../store/storage.js';
import { ProviderUnavailableError } from '../lib/errors.js';
import { isUniqueViolation } from '../store/unique-violation.js';

/**
 * Sign in with Apple team transfer. Apple's `sub` is scoped to the developer team: when the app moves to
 * another team, every user gets a new one, and an app that ignores it loses every Apple user. Apple's
 * documented migration (sources: test/fixtures/apple-migration/):
 *
 * 1. export, with the OLD team's key, before or within 60 days after the transfer: each link's transfer
 *    identifier for the recipient team (POST /auth/usermigrationinfo {sub, target});
 * 2. import, with the NEW team's key, within 60 days of the transfer: each transfer identifier's new sub
 *    (POST /auth/usermigrationinfo {transfer_sub}); the links' uid is rewritten, one transaction per batch;
 * 3. meanwhile, for those 60 days, the app's ID tokens carry the new sub and a `transfer_sub` claim: a sign-in
 *    with one whose link was exported but not imported yet moves that link first (followAppleTransfer).
 *
 * Each step records its outcome per link (apple_transfers): running it again carries on where it stopped.
 */
export interface TransferReport {
  /** Links done in this run. */
  done: number;
  /** Links of earlier runs, or linked to nothing any more. */
  skipped: number;
  /** Links Apple refused (or that conflict), with the reason; they stay as they were. */
  failed: Array<{ uid: string; error: string }>;
}

export interface TransferRun {
  api: AppleApi;
  /** The transferred app's client id (the bundle id), as Apple asks for it. */
  clientId: string;
  batchSize: number;
  /** Called after each batch: links done so far. */
  progress?(report: TransferReport): void;
}

/** Step 1, with the old team's key: a transfer identifier for every Apple link not exported yet. */
export async function exportAppleTransfers(
  storage: Storage,
  target: string,
  run: TransferRun,
): Promise<TransferReport> {
  const report: TransferReport = { done: 0, skipped: 0, failed: [] };
  const token = migrationTokens(run);
  let after = '';
  for (;;) {
    const uids = await storage.appleTransfers.linksToExport(target, after, run.batchSize);
    if (uids.length === 0) break;
    for (const uid of uids) {
      const answer = await token.ask({ sub: uid, target });
      const transferSub = 'body' in answer ? text(answer.body, 'transfer_sub') : undefined;
      if (transferSub) {
        await storage.appleTransfers.exported(uid, target, { transferSub });
        report.done++;
      } else {
        const error = 'refused' in answer ? answer.refused : 'no transfer_sub in the answer';
        await storage.appleTransfers.exported(uid, target, { error });
        report.failed.push({ uid, error });
      }
    }
    after = uids.at(-1)!;
    run.progress?.(report);
  }
  return report;
}

/** Step 2, with the new team's key: every exported link moved to its new sub, one transaction per batch. */
export async function importAppleTransfers(
  storage: Storage,
  secrets: SecretBox,
  client: Client | null,
  run: TransferRun,
): Promise<TransferReport> {
  const report: TransferReport = { done: 0, skipped: 0, failed: [] };
  const token = migrationTokens(run);
  let after = '';
  for (;;) {
    const rows = await storage.appleTransfers.toImport(after, run.batchSize);
    if (rows.length === 0) break;
    // Apple first (no transaction waits on it), then the batch's links in one transaction.
    const exchanged: Array<{ oldSub: string; newSub: string }> = [];
    for (const row of rows) {
      const answer = await token.ask({ transfer_sub: row.transfer_sub! });
      const newSub = 'body' in answer ? text(answer.body, 'sub') : undefined;
      if (newSub) exchanged.push({ oldSub: row.old_sub, newSub });
      else {
        const error = 'refused' in answer ? answer.refused : 'no sub in the answer';
        await storage.appleTransfers.importFailed(row.old_sub, error);
        report.failed.push({ uid: row.old_sub, error });
      }
    }
    await storage.transaction(async (trx) => {
      // (A sign-in linking one of these new subs meanwhile fails the batch at its commit: the next run resumes.)
      for (const { oldSub, newSub } of exchanged) {
        const outcome = await moveAppleLink(trx, secrets, oldSub, newSub, client);
        if (outcome === 'moved') report.done++;
        else if (outcome === 'conflict')
          report.failed.push({ uid: oldSub, error: (await trx.appleTransfers.errorOf(oldSub)) ?? 'refused' });
        else report.skipped++;
      }
    });
    after = rows.at(-1)!.old_sub;
    run.progress?.(report);
  }
  return report;
}

/**
 * Step 3: an Apple sign-in (or link) whose ID token carries `transfer_sub`, for an account not linked under
 * its new sub, moves the exported link first. Without an export nothing is known of the account: it stays unknown.
 */
export async function followAppleTransfer(
  storage: Storage,
  secrets: SecretBox,
  identity: SocialIdentity,
  client: Client,
): Promise<void> {
  if (!identity.transferSub) return;
  const row = await storage.appleTransfers.byTransferSub(identity.transferSub);
  if (!row || row.status === 'imported') return;
  // A sign-in that linked the new sub at the same moment wins; this one then finds that link.
  await storage
    .transaction((trx) => moveAppleLink(trx, secrets, row.old_sub, identity.uid, client))
    .catch((error: unknown) => {
      if (!isUniqueViolation(error)) throw error;
    });
}

/** Moves one link from its old sub to its new one (in the caller's transaction), with its audit event. */
async function moveAppleLink(
  storage: Storage,
  secrets: SecretBox,
  oldSub: string,
  newSub: string,
  client: Client | null,
): Promise<'moved' | 'gone' | 'conflict'> {
  // ('conflict': left as it was, the reason recorded on its row.)
  const link = await storage.links.find('apple', oldSub);
  const taken = await storage.links.find('apple', newSub);
  if (!link) {
    // Unlinked since, or moved already by a sign-in: nothing left to do.
    await storage.appleTransfers.imported(oldSub, newSub);
    return 'gone';
  }
  if (taken) {
    await storage.appleTransfers.importFailed(oldSub, `conflict: ${newSub} is linked to user ${taken.userId}`);
    return 'conflict';
  }
  // Kept tokens are sealed for (provider, uid): sealed again for the new uid, never dropped.
  const opened = link.sealedTokens ? secrets.open(link.sealedTokens, `apple:${oldSub}`) : undefined;
  if (link.sealedTokens && !opened) {
    await storage.appleTransfers.importFailed(
      oldSub,
      "its kept tokens could not be decrypted: run with the server's SOCIAL_LINK_ENCRYPTION_KEYS",
    );
    return 'conflict';
  }
  if (!(await storage.links.moveUid('apple', oldSub, newSub, opened ? secrets.seal(opened, `apple:${newSub}`) : null)))
    return 'gone';
  await storage.appleTransfers.imported(oldSub, newSub);
  await storage.audit.record(
    {
      event: 'uid_moved',
      userId: link.userId,
      provider: 'apple',
      uid: newSub,
      detail: `apple team transfer from ${oldSub}`,
    },
    client,
  );
  return 'moved';
}

/** One user.migration access token at a time, renewed when Apple says it expired (it lives an hour). */
function migrationTokens(run: TransferRun) {
  let token: Promise<string> | undefined;
  return {
    async ask(ask: { sub: string; target: string } | { transfer_sub: string }) {
      for (let attempt = 1; ; attempt++) {
        token ??= run.api.migrationToken(run.clientId);
        const answer = await run.api.migrationInfo(run.clientId, await token, ask);
        if (!('refused' in answer) || answer.refused !== 'invalid_grant') return answer;
        token = undefined;
        if (attempt >= 2)
          throw new ProviderUnavailableError('apple', 'refused a new user.migration access token (invalid_grant)');
      }
    },
  };
}
