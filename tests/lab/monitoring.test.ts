// Metrics on a real host: the exporters answer the monitoring address and nobody else, each
// serves what the dashboard and alerts read, a delivered message moves Postfix's and
// Dovecot's counters, the lab's Prometheus scrapes every job with the shipped configuration
// and fires the shipped alerts (their for: sped up) when a fault is made; and the daily report
// counts what the suite sent.
import { readFileSync } from "node:fs";
import { get } from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import {
  LAB_FOR_SPEEDUP,
  PROMETHEUS_URL,
  durationSeconds,
  startPrometheus,
  stopPrometheus,
} from "../../lab/prometheus";
import { dashboardMetrics } from "../support/dashboard";
import { BRIDGE, LAB_CLIENT_IP4 } from "../../lab/settings";
import { SmtpSession } from "./smtp";
import { HOSTS, acmeRoot, deliver, local, onHost, sendMail, waitForMessage } from "./support";

const alpha = HOSTS[0];
const alice = `alice@${alpha.config.domain}`;

/** GET over plain HTTP from an address of this machine; the body, or the error's code. */
function fetchText(url: string, localAddress?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { localAddress, timeout: 5000 }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () =>
        res.statusCode === 200
          ? resolve(body)
          : reject(new Error(`${url}: HTTP ${res.statusCode}`)),
      );
    });
    req.on("timeout", () =>
      req.destroy(Object.assign(new Error("timeout"), { code: "ETIMEDOUT" })),
    );
    req.on("error", reject);
  });
}

const metrics = (port: number) => fetchText(`http://${alpha.ipv4}:${port}/metrics`);

/** The value of one sample, by its name and labels as printed, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Whether a TCP connection from `localAddress` to alpha's port opens within 3 s. */
function opens(port: number, localAddress: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: alpha.ipv4, port, localAddress, timeout: 3000 });
    s.on("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.on("timeout", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", () => resolve(false));
  });
}

beforeAll(async () => {
  // A second address on the lab segment, outside monitoringAllowedIps (bans.test.ts uses it too).
  local("ip", ["addr", "replace", `${LAB_CLIENT_IP4}/24`, "dev", BRIDGE]);
  // The host's facts are written every minute; have them now.
  onHost(alpha, "sudo systemctl start mailstack-metrics.service");
  // The lab's Prometheus runs while this suite does.
  await startPrometheus(alpha);
});
afterAll(stopPrometheus);

test("the exporters answer the monitoring address, and no other: mail ports stay open to it", async () => {
  for (const port of [9100, 9154, 9900]) {
    expect([port, await opens(port, LAB_CLIENT_IP4)]).toEqual([port, false]);
  }
  // Control: the same client reaches the MX, and the monitoring address reaches the exporters.
  expect(await opens(25, LAB_CLIENT_IP4)).toBe(true);
  for (const port of [9100, 9154, 9900])
    expect([port, await opens(port, "198.51.100.1")]).toEqual([port, true]);
});

test("node exporter: the host, the mail services' state, and the host's own facts", async () => {
  const text = await metrics(9100);
  for (const unit of [
    "postfix",
    "dovecot",
    "rspamd",
    "redis-server",
    "unbound",
    "fail2ban",
    "clamav-daemon",
  ]) {
    // One series per state; its type label varies by unit.
    const active = new RegExp(
      `^node_systemd_unit_state\\{name="${unit}\\.service",state="active",[^}]*\\} (\\d)$`,
      "m",
    );
    expect([unit, active.exec(text)?.[1]]).toEqual([unit, "1"]);
  }
  const expiry = sample(text, "mailstack_certificate_expiry_timestamp_seconds")!;
  const served = onHost(
    alpha,
    "sudo openssl x509 -in /srv/mail/.mailstack/tls/mail.crt -noout -enddate",
  );
  expect(expiry).toBe(Math.floor(Date.parse(served.trim().replace("notAfter=", "")) / 1000));
  expect(sample(text, "mailstack_dkim_key_published_matches")).toBe(1);
  for (const q of ["incoming", "active", "deferred", "hold"]) {
    expect(sample(text, `mailstack_postfix_queue_messages{queue="${q}"}`)).toBeGreaterThanOrEqual(
      0,
    );
  }
  expect(sample(text, 'mailstack_fail2ban_banned{jail="sshd"}')).toBeGreaterThanOrEqual(0);
  expect(sample(text, "mailstack_clamav_signatures_timestamp_seconds")).toBeGreaterThan(0);
  expect(text).toMatch(/^rspamd_scanned_total \d+/m);
  expect(sample(text, "mailstack_metrics_last_run_timestamp_seconds")).toBeGreaterThan(
    Date.now() / 1000 - 120,
  );
  expect(text).toMatch(
    /^node_filesystem_avail_bytes\{device="\/dev\/vdb",[^}]*mountpoint="\/srv\/mail"\} \d/m,
  );
});

