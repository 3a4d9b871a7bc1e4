// `npm run bench -- lab`: the running mail host measured on the lab (real Debian VMs).
// Brings the lab up (or reuses it with --reuse), then, inside the lab's namespace:
//   ready      power-on to ready for alpha and beta, and two floors on the same image
//   memory     the mail services' PSS five minutes after ready, with ClamAV (alpha), without (beta)
//   throughput beta's Postfix into alpha's mailboxes, beside alpha's Postfix into discard
//   burst      N messages with a hard reset of alpha in the middle; every 250 in a mailbox once
// Prints a table and writes the figures, with the machine, to bench/results/.
// Nothing here is a test: regressions are judged by comparing runs.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hostPackages } from "../cloud-init/packages";
import { shellQuote } from "../components/host-files";
import { HETZNER_RAM_GB } from "../components/cost";
import { labImage, mailMemory, passwords, startHost, up } from "../lab/lab";
import { labKeys } from "../lab/keys";
import { addTap } from "../lab/net";
import { sleep } from "../lab/run";
import { HOSTS, NETNS, STATE_DIR, type LabHost } from "../lab/settings";
import { ssh } from "../lab/ssh";
import { bootHost, consoleLog, hostRunning, stopHost } from "../lab/vm";
import { burst, type BurstResult } from "./burst";
import { describeMachine, machine, resultsFile } from "./machine";

const [alpha, beta] = HOSTS;

/** A root command on a lab host; throws with its output when it fails. */
function root(h: LabHost, command: string, timeoutMs = 600_000): string {
  const res = ssh(h, labKeys(h.name), `sudo -n bash -c ${shellQuote(command)}`, { timeoutMs });
  if (res.status !== 0)
    throw new Error(`${h.name}: '${command}' exited ${res.status}\n${res.stdout}${res.stderr}`);
  return res.stdout;
}

const seconds = (since: number) => (Date.now() - since) / 1000;

// --- 1. time to ready, and its floors -------------------------------------------------------

interface Timings {
  imageSeconds?: number;
  bootSeconds: Record<string, number>;
  provisionSeconds?: Record<string, number>;
  /** The lab's own pause between first boot and provisioning, left out of readySeconds. */
  labPauseSeconds?: Record<string, number>;
  readySeconds?: Record<string, number>;
  packageSeconds: Record<string, number | null>;
  upSeconds: number;
}

function labTimings(): Timings {
  return JSON.parse(readFileSync(join(STATE_DIR, "timings.json"), "utf8")) as Timings;
}

/** A VM beside the mail hosts, on the same image and size as alpha, with its own userData. */
function floorVm(name: string, n: number): LabHost {
  return {
    ...alpha,
    name,
    ipv4: `198.51.100.${n}`,
    ipv6: `2001:db8:1::${n.toString(16)}`,
    mac: `52:54:00:33:64:${n.toString(16).padStart(2, "0")}`,
  };
}

async function consoleShows(h: LabHost, pattern: RegExp, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    const log = existsSync(consoleLog(h)) ? readFileSync(consoleLog(h), "latin1") : "";
    const m = log.match(pattern);
    if (m) return Number(m[1] ?? 0);
    if (!hostRunning(h)) throw new Error(`${h.name}: the VM stopped`);
    await sleep(1000);
  }
  throw new Error(`${h.name}: ${pattern} not on the console within ${timeoutMs / 1000} s`);
}

export interface Floors {
  bootSeconds: number;
  installSeconds: number;
  aptSeconds: number;
}

/**
 * The two floors, side by side on the same image as alpha, with alpha's memory: the boot
 * floor (empty userData, power-on to a login prompt) and the install floor (power-on, then a
 * plain `apt-get install` of alpha's package list from the lab mirror). The mail hosts are
 * stopped meanwhile, so the floors run as the hosts did at bring-up: two VMs on the machine.
 */
