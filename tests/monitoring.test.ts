// The Prometheus alert rules (monitoring/alerts.yml): Prometheus's own promtool checks them
// and runs their unit tests (monitoring/alerts.test.yml); here too, that every alert says how
// bad it is and what to do, waits out a `for:` window, and has its unit tests fire it and
// keep it quiet.
import { dashboard, dashboardMetrics } from "./support/dashboard";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isMap, isSeq, parse, parseDocument } from "yaml";

const DIR = join(__dirname, "..", "monitoring");
const RULES = join(DIR, "alerts.yml");
const TESTS = join(DIR, "alerts.test.yml");

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  eval_time: string;
  alertname: string;
  exp_alerts: { exp_labels?: Record<string, string> }[];
}

const groups = (parse(readFileSync(RULES, "utf8")) as { groups: { rules: Rule[] }[] }).groups;
const rules = groups.flatMap((g) => g.rules);
const alertNames = [...new Set(rules.map((r) => r.alert))];
const unitTests = (
  parse(readFileSync(TESTS, "utf8")) as { tests: { alert_rule_test?: RuleTest[] }[] }
).tests;

function promtool(...args: string[]) {
  const res = spawnSync("promtool", args, { cwd: DIR, encoding: "utf8" });
  if (res.error) throw res.error;
  return { status: res.status, output: `${res.stdout}${res.stderr}` };
}

/** promtool's durations, such as "1h" or "90s", in seconds. */
function seconds(d: string): number {
  const unit: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
  const m = /^(\d+)([smhd])$/.exec(d);
  if (!m) throw new Error(`unexpected duration ${d}`);
  return Number(m[1]) * unit[m[2]];
}

describe("monitoring/alerts.yml", () => {
  it("passes promtool check rules, every rule counted", () => {
    const { status, output } = promtool("check", "rules", "alerts.yml");
    expect(output).toContain("SUCCESS");
    expect(output).toContain(`${rules.length} rules found`);
    expect(status).toBe(0);
  });

  it("passes its promtool unit tests", () => {
    const { status, output } = promtool("test", "rules", "alerts.test.yml");
    expect(output).toContain("SUCCESS");
    expect(output).not.toContain("FAILED");
    expect(status).toBe(0);
  });

  it("holds only alerts, each with a severity, a summary, what to do, and a for: window", () => {
    expect(rules.length).toBeGreaterThan(0);
    const problems = rules.flatMap((r) => {
      const name = r.alert ?? `recording rule ${r.record}`;
      return [
        r.alert ? "" : "not an alert",
        /^(critical|warning)$/.test(r.labels?.severity ?? "") ? "" : "severity",
        r.annotations?.summary?.trim() ? "" : "summary",
        r.annotations?.description?.trim() ? "" : "description",
        r.for && seconds(r.for) > 0 ? "" : "for:",
      ]
        .filter(Boolean)
        .map((what) => `${name}: ${what}`);
    });
    expect(problems).toEqual([]);
  });

  it("says why for every threshold: a comment before each rule", () => {
    const doc = parseDocument(readFileSync(RULES, "utf8"));
    const list = doc.get("groups");
    if (!isSeq(list)) throw new Error("groups is not a list");
    const uncommented = list.items.flatMap((group) => {
      const rs = isMap(group) ? group.get("rules") : undefined;
      if (!isSeq(rs)) throw new Error("a group without rules");
      return rs.items.filter((rule, i) => {
        if (!isMap(rule)) throw new Error("a rule that is not a mapping");
        // The yaml library gives the first item's comment to the list.
        const comment = rule.commentBefore ?? (i === 0 ? rs.commentBefore : undefined);
        return !comment?.trim();
      });
    });
    expect(uncommented.map((rule) => (isMap(rule) ? rule.get("alert") : rule))).toEqual([]);
  });

  it.each(alertNames)(
    "%s: a unit test has it pending then firing, and one keeps it quiet",
    (name) => {
      const fireWindow = unitTests.some((t) => {
        const cases = (t.alert_rule_test ?? []).filter((c) => c.alertname === name);
        return cases.some(
          (quiet) =>
            quiet.exp_alerts.length === 0 &&
            cases.some(
              (fired) =>
                fired.exp_alerts.length > 0 && seconds(fired.eval_time) > seconds(quiet.eval_time),
            ),
        );
      });
      const quiet = unitTests.some((t) => {
        const cases = (t.alert_rule_test ?? []).filter((c) => c.alertname === name);
        return cases.length > 0 && cases.every((c) => c.exp_alerts.length === 0);
      });
      expect({ fireWindow, quiet }).toEqual({ fireWindow: true, quiet: true });
    },
  );

  it("has a unit test fire each alert at each of its severities", () => {
    const fired = new Set(
      unitTests.flatMap((t) =>
        (t.alert_rule_test ?? []).flatMap((c) =>
          c.exp_alerts.map((a) => `${c.alertname}/${a.exp_labels?.severity}`),
        ),
      ),
    );
    const wanted = rules.map((r) => `${r.alert}/${r.labels?.severity}`);
    expect(wanted.filter((w) => !fired.has(w))).toEqual([]);
  });
});

describe("the Grafana dashboard", () => {
  test("panels: unique ids, on the 24-column grid, each reading Prometheus for the chosen host", () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(["datasource", "host"]);
    for (const p of dashboard.panels) {
      expect([p.title, p.gridPos.x + p.gridPos.w <= 24, p.datasource.uid]).toEqual([
        p.title,
        true,
        "${datasource}",
      ]);
      expect(p.targets.length).toBeGreaterThan(0);
      for (const t of p.targets)
        expect([p.title, t.expr]).toEqual([p.title, expect.stringContaining("$host")]);
    }
  });

  test("it shows what an operator looks at: flow, rejections, spam, queue, TLS, disk, memory, certificate, backup", () => {
    const metrics = dashboardMetrics();
    for (const m of [
      "postfix_smtpd_messages_processed_total",
      "postfix_smtpd_messages_rejected_total",
      "rspamd_actions_total",
      "mailstack_postfix_queue_messages",
      "postfix_smtpd_tls_connections_total",
      "node_filesystem_avail_bytes",
      "node_memory_MemAvailable_bytes",
      "mailstack_certificate_expiry_timestamp_seconds",
      "mailstack_backup_last_success_timestamp_seconds",
    ])
      expect(metrics).toContain(m);
  });
});
