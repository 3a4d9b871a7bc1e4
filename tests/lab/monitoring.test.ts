// Metrics on a real host: the exporters answer the monitoring address and nobody else, each
// serves what the dashboard and alerts read, a delivered message moves Postfix's and
// Dovecot's counters, and the lab's Prometheus scrapes every job with the shipped
// configuration.
import { get } from "node:http";
import { connect } from "node:net";
import { PROMETHEUS_URL } from "../../lab/prometheus";
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

beforeAll(() => {
  // A second address on the lab segment, outside monitoringAllowedIps (bans.test.ts uses it too).
  local("ip", ["addr", "replace", `${LAB_CLIENT_IP4}/24`, "dev", BRIDGE]);
  // The host's facts are written every minute; have them now.
  onHost(alpha, "sudo systemctl start mailstack-metrics.service");
});

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
