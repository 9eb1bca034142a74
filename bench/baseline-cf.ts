import type { emulatedApps } from '../src/config/dev.js';
import { announcedUrl, startNode, type Child } from './processes.js';

/**
 * Starts bench/baseline-c.ts (baselines C, F and L: a sign-in's, a link's unavoidable work on bare node:http) for
 * the linked accounts `googleSubs` / `facebookUids`, on SQLite (a temporary file of its own) or on the PostgreSQL
 * database `postgresUrl` (a throwaway one: the caller drops it).
 */
export async function startBaselineCF(options: {
  name: string;
  emulatorUrl: string;
  apps: ReturnType<typeof emulatedApps>;
  googleSubs: string[];
  facebookUids: string[];
  postgresUrl?: string;
  /** Extra node flags (a CPU profile's). */
  nodeArgs?: string[];
}): Promise<{ child: Child; url: string }> {
  const { emulatorUrl, apps } = options;
  const args = [...(options.nodeArgs ?? []), '--import', 'tsx', 'bench/baseline-c.ts'];
  const child = startNode(options.name, args, {
    NODE_ENV: 'production',
    BENCH_GOOGLE_JWKS_URL: `${emulatorUrl}/google/oauth2/v3/certs`,
    BENCH_GOOGLE_CLIENT_ID: apps.google.clientIds[0]!,
    BENCH_GOOGLE_SUBS: JSON.stringify(options.googleSubs),
    BENCH_FACEBOOK_API_URL: `${emulatorUrl}/facebook`,
    BENCH_FACEBOOK_APP_ID: apps.facebook.appId,
    BENCH_FACEBOOK_APP_SECRET: apps.facebook.appSecret,
    BENCH_FACEBOOK_UIDS: JSON.stringify(options.facebookUids),
    ...(options.postgresUrl ? { BENCH_BASELINE_DATABASE_URL: options.postgresUrl } : {}),
  });
  return { child, url: await announcedUrl(child) };
}
