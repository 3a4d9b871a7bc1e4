// Lynis, Debian's package, auditing a lab host. It is installed from the .deb the lab keeps
// beside its image (lab/image.ts, LAB_TOOLS: never part of the image, as no server has it) and
// runs as a transient unit, so that a suite cut short leaves it running rather than killed
// half-way; a second run of the suite reads the report of the first.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { labImage } from "../../lab/lab";
import { ssh } from "../../lab/ssh";
import { keys, onHost, type LabHost } from "./support";

const UNIT = "mailstack-lab-lynis";
const REPORT = "/var/log/lynis-report.dat";
const TOOLS = "/var/tmp/mailstack-lab-tools";

/** Where the audit stands: running, ended with a report, or never started (or failed). */
function state(h: LabHost): "running" | "done" | "none" {
  const out = onHost(
    h,
    `systemctl show -P ActiveState ${UNIT}.service; grep -q '^report_datetime_end=' ${REPORT} 2>/dev/null && echo done || true`,
  );
  if (/^(active|activating)$/m.test(out)) return "running";
  return out.includes("done") ? "done" : "none";
}

/** Installs Lynis on the host and starts a full audit in the background, unless one ran. */
export async function startLynis(h: LabHost): Promise<void> {
  if (state(h) !== "none") return;
  const tools = (await labImage(h)).tools;
  onHost(h, `rm -rf ${TOOLS} && install -d -m 0700 -o admin ${TOOLS}`);
  for (const deb of readdirSync(tools).filter((f) => f.endsWith(".deb"))) {
    const res = ssh(h, keys(h), `base64 -d > ${TOOLS}/${deb}`, {
      input: readFileSync(join(tools, deb)).toString("base64"),
    });
    if (res.status !== 0) throw new Error(`${h.name}: copying ${deb}: ${res.stderr}`);
  }
  onHost(
    h,
    [
      `dpkg -i ${TOOLS}/*.deb >/dev/null`,
      // The package enables a daily audit of its own: not on a lab host, whose suites go on.
      "systemctl disable --now lynis.timer 2>/dev/null",
      `rm -f ${REPORT}`,
      `{ systemctl reset-failed ${UNIT}.service 2>/dev/null || true; }`,
      // Debian 13's /bin and /sbin are /usr's: a PATH without them spares Lynis scanning (and
      // logging) every program twice.
      `systemd-run --quiet --unit=${UNIT} --setenv=PATH=/usr/sbin:/usr/bin ` +
        "lynis audit system --no-colors --quiet",
    ].join(" && "),
  );
}

/** Waits for the audit to end (starting it if it never ran) and returns its report. */
export async function lynisReport(h: LabHost, timeoutMs: number): Promise<string> {
  await startLynis(h);
  const until = Date.now() + timeoutMs;
  let now = state(h);
  while (now === "running" && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20_000));
    now = state(h);
  }
  if (now !== "done") {
    const log = onHost(
      h,
      `journalctl -u ${UNIT} --no-pager | tail -n 20; tail -n 5 /var/log/lynis.log`,
    );
    throw new Error(
      `${h.name}: Lynis ${now === "running" ? "still running" : "ended without a report"}\n${log}`,
    );
  }
  return onHost(h, `cat ${REPORT}`);
}

export interface LynisReport {
  version: string;
  hardeningIndex: number;
  /** Test IDs with a warning, as `PKGS-7388`. */
  warnings: string[];
  suggestions: string[];
  testsPerformed: number;
}

/** Reads Lynis's report (`key=value`, lists as `key[]=ID|text|...`). */
export function parseLynisReport(text: string): LynisReport {
  const values = (key: string) =>
    text
      .split("\n")
      .filter((l) => l.startsWith(`${key}=`))
      .map((l) => l.slice(key.length + 1));
  const id = (v: string) => v.split("|")[0];
  return {
    version: values("lynis_version")[0] ?? "",
    hardeningIndex: Number(values("hardening_index")[0]),
    warnings: [...new Set(values("warning[]").map(id))].sort(),
    suggestions: [...new Set(values("suggestion[]").map(id))].sort(),
    testsPerformed: Number(values("lynis_tests_done")[0]),
  };
}

/** The Lynis warnings docs/security.md explains: its list items "- Warning `ID` ...". */
export function explainedWarnings(securityMd: string): string[] {
  return [...securityMd.matchAll(/^- Warning `([A-Z]+-\d+)`/gm)].map((m) => m[1]).sort();
}
