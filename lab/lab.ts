// The lab as a whole: bring it up, tear it down, say what is running.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { clientSettings } from "../components/client-settings";
import type { MailStackConfig } from "../components/config";
import {
  PROVISION_REQUEST,
  provisionInput,
  shellQuote,
  stackHostFiles,
  type HostFile,
} from "../components/host-files";
import { labAcme, startAcme } from "./acme";
import { labBackup, startBucket } from "./bucket";
import { startWeb } from "./web";
import { hostResolverLabConfig, startDns, DNS_DIR } from "./dns";
import { baseImage, releaseOf, type BaseImage } from "./image";
import { keyDir, labKeys, type LabKeys } from "./keys";
import { info, step, tail } from "./log";
import { createNetwork, netnsExists, removeNetwork } from "./net";
import { CommandError, daemon, pidAlive, run, runIn, waitFor } from "./run";
import {
  HOSTS,
  NETNS,
  NS_IP4,
  SERVICES_IP4,
  SERVICES_IP6,
  STATE_DIR,
  type LabHost,
} from "./settings";
import { ssh, sshAsync, type SshResult } from "./ssh";
import {
  bootHost,
  consoleLog,
  hostDir,
  hostFailure,
  hostRunning,
  MIRROR_PORT,
  rootDisk,
  stopHost,
  userDataNoteFile,
} from "./vm";

/** How long a host may take from power-on to cloud-init done (four minutes on a slow machine). */
const BOOT_TIMEOUT_MS = 45 * 60_000;

/**
 * How long a provisioning may take. From a stock image it installs the mail packages: about
 * 13 minutes for alpha, with ClamAV, under TCG on a fast 2-core machine, and 40 to more than
 * 45 on a slow one (2 cores without KVM, November 2026). The limit is there to stop a hang.
 */
const PROVISION_TIMEOUT_MS = 90 * 60_000;

