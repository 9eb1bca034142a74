import type { Admin } from '../core/admin.js';

type DashboardStats = Awaited<ReturnType<Admin['dashboard']>>;

/**
 * The dashboard's tables from core/admin.ts's counts: sign-ins as days (newest first) by provider (a name order),
 * and refusals summed by code, the most frequent first.
 */
export function dashboardFigures(stats: Pick<DashboardStats, 'signIns' | 'refusals'>) {
  const signInDays = [...new Set(stats.signIns.map((row) => row.day))].sort().reverse();
  const signInProviders = [...new Set(stats.signIns.map((row) => row.key))].sort();
  // By code: a refusal's detail is `code: why` (http/hooks.ts), and the why varies.
  const refusals = Object.entries(
    stats.refusals.reduce<Record<string, number>>((sum, row) => {
      const code = row.key.split(':')[0]!;
      return { ...sum, [code]: (sum[code] ?? 0) + row.count };
    }, {}),
  )
    .map(([reason, count]) => ({ reason, count }))
    .sort((a, b) => b.count - a.count);
  const signInCount = (day: string, provider: string) =>
    stats.signIns.find((row) => row.day === day && row.key === provider)?.count ?? 0;
  return { signInDays, signInProviders, signInCount, refusals };
}