async function floors(): Promise<Floors> {
  const image = await labImage(alpha);
  if (image.baked)
    throw new Error(
      "the floors need the stock image: bring the lab up without MAILSTACK_LAB_BAKED",
    );
  const bootVm = floorVm("floor-boot", 20);
  const installVm = floorVm("floor-install", 21);
  const packages = hostPackages({ clamav: alpha.config.clamav }).join(" ");
  const install = [
    "#cloud-config",
    "runcmd:",
    `  - [sh, -c, 's=$(date +%s); export DEBIAN_FRONTEND=noninteractive; apt-get -q update >/var/log/floor.log 2>&1 && apt-get -q -y --no-install-recommends install ${packages} >>/var/log/floor.log 2>&1; echo "mailstack-floor: apt-get exited $? after $(( $(date +%s) - s )) s" >/dev/ttyS0']`,
    "",
  ].join("\n");
  for (const vm of [bootVm, installVm]) addTap(vm.name);
  const bootOn = await bootHost(bootVm, image, { userData: "" });
  const installOn = await bootHost(installVm, image, { userData: install });
  try {
    const [bootSeconds, [installSeconds, aptSeconds]] = await Promise.all([
      consoleShows(bootVm, /login: /, 1_800_000).then(() => seconds(bootOn)),
      consoleShows(
        installVm,
        /mailstack-floor: apt-get exited (\d+) after (\d+) s/,
        3_600_000,
      ).then(() => {
        const m = readFileSync(consoleLog(installVm), "latin1").match(
          /mailstack-floor: apt-get exited (\d+) after (\d+) s/,
        )!;
        if (m[1] !== "0") throw new Error(`the install floor's apt-get exited ${m[1]}`);
        return [seconds(installOn), Number(m[2])] as const;
      }),
    ]);
    return { bootSeconds, installSeconds, aptSeconds };
  } finally {
    stopHost(bootVm);
    stopHost(installVm);
  }
}

/** Where alpha's first boot spent its time, as systemd and cloud-init tell it. */
function whereTheTimeGoes(h: LabHost): { blame: string[]; cloudInit: string[] } {
  const blame = root(h, "systemd-analyze blame --no-pager | head -8").trim().split("\n");
  const cloudInit = root(h, "cloud-init analyze blame 2>/dev/null | grep -E '^ +[0-9]' | head -6")
    .trim()
    .split("\n");
  return { blame: blame.map((l) => l.trim()), cloudInit: cloudInit.map((l) => l.trim()) };
}

// --- 2. memory ------------------------------------------------------------------------------

interface Memory {
  alphaMiB: Record<string, number>;
  betaMiB: Record<string, number>;
  alphaTotalMiB: number;
  betaTotalMiB: number;
  /** alpha's whole system in use (MemTotal - MemAvailable), MiB. */
  alphaSystemMiB: number;
  fullSignatureSetMiB: number;
  defaultServerFreeMiB: number;
}

/** ClamAV's engine with the full official signature set (docs.clamav.net: "upwards of 1.2 GiB"). */
const CLAMAV_FULL_SET_MIB = 1229;

function memory(): Memory {
  const alphaMiB = mailMemory(alpha);
  const betaMiB = mailMemory(beta);
  const sum = (m: Record<string, number>) => Object.values(m).reduce((a, b) => a + b, 0);
  const meminfo = root(alpha, "grep -E '^(MemTotal|MemAvailable):' /proc/meminfo");
  const kb = (k: string) => Number(meminfo.match(new RegExp(`${k}:\\s+(\\d+)`))![1]);
  const alphaSystemMiB = Math.round((kb("MemTotal") - kb("MemAvailable")) / 1024);
  // The lab's clamd holds a small test signature set; the full set adds its engine on top.
  const ramMiB = (HETZNER_RAM_GB[alpha.config.serverType] ?? 4) * 1024;
  return {
    alphaMiB,
    betaMiB,
    alphaTotalMiB: sum(alphaMiB),
    betaTotalMiB: sum(betaMiB),
    alphaSystemMiB,
    fullSignatureSetMiB: CLAMAV_FULL_SET_MIB,
    defaultServerFreeMiB: ramMiB - alphaSystemMiB - CLAMAV_FULL_SET_MIB,
  };
}

// --- 3. throughput --------------------------------------------------------------------------

