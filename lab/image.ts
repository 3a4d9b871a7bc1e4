// The lab's Debian image: debootstrap from Debian's packages. By default it is a stock cloud
// image, as Hetzner's is (cloud-init, OpenSSH, kernel, networking, no mail packages), and
// beside it a lab mirror holds exactly the packages the host installs at first boot, signed
// with a lab key. The fast mode (MAILSTACK_LAB_BAKED=1) bakes the mail packages in instead.
// Both are cached under CACHE_DIR, keyed by the Debian release and the package lists.
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
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

/**
 * Debian packages a lab suite installs on a host for one test (Lynis, by the lynis suite):
 * downloaded with the image, kept beside it, never part of it or of the lab mirror.
 */
const LAB_TOOLS = ["lynis"];

/** Bump when the recipe below changes in a way the package list does not show. */
const RECIPE_VERSION = 5;
/** Bump when the baked image's own steps (deferMailUnits, compileRspamdDatabases) change. */
const BAKED_RECIPE_VERSION = 2;

export interface BaseImage {
  dir: string;
  disk: string;
  kernel: string;
  initrd: string;
  release: string;
  /** Mail packages baked in (fast mode); otherwise the host installs them from `mirror`. */
  baked: boolean;
  /** The lab mirror: a signed Debian repository with the host's packages and dependencies. */
  mirror: string;
  /** Its signing key, ASCII-armoured, as the VMs trust it. */
  mirrorKey: string;
  /** The lab's tools (LAB_TOOLS): their .deb files and any dependency the image lacks. */
  tools: string;
}

/** Where the stock image keeps the lab mirror's key (relative to its root). */
export const MIRROR_KEYRING = "etc/apt/keyrings/mailstack-lab.asc";

/** Fast mode: boot an image with the mail packages baked in (not the path Hetzner takes). */
export const bakedMode = () => process.env.MAILSTACK_LAB_BAKED === "1";

export function releaseOf(image: string): string {
  const release = { "debian-13": "trixie", "debian-12": "bookworm" }[image];
  if (!release) throw new Error(`the lab has no Debian release for image ${image}`);
  return release;
}

