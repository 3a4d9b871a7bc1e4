// mailstack-metrics' blocklist figures, mailstack-report's refusal of bad input and its
// known-vulnerabilities section, mailstack-dedup's window and calls, run here with the real
// scripts, bash and debsecan; kdig, fail2ban, the journal, doveadm and pflogsumm replaced by
// stubs (the lab runs the scripts against a real host: tests/lab/monitoring.test.ts,
// mailhost.test.ts and reboot.test.ts); debsecan's cron run with the settings the host gets.
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { blocklistQueries } from "../components/blocklists";
import { HOST_TREE } from "../components/host-config";
import { hostPath } from "./support/host-path";

const FILES = join(__dirname, "..", "cloud-init", "files");

/**
 * Runs mailstack-metrics with these DNS answers (name -> A records) and these stubs of other
 * tools (name -> bash body); returns one of the collector's files.
 */
function metricsFile(
  file: string,
  answers: Record<string, string[]>,
  stubs: Record<string, string> = {},
): string {
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
  stubs = { kdig: `name=\${!#}\ncase "$name" in\n${table}\nesac`, ...stubs };
  for (const [name, body] of Object.entries(stubs)) {
    writeFileSync(join(bin, name), `#!/bin/bash\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  const res = spawnSync("bash", [join(FILES, "mailstack-metrics")], {
    env: {
      ...process.env,
      PATH: hostPath(bin),
      MAILSTACK_ETC: etc,
      MAILSTACK_METRICS_DIR: collector,
      MAILSTACK_TLS_CERT: join(dir, "none.crt"),
    },
    encoding: "utf8",
  });
  expect(res.status).toBe(0);
  return readFileSync(join(collector, file), "utf8");
}
const blocklistFigures = (answers: Record<string, string[]>) =>
  metricsFile("mailstack_blocklist.prom", answers);

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

describe("mailstack-metrics: fail2ban's bans, from one client call", () => {
  test("each jail's count, an account throttle's entries among them; no series without fail2ban", () => {
    const prom = metricsFile(
      "mailstack.prom",
      {},
      {
        "fail2ban-client": `[ "$*" = banned ] || exit 1
echo "[{'sshd': ['192.0.2.7', '192.0.2.8']}, {'mailstack-account': ['alice@b.example,198.51.100.9']}, {'dovecot': []}]"`,
      },
    );
    expect(series(prom).filter((l) => l.startsWith("mailstack_fail2ban"))).toEqual([
      'mailstack_fail2ban_banned{jail="sshd"} 2',
      'mailstack_fail2ban_banned{jail="mailstack-account"} 1',
      'mailstack_fail2ban_banned{jail="dovecot"} 0',
    ]);
    // fail2ban down: no figure at all (an alert on its absence), never a false 0.
    const down = metricsFile("mailstack.prom", {}, { "fail2ban-client": "exit 255" });
    expect(down).not.toContain("mailstack_fail2ban");
    expect(down).toContain("mailstack_metrics_last_run_timestamp_seconds");
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

describe("mailstack-report: known vulnerabilities (debsecan)", () => {
  // The feed as Debian's security tracker serves it for one release (debsecan fetches
  // <source>/<suite> and inflates it with zlib), written out: the vulnerabilities, then per
  // package "<package>,<index>,<kind><urgency><remote><F when the release has the fix>,
  // <fixed in unstable>,<fixed versions in the release>", then the binaries of a source.
  // Beside it a dpkg status file: bash at the release's fixed version, openssl's two
  // binaries before it, postfix with a vulnerability no release has fixed.
  const FIXTURES = join(__dirname, "fixtures", "debsecan");
  // The report asks for the host's release by its code name from /etc/os-release: here, this
  // machine's.
  const suite = /^VERSION_CODENAME="?([a-z]+)"?$/m.exec(
    readFileSync("/etc/os-release", "utf8"),
  )?.[1];
  const heading = `Known vulnerabilities (debsecan, Debian ${suite})`;

  /** Runs `mailstack-report --print` with debsecan reading this feed source and dpkg status. */
  function printReport(source: (feedDir: string) => string, status = join(FIXTURES, "status")) {
    const dir = mkdtempSync(join(tmpdir(), "mailstack-report-"));
    const [etc, bin, collector, feed] = ["etc", "bin", "collector", "feed"].map((d) =>
      join(dir, d),
    );
    for (const d of [etc, bin, collector, feed]) mkdirSync(d);
    writeFileSync(join(etc, "host.conf"), "MAIL_DOMAIN=b.example\nMAIL_HOST=mail.b.example\n");
    writeFileSync(join(feed, suite!), deflateSync(readFileSync(join(FIXTURES, "feed"))));
    writeFileSync(
      join(collector, "mailstack.prom"),
      "mailstack_certificate_expiry_timestamp_seconds 4102444800\n",
    );
    // The other sections' tools: fail2ban with one jail, an empty journal, no quotas.
    const stubs: Record<string, string> = {
      "fail2ban-client": `[ "$*" = status ] && echo '\`- Jail list: sshd' || echo '\`- Currently banned: 0'`,
      journalctl: "exit 0",
      doveadm: "exit 1",
      pflogsumm: "echo 'Grand Totals'",
    };
    for (const [name, body] of Object.entries(stubs)) {
      writeFileSync(join(bin, name), `#!/bin/bash\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    }
    // No proxy may stand between debsecan and the source this test names.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !/_proxy$/i.test(k)),
    );
    const res = spawnSync("bash", [join(FILES, "mailstack-report"), "--day", "today", "--print"], {
      env: {
        ...env,
        PATH: hostPath(bin),
        MAILSTACK_ETC: etc,
        MAILSTACK_METRICS_DIR: collector,
        MAILSTACK_DEBSECAN_SOURCE: source(feed),
        MAILSTACK_DPKG_STATUS: status,
      },
      encoding: "utf8",
    });
    const lines = res.stdout.split("\n");
    const prom = join(collector, "mailstack_vulnerabilities.prom");
    return {
      status: res.status,
      stderr: res.stderr,
      // Each section's title: the line above a line of "=" as long as it.
      headings: lines.filter((l, i) => l !== "" && lines[i + 1] === "=".repeat(l.length)),
      // The section, the report's last, to its end.
      section: lines.slice(lines.indexOf(heading)).filter((l) => l !== ""),
      text: res.stdout,
      figures: existsSync(prom) ? series(readFileSync(prom, "utf8")) : undefined,
    };
  }

  const HEADINGS = [
    "Mail (Postfix's log, by pflogsumm)",
    "Spam and viruses (Rspamd)",
    "Bans (fail2ban)",
    "Disks and mailboxes",
    "Certificate and backup",
    heading,
  ];

  test("the machine names its release, as a Debian host does", () => {
    expect(suite).toMatch(/^[a-z]+$/);
  });

  test("lists the vulnerabilities whose fix is in the release but not installed, and counts all", () => {
    const r = printReport((feed) => `file://${feed}`);
    expect([r.status, r.stderr]).toEqual([0, ""]);
    // openssl's CVE on both its binaries (the fix is out, the host has not installed it);
    // postfix's, which has no fix, only counted; bash's not at all: its fix is installed.
    expect(r.section).toEqual([
      heading,
      "=".repeat(heading.length),
      "known: 2 vulnerabilities in 3 installed packages",
      `fixed in ${suite} but not installed: 1 vulnerability in 2 packages`,
      "  CVE-2099-0001 libssl3t64 (remotely exploitable, high urgency)",
      "  CVE-2099-0001 openssl (remotely exploitable, high urgency)",
    ]);
    expect(r.headings).toEqual(HEADINGS);
    expect(r.figures).toEqual([
      'mailstack_vulnerable_packages{fixed="yes"} 2',
      'mailstack_vulnerable_packages{fixed="no"} 1',
    ]);
  });

  test("a host with every fix installed and no other known vulnerability: none, and zeros", () => {
    // bash alone, at the version that fixed its vulnerability.
    const status = join(mkdtempSync(join(tmpdir(), "dpkg-")), "status");
    writeFileSync(status, readFileSync(join(FIXTURES, "status"), "utf8").split("\n\n")[0] + "\n");
    const r = printReport((feed) => `file://${feed}`, status);
    expect([r.status, r.stderr]).toEqual([0, ""]);
    expect(r.section).toEqual([
      heading,
      "=".repeat(heading.length),
      "known: none",
      `fixed in ${suite} but not installed: none`,
    ]);
    expect(r.figures).toEqual([
      'mailstack_vulnerable_packages{fixed="yes"} 0',
      'mailstack_vulnerable_packages{fixed="no"} 0',
    ]);
  });

  test("its service may reach the tracker once the network is up, and write the figures", () => {
    const unit = readFileSync(join(FILES, "mailstack-report.service"), "utf8");
    expect(unit).toMatch(/^Wants=network-online\.target$/m);
    expect(unit).toMatch(/^After=.*\bnetwork-online\.target\b/m);
    expect(unit).toMatch(/^RestrictAddressFamilies=.*\bAF_INET AF_INET6\b/m);
    expect(unit).toMatch(/^ReadWritePaths=.* -\/var\/lib\/prometheus\/node-exporter( |$)/m);
  });

  test("a feed that cannot be read is said so, with debsecan's error, and the report goes on", () => {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    const r = printReport(() => "http://127.0.0.1:1");
    expect(r.status).toBe(0);
    expect(r.section).toEqual([
      heading,
      "=".repeat(heading.length),
      "The vulnerability feed could not be read (debsecan exited 1), so none are listed today:",
      `  error: while downloading http://127.0.0.1:1/${suite}:`,
      "  error: [Errno 111] Connection refused",
    ]);
    expect(r.headings).toEqual(HEADINGS);
    expect(r.text).toContain("\ncertificate: expires 2100-01-01 00:00:00 UTC, in ");
    // No figures rather than made-up ones.
    expect(r.figures).toBeUndefined();
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
  test("a failed certificate renewal, backup, backup check, report or fold of copies mails postmaster; the every-minute metrics do not", () => {
    const onFailure = (unit: string) =>
      /^OnFailure=mailstack-alert@%N\.service$/m.test(
        readFileSync(join(FILES, `${unit}.service`), "utf8"),
      );
    for (const unit of [
      "mailstack-cert",
      "mailstack-backup",
      "mailstack-backup-check",
      "mailstack-report",
      "mailstack-dedup",
    ]) {
      expect([unit, onFailure(unit)]).toEqual([unit, true]);
    }
    expect(onFailure("mailstack-metrics")).toBe(false);
  });
});

describe("mailstack-dedup", () => {
  /**
   * Runs mailstack-dedup with a journal whose previous boot ends at `lastEntry` (none: no
   * previous boot) and a doveadm whose searches print `lines[i]` messages for the i-th search
   * (INBOX, Junk before; INBOX, Junk after) and whose deduplicate exits `dedupExit`.
   */
  function dedup(
    args: string[],
    {
      lastEntry,
      lines = [0, 0, 0, 0],
      dedupExit = 0,
    }: {
      lastEntry?: string;
      lines?: number[];
      dedupExit?: number;
    },
  ) {
    const dir = mkdtempSync(join(tmpdir(), "mailstack-dedup-"));
    const bin = join(dir, "bin");
    mkdirSync(bin);
    const stubs: Record<string, string> = {
      journalctl:
        lastEntry === undefined
          ? `echo "$*" >>${dir}/journalctl; echo 'Data from the specified boot (-1) is not available' >&2; exit 1`
          : `echo "$*" >>${dir}/journalctl; echo '${lastEntry} mail systemd[1]: Stopping...'`,
      doveadm: [
        `echo "$*" >>${dir}/calls`,
        'if [ "$1" = search ]; then',
        `  n=$(grep -c '^search' ${dir}/calls)`,
        `  counts=(${lines.join(" ")})`,
        '  for ((i = 0; i < counts[n - 1]; i++)); do echo "alice@b.example guid $i"; done',
        "  exit 0",
        "fi",
        `exit ${dedupExit}`,
      ].join("\n"),
    };
    for (const [name, body] of Object.entries(stubs)) {
      writeFileSync(join(bin, name), `#!/bin/bash\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    }
    const res = spawnSync("bash", [join(FILES, "mailstack-dedup"), ...args], {
      env: { ...process.env, PATH: hostPath(bin) },
      encoding: "utf8",
    });
    const read = (f: string) =>
      existsSync(join(dir, f)) ? readFileSync(join(dir, f), "utf8") : "";
    return { status: res.status, out: res.stdout, err: res.stderr, calls: read("calls") };
  }

  test("folds in INBOX and Junk, by Message-ID, what was saved since 10 minutes before the previous boot's end", () => {
    // 1764633600 is 2025-12-02 00:00:00 UTC.
    const r = dedup([], { lastEntry: "1764634200.123456", lines: [3, 1, 2, 1] });
    expect([r.status, r.err]).toEqual([0, ""]);
    expect(r.calls).toBe(
      [
        "search -A mailbox INBOX SAVEDSINCE 1764633600",
        "search -A mailbox Junk SAVEDSINCE 1764633600",
        "deduplicate -A -m mailbox INBOX SAVEDSINCE 1764633600",
        "deduplicate -A -m mailbox Junk SAVEDSINCE 1764633600",
        "search -A mailbox INBOX SAVEDSINCE 1764633600",
        "search -A mailbox Junk SAVEDSINCE 1764633600",
        "",
      ].join("\n"),
    );
    expect(r.out).toBe(
      "mailstack-dedup: folded 1 of 4 messages saved since 2025-12-02 00:00:00 UTC (10 minutes before the previous boot's last journal entry), in INBOX and Junk\n",
    );
  });

  test("with no previous boot in the journal it touches nothing; --since opens the window where asked", () => {
    const none = dedup([], {});
    expect([none.status, none.out, none.calls]).toEqual([
      0,
      "mailstack-dedup: no previous boot in the journal: nothing to fold\n",
      "",
    ]);
    // The control: a window given by hand is folded, and no journal is needed for it.
    const asked = dedup(["--since", "1764633600"], { lines: [2, 0, 1, 0] });
    expect(asked.status).toBe(0);
    expect(asked.calls).toContain("deduplicate -A -m mailbox INBOX SAVEDSINCE 1764633600\n");
    expect(asked.out).toMatch(
      /: folded 1 of 2 messages saved since 2025-12-02 00:00:00 UTC \(as asked\)/,
    );
  });

  test("bad input exits 2 naming the option and touches nothing; a failing doveadm fails the run", () => {
    for (const args of [["--since", "12"], ["--since"], ["--bogus"]]) {
      const r = dedup(args, { lastEntry: "1764634200.1" });
      expect([r.status, r.calls]).toEqual([2, ""]);
      expect(r.err).toMatch(
        /^mailstack-dedup: (--since takes seconds since 1970 \(10 digits\); got '(12)?'|unknown option '--bogus')\nusage: /,
      );
    }
    const failed = dedup([], { lastEntry: "1764634200.1", lines: [1, 0, 1, 0], dedupExit: 75 });
    expect([failed.status, failed.err]).toEqual([
      1,
      "mailstack-dedup: could not deduplicate INBOX\n",
    ]);
  });
});
