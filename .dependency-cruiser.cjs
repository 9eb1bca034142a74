/**
 * The arrows that must never exist between our modules (`npm run check:deps`; test/dependencies.test.ts runs it
 * in the suite). An arrow A → B is "A imports B", `import type` and import() included: a reader follows those too.
 * Dependencies point down (ARCHITECTURE.md, "The layers").
 *
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'Modules that import each other, directly or around a loop (type-only imports and import() included). ' +
        'Put what both need in a module below them (a type where the lower module owns it, a helper in a leaf), so the arrow points one way.',
      from: { path: '^(src|emulator/src)/' },
      to: { circular: true },
    },
    {
      name: 'emulator-imports-nothing-of-src',
      severity: 'error',
      comment: '@social-link/emulator is a package of its own, built and published alone: it imports nothing of social-link.',
      from: { path: '^emulator/src/' },
      to: { path: '^(src|test|bench|scripts|examples)/' },
    },
    {
      name: 'src-imports-nothing-of-test',
      severity: 'error',
      comment: 'What is built and shipped (src/) never reaches into the test suite, its helpers or its fixtures.',
      from: { path: '^src/' },
      to: { path: '^test/' },
    },
    {
      name: 'store-is-the-ground-floor',
      severity: 'error',
      comment:
        'src/store/ (every query) stands on the ground floor: it imports nothing of the use cases (core/), the HTTP layer, ' +
        'the providers or the CLI.',
      from: { path: '^src/store/' },
      to: { path: '^src/(core|http|providers|cli)/' },
    },
  ],
  options: {
    // Roots: `depcruise src emulator/src` (package.json check:deps). Whatever they import is cruised too, so an
    // arrow into test/ is seen; node_modules is a wall.
    doNotFollow: { path: 'node_modules' },
    // Follow `import type` and type-only specifiers: they vanish from the compiled JavaScript, not from the design.
    tsPreCompilationDeps: true,
    // NodeNext: `./app.js` in a .ts file names app.ts; `@social-link/emulator` is emulator/src/index.ts (paths).
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
