import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // The emulator workspace, from its sources (as tsconfig.json's paths say).
  resolve: { alias: { '@social-link/emulator': fileURLToPath(new URL('./emulator/src/index.ts', import.meta.url)) } },
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts', 'emulator/test/**/*.test.ts', 'examples/**/*.test.ts'],
    // test/chaos runs real server processes against PostgreSQL: `npm run test:chaos`.
    exclude: ['test/chaos/**', '**/node_modules/**', '**/.git/**'],
    // Generous: a test that waits on child processes (the built CLI) gets a fraction of a shared machine's 2 cores.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each test file starts its own emulator and server on ephemeral ports and its own database.
    pool: 'forks',
    // A migrated database of each kind, copied for each test server (test/global-setup.ts).
    globalSetup: ['test/global-setup.ts'],
    // Real timers again after every test (test/setup.ts): files share their worker's process.
    setupFiles: ['test/setup.ts'],
    // Vitest's default is one worker fewer than cores (one on a 2-core machine): test files wait on child processes,
    // PostgreSQL, timers and sockets, so as many workers as cores (two at least) keep the cores busy.
    // VITEST_MAX_WORKERS overrides.
    maxWorkers: Math.max(2, availableParallelism()),
    // A worker runs its files one after the other in one process, the modules loaded once (each file still starts
    // its own servers and databases): a new process per file cost about a second of CPU each.
    isolate: false,
  },
});
