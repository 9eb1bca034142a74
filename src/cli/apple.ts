import { ConfigError, type Settings } from '../lib/settings.js';
import {
  exportAppleTransfers,
  importAppleTransfers,
  type TransferReport,
  type TransferRun,
} from '../core/apple-transfer.js';
import type { Services } from '../core/services.js';
import { apple } from '../providers/apple/apple.js';
import { AppleApi } from '../providers/apple/api.js';
import { ProviderHttp } from '../providers/http.js';
import { withServices, type Command } from './command.js';

/** Sign in with Apple team transfer (core/apple-transfer.ts), step by step, resumable. */
export const appleCommand: Command = {
  usage:
    'apple transfer export --target TEAM_ID | apple transfer import | apple transfer status  [--client-id ID] [--batch N] [--json]',
  summary:
    "move every Apple link to the new ids when the app moves to another developer team: export (with the OLD team's SOCIAL_AUTH_APPLE_TEAM_ID, _KEY_ID, " +
    "_PRIVATE_KEY) asks Apple each link's transfer identifier for TEAM_ID; import (with the NEW team's) exchanges them and rewrites the links, one " +
    'transaction per batch. Both carry on where a previous run stopped; failures are listed and left as they were',
  options: {
    target: { type: 'string' },
    'client-id': { type: 'string' },
    batch: { type: 'string' },
    json: { type: 'boolean' },
  },
  run: ({ positionals: [noun, verb], values }) =>
    withServices(async (services, settings) => {
      if (noun !== 'transfer' || !['export', 'import', 'status'].includes(verb ?? '')) {
        console.error(`usage: social-link ${appleCommand.usage}`);
        return 1;
      }
      if (verb === 'status') {
        print({ rows: await services.storage.appleTransfers.counts() }, values.json === true);
        return 0;
      }
      const target = typeof values.target === 'string' ? values.target : undefined;
      if (verb === 'export' && !(target && /^[A-Z0-9]{10}$/.test(target))) {
        console.error('export needs --target: the recipient team id (10 capital letters and digits)');
        return 1;
      }
      const { run, close } = transferRun(services, settings, values);
      try {
        const report =
          verb === 'export'
            ? await exportAppleTransfers(services.storage, target!, run)
            : await importAppleTransfers(services.storage, services.secrets, null, run);
        print(
          {
            [verb === 'export' ? 'exported' : 'imported']: report.done,
            skipped: report.skipped,
            failed: report.failed,
            rows: await services.storage.appleTransfers.counts(),
          },
          values.json === true,
        );
        return report.failed.length > 0 ? 2 : 0;
      } finally {
        await close();
      }
    }),
};

/** Apple's API with the configured team key, the client id Apple knows the app by, and progress on a terminal. */
function transferRun(
  services: Services,
  settings: Settings,
  values: Record<string, string | boolean | undefined>,
): { run: TransferRun; close(): Promise<void> } {
  const config = apple.configure(settings);
  if (!config) throw new ConfigError('Sign in with Apple is not configured: set SOCIAL_AUTH_APPLE_KEY');
  if (!config.signing)
    throw new ConfigError(
      'a team transfer needs the team key: set SOCIAL_AUTH_APPLE_TEAM_ID, SOCIAL_AUTH_APPLE_KEY_ID and SOCIAL_AUTH_APPLE_PRIVATE_KEY',
    );
  const clientId = typeof values['client-id'] === 'string' ? values['client-id'] : config.clientIds[0]!;
  const batchSize = Number(values.batch ?? 100);
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1000)
    throw new ConfigError('--batch must be an integer from 1 to 1000');
  const http = new ProviderHttp('apple', { timeoutMs: services.config.providerTimeoutMs });
  const progress = process.stderr.isTTY
    ? (report: TransferReport) =>
        process.stderr.write(`\r${report.done} done, ${report.skipped} skipped, ${report.failed.length} failed`)
    : undefined;
  return {
    run: { api: new AppleApi(http, config.apiUrl, config.signing), clientId, batchSize, progress },
    async close() {
      if (progress) process.stderr.write('\n');
      await http.close();
    },
  };
}

function print(summary: Record<string, unknown>, asJson: boolean): void {
  if (asJson) return void console.log(JSON.stringify(summary));
  for (const [key, value] of Object.entries(summary)) {
    if (Array.isArray(value)) {
      console.log(`${key}: ${value.length}`);
      for (const item of value) console.log(`  ${JSON.stringify(item)}`);
    } else console.log(`${key}: ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`);
  }
}
