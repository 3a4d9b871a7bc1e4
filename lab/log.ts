// Progress lines for long lab steps: what is happening, and how long it took.
import { existsSync, readFileSync } from "node:fs";

const t0 = Date.now();
const since = (start: number) => `${((Date.now() - start) / 1000).toFixed(1)} s`;

export function info(message: string): void {
  process.stderr.write(`[lab ${since(t0).padStart(7)}] ${message}\n`);
}

/** Runs a step, printing its start and its duration; on failure the error names the step. */
export async function step<T>(what: string, fn: () => Promise<T> | T): Promise<T> {
  const start = Date.now();
  info(`${what} ...`);
  try {
    const result = await fn();
    info(`${what}: done in ${since(start)}`);
    return result;
  } catch (e) {
    info(`${what}: FAILED after ${since(start)}`);
    throw e;
  }
}

/** The last lines of a log file, for error messages. */
export function tail(path: string, lines = 40): string {
  if (!existsSync(path)) return `(no ${path})`;
  const all = readFileSync(path, "utf8").split("\n");
  return `--- last ${lines} lines of ${path} ---\n${all.slice(-lines - 1).join("\n")}`;
}
