// The lab as a whole: bring it up, tear it down, say what is running.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { clientSettings } from "../components/client-settings";
import type { MailStackConfig } from "../components/config";
import { provisionCommand, renderBundle, stackHostFiles } from "../components/host-files";
import { labAcme, startAcme } from "./acme";
import { startDns, DNS_DIR } from "./dns";
import { baseImage, releaseOf } from "./image";
import { keyDir, labKeys, type LabKeys } from "./keys";
import { info, step, tail } from "./log";
import { createNetwork, netnsExists, removeNetwork } from "./net";
import { CommandError, pidAlive, run, waitFor } from "./run";
import { HOSTS, NETNS, NS_IP4, SERVICES_IP4, STATE_DIR, type LabHost } from "./settings";
import { sshAsync } from "./ssh";
import { bootHost, consoleLog, hostFailure, hostRunning, stopHost } from "./vm";

/** How long a host may take from power-on to cloud-init done, under TCG on 2 cores. */
const BOOT_TIMEOUT_MS = 15 * 60_000;

/** The lab's Debian packages, by the command each provides. */
const HOST_TOOLS: Record<string, string> = {
  debootstrap: "debootstrap",
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  genisoimage: "genisoimage",
  knotd: "knot",
  kdig: "knot-dnsutils",
  unbound: "unbound",
  pebble: "pebble",
  ssh: "openssh-client",
  ip: "iproute2",
  "mkfs.ext4": "e2fsprogs",
  openssl: "openssl",
};

/** The config a lab host runs: the lab's admin key in place of a person's. */
function hostConfig(h: LabHost, keys: LabKeys): MailStackConfig {
  return { ...h.config, sshPublicKeys: [keys.admin.publicOpenssh.trim()] };
}

const keysOf = (h: LabHost) => labKeys(h.name);

function which(cmd: string): boolean {
  return ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"].some((d) =>
    existsSync(join(d, cmd)),
  );
}

/** Root, a tun device and the packages; installs what is missing when it can. */
export function checkPrerequisites(): void {
  const missing = [
    ...new Set(
      Object.entries(HOST_TOOLS)
        .filter(([cmd]) => !which(cmd))
        .map(([, pkg]) => pkg),
    ),
  ];
  const isRoot = process.getuid?.() === 0;
  if (!isRoot) {
    const hint = missing.length
      ? `\nIt also needs: apt-get install --no-install-recommends ${missing.join(" ")}`
      : "";
    throw new CommandError(
      `the lab needs root (network namespaces, taps, debootstrap): run it with sudo.${hint}`,
    );
  }
  if (!existsSync("/dev/net/tun")) {
    throw new CommandError(
      "the lab needs /dev/net/tun for the VMs' network (modprobe tun, or a container with it)",
    );
  }
  if (missing.length) {
    info(`installing ${missing.join(" ")}`);
    run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], {
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      stdio: ["ignore", "pipe", "pipe"],
    });
  }
}

/** Sends the provisioning script and the host's files, exactly as Pulumi's remote command does. */
export async function provision(h: LabHost): Promise<string> {
  const keys = keysOf(h);
  const files = stackHostFiles(
    hostConfig(h, keys),
    {
      deployPublicKey: keys.deploy.publicOpenssh,
      dkimPrivateKeyPem: keys.dkim.privatePem,
      tlsPrivateKeyPem: keys.tls.privatePem,
    },
    labAcme(h.config.acmeEmail),
  );
  const res = await sshAsync(h, keys, provisionCommand(), {
    input: renderBundle(files),
    timeoutMs: BOOT_TIMEOUT_MS,
  });
  if (res.status !== 0) {
    throw hostFailure(h, `provisioning failed (exit ${res.status}):\n${res.stdout}${res.stderr}`);
  }
  return res.stderr;
}

async function waitForSsh(h: LabHost): Promise<void> {
  const keys = keysOf(h);
  await waitFor(
    `${h.name} to accept SSH`,
    BOOT_TIMEOUT_MS,
    async () => {
      if (!hostRunning(h)) throw hostFailure(h, "the VM stopped");
      return (await sshAsync(h, keys, "true", { timeoutMs: 20_000 })).status === 0
        ? true
        : undefined;
    },
    () => tail(consoleLog(h), 60),
    5000,
  );
}

export function passwords(h: LabHost): Record<string, string> {
  const file = join(keyDir(h.name), "passwords.json");
  if (!existsSync(file)) {
    const pw = Object.fromEntries(
      h.config.users.map((u) => [u.address, randomBytes(18).toString("base64url")]),
    );
    writeFileSync(file, JSON.stringify(pw, null, 2), { mode: 0o600 });
  }
  return JSON.parse(readFileSync(file, "utf8"));
}

function isUp(): boolean {
  return netnsExists() && HOSTS.some(hostRunning);
}

