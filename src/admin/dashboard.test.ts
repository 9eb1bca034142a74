import { describe, expect, it } from 'vitest';
import { dashboardFigures } from './dashboard.js';

describe("the dashboard's tables", () => {
  it('lists the days newest first, the providers by name, and sums refusals by code, the most frequent first', () => {
    const figures = dashboardFigures({
      signIns: [
        { day: '2026-01-01', key: 'google', count: 3 },
        { day: '2026-01-02', key: 'apple', count: 1 },
        { day: '2026-01-02', key: 'google', count: 2 },
      ],
      refusals: [
        { day: '2026-01-01', key: 'invalid_token: expired', count: 1 },
        { day: '2026-01-02', key: 'invalid_token: wrong audience', count: 2 },
        { day: '2026-01-02', key: 'rate_limited', count: 2 },
      ],
    });
    expect(figures.signInDays).toEqual(['2026-01-02', '2026-01-01']);
    expect(figures.signInProviders).toEqual(['apple', 'google']);
    expect(figures.signInCount('2026-01-02', 'google')).toBe(2);
    expect(figures.signInCount('2026-01-01', 'apple')).toBe(0);
    expect(figures.refusals).toEqual([
      { reason: 'invalid_token', count: 3 },
      { reason: 'rate_limited', count: 2 },
    ]);
  });
});