test("the queue figure counts a message deferred while beta's Postfix is down, and drops once it is delivered", async () => {
  const beta = HOSTS[1];
  const bob = `bob@${beta.config.domain}`;
  const deferred = async () => {
    onHost(alpha, "systemctl start mailstack-metrics.service");
    return sample(await metrics(9100), 'mailstack_postfix_queue_messages{queue="deferred"}');
  };
  expect(await deferred()).toBe(0);
  const subject = `deferred ${Date.now()}`;
  onHost(beta, "systemctl stop postfix");
  try {
    onHost(alpha, `printf 'Subject: ${subject}\\n\\nlater\\n' | sendmail -f ${alice} ${bob}`);
    let n = await deferred();
    for (let i = 0; i < 15 && n === 0; i++) {
      await new Promise((r) => setTimeout(r, 2000));
      n = await deferred();
    }
    expect(n).toBe(1);
  } finally {
    onHost(beta, "systemctl start postfix");
  }
  onHost(alpha, "postqueue -f");
  await waitForMessage(beta, bob, "INBOX", subject);
  let n = await deferred();
  for (let i = 0; i < 10 && n !== 0; i++) {
    await new Promise((r) => setTimeout(r, 2000));
    n = await deferred();
  }
  expect(n).toBe(0);
});

test("a delivered message moves the Postfix and Dovecot counters", async () => {
  const counter = async (port: number, series: string) => sample(await metrics(port), series) ?? 0;
  const before = {
    postfix: await counter(9154, "postfix_smtpd_connects_total"),
    lmtp: await counter(9900, "dovecot_mail_delivery_total"),
  };
  const subject = `metrics ${Date.now()}`;
  expect(await deliver(alpha, alice, subject)).toBe(250);
  await waitForMessage(alpha, alice, "INBOX", subject);
  // The Postfix exporter reads the mail log as it grows.
  const end = Date.now() + 30_000;
  let after = before;
  while (Date.now() < end) {
    after = {
      postfix: await counter(9154, "postfix_smtpd_connects_total"),
      lmtp: await counter(9900, "dovecot_mail_delivery_total"),
    };
    if (after.postfix > before.postfix && after.lmtp > before.lmtp) break;
    await new Promise((r) => setTimeout(r, 2000));
  }
  expect(after.postfix).toBeGreaterThan(before.postfix);
  expect(after.lmtp).toBeGreaterThan(before.lmtp);
});

test("every metric the dashboard reads is served by one of the host's exporters", async () => {
  // Labelled counters appear with their first event: mail in over TLS, a refused relay, mail
  // out to beta; and the backup's figures with the first backup.
  const subject = `dashboard ${Date.now()}`;
  await sendMail({
    host: alpha.ipv4,
    port: 25,
    from: "someone@lab.example",
    to: alice,
    subject,
    text: "counted\n",
    ca: await acmeRoot(),
    servername: alpha.config.mailHost,
  });
  const s = await SmtpSession.open({ host: alpha.ipv4, port: 25 });
  await s.ehlo();
  await s.command("MAIL FROM:<someone@lab.example>");
  expect((await s.command("RCPT TO:<someone@elsewhere.example>")).code).toBe(554);
  s.close();
  const beta = HOSTS[1];
  onHost(
    alpha,
    `printf 'Subject: ${subject}\\n\\nout\\n' | sudo sendmail -f ${alice} bob@${beta.config.domain}`,
  );
  await waitForMessage(beta, `bob@${beta.config.domain}`, "INBOX", subject);
  onHost(
    alpha,
    "sudo test -s /var/lib/prometheus/node-exporter/mailstack_backup.prom || sudo systemctl start mailstack-backup.service",
  );
  onHost(alpha, "sudo systemctl start mailstack-metrics.service");
  const missingNow = async () => {
    const served = (await Promise.all([9100, 9154, 9900].map(metrics))).join("\n");
    return dashboardMetrics().filter((m) => !new RegExp(`^${m}[{ ]`, "m").test(served));
  };
  let missing = await missingNow();
  for (let i = 0; i < 10 && missing.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 3000));
    missing = await missingNow();
  }
  expect(missing).toEqual([]);
});

