/** The lab's end-to-end suite: real VMs, run by `npm run test:lab` inside the lab namespace. */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/tests/lab"],
  testMatch: ["**/*.test.ts"],
  transform: require("./jest.config.js").transform,
  // One VM answers one thing at a time well enough; suites run in order.
  maxWorkers: 1,
  testTimeout: 300_000,
};