export function imagePackages(baked: boolean): string[] {
  return [...new Set([...IMAGE_PACKAGES, ...(baked ? hostPackages({ clamav: true }) : [])])].sort();
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

export function imageKey(release: string, baked: boolean): string {
  const packages = imagePackages(baked);
  const mirrored = baked ? [] : hostPackages({ clamav: true });
  const digest = createHash("sha256")
    .update(
      JSON.stringify({
        release,
        packages,
        mirrored,
        RECIPE_VERSION,
        resolver: SERVICES_IP4,
        ...(baked ? { BAKED_RECIPE_VERSION } : {}),
      }),
    )
    .digest("hex")
    .slice(0, 16);
  return `${release}-${baked ? "baked" : "stock"}-${digest}`;
}

/** Returns the cached image for the release, building it first when there is none. */
export async function baseImage(release: string, baked = bakedMode()): Promise<BaseImage> {
  const dir = join(CACHE_DIR, imageKey(release, baked));
  const image: BaseImage = {
    dir,
    disk: join(dir, "disk.raw"),
    kernel: join(dir, "vmlinuz"),
    initrd: join(dir, "initrd.img"),
    release,
    baked,
    mirror: join(dir, "mirror"),
    mirrorKey: join(dir, "mirror-key.asc"),
    tools: join(dir, "tools"),
  };
  const parts = [
    image.disk,
    image.kernel,
    image.initrd,
    image.tools,
    ...(baked ? [] : [image.mirrorKey]),
  ];
  if (parts.every(existsSync)) {
    info(
      `Debian ${release} ${baked ? "image with baked mail packages" : "stock image and lab mirror"}: cached at ${dir}`,
    );
    return image;
  }
  await step(
    `building the Debian ${release} ${baked ? "image (mail packages baked in)" : "stock image and the lab mirror"} (debootstrap, once per package list)`,
    () => build(image),
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
    [
      "--variant=minbase",
      `--include=${imagePackages(image.baked).join(",")}`,
      image.release,
      root,
      mirror(),
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    },
  );
  const apt = rootApt(root);
  if (image.baked) {
    deferMailUnits(root);
    compileRspamdDatabases(root);
  } else buildMirror(root, work, image.release, apt);
  fetchTools(root, work, apt);

  const write = (path: string, text: string) => writeFileSync(join(root, path), text);
  write("etc/fstab", "/dev/vda / ext4 defaults 0 1\n");
  // The build machine's mirror is unreachable from the lab; the VMs get their apt source
  // (the lab mirror) from the NoCloud vendor-data, as Hetzner's image names Hetzner's mirror.
  rmSync(join(root, "etc/apt/sources.list"), { force: true });
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
  // Images of an older package list or recipe are of no further use; the other mode's
  // current image stays.
  const keep = [image.dir, join(CACHE_DIR, imageKey(image.release, !image.baked))];
  for (const old of readdirSync(CACHE_DIR)) {
    if (
      old.startsWith(`${image.release}-`) &&
      !keep.includes(join(CACHE_DIR, old)) &&
      !old.endsWith(".building")
    ) {
      rmSync(join(CACHE_DIR, old), { recursive: true, force: true });
    }
  }
}

/** Where the baked image keeps the unit links its first boot puts back. */
const DEFERRED_UNITS = "etc/mailstack-lab/deferred-units";

/**
 * On a stock server the first provisioning installs the mail packages with every service
 * enabled and none started, and starts them configured. The baked image has them installed
 * already, so its first boot would start each with Debian's defaults (Rspamd loading its
 * rules twice). The links that would start them are taken out of the image and put back by
 * a one-shot unit during the first boot, after systemd has chosen what that boot starts:
 * the host reaches provisioning as a stock one does, enabled and not running.
 */
function deferMailUnits(root: string): void {
  const units = new Set(
    run("chroot", [root, "dpkg", "-L", ...hostPackages({ clamav: true })], { stdio: "pipe" })
      .split("\n")
      .filter((f) =>
        /^\/(usr\/)?lib\/systemd\/system\/[^/@]+\.(service|socket|timer|path)$/.test(f),
      )
      .map((f) => f.slice(f.lastIndexOf("/") + 1)),
  );
  const etc = join(root, "etc/systemd/system");
  const deferred: string[] = [];
  for (const dir of readdirSync(etc).filter((d) => /\.(wants|requires)$/.test(d))) {
    for (const link of readdirSync(join(etc, dir)).filter((l) => units.has(l))) {
      deferred.push(`${dir}/${link} ${readlinkSync(join(etc, dir, link))}`);
      rmSync(join(etc, dir, link));
    }
  }
  mkdirSync(join(root, "etc/mailstack-lab"), { recursive: true });
  writeFileSync(join(root, DEFERRED_UNITS), `${deferred.join("\n")}\n`);
  writeFileSync(
    join(etc, "mailstack-lab-units.service"),
    [
      "[Unit]",
      "Description=mailstack lab: enable the baked mail units, as installing them would",
      `ConditionPathExists=/${DEFERRED_UNITS}`,
      "",
      "[Service]",
      "Type=oneshot",
      `ExecStart=/bin/sh -c 'while read -r link target; do ln -sfn "$$target" "/etc/systemd/system/$$link"; done </${DEFERRED_UNITS} && rm /${DEFERRED_UNITS}'`,
      "",
      "[Install]",
      "WantedBy=multi-user.target",
      "",
    ].join("\n"),
  );
  symlinkSync(
    "/etc/systemd/system/mailstack-lab-units.service",
    join(etc, "multi-user.target.wants/mailstack-lab-units.service"),
  );
  info(`baked image: ${deferred.length} mail unit links deferred to the first boot`);
}

/**
 * Rspamd compiles its Hyperscan databases on its first start and keeps them in
 * /var/lib/rspamd; the largest, the URL scanner's list of top-level domains, takes half a
 * minute on this machine and 7 to 8 CPU minutes in an emulated VM, before Rspamd listens.
 * The fast mode has them compiled here once, at native speed, by Rspamd itself (Debian's
 * configuration, no network). A database is named by its patterns and the CPU it was built
 * for: the VMs' `-cpu max` offers what this machine offers, and where it does not, Rspamd
 * finds no database of its CPU and compiles its own, as it would without this step. Only
 * the databases stay in the image.
 */
function compileRspamdDatabases(root: string): void {
  const started = Date.now();
  const script = `set -eu
root=$1
mount -t proc proc "$root/proc"
trap 'umount "$root/proc"' EXIT
chroot "$root" install -d -o _rspamd -g _rspamd /run/rspamd
log=$root/var/log/rspamd/rspamd.log
# Its own network namespace: nothing of this machine's is reached or bound.
# Done when the helper has compiled the rules' regular expressions, after the URL list.
unshare --net bash -c '
  root=$1 log=$2
  compiled() { grep -q "regular expressions to the hyperscan tree" "$log" 2>/dev/null; }
  ip link set lo up
  chroot --userspec=_rspamd:_rspamd "$root" /usr/bin/rspamd -c /etc/rspamd/rspamd.conf -f >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    compiled || ! kill -0 "$pid" 2>/dev/null && break
    sleep 1
  done
  kill "$pid" 2>/dev/null
  wait "$pid" || true
  compiled || { tail -n 20 "$log" >&2; exit 1; }
' _ "$root" "$log"
find "$root/var/lib/rspamd" -mindepth 1 ! -name '*.hs' ! -name '*.hsmp' ! -name '*.hsmc' -delete
rm -rf "$root/var/log/rspamd/"* "$root/run/rspamd"
ls "$root/var/lib/rspamd" | wc -l
`;
  const n = run("bash", ["-c", script, "_", root], { stdio: ["ignore", "pipe", "pipe"] }).trim();
  info(
    `baked image: ${n} Rspamd Hyperscan databases compiled in ${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
}

type Apt = (...args: string[]) => string;

/** apt-get inside the bootstrapped root, with this machine's resolver and fresh package lists. */
function rootApt(root: string): Apt {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const apt = (...args: string[]) =>
    run("chroot", [root, "apt-get", "-q", "-y", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env,
    });
  writeFileSync(join(root, "etc/resolv.conf"), readFileSync("/etc/resolv.conf"));
  apt("update");
  return apt;
}

/** Downloads the packages and what the root lacks of their dependencies into `dir`. */
function download(root: string, apt: Apt, packages: string[], dir: string): string[] {
  apt("install", "--download-only", "--no-install-recommends", ...packages);
  const archives = join(root, "var/cache/apt/archives");
  mkdirSync(dir, { recursive: true });
  const debs = readdirSync(archives).filter((f) => f.endsWith(".deb"));
  for (const deb of debs) renameSync(join(archives, deb), join(dir, deb));
  return debs;
}

function fetchTools(root: string, work: string, apt: Apt): void {
  // debootstrap leaves its own packages in apt's archive; the image needs none of them.
  apt("clean");
  const debs = download(root, apt, LAB_TOOLS, join(work, "tools"));
  info(`lab tools: ${debs.join(", ")}`);
}

/**
 * The lab mirror: the packages the host installs at first boot, with every dependency the
 * stock image lacks, resolved by apt inside the freshly bootstrapped root (so exactly the
 * set a stock VM needs), indexed as a Debian repository and signed with a lab key.
 */
function buildMirror(root: string, work: string, release: string, apt: Apt): void {
  const debs = download(root, apt, hostPackages({ clamav: true }), join(work, "mirror", "pool"));
  info(`lab mirror: ${debs.length} packages`);

  const mirrorDir = join(work, "mirror");
  const dist = join(mirrorDir, "dists", release);
  const binary = join(dist, "main", "binary-amd64");
  mkdirSync(binary, { recursive: true });
  const packages = run("apt-ftparchive", ["packages", "pool"], { cwd: mirrorDir, stdio: "pipe" });
  writeFileSync(join(binary, "Packages"), packages);
  const release_ = run(
    "apt-ftparchive",
    [
      "-o",
      "APT::FTPArchive::Release::Origin=mailstack-lab",
      "-o",
      `APT::FTPArchive::Release::Suite=${release}`,
      "-o",
      `APT::FTPArchive::Release::Codename=${release}`,
      "-o",
      "APT::FTPArchive::Release::Components=main",
      "-o",
      "APT::FTPArchive::Release::Architectures=amd64",
      "release",
      ".",
    ],
    { cwd: dist, stdio: "pipe" },
  );
  writeFileSync(join(dist, "Release"), release_);

  // The lab's signing key lives beside the mirror, never in the directory it serves.
  const gnupg = join(work, "mirror-gnupg");
  mkdirSync(gnupg, { recursive: true, mode: 0o700 });
  const gpg = (...args: string[]) =>
    run(
      "gpg",
      [
        "--homedir",
        gnupg,
        "--batch",
        "--yes",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        ...args,
      ],
      {
        stdio: "pipe",
      },
    );
  gpg("--quick-gen-key", "mailstack lab mirror <mirror@lab.example>", "ed25519", "sign", "never");
  const key = gpg("--armor", "--export");
  writeFileSync(join(work, "mirror-key.asc"), key);
  // The image trusts the mirror's key, as a Debian image trusts Debian's archive key.
  mkdirSync(join(root, "etc/apt/keyrings"), { recursive: true });
  writeFileSync(join(root, MIRROR_KEYRING), key);
  gpg("--clearsign", "--output", join(dist, "InRelease"), join(dist, "Release"));
  apt("clean");
}
