/** @type {import('jest').Config} */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "<rootDir>/tests/support/environment.ts",
  roots: ["<rootDir>/tests"],
  testMatch: ["**/*.test.ts"],
  // The lab's end-to-end suite boots VMs; it runs through `npm run test:lab`.
  testPathIgnorePatterns: ["/node_modules/", "/tests/lab/"],
  transform: { "^.+\\.ts$": "ts-jest" },
  // Pulumi's function serialization, unused here, would load npm's Arborist in every file.
  moduleNameMapper: { "^@npmcli/arborist$": "<rootDir>/tests/support/arborist.js" },
  // A stack under mocks takes seconds to evaluate; on a machine busy with the lab's VMs, more
  // than jest's default 5 s. The limit is there to stop a test that hangs, not to time one.
  testTimeout: 120_000,
  // Every core: jest's default leaves one for its parent process, which only collects results.
  // On two cores that ran the files one at a time, 110 s against 76 s.
  maxWorkers: "100%",
};
