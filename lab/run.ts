// Running programs for the lab: in the foreground with their output kept for errors, or
// as daemons with a pid file.
import { spawn, spawnSync, type SpawnSyncOptions } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { tail } from "./log";
import { NETNS } from "./settings";

export class CommandError extends Error {}

/** Runs a command to completion; throws with its output when it fails. */
export function run(
  cmd: string,
  args: string[],
  opts: SpawnSyncOptions & { input?: string } = {},
): string {
  const res = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, ...opts });
  if (res.error) throw new CommandError(`${cmd}: ${res.error.message}`);
  if (res.status !== 0) {
    const out = `${res.stdout ?? ""}${res.stderr ?? ""}`.trim().split("\n").slice(-40).join("\n");
    throw new CommandError(`${cmd} ${args.join(" ")} exited ${res.status ?? res.signal}:\n${out}`);
  }
  return String(res.stdout ?? "");
}

/** Runs a command inside the lab's network namespace. */
export function runIn(
  netns: string,
  cmd: string,
  args: string[],
  opts: SpawnSyncOptions & { input?: string } = {},
): string {
  return run("ip", ["netns", "exec", netns, cmd, ...args], opts);
}

/** Starts a long-running process detached, output to `log`, pid to `pidFile`. */
export function daemon(
  cmd: string,
  args: string[],
  log: string,
  pidFile: string,
  env?: NodeJS.ProcessEnv,
): number {
  const fd = openSync(log, "a");
  const child = spawn(cmd, args, {
    detached: true,
    stdio: ["ignore", fd, fd],
    env: env ?? process.env,
  });
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new CommandError(`could not start ${cmd}`);
  writeFileSync(pidFile, `${child.pid}\n`);
  return child.pid;
}

export function pidAlive(pidFile: string): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  if (!pid) return undefined;
  try {
    process.kill(pid, 0);
    // A killed daemon whose parent (a lab process busy running the suite) has not reaped it
    // yet is a zombie: it holds no file and runs nothing.
    const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, "utf8") : "";
    return / Z /.test(stat.slice(stat.lastIndexOf(")"))) ? undefined : pid;
  } catch (e) {
    // EPERM: it runs, as another user (root, seen from a plain user's `status`).
    return (e as NodeJS.ErrnoException).code === "EPERM" ? pid : undefined;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value, or throws `failure()` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined> | T | undefined,
  failure: () => string = () => "",
  intervalMs = 2000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end)
      throw new CommandError(
        `timed out after ${timeoutMs / 1000} s waiting for ${what}\n${failure()}`,
      );
    await sleep(intervalMs);
  }
}

/** Waits until a lab service accepts TCP connections; on timeout, shows the tail of its log. */
export function waitForPort(
  what: string,
  address: string,
  port: number,
  log: string,
): Promise<true> {
  return waitFor(
    what,
    30_000,
    () => {
      try {
        runIn(NETNS, "bash", ["-c", `exec 3<>/dev/tcp/${address}/${port}`], { stdio: "pipe" });
        return true as const;
      } catch {
        return undefined;
      }
    },
    () => tail(log),
    500,
  );
}