/** The lab's Debian packages, by the command each provides. */
const HOST_TOOLS: Record<string, string> = {
  debootstrap: "debootstrap",
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  genisoimage: "genisoimage",
  knotd: "knot",
  kdig: "knot-dnsutils",
  "apt-ftparchive": "apt-utils",
  gpg: "gnupg",
  // The Web Key Directory test looks keys up as gpg does, through dirmngr.
  dirmngr: "dirmngr",
  prometheus: "prometheus",
  "update-ca-certificates": "ca-certificates",
  python3: "python3",
  unbound: "unbound",
  pebble: "pebble",
  ssh: "openssh-client",
  ip: "iproute2",
  "mkfs.ext4": "e2fsprogs",
  openssl: "openssl",
  // The outside audit's port scan of the hosts (tests/lab/audit.test.ts).
  nmap: "nmap",
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

/**
 * The files a host's provisioning installs, as its stack would send them; with `change`,
 * as a stack with those settings changed would (a test turning adminMfa on).
 */
export async function labHostFilesOf(
  h: LabHost,
  change: Partial<MailStackConfig> = {},
): Promise<HostFile[]> {
  const keys = keysOf(h);
  return stackHostFiles(
    { ...hostConfig(h, keys), ...change },
    {
      dkimPrivateKeyPem: keys.dkim.privatePem,
      tlsPrivateKeyPem: keys.tls.privatePem,
      mailCrypt: {
        privateKeyPem: keys.mailCrypt.privatePem,
        publicKeyPem: keys.mailCrypt.publicPem,
      },
      ipv4: h.ipv4,
      ipv6: h.ipv6,
      passwords: passwords(h),
      appPasswords: appPasswords(h),
      rspamdControllerPassword: labSecret(h, "rspamd-controller"),
      // Used while a test turns adminMfa totp on.
      adminTotpSecretHex: labAdminTotpSecret(h),
      acme: labAcme(h),
      backup: labBackup(h, labSecret(h, "backup")),
      extraFiles: labHostFiles(h),
    },
  );
}

/**
 * Runs provisioning with these files, as the deployment: its request and its standard input,
 * exactly as Pulumi's remote command sends them.
 */
export function provisionWith(h: LabHost, files: HostFile[]): Promise<SshResult> {
  return sshAsync(h, keysOf(h), PROVISION_REQUEST, {
    account: "deploy",
    input: provisionInput(files),
    timeoutMs: PROVISION_TIMEOUT_MS,
  });
}

/** Provisions a host with its stack's files. */
export async function provision(h: LabHost): Promise<string> {
  const res = await provisionWith(h, await labHostFilesOf(h));
  if (res.status !== 0) {
    throw hostFailure(h, `provisioning failed (exit ${res.status}):\n${res.stdout}${res.stderr}`);
  }
  return res.stderr;
}

/** A request to mailstack-deploy, as the deployment key sends it (`attach`, `detach`...). */
export function deployRequest(
  h: LabHost,
  request: string,
  timeoutMs = 300_000,
): Promise<SshResult> {
  return sshAsync(h, keysOf(h), request, { account: "deploy", timeoutMs });
}

/** The deployment's `status` request: the first boot as it stands. */
export function deployStatus(h: LabHost): Promise<SshResult> {
  return deployRequest(h, "status", 60_000);
}

async function waitForSsh(h: LabHost): Promise<void> {
  await waitFor(
    `${h.name} to accept SSH`,
    BOOT_TIMEOUT_MS,
    async () => {
      if (!hostRunning(h)) throw hostFailure(h, "the VM stopped");
      return (await deployStatus(h)).status === 0 ? true : undefined;
    },
    () => tail(consoleLog(h), 60),
    5000,
  );
}

/** A lab stand-in for a generated stack secret, kept so the lab keeps one identity. */
export function labSecret(
  h: LabHost,
  name: string,
  make = () => randomBytes(18).toString("base64url"),
): string {
  const file = join(keyDir(h.name), `${name}.secret`);
  if (!existsSync(file)) writeFileSync(file, make(), { mode: 0o600 });
  return readFileSync(file, "utf8");
}

/** The admin account's TOTP secret (20 bytes, hex), as the stack's RandomBytes makes it. */
export const labAdminTotpSecret = (h: LabHost) =>
  labSecret(h, "admin-totp", () => randomBytes(20).toString("hex"));

/** The EICAR test file's MD5 and size: ClamAV's hash signature format (.hdb). */
const EICAR_HDB = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n";

/**
 * What only the lab adds to a host: its resolver's upstream and trust anchors, a signature
 * database that detects EICAR (freshclam has no network here), and Fail2Ban and sshd's own
 * per-source penalties leaving the lab's control address alone, as an operator exempts their
 * own deployment host: the suite provokes failed logins from it on purpose (and bans a separate
 * address in its ban test).
 */
function labHostFiles(h: LabHost): HostFile[] {
  const files: HostFile[] = [
    {
      path: "/etc/unbound/unbound.conf.d/mailstack-lab.conf",
      mode: "0644",
      owner: "root",
      group: "root",
      content: hostResolverLabConfig(),
    },
    {
      path: "/etc/fail2ban/jail.d/mailstack-lab.local",
      mode: "0644",
      owner: "root",
      group: "root",
      content: `# The lab only: its control address is never banned.\n[DEFAULT]\nignoreip = 127.0.0.0/8 ::1 ${SERVICES_IP4} ${SERVICES_IP6}\n`,
    },
    {
      // sshd (OpenSSH 9.8 on) refuses for a while an address whose logins keep failing.
      path: "/etc/ssh/sshd_config.d/05-mailstack-lab.conf",
      mode: "0644",
      owner: "root",
      group: "root",
      content: `# The lab only: its control address is never penalised.\nPerSourcePenaltyExemptList ${SERVICES_IP4},${SERVICES_IP6}\n`,
    },
  ];
  if (h.config.clamav) {
    files.push({
      path: "/var/lib/clamav/mailstack-lab.hdb",
      mode: "0644",
      owner: "clamav",
      group: "clamav",
      content: EICAR_HDB,
    });
  }
  return files;
}

export function passwords(h: LabHost): Record<string, string> {
  const file = join(keyDir(h.name), "passwords.json");
  const known: Record<string, string> = existsSync(file)
    ? JSON.parse(readFileSync(file, "utf8"))
    : {};
  const all = Object.fromEntries(
    h.config.users.map((u) => [
      u.address,
      known[u.address] ?? randomBytes(18).toString("base64url"),
    ]),
  );
  if (JSON.stringify(all) !== JSON.stringify(known)) {
    writeFileSync(file, JSON.stringify(all, null, 2), { mode: 0o600 });
  }
  return all;
}

/**
 * The lab's stand-ins for the stack's app passwords (`userAppPasswords`): address -> device
 * -> password, kept with the host's keys like its main passwords.
 */
export function appPasswords(h: LabHost): Record<string, Record<string, string>> {
  const file = join(keyDir(h.name), "app-passwords.json");
  const known: Record<string, Record<string, string>> = existsSync(file)
    ? JSON.parse(readFileSync(file, "utf8"))
    : {};
  const all = Object.fromEntries(
    h.config.users
      .filter((u) => u.appPasswords.length > 0)
      .map((u) => [
        u.address,
        Object.fromEntries(
          u.appPasswords.map((d) => [
            d.name,
            known[u.address]?.[d.name] ?? randomBytes(18).toString("base64url"),
          ]),
        ),
      ]),
  );
  if (JSON.stringify(all) !== JSON.stringify(known)) {
    writeFileSync(file, JSON.stringify(all, null, 2), { mode: 0o600 });
  }
  return all;
}

/** The mail services whose memory the budget covers. */
const MAIL_UNITS = [
  "postfix",
  "dovecot",
  "rspamd",
  "redis-server",
  "clamav-daemon",
  "unbound",
  "fail2ban",
];

/**
 * Steady memory of the mail services on a host: the sum of the proportional set size (PSS)
 * of every process in each service's control group, in MiB.
 */
export function mailMemory(h: LabHost): Record<string, number> {
  const script = `for u in ${MAIL_UNITS.join(" ")}; do
  cg=$(systemctl show -P ControlGroup "$u.service")
  kb=0
  if [ -n "$cg" ] && [ -r "/sys/fs/cgroup$cg/cgroup.procs" ]; then
    for p in $(cat "/sys/fs/cgroup$cg/cgroup.procs"); do
      k=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
      kb=$((kb + \${k:-0}))
    done
  fi
  echo "$u $kb"
done`;
  const res = ssh(h, keysOf(h), `sudo -n bash -c ${shellQuote(script)}`);
  if (res.status !== 0) return {};
  return Object.fromEntries(
    res.stdout
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .filter(([, kb]) => Number(kb) > 0)
      .map(([u, kb]) => [u, Math.round(Number(kb) / 1024)]),
  );
}

/**
 * The logins that work, one SSH session for all: `doveadm auth test` names the protocol, as
 * the passdb opens each password only to the protocols it is for.
 */
function loginsThatWork(h: LabHost, tries: { user: string; password: string; protocol: string }[]) {
  const script = tries
    .map(
      (t) =>
        `doveadm auth test -x service=${t.protocol} -- ${shellQuote(t.user)} ${shellQuote(t.password)} >/dev/null 2>&1 && echo ok || echo no`,
    )
    .join("; ");
  const res = ssh(h, keysOf(h), `sudo -n bash -c ${shellQuote(script)}`, { timeoutMs: 60_000 });
  const answers = res.stdout.trim().split("\n");
  return tries.map((_, i) => answers[i] === "ok");
}

/**
 * Reboots a host the way a server restarts: a clean shutdown, then power-on with the same
 * disks. qemu runs with -no-reboot, so the guest's reboot ends the VM and the lab starts it
 * again. Under emulation the last step of a shutdown can hang after everything is synced and
 * unmounted; the VM is then switched off, as a hypervisor would.
 */
export async function rebootHost(h: LabHost): Promise<void> {
  await sshAsync(h, keysOf(h), "sudo -n systemctl reboot", { timeoutMs: 30_000 });
  const shutDown = () =>
    existsSync(consoleLog(h)) &&
    /systemd-shutdown\[1\]: (Syncing filesystems|Sending SIGKILL)/.test(
      readFileSync(consoleLog(h), "utf8"),
    );
  await waitFor(
    `${h.name} to shut down`,
    300_000,
    () => (!hostRunning(h) || shutDown() ? true : undefined),
    () => tail(consoleLog(h), 30),
  );
  const end = Date.now() + 30_000;
  while (hostRunning(h) && Date.now() < end) await new Promise((r) => setTimeout(r, 1000));
  stopHost(h);
  await startHost(h);
}

/**
 * The image the running lab was brought up from (stock or fast mode), whatever
 * MAILSTACK_LAB_BAKED says in the shell that asks now.
 */
export async function labImage(h: LabHost): Promise<BaseImage> {
  if (existsSync(replacedMarker(h))) return baseImage(releaseOf(h.config.image), true);
  const state = join(STATE_DIR, "first-boot.json");
  const baked = existsSync(state)
    ? (JSON.parse(readFileSync(state, "utf8")) as { baked: boolean }).baked
    : undefined;
  return baseImage(releaseOf(h.config.image), baked);
}

/** Powers a stopped host on again (same disks, same seed) and waits for SSH. */
export async function startHost(h: LabHost): Promise<void> {
  await bootHost(h, await labImage(h), keysOf(h));
  await waitForSsh(h);
}

/** Waits for SSH, then until cloud-init says the first boot is finished; its status. */
async function waitForFirstBoot(h: LabHost): Promise<SshResult> {
  await waitForSsh(h);
  return waitFor(
    `${h.name}: cloud-init to finish`,
    BOOT_TIMEOUT_MS,
    async () => {
      const r = await deployStatus(h);
      return /^status: (done|error|degraded)/m.test(r.stdout) ? r : undefined;
    },
    () => tail(consoleLog(h), 60),
    5000,
  );
}

/** Marks a host whose server was replaced: its disk comes from the baked image. */
const replacedMarker = (h: LabHost) => join(hostDir(h), "replaced");

/**
 * Replaces a host's server, as Hetzner does when its userData changes: the old VM is deleted
 * (killed, its root disk gone) and a new one boots with a userData that differs by `note`, so
 * cloud-init's first boot runs again. Its mail volume is whatever volumeFile(h) holds by then:
 * the same one, or (once the caller removed it) a new, empty one, formatted as the provider
 * formats one. Returns once the first boot is done; attach and provisioning are the caller's,
 * as they are Pulumi's.
 *
 * The new server boots the image with the mail packages baked in (built once, cached): the
 * package step from a stock image is what bring-up proves; a replacement proves the volume,
 * the keys and the restore, and under emulation a second package step would cost 20 minutes.
 */
export async function replaceHost(h: LabHost, note: string): Promise<void> {
  stopHost(h);
  await waitFor(`${h.name}'s old VM to stop`, 30_000, () => (hostRunning(h) ? undefined : true));
  rmSync(rootDisk(h), { force: true });
  writeFileSync(userDataNoteFile(h), `# ${note.replace(/\n/g, " ")}\n`);
  writeFileSync(replacedMarker(h), "");
  await bootHost(h, await labImage(h), keysOf(h));
  await waitForFirstBoot(h);
}

/** Serves the lab mirror on the services address, inside the namespace. */
async function startMirror(image: BaseImage): Promise<void> {
  daemon(
    "ip",
    [
      "netns",
      "exec",
      NETNS,
      "/usr/bin/python3",
      "-m",
      "http.server",
      "--bind",
      SERVICES_IP4,
      "--directory",
      image.mirror,
      String(MIRROR_PORT),
    ],
    join(STATE_DIR, "mirror.log"),
    join(STATE_DIR, "mirror.pid"),
  );
  const url = `http://${SERVICES_IP4}:${MIRROR_PORT}/dists/${image.release}/InRelease`;
  await waitFor(`the lab mirror at ${url}`, 30_000, () => {
    try {
      runIn(
        NETNS,
        "/usr/bin/python3",
        ["-c", `import urllib.request; urllib.request.urlopen("${url}")`],
        {
          stdio: "pipe",
        },
      );
      return true;
    } catch {
      return undefined;
    }
  });
}

/** Ports a client outside the host would probe: the mail ports, the old plaintext ones, SSH. */
const PROBED_PORTS = [22, 25, 110, 143, 465, 587, 993, 995, 4190];

export interface FirstBootState {
  /** Ports that accept a TCP connection from the lab network. */
  openPorts: number[];
  /** Mail services running before provisioning configured them. */
  running: string[];
  /** How long the first provisioning's package step took (absent when nothing was installed). */
  packageSeconds?: number;
}

/**
 * What a host exposes between first boot (packages installed) and provisioning: probed from
 * outside, and as the deployment's `status` request reports it.
 */
async function firstBootState(h: LabHost): Promise<FirstBootState> {
  // All ports at once: a port the firewall drops takes the whole 3 s to give up on.
  const probe = `import socket, threading
opened = []
def probe(p):
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect(("${h.ipv4}", p)); opened.append(p)
    except OSError:
        pass
    s.close()
threads = [threading.Thread(target=probe, args=(p,)) for p in ${JSON.stringify(PROBED_PORTS)}]
for t in threads: t.start()
for t in threads: t.join()
print("\\n".join(map(str, sorted(opened))))`;
  const openPorts = runIn(NETNS, "/usr/bin/python3", ["-c", probe], { stdio: "pipe" })
    .trim()
    .split("\n")
    .filter(Boolean)
    .map(Number);
  const report = (await deployStatus(h)).stdout;
  const running = [...report.matchAll(/^unit (\S+) active$/gm)].map((m) => m[1]);
  return { openPorts, running };
}

/** What the lab's provisioning run of a host printed. */
export const provisionLog = (h: LabHost) => join(hostDir(h), "provision.log");

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
  // What a replaced server boots (replaceHost), built here: the suite runs where there is no
  // network to build it.
  if (!image.baked) await baseImage(image.release, true);
  const imageSeconds = (Date.now() - imageStart) / 1000;
  for (const h of HOSTS) keysOf(h);
  await step("network namespace and bridge", () => createNetwork(HOSTS.map((h) => h.name)));
  await step("DNS: knot (signed zones from the record builder) and unbound (validating)", () =>
    startDns(HOSTS, keysOf),
  );
  await step("ACME CA (pebble)", startAcme);
  await step("object storage for backups (s3rver, HTTPS)", () => startBucket(HOSTS));
  await step("the stack's Worker (MTA-STS, autoconfig, WKD) on a Node adapter", () =>
    startWeb(HOSTS),
  );
  if (!image.baked) await step("lab mirror (HTTP, signed)", () => startMirror(image));
  // Power-on of each host: the start of its time to ready (cloud-init done, packages
  // installed, provisioned, every mail service answering).
  const poweredOn: Record<string, number> = {};
  for (const h of HOSTS) {
    await step(`${h.name}: boot`, async () => {
      poweredOn[h.name] = await bootHost(h, image, keysOf(h));
    });
  }
  const bootSeconds: Record<string, number> = {};
  const firstBootDone: Record<string, number> = {};
  await Promise.all(
    HOSTS.map((h) =>
      step(`${h.name}: boot to cloud-init done`, async () => {
        const res = await waitForFirstBoot(h);
        firstBootDone[h.name] = Date.now();
        bootSeconds[h.name] = (firstBootDone[h.name] - poweredOn[h.name]) / 1000;
        const cloudInit = res.stdout.split("\n").filter((l) => /^[a-z_]+: /.test(l));
        info(`${h.name}: ${cloudInit.join("; ")}`);
      }),
    ),
  );
  // The window between package installation and provisioning, seen from outside.
  const firstBoot = Object.fromEntries(
    await Promise.all(HOSTS.map(async (h) => [h.name, await firstBootState(h)] as const)),
  );
  for (const [name, f] of Object.entries(firstBoot)) {
    info(
      `${name}: before provisioning: ports open from outside: ${f.openPorts.join(", ") || "none"}; ` +
        `mail services running: ${f.running.join(", ") || "none"}`,
    );
  }
  const provisionSeconds: Record<string, number> = {};
  const readySeconds: Record<string, number> = {};
  // The lab's own pause between a host's first boot and its provisioning: it waits for every
  // host's first boot and probes the window above. A deployment has none (provisioning starts
  // once SSH answers and waits for cloud-init itself), so the time to ready leaves it out.
  const labPauseSeconds: Record<string, number> = {};
  await Promise.all(
    HOSTS.map((h) =>
      step(`${h.name}: provisioning over SSH (packages, keys, firewall, certificate)`, async () => {
        const provisionStart = Date.now();
        labPauseSeconds[h.name] = (provisionStart - firstBootDone[h.name]) / 1000;
        const log = await provision(h);
        provisionSeconds[h.name] = (Date.now() - provisionStart) / 1000;
        readySeconds[h.name] = (Date.now() - poweredOn[h.name]) / 1000 - labPauseSeconds[h.name];
        writeFileSync(provisionLog(h), log);
        for (const line of log.trim().split("\n")) info(`${h.name}: ${line}`);
        const installed = log.match(/installed \d+ packages in (\d+) s/);
        if (installed) firstBoot[h.name].packageSeconds = Number(installed[1]);
      }),
    ),
  );
  writeFileSync(
    join(STATE_DIR, "first-boot.json"),
    JSON.stringify({ baked: image.baked, firstBoot }),
  );
  const upSeconds = (Date.now() - started) / 1000;
  writeFileSync(
    join(STATE_DIR, "timings.json"),
    JSON.stringify({
      imageSeconds,
      bootSeconds,
      provisionSeconds,
      labPauseSeconds,
      readySeconds,
      upSeconds,
      packageSeconds: Object.fromEntries(
        Object.entries(firstBoot).map(([n, f]) => [n, f.packageSeconds]),
      ),
    }),
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
    if (!hostRunning(h)) continue;
    // A password is printed only once it opens what it is for: the main password IMAP (unless
    // the user has appPasswordsOnly), an app password its device's first protocol.
    const main = passwords(h);
    const apps = appPasswords(h);
    const tries = c.users.flatMap((u) => [
      ...(u.appPasswordsOnly
        ? []
        : [{ user: u.address, label: "password", password: main[u.address], protocol: "imap" }]),
      ...u.appPasswords.map((d) => ({
        user: u.address,
        label: `app password "${d.name}" (${d.protocols.join(", ")})`,
        password: apps[u.address][d.name],
        protocol: d.protocols[0],
      })),
    ]);
    const works = loginsThatWork(h, tries);
    tries.forEach((t, i) =>
      lines.push(
        works[i]
          ? `    login:    ${t.user}  ${t.label} ${t.password}`
          : `    login:    ${t.user}  ${t.label} DOES NOT WORK (see journalctl -u dovecot on the host)`,
      ),
    );
    const memory = mailMemory(h);
    const total = Object.values(memory).reduce((a, b) => a + b, 0);
    lines.push(
      `    memory:   ${total} MiB PSS for the mail services, ClamAV ${c.clamav ? "on" : "off"} (${Object.entries(
        memory,
      )
        .map(([u, m]) => `${u} ${m}`)
        .join(", ")})`,
    );
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
