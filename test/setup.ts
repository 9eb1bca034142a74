import { afterEach, vi } from 'vitest';

// Each worker runs its test files one after the other in one process (vitest.config.ts `isolate: false`): a test
// that faked the clock and failed before putting it back must not leave the next files in another time.
afterEach(() => {
  vi.useRealTimers();
});
