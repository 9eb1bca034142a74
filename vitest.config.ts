import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // The emulator workspace, from its sources (as tsconfig.json's paths say).
  resolve: { alias: { '@social-link/emulator': fileURLToPath(new URL('./emulator/src/index.ts', import.meta.url)) } },
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts', 'examples/**/*.test.ts'],
    // test/chaos runs real server processes against PostgreSQL: `npm run test:chaos`.
    exclude: ['test/chaos/**', '**/node_modules/**', '**/.git/**'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Each test file starts its own emulator and server on ephemeral ports and its own database.
    pool: 'forks',
  },
});
