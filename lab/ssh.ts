// SSH to a lab host (from inside the lab's namespace), trusting only the pinned host key: as
// a person does (admin, with the lab's admin key) or as a deployment does (deploy, with the
// deployment key, whose requests `mailstack-deploy` answers, exactly as Pulumi's remote
// command sends them).
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADMIN_USER, DEPLOY_USER } from "../cloud-init/render";
import { keyDir, type LabKeys } from "./keys";
import { hostDir } from "./vm";
import { NETNS, type LabHost } from "./settings";

export interface SshResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** A known_hosts file holding just this host key for the host's address. */
export function knownHosts(h: LabHost, hostPublicKey: string, name = "known_hosts"): string {
  const file = join(hostDir(h), name);
  writeFileSync(file, `${h.ipv4} ${hostPublicKey.trim()}\n${h.ipv6} ${hostPublicKey.trim()}\n`);
  return file;
}

/** Who logs in: a person (the default) or the deployment. */
export type Account = "admin" | "deploy";

export interface SshOptions {
  account?: Account;
  knownHostsFile?: string;
  /** Another key than the account's own. */
  keyFile?: string;
  /** Extra `ssh -o` options, e.g. `Ciphers=aes128-ctr`; they win over the defaults here. */
  options?: string[];
  /** Environment of ssh, e.g. SSH_ASKPASS to answer a keyboard-interactive prompt. */
  env?: NodeJS.ProcessEnv;
}

function sshArgs(h: LabHost, keys: LabKeys, opts: SshOptions = {}): string[] {
  const account = opts.account ?? "admin";
  return [
    // ssh takes the first value it is given: extra options come first to override.
    ...(opts.options ?? []).flatMap((o) => ["-o", o]),
    "-i",
    opts.keyFile ?? join(keyDir(h.name), account === "admin" ? "admin_key" : "deploy_key"),
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    `UserKnownHostsFile=${opts.knownHostsFile ?? knownHosts(h, keys.sshHost.publicOpenssh)}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "HostKeyAlgorithms=ssh-ed25519",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "LogLevel=ERROR",
    `${account === "admin" ? ADMIN_USER : DEPLOY_USER}@${h.ipv4}`,
  ];
}

/** Runs a command on the host; never throws, the caller judges the status. */
export function ssh(
  h: LabHost,
  keys: LabKeys,
  command: string,
  opts: SshOptions & { input?: string; timeoutMs?: number } = {},
): SshResult {
  const res = spawnSync("ip", ["netns", "exec", NETNS, "ssh", ...sshArgs(h, keys, opts), command], {
    input: opts.input ?? "",
    env: { ...process.env, ...opts.env },
    encoding: "utf8",
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return {
    status: res.status ?? -1,
    stdout: res.stdout ?? "",
    stderr: `${res.stderr ?? ""}${res.error ? String(res.error) : ""}`,
  };
}

/** The same as `ssh`, without blocking: several hosts can be waited on at once. */
export function sshAsync(
  h: LabHost,
  keys: LabKeys,
  command: string,
  opts: SshOptions & { input?: string; timeoutMs?: number } = {},
): Promise<SshResult> {
  return new Promise((resolve) => {
    const child = spawn("ip", ["netns", "exec", NETNS, "ssh", ...sshArgs(h, keys, opts), command], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n(timed out after ${(opts.timeoutMs ?? 120_000) / 1000} s)`;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 120_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
    // ssh may exit before reading its input (host not up yet): that is its status, not an error.
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}
