// jest's Node environment, with cheaper stack traces for Pulumi's own bookkeeping.
//
// Pulumi's SDK reads `new Error().stack` for every promise it makes (debuggablePromise in
// runtime/debuggable.js, that stack's first frame), to name the promise if it is still
// pending at exit. jest formats every stack through the
// source maps of the files it transformed, and a stack under mocks is evaluated thousands of
// promises deep: that formatting was a quarter of the CPU time of tests/mailstack.test.ts.
// These stacks are only printed for a leaked promise, so they keep V8's own format; every
// other stack (a failing test's) is source-mapped as before.
import NodeEnvironment from "jest-environment-node";

const PULUMI_DEBUGGABLE = /[\\/]@pulumi[\\/]pulumi[\\/]runtime[\\/]debuggable\.js$/;

/** V8's default `stack`: the error's own line, then one `at` line per frame. */
const plainStack = (error: Error, frames: NodeJS.CallSite[]) =>
  [String(error), ...frames.map((f) => `    at ${f.toString()}`)].join("\n");

export default class TestEnvironment extends NodeEnvironment {
  constructor(...args: ConstructorParameters<typeof NodeEnvironment>) {
    super(...args);
    const contextError = this.global.Error as ErrorConstructor;
    // Node's default of 10 frames, not the 100 jest asks for: enough for a failing test.
    contextError.stackTraceLimit = 10;
    // Node asks the error's own realm first; jest installs its source-mapping formatter on
    // the outer realm's Error, once the environment exists.
    contextError.prepareStackTrace = (error: Error, frames: NodeJS.CallSite[]) =>
      PULUMI_DEBUGGABLE.test(frames[0]?.getFileName() ?? "") || !Error.prepareStackTrace
        ? plainStack(error, frames)
        : (Error.prepareStackTrace(error, frames) as string);
  }
}
