/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: "<rootDir>/tests/support/environment.ts",
  roots: ["<rootDir>/tests"],
  testMatch: ["**/*.test.ts"],
  // The lab's end-to-end suite boots VMs; it runs through `npm run test:lab`.
  testPathIgnorePatterns: ["/node_modules/", "/tests/lab/"],
  // swc strips the types file by file (tsconfig.json's isolatedModules holds the code to what
  // that can do); the type check is lint:ts's. On a clean checkout, in one process, the suite
  // took 58-61 s of CPU with swc and 65-68 s with ts-jest, which transpiles with TypeScript.
  transform: {
    "^.+\\.ts$": [
      "@swc/jest",
      {
        jsc: { parser: { syntax: "typescript" }, target: "es2022" },
        module: { type: "commonjs" },
      },
    ],
  },
  // Pulumi's function serialization, unused here, would load npm's Arborist in every file.
  moduleNameMapper: { "^@npmcli/arborist$": "<rootDir>/tests/support/arborist.js" },
  // A stack under mocks takes seconds to evaluate; on a machine busy with the lab's VMs, more
  // than jest's default 5 s. The limit is there to stop a test that hangs, not to time one.
  testTimeout: 120_000,
  // Every core: jest's default leaves one for its parent process, which only collects results.
  // On two cores that ran the files one at a time, 110 s against 76 s.
  maxWorkers: "100%",
};
