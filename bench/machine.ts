// The machine a benchmark ran on: absolute times mean nothing without it.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { CACHE_DIR } from "../lab/settings";

export interface Machine {
  cpus: number;
  cpuModel: string;
  ramGiB: number;
  /** How the lab's VMs run here: KVM, or TCG (software emulation); unknown before a lab ran. */
  accel: "kvm" | "tcg" | "unknown";
  qemu: string;
  node: string;
  kernel: string;
}

export function machine(): Machine {
  const accelFile = join(CACHE_DIR, "accel");
  const accel = existsSync(accelFile)
    ? (readFileSync(accelFile, "utf8").trim() as "kvm" | "tcg")
    : "unknown";
  const qemu = spawnSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" });
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    accel,
    qemu: qemu.status === 0 ? qemu.stdout.split("\n")[0] : "not installed",
    node: process.version,
    kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
  };
}

export const describeMachine = (m: Machine) =>
  `${m.cpus} × ${m.cpuModel}, ${m.ramGiB} GiB, VMs under ${m.accel.toUpperCase()}, ${m.qemu}, Linux ${m.kernel}, Node ${m.node}`;

/** Where a benchmark's figures go: bench/results/<kind>-<UTC time>.json. */
export function resultsFile(kind: string): string {
  const dir = join(__dirname, "results");
  mkdirSync(dir, { recursive: true });
  return join(dir, `${kind}-${new Date().toISOString().slice(0, 19).replace(/:/g, "")}.json`);
}
