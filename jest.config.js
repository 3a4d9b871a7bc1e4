/** @type {import('jest').Config} */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/tests"],
  testMatch: ["**/*.test.ts"],
  // The lab's end-to-end suite boots VMs; it runs through `npm run test:lab`.
  testPathIgnorePatterns: ["/node_modules/", "/tests/lab/"],
  transform: { "^.+\\.ts$": "ts-jest" },
};
