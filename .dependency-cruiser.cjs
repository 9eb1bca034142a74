/**
 * The arrows that must never exist between our modules (`npm run check:deps`; test/dependencies.test.ts runs it
 * in the suite). An arrow A → B is "A imports B", `import type` and import() included: a reader follows those too.
 * Dependencies point down (ARCHITECTURE.md, "The layers").
 *
 * @type {import('dependency-cruiser').IConfiguration}
 */
/** The floors, bottom up: one folder each. */
const FLOOR_ORDER = [
  ['lib'],
  ['auth'],
  ['store'],
  ['providers'],
  ['config'],
  ['core'],
  ['import'],
  ['http'],
  ['admin'],
  ['server'],
  ['cli'],
];

/** One rule per folder: nothing of a floor above its own (the entry points src/*.ts stand on top of all). */
function floors(described) {
  return described.map(([folder, what]) => {
    const level = FLOOR_ORDER.findIndex((floor) => floor.includes(folder));
    const above = FLOOR_ORDER.slice(level + 1).flat();
    return {
      name: `${folder}-imports-nothing-above`,
      severity: 'error',
      comment: `src/${folder}/ (${what}) imports only its own floor and those below: nothing of ${above.join(', ')} or the entry points (src/*.ts).`,
      from: { path: `^src/${folder}/` },
      to: { path: [`^src/(${above.join('|')})/`, '^src/[^/]+\\.ts$'] },
    };
  });
}

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
      comment:
        '@social-link/emulator is a package of its own, built and published alone: it imports nothing of social-link.',
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
    // The floors, bottom up (ARCHITECTURE.md, "The floors"): a module imports its own floor and the floors below, never
    // one above. lib → auth → store → providers → config → core → import → http (the API's web layer) → admin (the
    // console's plugin) → server (the assembly) → cli → src/*.ts.
    ...floors([
      [
        'lib',
        'leaves every floor uses: the error catalogue, reading settings, the log type, narrowing helpers, the version',
      ],
      ['auth', 'cryptography of our own secrets: signing keys, password hashes, the secret box, TOTP'],
      ['store', 'every query: the schema, migrations and one repository per table'],
      ['providers', 'proving a token with its provider: one module per provider, the shared protocol helpers'],
      ['config', 'the configuration read from the environment, each provider reading its own settings'],
      ['core', 'the use cases: sign-in pipeline, sessions and tokens, accounts, admin, webhooks'],
      ['import', "importers of other systems' users"],
      [
        'http',
        "the public API's web layer: routes, schemas, errors, hooks, rate limits, metrics, the OpenAPI document",
      ],
      ['admin', 'the admin API and the staff console: a Fastify plugin over core/admin.ts and core/staff.ts'],
      ['server', 'the assembly: the Fastify application built of the API and the admin plugin, listening, workers'],
      ['cli', "the command line, and the operator's configuration file"],
    ]),
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
