/** ESM-only files under node_modules that CommonJS packages require() (see transform). */
const REQUIRED_ESM = '/node_modules/(?:.+/)?content-disposition/dist/.+\\.js$';

/** Whether this Node lets Jest require() an ES module itself (24.9 and later); older lines need it compiled to CommonJS. */
const [major, minor] = process.versions.node.split('.').map(Number);
const requiresEsm = major > 24 || (major === 24 && minor >= 9);

/** Jest in native ESM mode (NestJS 12 is ESM-only); ts-jest transpiles TypeScript per file. */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  roots: ['<rootDir>/src', '<rootDir>/test'],
  testMatch: ['**/*.spec.ts', '**/*.e2e-spec.ts'],
  // The fresh Nest app's own Vitest tests; test/fresh-app/fresh-app.e2e-spec.ts runs them in the app.
  // ... the official W3C harness run, which needs the harness beside the checkout: `npm run test:w3c`;
  // ... and the order fixture, which test/apps/test-order.e2e-spec.ts runs in a Jest of its own, in both orders.
  testPathIgnorePatterns: [
    '/node_modules/',
    '<rootDir>/test/fresh-app/(template|added)/',
    '<rootDir>/test/opentelemetry/w3c-harness\\.e2e-spec\\.ts$',
    '<rootDir>/test/apps/order-fixture/',
  ],
  modulePathIgnorePatterns: ['<rootDir>/test/fresh-app/template/'],
  moduleNameMapper: {
    '^nestjs-context$': '<rootDir>/src/index.ts',
    '^nestjs-context/(.*)$': '<rootDir>/src/integrations/$1/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json', diagnostics: false }],
    // An ESM-only package that a CommonJS dependency require()s (mercurius → @fastify/static →
    // content-disposition 3): Jest can load it that way only on Node 24.9+, so it is compiled to
    // CommonJS for the older lines (on 24.9+ the compiled copy would be loaded as ESM and fail).
    ...(requiresEsm
      ? {}
      : { [REQUIRED_ESM]: ['ts-jest', { useESM: false, tsconfig: { allowJs: true, module: 'commonjs', moduleResolution: 'node' }, diagnostics: false }] }),
  },
  transformIgnorePatterns: requiresEsm ? ['/node_modules/'] : ['/node_modules/(?!(?:.+/)?(?:content-disposition)/dist/)'],
  testTimeout: 30000,
  // Two workers on the 2-core machines this runs on: the suites mostly wait on sockets, brokers and
  // child processes (one worker, the default there, leaves a core idle).
  maxWorkers: 2,
};
