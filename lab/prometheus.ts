// The lab's Prometheus (Debian's package) on the services address, the one address the lab
// hosts' exporters answer: it scrapes alpha with the shipped monitoring/prometheus.yml, the
// targets replaced by alpha's address (the lab's names resolve only in the lab's DNS), and
// loads the shipped alert rules with their clocks sped up: a minute of a rule's `for:` is a
// second here, so the suite sees an alert go from pending to firing in seconds. It runs only
// while the monitoring suite does: a scrape every 5 s costs the VM's one emulated CPU a
// quarter of its time (the node exporter's systemd collector, through D-Bus).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { daemon, pidAlive, waitForPort } from "./run";
import { NETNS, SERVICES_IP4, STATE_DIR, type LabHost } from "./settings";

export const PROMETHEUS_DIR = join(STATE_DIR, "prometheus");
export const PROMETHEUS_URL = `http://${SERVICES_IP4}:9090`;
const MONITORING = join(__dirname, "..", "monitoring");
const PID_FILE = join(PROMETHEUS_DIR, "prometheus.pid");

/** The shipped scrape configuration, pointed at a lab host. */
export function labScrapeConfig(h: LabHost): string {
  return readFileSync(join(MONITORING, "prometheus.yml"), "utf8")
    .replaceAll("mail.example.eu", h.ipv4)
    .replace(/scrape_interval: \d+s/, "scrape_interval: 5s")
    .replace(/evaluation_interval: \d+s/, "evaluation_interval: 5s");
}

/** How much faster the lab's alert rules wait than the shipped ones (`for: 1h` is 60 s). */
export const LAB_FOR_SPEEDUP = 60;

/** A Prometheus duration (`5m`, `1h`, `30s`) in seconds. */
export function durationSeconds(d: string): number {
  const m = /^(\d+)([smh])$/.exec(d);
  if (!m) throw new Error(`not a Prometheus duration this lab reads: '${d}'`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as "s" | "m" | "h"];
}

/** The shipped alert rules, each `for:` divided by LAB_FOR_SPEEDUP; nothing else changes. */
export function labAlertRules(): string {
  return readFileSync(join(MONITORING, "alerts.yml"), "utf8").replace(
    /^(\s+for: )(\d+[smh])$/gm,
    (_, key: string, d: string) => `${key}${Math.max(1, durationSeconds(d) / LAB_FOR_SPEEDUP)}s`,
  );
}

/** Starts the lab's Prometheus for `h`, unless it runs. */
export async function startPrometheus(h: LabHost): Promise<void> {
  if (pidAlive(PID_FILE)) return;
  mkdirSync(join(PROMETHEUS_DIR, "data"), { recursive: true });
  writeFileSync(join(PROMETHEUS_DIR, "prometheus.yml"), labScrapeConfig(h));
  writeFileSync(join(PROMETHEUS_DIR, "alerts.yml"), labAlertRules());
  const log = join(PROMETHEUS_DIR, "prometheus.log");
  daemon(
    "ip",
    [
      ...["netns", "exec", NETNS, "prometheus"],
      `--config.file=${join(PROMETHEUS_DIR, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(PROMETHEUS_DIR, "data")}`,
      `--web.listen-address=${SERVICES_IP4}:9090`,
    ],
    log,
    PID_FILE,
  );
  await waitForPort("Prometheus", SERVICES_IP4, 9090, log);
}

export function stopPrometheus(): void {
  const pid = pidAlive(PID_FILE);
  if (pid) process.kill(pid, "SIGTERM");
}
