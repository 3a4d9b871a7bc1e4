// mailstack-metrics' blocklist figures and mailstack-report's refusal of bad input, run here
// with the real scripts and bash, kdig replaced by a stub that answers from a table (the lab
// runs both against a real host: tests/lab/monitoring.test.ts); debsecan's cron run with the
// settings the host gets.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blocklistQueries } from "../components/blocklists";
import { HOST_TREE } from "../components/host-config";

const FILES = join(__dirname, "..", "cloud-init", "files");

/** Runs mailstack-metrics with these DNS answers (name -> A records); the blocklist file. */
function blocklistFigures(answers: Record<string, string[]>): string {
  const dir = mkdtempSync(join(tmpdir(), "mailstack-metrics-"));
  const [etc, bin, collector] = ["etc", "bin", "collector"].map((d) => join(dir, d));
  for (const d of [etc, bin, collector]) mkdirSync(d);
  writeFileSync(
    join(etc, "host.conf"),
    "CLAMAV=false\nMAIL_DOMAIN=b.example\nMAIL_HOST=mail.b.example\nDKIM_SELECTOR=mail\n" +
      `BLOCKLIST_QUERIES="${blocklistQueries("203.0.113.25", "2001:db8::25")}"\n`,
  );
  // kdig @127.0.0.1 +short A <name>: the table's answer for the last argument.
  const table = Object.entries(answers)
    .map(([name, as]) => `  ${name}) printf '%s\\n' ${as.map((a) => `'${a}'`).join(" ")} ;;`)
    .join("\n");
  writeFileSync(join(bin, "kdig"), `#!/bin/bash\nname=\${!#}\ncase "$name" in\n${table}\nesac\n`);
  chmodSync(join(bin, "kdig"), 0o755);
  const res = spawnSync("bash", [join(FILES, "mailstack-metrics")], {
    env: {
      ...process.env,
      PATH: `${bin}:${process.env.PATH}`,
      MAILSTACK_ETC: etc,
      MAILSTACK_METRICS_DIR: collector,
      MAILSTACK_TLS_CERT: join(dir, "none.crt"),
    },
    encoding: "utf8",
  });
  expect(res.status).toBe(0);
  return readFileSync(join(collector, "mailstack_blocklist.prom"), "utf8");
}

const series = (text: string) => text.split("\n").filter((l) => l && !l.startsWith("#"));

describe("mailstack-metrics: the host's addresses on the blocklists", () => {
  test("a list that answers its test point: listed is 1, not listed is 0, by list and address", () => {
    const prom = blocklistFigures({
      "2.0.0.127.zen.spamhaus.org": ["127.0.0.2", "127.0.0.10"],
      "2.0.0.127.bl.spamcop.net": ["127.0.0.2"],
      "25.113.0.203.bl.spamcop.net": ["127.0.0.2"],
    });
    expect(series(prom)).toEqual([
      'mailstack_blocklist_listed{list="zen.spamhaus.org",address="203.0.113.25"} 0',
      'mailstack_blocklist_listed{list="zen.spamhaus.org",address="2001:db8::25"} 0',
      'mailstack_blocklist_listed{list="bl.spamcop.net",address="203.0.113.25"} 1',
    ]);
  });

  test("a list that does not answer its test point, or answers with an error code, is left out", () => {
    // Spamhaus answers a public resolver with 127.255.255.254: "refused", not "listed".
    const prom = blocklistFigures({
      "2.0.0.127.zen.spamhaus.org": ["127.255.255.254"],
      "25.113.0.203.zen.spamhaus.org": ["127.255.255.254"],
      "2.0.0.127.bl.mailspike.net": ["127.0.0.2"],
      "25.113.0.203.bl.mailspike.net": ["127.255.255.254"],
    });
    expect(series(prom)).toEqual([
      'mailstack_blocklist_listed{list="bl.mailspike.net",address="203.0.113.25"} 0',
    ]);
  });
});

describe("mailstack-report", () => {
  test("a day other than yesterday or today is refused, naming --day; so is an unknown option", () => {
    const run = (...args: string[]) =>
      spawnSync("bash", [join(FILES, "mailstack-report"), ...args], { encoding: "utf8" });
    const monday = run("--day", "monday");
    expect([monday.status, monday.stderr.trim()]).toEqual([
      2,
      "mailstack-report: --day is 'yesterday' or 'today', not 'monday'",
    ]);
    const bogus = run("--bogus");
    expect([bogus.status, bogus.stderr.trim()]).toEqual([
      2,
      "usage: mailstack-report [--day yesterday|today] [--print]",
    ]);
  });
});

describe("debsecan: Debian's own daily mail to root stays off (the daily report has the figures)", () => {
  test("its cron run stops at once, before it reads or fetches anything", () => {
    // A history file debsecan cannot parse: a cron run that went past the REPORT setting
    // would read it and stop with a traceback.
    const dir = mkdtempSync(join(tmpdir(), "debsecan-cron-"));
    writeFileSync(join(dir, "history"), "VERSION 1\nnot a time\n");
    const shipped = readFileSync(join(HOST_TREE, "etc", "default", "debsecan"), "utf8");
    const cron = (config: string) => {
      writeFileSync(join(dir, "config"), config);
      const res = spawnSync(
        "debsecan",
        ["--cron", "--config", join(dir, "config"), "--history", join(dir, "history")],
        { encoding: "utf8" },
      );
      return [res.status, res.stdout, /ValueError/.test(res.stderr)];
    };
    expect(cron(shipped)).toEqual([0, "", false]);
    // The control: Debian's default, REPORT=true, goes on to the history.
    expect(cron(shipped.replace(/^REPORT=false$/m, "REPORT=true"))).toEqual([1, "", true]);
  });
});

describe("failures postmaster hears of", () => {
  test("a failed certificate renewal, backup, backup check or report mails postmaster; the every-minute metrics do not", () => {
    const onFailure = (unit: string) =>
      /^OnFailure=mailstack-alert@%N\.service$/m.test(
        readFileSync(join(FILES, `${unit}.service`), "utf8"),
      );
    for (const unit of [
      "mailstack-cert",
      "mailstack-backup",
      "mailstack-backup-check",
      "mailstack-report",
    ]) {
      expect([unit, onFailure(unit)]).toEqual([unit, true]);
    }
    expect(onFailure("mailstack-metrics")).toBe(false);
  });
});
