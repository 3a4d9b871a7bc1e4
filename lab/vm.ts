// A lab mail host: the stack's own rendered userData on a NoCloud seed, a copy-on-write disk
// over the cached image, a pre-formatted ext4 mail volume (as Hetzner hands it over), and
// qemu on the lab segment. KVM when it works, TCG otherwise.
import { createHash } from "node:crypto";
import { connect } from "node:net";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { renderCloudInit, type HostSpec } from "../cloud-init/render";
import { MIRROR_KEYRING, type BaseImage } from "./image";
import type { LabKeys } from "./keys";
import { info, tail } from "./log";
import { tapName } from "./net";
import { CommandError, daemon, pidAlive, run, sleep } from "./run";
import {
  CACHE_DIR,
  NETNS,
  PREFIX4,
  PREFIX6,
  SERVICES_IP4,
  STATE_DIR,
  type LabHost,
} from "./settings";

export const hostDir = (h: LabHost) => join(STATE_DIR, "hosts", h.name);
export const consoleLog = (h: LabHost) => join(hostDir(h), "console.log");
const pidFile = (h: LabHost) => join(hostDir(h), "qemu.pid");
const qmpSocket = (h: LabHost) => join(hostDir(h), "qmp.sock");
/** The mail volume's backing file, as the provider holds it. */
export const volumeFile = (h: LabHost) => join(hostDir(h), "volume.raw");

/** What the lab appends to a host's userData, so a replacement boots as a new server. */
export const userDataNoteFile = (h: LabHost) => join(hostDir(h), "user-data.note");
/** The root disk: a copy-on-write layer over the image, the server's own. */
export const rootDisk = (h: LabHost) => join(hostDir(h), "disk.qcow2");

/** The mail volume's device inside the VM: a virtio disk with a fixed serial. */
export const volumeDevice = (h: LabHost) => `/dev/disk/by-id/virtio-mailvol-${h.name}`;

/** The HostSpec the lab renders: the same fields MailServer fills from Pulumi outputs. */
export function labHostSpec(h: LabHost, keys: LabKeys): HostSpec {
  return {
    hostname: h.config.hostname,
    fqdn: h.config.mailHost,
    deployPublicKey: keys.deploy.publicOpenssh,
    hostKey: {
      privateOpenssh: keys.sshHost.privateOpenssh,
      publicOpenssh: keys.sshHost.publicOpenssh,
    },
    volumeDevice: volumeDevice(h),
  };
}

/** Where VMs find the lab mirror: on the services address, inside the namespace. */
export const MIRROR_PORT = 8081;

/**
 * The provider's part of the seed: the apt source (on Hetzner, Hetzner's mirror; here the
 * lab's, whose key the image trusts as a Debian image trusts Debian's). Vendor-data, so the
 * user-data stays byte for byte what Pulumi renders.
 */
