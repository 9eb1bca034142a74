// Case 4's provider (bench/run.ts, bench/case.ts): Graph answers after 200 ms on average, each answer after 150 to
// 250 ms. A real provider's latency varies; with one fixed wait, the closed-loop load generator's 256 requests lock
// into waves (sent together, answered together 200 ms later, queued together behind the server's CPU), which
// measures the load generator's phase rather than the server. The fixed wait still runs, as an extra row.
export const SLOW_PROVIDER = { latency_ms: 200, latency_jitter_ms: 50 } as const;
// A fault set over another keeps what it does not name (PUT merges): the spread is set to 0, not left out.
export const FIXED_SLOW_PROVIDER = { latency_ms: SLOW_PROVIDER.latency_ms, latency_jitter_ms: 0 } as const;
export const slowProviderLabel = `Graph ${SLOW_PROVIDER.latency_ms} ± ${SLOW_PROVIDER.latency_jitter_ms} ms`;
