// `npm run test:lab`: brings the lab up, runs the end-to-end suite inside the lab's network
// namespace, tears the lab down (MAILSTACK_LAB_KEEP=1 keeps it), and prints the timings.
// The suites run one after another in the order below. With MAILSTACK_LAB_DEADLINE (Unix
// seconds; CI sets it before its own time limit) a suite that would not finish by then is not
// started, and the summary names it: a suite cut off by a time limit proves nothing either way.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { down, up } from "./lab";
import { info } from "./log";
import { NETNS, STATE_DIR } from "./settings";

const ROOT = join(__dirname, "..");

/**
 * The suites in the order they run, with the minutes each may take on a 2-core machine without
 * KVM. The first-boot window comes first (nothing else has touched the hosts yet); recovery
 * comes last, as it replaces both servers. A suite not listed runs after these.
 */
const SUITES: [string, number][] = [
  ["first-boot", 2],
  ["mailhost", 15],
  ["app-passwords", 10],
  ["bans", 10],
  ["mail-hop", 4],
  ["access", 10],
  ["discovery", 6],
  ["at-rest", 5],
  ["volume", 6],
  ["platform", 12],
  ["admin-mfa", 8],
  ["monitoring", 15],
  ["audit", 12],
  ["lynis", 40],
  ["reboot", 12],
  ["recovery", 45],
];

function suiteOrder(): [string, number][] {
  const present = readdirSync(join(ROOT, "tests", "lab"))
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => f.replace(/\.test\.ts$/, ""));
  const listed = SUITES.filter(([s]) => present.includes(s));
  const others = present.filter((s) => !SUITES.some(([l]) => l === s)).sort();
  return [...listed, ...others.map((s) => [s, 15] as [string, number])];
}

function jest(args: string[]): number {
  const res = spawnSync(
    "ip",
    [
      "netns",
      "exec",
      NETNS,
      process.execPath,
      require.resolve("jest/bin/jest"),
      "-c",
      "jest.lab.config.js",
      ...args,
    ],
    { stdio: "inherit", cwd: ROOT },
  );
  return res.status ?? 1;
}

/** Runs the suites in order within the deadline; returns the exit status and a report. */
function runSuites(deadline: number | undefined): { status: number; report: string[] } {
  const report: string[] = ["", "lab suites:"];
  let status = 0;
  for (const [suite, minutes] of suiteOrder()) {
    if (deadline !== undefined && Date.now() / 1000 + minutes * 60 > deadline) {
      report.push(
        `  ${suite.padEnd(14)} NOT RUN: it may take ${minutes} min, and the deadline is closer`,
      );
      continue;
    }
    const start = Date.now();
    const code = jest([`tests/lab/${suite}.test.ts`]);
    if (code !== 0) status = 1;
    report.push(
      `  ${suite.padEnd(14)} ${code === 0 ? "passed" : "FAILED"} in ${((Date.now() - start) / 1000).toFixed(0)} s`,
    );
  }
  if (!report.some((l) => / (passed|FAILED) in /.test(l))) {
    report.push("  no suite ran before the deadline");
    status = 1;
  }
  return { status, report };
}

async function main(): Promise<number> {
  const started = Date.now();
  let status = 1;
  let report: string[] = [];
  const deadline = process.env.MAILSTACK_LAB_DEADLINE
    ? Number(process.env.MAILSTACK_LAB_DEADLINE)
    : undefined;
  try {
    await up();
    const args = process.argv.slice(2);
    if (args.length > 0) status = jest(args);
    else ({ status, report } = runSuites(deadline));
  } finally {
    const timingsFile = join(STATE_DIR, "timings.json");
    const t = existsSync(timingsFile) ? JSON.parse(readFileSync(timingsFile, "utf8")) : {};
    if (process.env.MAILSTACK_LAB_KEEP === "1") info("MAILSTACK_LAB_KEEP=1: the lab stays up");
    else down();
    const total = (Date.now() - started) / 1000;
    const lines = ["", "lab timings:"];
    if (t.imageSeconds !== undefined)
      lines.push(
        `  image:         ${t.imageSeconds.toFixed(1)} s ${t.imageSeconds > 30 ? "(built)" : "(cached)"}`,
      );
    for (const [name, s] of Object.entries((t.bootSeconds ?? {}) as Record<string, number>)) {
      lines.push(`  ${name} boot to cloud-init done: ${s.toFixed(1)} s`);
      const pkg = (t.packageSeconds ?? {})[name];
      lines.push(
        `  ${name} package step (first provisioning): ${pkg === undefined || pkg === null ? "none (baked image)" : `${pkg} s`}`,
      );
      const ready = (t.readySeconds ?? {})[name];
      if (ready !== undefined)
        lines.push(
          `  ${name} power-on to ready (provisioned, mail ports answering; the lab's own pause of ${((t.labPauseSeconds ?? {})[name] ?? 0).toFixed(1)} s left out): ${ready.toFixed(1)} s`,
        );
    }
    if (t.upSeconds !== undefined) lines.push(`  lab up:        ${t.upSeconds.toFixed(1)} s`);
    lines.push(`  test:lab:      ${total.toFixed(1)} s`, ...report, "");
    process.stdout.write(lines.join("\n"));
  }
  return status;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`\ntest:lab: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