test("the lab's Prometheus scrapes every job of the shipped configuration", async () => {
  const end = Date.now() + 60_000;
  let up: { metric: { job: string }; value: [number, string] }[] = [];
  while (Date.now() < end) {
    const body = JSON.parse(await fetchText(`${PROMETHEUS_URL}/api/v1/query?query=up`));
    up = body.data.result;
    if (up.length === 3 && up.every((r) => r.value[1] === "1")) break;
    await new Promise((r) => setTimeout(r, 2000));
  }
  expect(Object.fromEntries(up.map((r) => [r.metric.job, r.value[1]]))).toEqual({
    "mailstack-node": "1",
    "mailstack-postfix": "1",
    "mailstack-dovecot": "1",
  });
});

describe("alerts: the lab's Prometheus fires each within its for: window, and clears it", () => {
  interface Alert {
    labels: Record<string, string>;
    state: "pending" | "firing";
  }
  const alerts = async (name: string): Promise<Alert[]> =>
    (JSON.parse(await fetchText(`${PROMETHEUS_URL}/api/v1/alerts`)).data.alerts as Alert[]).filter(
      (a) => a.labels.alertname === name,
    );

  /** The shipped rule's `for:` as the lab runs it, in seconds (the first rule of that name). */
  const labFor = (name: string) => {
    const rule = new RegExp(`- alert: ${name}\\n[\\s\\S]*?\\n\\s+for: (\\d+[smh])\\n`).exec(
      readFileSync(join(__dirname, "..", "..", "monitoring", "alerts.yml"), "utf8"),
    );
    return durationSeconds(rule![1]) / LAB_FOR_SPEEDUP;
  };
  /** A scrape, two evaluations (5 s each) and a second of polling past the `for:` window. */
  const SLACK_S = 16;

  /**
   * Polls the alert until `done` holds of its instances (those `which` picks); returns every
   * state they went through and the seconds it took.
   */
  async function watch(
    name: string,
    which: (a: Alert) => boolean,
    done: (states: string[]) => boolean,
    timeoutS: number,
  ): Promise<{ seen: string[]; seconds: number }> {
    const start = Date.now();
    const seen: string[] = [];
    for (;;) {
      const states = (await alerts(name)).filter(which).map((a) => a.state);
      for (const s of states) if (seen.at(-1) !== s) seen.push(s);
      if (done(states)) return { seen, seconds: (Date.now() - start) / 1000 };
      if (Date.now() - start > timeoutS * 1000) {
        throw new Error(`${name}: not done after ${timeoutS} s; states seen: ${seen.join(", ")}`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  const firing = (n: number) => (states: string[]) =>
    states.length === n && states.every((s) => s === "firing");
  const none = (states: string[]) => states.length === 0;

  test("ExporterDown: the Postfix exporter stopped fires it; started again, it clears", async () => {
    const postfixJob = (a: Alert) => a.labels.job === "mailstack-postfix";
    expect(await alerts("ExporterDown")).toEqual([]);
    onHost(alpha, "systemctl stop prometheus-postfix-exporter");
    try {
      const fired = await watch("ExporterDown", postfixJob, firing(1), 120);
      // Pending first: the rule waits its for: window before it fires.
      expect(fired.seen).toEqual(["pending", "firing"]);
      expect(fired.seconds).toBeLessThanOrEqual(labFor("ExporterDown") + SLACK_S);
    } finally {
      onHost(alpha, "systemctl start prometheus-postfix-exporter");
    }
    await watch("ExporterDown", postfixJob, none, 60);
  });

  test("ServiceFailed: a mailstack unit that fails fires it as a warning; reset, it clears", async () => {
    const unit = "mailstack-lab-fails.service";
    const ours = (a: Alert) => a.labels.name === unit;
    expect((await alerts("ServiceFailed")).filter(ours)).toEqual([]);
    onHost(alpha, `systemd-run --unit=${unit} --service-type=oneshot false || true`);
    try {
      expect(onHost(alpha, `systemctl is-failed ${unit} || true`).trim()).toBe("failed");
      const fired = await watch("ServiceFailed", ours, firing(1), 120);
      expect(fired.seen).toEqual(["pending", "firing"]);
      expect(fired.seconds).toBeLessThanOrEqual(labFor("ServiceFailed") + SLACK_S);
      expect((await alerts("ServiceFailed")).find(ours)!.labels.severity).toBe("warning");
    } finally {
      onHost(alpha, `systemctl reset-failed ${unit} || true`);
    }
    await watch("ServiceFailed", ours, none, 60);
  });

  test("CertificateExpiresSoon: a certificate two days from expiry (a scratch copy) fires the warning and the critical; the served one neither", async () => {
    const all = () => true;
    // Control: the certificate alpha serves is far from expiry.
    expect(await alerts("CertificateExpiresSoon")).toEqual([]);
    // The timer would rewrite the figure within a minute: held while the scratch copy counts.
    // Its service too: a run already under way when the timer stops would publish the served
    // certificate's figure over the scratch one.
    onHost(
      alpha,
      [
        "systemctl stop mailstack-metrics.timer mailstack-metrics.service",
        "d=$(mktemp -d)",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=scratch -keyout $d/key -out $d/crt 2>/dev/null",
        "MAILSTACK_TLS_CERT=$d/crt mailstack-metrics",
        "rm -r $d",
      ].join(" && "),
    );
    try {
      const fired = await watch("CertificateExpiresSoon", all, firing(2), 180);
      expect(fired.seen).toEqual(["pending", "firing"]);
      expect(fired.seconds).toBeLessThanOrEqual(labFor("CertificateExpiresSoon") + SLACK_S);
      expect((await alerts("CertificateExpiresSoon")).map((a) => a.labels.severity).sort()).toEqual(
        ["critical", "warning"],
      );
    } finally {
      onHost(alpha, "systemctl start mailstack-metrics.service mailstack-metrics.timer");
    }
    await watch("CertificateExpiresSoon", all, none, 60);
  });
});

describe("the daily report", () => {
  const postmaster = alpha.config.users[0].address;
  const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

  /** Today's report as alpha prints it, and its figures: pflogsumm's totals, Rspamd's verdicts. */
  function today() {
    const text = onHost(alpha, "mailstack-report --day today --print");
    const figure = (label: string) => {
      // "   3   received", "   2   rejected (40%)", "       1  reject": the whole label.
      const m = new RegExp(`^ *(\\d+) +${label}(?: \\(\\d+%\\))?$`, "m").exec(text);
      if (!m) throw new Error(`no '${label}' in the report:\n${text}`);
      return Number(m[1]);
    };
    return {
      text,
      received: figure("received"),
      delivered: figure("delivered"),
      rejected: figure("rejected"),
      scanned: figure("scanned"),
      spamRejected: figure("reject"),
    };
  }
  type Figures = Omit<ReturnType<typeof today>, "text">;
  const FIGURES = ["received", "delivered", "rejected", "scanned", "spamRejected"] as const;
  const moved = (a: Figures, b: Figures) =>
    Object.fromEntries(FIGURES.map((k) => [k, b[k] - a[k]]));

  test("its numbers move by exactly what the suite sent", async () => {
    const before = today();
    const stamp = Date.now();
    // Two clean messages in, one GTUBE refused by Rspamd, one relay refused by Postfix.
    for (const i of [1, 2]) expect(await deliver(alpha, alice, `report ${i} ${stamp}`)).toBe(250);
    expect(await deliver(alpha, alice, `report spam ${stamp}`, `${gtube}\n`)).toBe(554);
    const s = await SmtpSession.open({ host: alpha.ipv4, port: 25 });
    await s.ehlo();
    await s.command("MAIL FROM:<someone@lab.example>");
    expect((await s.command("RCPT TO:<someone@elsewhere.example>")).code).toBe(554);
    s.close();
    for (const i of [1, 2]) await waitForMessage(alpha, alice, "INBOX", `report ${i} ${stamp}`);
    const want = { received: 3, delivered: 2, rejected: 2, scanned: 3, spamRejected: 1 };
    // The logs reach the files a moment after the replies.
    let after = today();
    for (let i = 0; i < 10 && JSON.stringify(moved(before, after)) !== JSON.stringify(want); i++) {
      await new Promise((r) => setTimeout(r, 2000));
      after = today();
    }
    expect(moved(before, after)).toEqual(want);
    // The other sections are there, with the host's real figures.
    expect(after.text).toMatch(/^ +Relay access denied/m);
    for (const heading of ["Bans (fail2ban)", "Disks and mailboxes", "Certificate and backup"])
      expect(after.text).toContain(`\n${heading}\n`);
    expect(after.text).toMatch(/^sshd +\d+ +\d+$/m);
    expect(after.text).toMatch(/^\/srv\/mail /m);
    expect(after.text).toContain(postmaster);
    expect(after.text).toMatch(/^certificate: expires \d{4}-\d\d-\d\d .*, in \d+ days$/m);
  });

  test("the timer's service mails it to postmaster", async () => {
    const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    onHost(alpha, "systemctl start mailstack-report.service");
    const mail = await waitForMessage(
      alpha,
      postmaster,
      "INBOX",
      `[mailstack] ${alpha.config.mailHost} on ${yesterday}:`,
    );
    expect(mail).toContain("Grand Totals");
    expect(mail).toMatch(/^Auto-Submitted: auto-generated\r?$/m);
  });
});
