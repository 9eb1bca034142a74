import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { alias: { '@social-link/emulator': fileURLToPath(new URL('./emulator/src/index.ts', import.meta.url)) } },
  test: {
    include: ['test/chaos/**/*.test.ts'],
    // Real server processes (tsx start-up, kill -9, restarts) on a PostgreSQL server: slow on purpose.
    testTimeout: 240_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One file at a time: each starts several server processes, and timings must not fight for 2 cores.
    fileParallelism: false,
  },
});