export function vendorData(image: BaseImage): string {
  return `#cloud-config\n${stringify({
    apt: {
      preserve_sources_list: false,
      sources_list: `deb [signed-by=/${MIRROR_KEYRING}] http://${SERVICES_IP4}:${MIRROR_PORT}/ ${image.release} main\n`,
    },
  })}`;
}

/** What a VM boots with: a mail host's keys (its stack's userData), or userData as given. */
export type Seed = LabKeys | { userData: string };

function writeSeed(h: LabHost, seed: Seed, image: BaseImage): string {
  const dir = join(hostDir(h), "seed");
  mkdirSync(dir, { recursive: true });
  // A replacement server's userData differs from its predecessor's (replaceHost).
  const note = existsSync(userDataNoteFile(h)) ? readFileSync(userDataNoteFile(h), "utf8") : "";
  const userData =
    "userData" in seed ? seed.userData : renderCloudInit(labHostSpec(h, seed)) + note;
  writeFileSync(join(dir, "user-data"), userData, { mode: 0o600 });
  const seedFiles = ["user-data", "meta-data", "network-config"];
  if (!image.baked) {
    writeFileSync(join(dir, "vendor-data"), vendorData(image));
    seedFiles.push("vendor-data");
  }
  const instanceId = `${h.name}-${createHash("sha256").update(userData).digest("hex").slice(0, 12)}`;
  writeFileSync(
    join(dir, "meta-data"),
    stringify({ "instance-id": instanceId, "local-hostname": h.config.hostname }),
  );
  // The part Hetzner's datasource provides: static addresses on the public interface.
  writeFileSync(
    join(dir, "network-config"),
    stringify({
      version: 2,
      ethernets: {
        eth0: {
          match: { macaddress: h.mac },
          "set-name": "eth0",
          addresses: [`${h.ipv4}/${PREFIX4}`, `${h.ipv6}/${PREFIX6}`],
        },
      },
    }),
  );
  const iso = join(hostDir(h), "seed.iso");
  run("genisoimage", [
    "-quiet",
    "-output",
    iso,
    "-volid",
    "cidata",
    "-joliet",
    "-rock",
    ...seedFiles.map((f) => join(dir, f)),
  ]);
  return iso;
}

function qemuArgs(h: LabHost, image: BaseImage, iso: string, accel: "kvm" | "tcg"): string[] {
  return [
    "-name",
    h.name,
    "-machine",
    "q35",
    ...(accel === "kvm"
      ? ["-accel", "kvm", "-cpu", "host"]
      : ["-accel", "tcg,thread=multi", "-cpu", "max"]),
    // Under TCG every vCPU is a host thread: two VMs with one each keep this 2-core machine
    // busy without oversubscribing it (measured: lab up in 235 s instead of 290 s).
    "-smp",
    process.env.MAILSTACK_LAB_SMP ?? (accel === "kvm" ? "2" : "1"),
    "-m",
    String(h.memoryMb),
    "-kernel",
    image.kernel,
    "-initrd",
    image.initrd,
    "-append",
    "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1",
    // Disks in a fixed order, so the root disk is /dev/vda as the image's fstab says.
    "-drive",
    `file=${rootDisk(h)},if=none,id=root,format=qcow2`,
    "-device",
    "virtio-blk-pci,drive=root",
    "-drive",
    `file=${volumeFile(h)},if=none,id=mailvol,format=raw`,
    "-device",
    `virtio-blk-pci,drive=mailvol,serial=mailvol-${h.name}`,
    "-drive",
    `file=${iso},if=none,id=seed,format=raw,readonly=on`,
    "-device",
    "virtio-blk-pci,drive=seed",
    "-netdev",
    `tap,id=net0,ifname=${tapName(h.name)},script=no,downscript=no`,
    "-device",
    `virtio-net-pci,netdev=net0,mac=${h.mac}`,
    "-display",
    "none",
    "-serial",
    `file:${consoleLog(h)}`,
    // The provider's side of the volume: the lab grows it in place through QMP.
    "-qmp",
    `unix:${qmpSocket(h)},server=on,wait=off`,
    "-no-reboot",
  ];
}

/** Which accelerator works here: KVM if a VM survives on it, else TCG. Remembered per machine. */
function accelFile(): string {
  return join(CACHE_DIR, "accel");
}

/**
 * Creates the host's disks and seed, and boots it. Returns when the VM that runs was powered
 * on (Date.now()): a first attempt on KVM that did not survive is not part of its boot.
 */
export async function bootHost(h: LabHost, image: BaseImage, seed: Seed): Promise<number> {
  const dir = hostDir(h);
  mkdirSync(dir, { recursive: true });
  const disk = rootDisk(h);
  if (!existsSync(disk))
    run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", image.disk, disk]);
  const volume = volumeFile(h);
  // Hetzner formats a new volume as ext4; the host itself never formats it.
  if (!existsSync(volume)) run("mkfs.ext4", ["-q", "-F", "-L", "mail", volume, "1G"]);
  const iso = writeSeed(h, seed, image);

  const forced = process.env.MAILSTACK_LAB_ACCEL as "kvm" | "tcg" | undefined;
  const remembered = existsSync(accelFile())
    ? (readFileSync(accelFile(), "utf8").trim() as "kvm" | "tcg")
    : undefined;
  const kvmUsable = existsSync("/dev/kvm");
  let accel: "kvm" | "tcg" = forced ?? remembered ?? (kvmUsable ? "kvm" : "tcg");
  let poweredOn: number;
  for (;;) {
    rmSync(consoleLog(h), { force: true });
    poweredOn = Date.now();
    daemon(
      "ip",
      ["netns", "exec", NETNS, "qemu-system-x86_64", ...qemuArgs(h, image, iso, accel)],
      join(dir, "qemu.log"),
      pidFile(h),
    );
    if (accel === "tcg" || forced || remembered) break;
    // KVM can be present yet unusable (nested virtualisation): such a guest dies at once.
    await sleep(15_000);
    const log = existsSync(join(dir, "qemu.log"))
      ? readFileSync(join(dir, "qemu.log"), "utf8")
      : "";
    if (pidAlive(pidFile(h)) && !/KVM internal error|emulation failure/.test(log)) break;
    stopHost(h);
    info(`${h.name}: KVM is present but does not run this guest; using TCG (software emulation)`);
    accel = "tcg";
    writeFileSync(accelFile(), "tcg\n");
  }
  if (!forced) writeFileSync(accelFile(), `${accel}\n`);
  info(
    `${h.name}: booting with ${accel.toUpperCase()} at ${h.ipv4} / ${h.ipv6} (console: ${consoleLog(h)})`,
  );
  return poweredOn;
}

export function hostRunning(h: LabHost): boolean {
  return pidAlive(pidFile(h)) !== undefined;
}

export function stopHost(h: LabHost): void {
  const pid = pidAlive(pidFile(h));
  if (pid) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Raised with the console's last lines when a VM died or never came up. */
export function hostFailure(h: LabHost, why: string): CommandError {
  return new CommandError(
    `${h.name}: ${why}\n${tail(consoleLog(h), 60)}\n${tail(join(hostDir(h), "qemu.log"), 10)}`,
  );
}

/**
 * Grows the running host's mail volume to `bytes`, as Hetzner resizes a volume in place: the
 * guest sees a bigger disk at once; its file system is the host's business.
 */
export function resizeVolume(h: LabHost, bytes: number): Promise<void> {
  const commands = [
    { execute: "qmp_capabilities" },
    { execute: "block_resize", arguments: { device: "mailvol", size: bytes } },
  ];
  return new Promise((resolve, reject) => {
    const socket = connect(qmpSocket(h));
    let buffered = "";
    let answered = 0;
    socket.setTimeout(30_000, () => socket.destroy(new Error(`${h.name}: QMP did not answer`)));
    socket.on("error", reject);
    socket.on("data", (chunk) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const msg = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
        buffered = buffered.slice(nl + 1);
        if (msg.error) {
          socket.destroy();
          reject(new Error(`${h.name}: QMP refused: ${JSON.stringify(msg.error)}`));
          return;
        }
        // The greeting, then one reply per command; events come in between.
        if (msg.QMP || "return" in msg) {
          if ("return" in msg) answered++;
          if (answered === commands.length) {
            socket.end();
            resolve();
            return;
          }
          socket.write(`${JSON.stringify(commands[answered])}\n`);
        }
      }
    });
  });
}
