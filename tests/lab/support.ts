// Helpers for the lab's end-to-end suite, which runs inside the lab's network namespace
// (`npm run test:lab` starts it there): commands on the VMs, DNS queries, SMTP and TLS.
import { spawnSync } from "node:child_process";
import { labKeys, type LabKeys } from "../../lab/keys";
import { HOSTS, type LabHost } from "../../lab/settings";
import { ssh, type SshResult } from "../../lab/ssh";

export { HOSTS };
export type { LabHost };

export const keys = (h: LabHost): LabKeys => labKeys(h.name);

/** A root command on a VM, over the deployment's SSH path; throws with output on failure. */
export function onHost(h: LabHost, command: string): string {
  const res: SshResult = ssh(h, keys(h), `sudo -n bash -c ${JSON.stringify(command)}`);
  if (res.status !== 0) {
    throw new Error(`${h.name}: '${command}' exited ${res.status}\n${res.stdout}\n${res.stderr}`);
  }
  return res.stdout;
}

/** Runs a local program (in the lab's namespace, where this suite runs). */
export function local(
  cmd: string,
  args: string[],
  input?: string,
): { status: number; out: string } {
  const res = spawnSync(cmd, args, { input, encoding: "utf8", timeout: 60_000 });
  return { status: res.status ?? -1, out: `${res.stdout ?? ""}${res.stderr ?? ""}` };
}

/** `kdig` against a server; returns the full output. */
export function dig(server: string, name: string, type: string, ...flags: string[]): string {
  const res = local("kdig", [`@${server}`, name, type, "+timeout=2", "+retry=1", ...flags]);
  if (res.status !== 0) throw new Error(`kdig @${server} ${name} ${type} failed:\n${res.out}`);
  return res.out;
}

/** The answer's rdata lines, as kdig prints them with +short. */
export function answers(server: string, name: string, type: string): string[] {
  return dig(server, name, type, "+short")
    .trim()
    .split("\n")
    .filter((l) => l && !l.startsWith(";"));
}