export async function up(): Promise<void> {
  const started = Date.now();
  checkPrerequisites();
  if (isUp()) {
    info("the lab is already running; `npm run lab -- down` removes it");
    summary();
    return;
  }
  if (netnsExists() || existsSync(STATE_DIR)) {
    info("cleaning up what an earlier run left behind");
    down();
  }
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  const imageStart = Date.now();
  const image = await baseImage(releaseOf(HOSTS[0].config.image));
  const imageSeconds = (Date.now() - imageStart) / 1000;
  for (const h of HOSTS) keysOf(h);
  await step("network namespace and bridge", () => createNetwork(HOSTS.map((h) => h.name)));
  await step("DNS: knot (signed zones from the record builder) and unbound (validating)", () =>
    startDns(HOSTS, keysOf),
  );
  await step("ACME CA (pebble)", startAcme);
  for (const h of HOSTS) await step(`${h.name}: boot`, () => bootHost(h, image, keysOf(h)));
  const bootSeconds: Record<string, number> = {};
  await Promise.all(
    HOSTS.map((h) =>
      step(`${h.name}: boot to cloud-init done`, async () => {
        const bootStart = Date.now();
        await waitForSsh(h);
        const res = await sshAsync(
          h,
          keysOf(h),
          "sudo -n cloud-init status --wait >/dev/null; cloud-init status --long",
          {
            timeoutMs: BOOT_TIMEOUT_MS,
          },
        );
        bootSeconds[h.name] = (Date.now() - bootStart) / 1000;
        info(`${h.name}: ${res.stdout.trim().split("\n").join("; ")}`);
      }),
    ),
  );
  await Promise.all(
    HOSTS.map((h) =>
      step(`${h.name}: provisioning over SSH (keys, firewall, certificate)`, async () => {
        for (const line of (await provision(h)).trim().split("\n")) info(`${h.name}: ${line}`);
      }),
    ),
  );
  const upSeconds = (Date.now() - started) / 1000;
  writeFileSync(
    join(STATE_DIR, "timings.json"),
    JSON.stringify({ imageSeconds, bootSeconds, upSeconds }),
  );
  info(`lab up in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  summary();
}

function summary(): void {
  const lines: string[] = ["", "mailstack lab"];
  for (const h of HOSTS) {
    const c = h.config;
    const client = clientSettings(c.mailHost);
    lines.push(
      "",
      `  ${c.mailHost}  ${h.ipv4}  ${h.ipv6}  ${hostRunning(h) ? "running" : "STOPPED"}`,
      `    ssh:      sudo ip netns exec ${NETNS} ssh -i ${join(keyDir(h.name), "admin_key")} admin@${h.ipv4}`,
      `    console:  ${consoleLog(h)}`,
      `    mail:     IMAP ${client.incoming.host}:${client.incoming.port} (SSL/TLS), SMTP ${client.outgoing.port} (SSL/TLS) or ${client.outgoingAlternative.port} (STARTTLS); user name = address`,
    );
    for (const [address, pw] of Object.entries(passwords(h)))
      lines.push(`    user:     ${address}  password ${pw}`);
  }
  lines.push(
    "",
    `  DNS: resolver ${SERVICES_IP4} (validating), authoritative ${NS_IP4}; zones in ${join(DNS_DIR, "zones")}`,
    `  The lab lives in network namespace ${NETNS}: run clients there (sudo ip netns exec ${NETNS} ...).`,
    `  remove it all: npm run lab -- down`,
    "",
  );
  process.stdout.write(lines.join("\n"));
}

/** Stops everything the lab started, including what a crashed run left. */
export function down(): void {
  for (const h of HOSTS) stopHost(h);
  for (const pidFile of findPidFiles(STATE_DIR)) {
    const pid = pidAlive(pidFile);
    if (pid) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // gone
      }
    }
  }
  // Anything else still holding files of the lab (a daemon whose pid file was lost).
  try {
    run("pkill", ["-KILL", "-f", STATE_DIR], { stdio: "pipe" });
  } catch {
    // nothing matched
  }
  removeNetwork();
  rmSync(STATE_DIR, { recursive: true, force: true });
  info(`lab removed (namespace ${NETNS}, processes, ${STATE_DIR})`);
}

function findPidFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findPidFiles(p));
    else if (e.name.endsWith(".pid")) out.push(p);
  }
  return out;
}

async function main(): Promise<void> {
  const cmd = process.argv[2] ?? "up";
  if (cmd !== "up" && process.getuid?.() !== 0) {
    throw new CommandError(`the lab belongs to root: run it with sudo (npm run lab -- ${cmd})`);
  }
  if (cmd === "up") await up();
  else if (cmd === "down") down();
  else if (cmd === "status") {
    if (isUp()) summary();
    else info("the lab is not running");
  } else throw new CommandError(`unknown command ${cmd}: use up, down or status`);
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`\nlab: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
