// The lab's Debian image: debootstrap from Debian's packages, with the mail packages baked
// in so a VM boots and runs cloud-init with no network. Cached under CACHE_DIR, keyed by the
// Debian release and the package list.
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { hostPackages } from "../cloud-init/packages";
import { info, step } from "./log";
import { run } from "./run";
import { CACHE_DIR, SERVICES_IP4 } from "./settings";

/** What turns a Debian root into a bootable cloud image (see LAB-NOTES). */
const IMAGE_PACKAGES = [
  "linux-image-cloud-amd64",
  "systemd-sysv",
  "udev",
  // Cloud images have it; without it systemctl as a plain user (cloud-init status) fails.
  "dbus",
  "cloud-init",
  // cloud-init's dependencies fail to configure without it.
  "python3-cffi-backend",
  "ifupdown",
  "netbase",
  "iproute2",
  "openssh-server",
  "sudo",
  "openssl",
  "procps",
  "kmod",
  "e2fsprogs",
];

/** Bump when the recipe below changes in a way the package list does not show. */
const RECIPE_VERSION = 2;

export interface BaseImage {
  dir: string;
  disk: string;
  kernel: string;
  initrd: string;
  release: string;
}

export function releaseOf(image: string): string {
  const release = { "debian-13": "trixie", "debian-12": "bookworm" }[image];
  if (!release) throw new Error(`the lab has no Debian release for image ${image}`);
  return release;
}

export function imagePackages(): string[] {
  return [...new Set([...IMAGE_PACKAGES, ...hostPackages({ clamav: true })])].sort();
}

/** The Debian mirror this machine's apt uses (deb822 sources first, then sources.list). */
function mirror(): string {
  const dir = "/etc/apt/sources.list.d";
  for (const f of existsSync(dir) ? readdirSync(dir) : []) {
    const m = readFileSync(join(dir, f), "utf8").match(/^URIs:\s*(\S+\/debian)\/?\s*$/m);
    if (m) return m[1];
  }
  const list = existsSync("/etc/apt/sources.list")
    ? readFileSync("/etc/apt/sources.list", "utf8")
    : "";
  return list.match(/^deb\s+(\S+\/debian)\/?\s/m)?.[1] ?? "http://deb.debian.org/debian";
}

export function imageKey(release: string): string {
  const packages = imagePackages();
  const digest = createHash("sha256")
    .update(JSON.stringify({ release, packages, RECIPE_VERSION, resolver: SERVICES_IP4 }))
    .digest("hex")
    .slice(0, 16);
  return `${release}-${digest}`;
}

/** Returns the cached image for the release, building it first when there is none. */
export async function baseImage(release: string): Promise<BaseImage> {
  const dir = join(CACHE_DIR, imageKey(release));
  const image: BaseImage = {
    dir,
    disk: join(dir, "disk.raw"),
    kernel: join(dir, "vmlinuz"),
    initrd: join(dir, "initrd.img"),
    release,
  };
  if ([image.disk, image.kernel, image.initrd].every(existsSync)) {
    info(`Debian ${release} image: cached at ${dir}`);
    return image;
  }
  await step(`building the Debian ${release} image (debootstrap, once per package list)`, () =>
    build(image),
  );
  return image;
}

function build(image: BaseImage): void {
  const work = `${image.dir}.building`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const root = join(work, "root");
  run(
    "debootstrap",
    ["--variant=minbase", `--include=${imagePackages().join(",")}`, image.release, root, mirror()],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    },
  );

  const write = (path: string, text: string) => writeFileSync(join(root, path), text);
  write("etc/fstab", "/dev/vda / ext4 defaults 0 1\n");
  // NoCloud from the seed disk; no network datasource is probed.
  write("etc/cloud/cloud.cfg.d/90-mailstack-lab.cfg", "datasource_list: [NoCloud, None]\n");
  // The lab resolver; the lab has no other.
  rmSync(join(root, "etc/resolv.conf"), { force: true });
  write("etc/resolv.conf", `nameserver ${SERVICES_IP4}\n`);
  // Each VM makes its own identity on first boot.
  write("etc/machine-id", "");
  rmSync(join(root, "var/lib/dbus/machine-id"), { force: true });
  for (const f of readdirSync(join(root, "etc/ssh"))) {
    if (f.startsWith("ssh_host_")) rmSync(join(root, "etc/ssh", f));
  }
  run("chroot", [root, "apt-get", "clean"]);

  const boot = readdirSync(join(root, "boot"));
  const kernel = boot.find((f) => f.startsWith("vmlinuz-"));
  const initrd = boot.find((f) => f.startsWith("initrd.img-"));
  if (!kernel || !initrd)
    throw new Error(`no kernel or initrd in ${root}/boot: ${boot.join(", ")}`);
  run("cp", [join(root, "boot", kernel), join(work, "vmlinuz")]);
  run("cp", [join(root, "boot", initrd), join(work, "initrd.img")]);
  run("mkfs.ext4", ["-q", "-F", "-L", "root", "-d", root, join(work, "disk.raw"), "6G"]);
  rmSync(root, { recursive: true, force: true });
  rmSync(image.dir, { recursive: true, force: true });
  renameSync(work, image.dir);
  // Images of an older package list or recipe are of no further use.
  for (const old of readdirSync(CACHE_DIR)) {
    if (
      old.startsWith(`${image.release}-`) &&
      join(CACHE_DIR, old) !== image.dir &&
      !old.endsWith(".building")
    ) {
      rmSync(join(CACHE_DIR, old), { recursive: true, force: true });
    }
  }
}
