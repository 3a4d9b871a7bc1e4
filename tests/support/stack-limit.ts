// Pulumi's SDK records a stack trace for every promise it makes (runtime/debuggable.js), and
// jest formats each through its source maps, up to 100 frames deep. Node's own default of 10
// frames is enough for a failing test, and cut tests/mailstack.test.ts's CPU time by a sixth.
Error.stackTraceLimit = 10;
