/** Jest in native ESM mode (NestJS 12 is ESM-only); ts-jest transpiles TypeScript per file. */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  roots: ['<rootDir>/src', '<rootDir>/test'],
  testMatch: ['**/*.spec.ts', '**/*.e2e-spec.ts'],
  // The fresh Nest app's own Vitest tests; test/fresh-app/fresh-app.e2e-spec.ts runs them in the app.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/fresh-app/(template|added)/'],
  modulePathIgnorePatterns: ['<rootDir>/test/fresh-app/template/'],
  moduleNameMapper: {
    '^nestjs-context$': '<rootDir>/src/index.ts',
    '^nestjs-context/(.*)$': '<rootDir>/src/integrations/$1/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json', diagnostics: false }],
  },
  testTimeout: 30000,
};