interface Throughput {
  sizeKiB: number;
  messages: number;
  connections: number;
  /** Into alpha's mailboxes: postscreen, Rspamd (and ClamAV), LMTP. */
  mailboxPerSecond: number;
  /** alpha's Postfix alone, into its discard transport. */
  discardPerSecond: number;
  ratio: number;
  /** Postfix's delays=a/b/c/d averaged over the run into mailboxes, seconds. */
  stages: { beforeQueue: number; inQueue: number; connect: number; delivery: number };
}

const BENCH_RCPT = `bob@${alpha.config.domain}`;
const BENCH_FROM = `bench@${beta.config.domain}`;

/** Queues `n` messages on beta for alpha, held back (defer_transports) until released. */
function queueOnBeta(n: number, sizeKiB: number, tag: string): void {
  root(beta, "postconf -e defer_transports=smtp && postfix reload >/dev/null 2>&1");
  const script = `
import smtplib, sys, email.utils
from concurrent.futures import ThreadPoolExecutor
n, size, tag = int(sys.argv[1]), int(sys.argv[2]) * 1024, sys.argv[3]
line = ("The quick brown fox jumps over the lazy dog, and the benchmark counts it. " * 2)[:76] + "\\r\\n"
body = line * max(1, size // len(line))
def send(part):
    s = smtplib.SMTP("127.0.0.1", 25, timeout=300)
    for i in range(part, n, 4):
        msg = (f"From: ${BENCH_FROM}\\r\\nTo: ${BENCH_RCPT}\\r\\nSubject: {tag} {i}\\r\\n"
               f"Message-ID: <{tag}.{i}@${beta.config.domain}>\\r\\nDate: {email.utils.formatdate()}\\r\\n"
               f"MIME-Version: 1.0\\r\\nContent-Type: text/plain; charset=us-ascii\\r\\n\\r\\n{body}")
        s.sendmail("${BENCH_FROM}", ["${BENCH_RCPT}"], msg)
    s.quit()
with ThreadPoolExecutor(4) as pool:
    list(pool.map(send, range(4)))
`;
  root(beta, `python3 -c ${shellQuote(script)} ${n} ${sizeKiB} ${tag}`);
}

function releaseBeta(): void {
  root(beta, "postconf -e defer_transports= && postfix reload >/dev/null 2>&1 && postqueue -f");
}

/** Mail log lines of alpha since a marker line the bench wrote. */
function alphaLogSince(marker: string): string {
  return root(alpha, `sed -n '/${marker}/,$p' /var/log/mail.log`);
}

/**
 * Waits until count() reaches n. A poll that fails counts as none yet: under the run's load
 * alpha's sshd can miss ssh's 5 s for its banner. The last figure and error are in the timeout.
 */
async function drain(n: number, count: () => number, timeoutMs: number): Promise<void> {
  const start = Date.now();
  let last = 0;
  let error = "";
  for (;;) {
    try {
      last = count();
      error = "";
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    if (last >= n) return;
    if (Date.now() - start > timeoutMs)
      throw new Error(
        `only ${last} of ${n} messages arrived${error ? `; last poll: ${error}` : ""}`,
      );
    await sleep(2000);
  }
}

async function oneRun(
  n: number,
  sizeKiB: number,
  mode: "mailbox" | "discard",
): Promise<{ perSecond: number; log: string }> {
  const tag = `bench-${mode}-${sizeKiB}k-${Date.now().toString(36)}`;
  queueOnBeta(n, sizeKiB, tag);
  root(alpha, `logger -p mail.info ${tag}-start`);
  const inbox = () =>
    Number(
      root(
        alpha,
        `doveadm -f flow search -u ${BENCH_RCPT} mailbox INBOX header subject ${tag} | wc -l`,
      ).trim(),
    );
  const discarded = () =>
    Number(
      root(
        alpha,
        `sed -n '/${tag}-start/,$p' /var/log/mail.log | grep -c 'postfix/discard.*status=sent' || true`,
      ).trim(),
    );
  const start = Date.now();
  releaseBeta();
  await drain(n, mode === "mailbox" ? inbox : discarded, 3_600_000);
  const elapsed = seconds(start);
  return { perSecond: n / elapsed, log: alphaLogSince(`${tag}-start`) };
}

function averageDelays(log: string): Throughput["stages"] {
  const d = [
    ...log.matchAll(
      /relay=[^,]*dovecot-lmtp[^,]*,.*?delays=([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+)/g,
    ),
  ];
  const avg = (i: number) =>
    d.length ? Math.round((d.reduce((s, m) => s + Number(m[i]), 0) / d.length) * 100) / 100 : 0;
  return { beforeQueue: avg(1), inQueue: avg(2), connect: avg(3), delivery: avg(4) };
}

/** alpha's Postfix with no milter and the bench recipient discarded; restored afterwards. */
async function withDiscard<T>(fn: () => Promise<T>): Promise<T> {
  root(
    alpha,
    `cp -p /etc/postfix/main.cf /etc/postfix/main.cf.bench && postconf -e smtpd_milters= 'transport_maps=inline:{ ${BENCH_RCPT}=discard: }' && postfix reload`,
  );
  try {
    return await fn();
  } finally {
    root(alpha, "mv -f /etc/postfix/main.cf.bench /etc/postfix/main.cf && postfix reload");
  }
}

async function throughput(n: number, sizeKiB: number): Promise<Throughput> {
  const mailbox = await oneRun(n, sizeKiB, "mailbox");
  const discard = await withDiscard(() => oneRun(n, sizeKiB, "discard"));
  root(alpha, `doveadm expunge -u ${BENCH_RCPT} mailbox INBOX header subject bench-`);
  return {
    sizeKiB,
    messages: n,
    connections: Number(root(beta, "postconf -h default_destination_concurrency_limit").trim()),
    mailboxPerSecond: round(mailbox.perSecond),
    discardPerSecond: round(discard.perSecond),
    ratio: round(mailbox.perSecond / discard.perSecond),
    stages: averageDelays(mailbox.log),
  };
}

const round = (x: number) => Math.round(x * 100) / 100;

// --- the run --------------------------------------------------------------------------------

export interface LabBenchOptions {
  reuse: boolean;
  messages: number;
  burst: number;
  skip: string[];
}

function parse(argv: string[]): LabBenchOptions {
  const opts: LabBenchOptions = { reuse: false, messages: 100, burst: 5000, skip: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--reuse") opts.reuse = true;
    else if (a === "--messages") opts.messages = Number(argv[++i]);
    else if (a === "--burst") opts.burst = Number(argv[++i]);
    else if (a === "--skip") opts.skip.push(...argv[++i].split(","));
    else throw new Error(`bench lab: unknown argument ${a}`);
  }
  for (const [name, v] of [
    ["--messages", opts.messages],
    ["--burst", opts.burst],
  ] as const)
    if (!Number.isInteger(v) || v < 1)
      throw new Error(`bench lab: ${name} must be a positive integer`);
  return opts;
}

/** The part inside the namespace: everything after the lab is up. */
async function measure(opts: LabBenchOptions): Promise<void> {
  const t = labTimings();
  const results: Record<string, unknown> = { machine: machine(), options: opts, lab: t };
  // Each part is printed, and the figures so far written, as soon as it ends: a run cut short
  // keeps what it measured.
  const file = resultsFile("lab");
  const out = {
    push(...lines: string[]) {
      process.stdout.write(`${lines.join("\n")}\n`);
      writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    },
  };
  out.push(`lab benchmark on ${describeMachine(results.machine as never)}`);
  const ready = t.readySeconds ?? {};
  out.push(
    "",
    "time to ready (power-on to provisioned, every mail port answering; the lab's pause between first boot and provisioning left out)",
    ...HOSTS.map(
      (h) =>
        `  ${h.name.padEnd(6)} ${(ready[h.name] ?? NaN).toFixed(0)} s: boot ${t.bootSeconds[h.name].toFixed(0)} s, provisioning ${(t.provisionSeconds?.[h.name] ?? NaN).toFixed(0)} s (packages: ${t.packageSeconds[h.name] == null ? "baked into the image" : `${t.packageSeconds[h.name]} s`}); lab's pause ${(t.labPauseSeconds?.[h.name] ?? NaN).toFixed(0)} s`,
    ),
  );
  const where = whereTheTimeGoes(alpha);
  results.whereTheTimeGoes = where;
  out.push(
    "  where alpha's boot went (systemd-analyze blame):",
    ...where.blame.map((l) => `    ${l}`),
    "  and cloud-init's stages (cloud-init analyze blame):",
    ...where.cloudInit.map((l) => `    ${l}`),
  );

  if (!opts.skip.includes("memory")) {
    const wait = Math.max(
      0,
      300 - (Date.now() - statSync(join(STATE_DIR, "timings.json")).mtimeMs) / 1000,
    );
    if (wait > 0) await sleep(wait * 1000);
    const m = memory();
    results.memory = m;
    const fmt = (r: Record<string, number>) =>
      Object.entries(r)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
    out.push(
      "",
      "memory five minutes after ready (sum of PSS of the mail services)",
      `  beta, no ClamAV:  ${m.betaTotalMiB} MiB (${fmt(m.betaMiB)}); target ≤ 600 MiB`,
      `  alpha, ClamAV:    ${m.alphaTotalMiB} MiB (${fmt(m.alphaMiB)})`,
      `  ${alpha.config.serverType} with ClamAV's full signature set: ${m.defaultServerFreeMiB} MiB free ` +
        `(${HETZNER_RAM_GB[alpha.config.serverType]} GiB − alpha's ${m.alphaSystemMiB} MiB in use − ${m.fullSignatureSetMiB} MiB for the full set's engine)`,
    );
  }

  if (!opts.skip.includes("throughput")) {
    const runs: Throughput[] = [];
    results.throughput = runs;
    out.push("", `throughput, beta → alpha (${opts.messages} messages a run)`);
    for (const size of [1, 100]) {
      const r = await throughput(opts.messages, size);
      runs.push(r);
      out.push(
        `  ${String(r.sizeKiB).padStart(3)} KiB: mailboxes ${r.mailboxPerSecond}/s, discard ${r.discardPerSecond}/s, ratio ${r.ratio} (target ≥ 0.3); ` +
          `per message: before queue ${r.stages.beforeQueue} s, queue ${r.stages.inQueue} s, LMTP connection ${r.stages.connect} s, LMTP delivery ${r.stages.delivery} s`,
      );
    }
  }

  if (!opts.skip.includes("burst")) {
    const b: BurstResult = await burst(alpha, opts.burst, passwords(alpha)[BENCH_RCPT]);
    results.burst = b;
    out.push(
      "",
      `burst of ${b.messages} messages, alpha reset after ${b.acceptedBeforeReset} were accepted`,
      `  accepted (250) ${b.accepted}, arrived ${b.arrived}, accepted but missing ${b.lost}, twice ${b.duplicates} (${b.duplicatesBeforeFold} before the fold); ${b.retried} retried by the senders`,
      `  ${b.fold}`,
      `  back after the reset in ${b.resetSeconds} s; all arrived in ${b.seconds} s`,
    );
  }

  if (!opts.skip.includes("floors")) {
    for (const h of HOSTS) stopHost(h);
    const f = await floors();
    results.floors = f;
    const r = ready[alpha.name];
    out.push(
      "",
      "floors on the same image, two VMs at once as at bring-up",
      `  boot floor (empty userData to a login prompt): ${f.bootSeconds.toFixed(0)} s; alpha's ready is ${(r / f.bootSeconds).toFixed(2)}×`,
      `  install floor (then apt-get install of alpha's ${hostPackages({ clamav: true }).length} packages, ${f.aptSeconds} s of it): ${f.installSeconds.toFixed(0)} s; ` +
        `alpha's ready is ${(r / f.installSeconds).toFixed(2)}× (target ≤ 1.3)`,
    );
    // Written before the hosts are back: their restart takes minutes under TCG.
    for (const h of HOSTS) await startHost(h);
  }

  out.push("", `figures: ${file}`);
}

export async function benchLab(argv: string[]): Promise<number> {
  const opts = parse(argv);
  if (process.argv.includes("--inside")) {
    await measure(opts);
    return 0;
  }
  if (!(opts.reuse && existsSync(join(STATE_DIR, "timings.json")))) await up();
  const res = spawnSync(
    "ip",
    [
      "netns",
      "exec",
      NETNS,
      process.execPath,
      ...process.execArgv,
      process.argv[1],
      "lab",
      ...argv,
      "--inside",
    ],
    { stdio: "inherit" },
  );
  return res.status ?? 1;
}
