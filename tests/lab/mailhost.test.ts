// The mail host, end to end: alpha is the host under test, beta the outside world (another
// domain, its own stack). Every refusal stands beside a control that succeeds on the same path.
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { Resolver } from "node:dns/promises";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { authenticate } from "mailauth";
import { BRIDGE, LAB_CLIENT_IP4, SERVICES_IP4 } from "../../lab/settings";
import {
  HOSTS,
  acmeRoot,
  eventually,
  local,
  onHost,
  passwordOf,
  subjects,
  waitForMessage,
  withImap,
} from "./support";
import { SmtpSession, message, type Reply } from "./smtp";

const [alpha, beta] = HOSTS;
const A = alpha.config.domain;
const B = beta.config.domain;
/** The outside world's sender: lab.example has SPF for the test client and DMARC p=quarantine. */
const OUTSIDE = "someone@lab.example";
const token = () => randomBytes(6).toString("hex");
let ca = "";

beforeAll(async () => {
  ca = await acmeRoot();
});

const tlsFor = (h: typeof alpha) => ({ ca, servername: h.config.mailHost });

/** A logged-in submission session on 587 (STARTTLS) or 465 (implicit TLS). */
async function submission(h: typeof alpha, port: 465 | 587, user: string, password: string) {
  const s = await SmtpSession.open({
    host: h.ipv4,
    port,
    ...(port === 465 ? { tls: tlsFor(h) } : {}),
  });
  await s.ehlo();
  if (port === 587) {
    await s.starttls(ca, h.config.mailHost);
    await s.ehlo();
  }
  const auth = await s.authPlain(user, password);
  return { s, auth };
}

/** Sends one message through a session; returns the reply of each step. */
async function send(
  s: SmtpSession,
  from: string,
  to: string,
  text: string,
  mailOpts = "",
): Promise<{ mail: Reply; rcpt?: Reply; data?: Reply }> {
  const mail = await s.command(`MAIL FROM:<${from}>${mailOpts}`);
  if (mail.code !== 250) return { mail };
  const rcpt = await s.command(`RCPT TO:<${to}>`);
  if (rcpt.code !== 250) return { mail, rcpt };
  return { mail, rcpt, data: await s.data(text) };
}

/** One message from OUTSIDE under a Message-ID of the caller's; its copies differ by subject. */
function withId(to: string, subject: string, id: string): string {
  return [
    `From: ${OUTSIDE}`,
    `To: ${to}`,
    `Subject: ${subject}`,
    `Message-ID: ${id}`,
    `Date: ${new Date().toUTCString()}`,
    "",
    "one message, sent twice",
    "",
  ].join("\r\n");
}

/** As a remote MTA on port 25: STARTTLS verified, no login. */
async function inbound(h: typeof alpha, from: string, to: string, text: string) {
  const s = await SmtpSession.open({ host: h.ipv4, port: 25 });
  try {
    await s.ehlo("client.lab.example");
    await s.starttls(ca, h.config.mailHost);
    await s.ehlo("client.lab.example");
    return await send(s, from, to, text);
  } finally {
    s.close();
  }
}

const labResolver = new Resolver();
labResolver.setServers([SERVICES_IP4]);
/** mailauth's DNS (node's resolver interface): the lab's validating resolver. */
const resolver = ((name: string, rr: string) => labResolver.resolve(name, rr)) as never;

describe("submission and delivery", () => {
  test.each([587, 465] as const)(
    "a user submits on %i; beta receives it with DKIM, SPF and DMARC passing",
    async (port) => {
      const subject = `out-${port}-${token()}`;
      const alice = `alice@${A}`;
      const { s, auth } = await submission(alpha, port, alice, passwordOf(alpha, alice));
      expect(auth.code).toBe(235);
      const r = await send(
        s,
        alice,
        `bob@${B}`,
        message({ from: alice, to: `bob@${B}`, subject, body: "signed on the way out\n" }),
      );
      s.close();
      expect(r.data?.code).toBe(250);

      const raw = await waitForMessage(beta, `bob@${B}`, "INBOX", subject);
      // alpha signed with its selector and domain.
      expect(raw).toMatch(
        new RegExp(`DKIM-Signature:[^]*?d=${A};[^]*?s=${alpha.config.dkimSelector};`),
      );
      // beta's Rspamd checked it against the lab's signed DNS.
      const results = raw.match(/^Authentication-Results: [^]*?(?=\r?\n\S)/m)?.[0] ?? "";
      expect(results).toMatch(new RegExp(`dkim=pass header\\.d=${A}`));
      expect(results).toMatch(/spf=pass/);
      expect(results).toMatch(new RegExp(`dmarc=pass \\(policy=reject\\) header\\.from=${A}`));

      // An independent verifier agrees, from the same DNS.
      const verdict = await authenticate(raw, {
        ip: alpha.ipv4,
        helo: alpha.config.mailHost,
        mta: beta.config.mailHost,
        sender: alice,
        resolver,
      });
      expect(
        verdict.dkim.results.map((d: { status: { result: string } }) => d.status.result),
      ).toContain("pass");
      expect(verdict.spf && verdict.spf.status.result).toBe("pass");
      expect(verdict.dmarc && verdict.dmarc.status.result).toBe("pass");
    },
  );

  test("beta sends to a user; the message is in INBOX over IMAPS with its checks recorded", async () => {
    const subject = `in-${token()}`;
    const bob = `bob@${B}`;
    const { s, auth } = await submission(beta, 587, bob, passwordOf(beta, bob));
    expect(auth.code).toBe(235);
    const r = await send(
      s,
      bob,
      `alice@${A}`,
      message({ from: bob, to: `alice@${A}`, subject, body: "hello alice\n" }),
    );
    s.close();
    expect(r.data?.code).toBe(250);
    const raw = await waitForMessage(alpha, `alice@${A}`, "INBOX", subject);
    expect(raw).toMatch(
      new RegExp(`Authentication-Results: ${alpha.config.mailHost.replace(/\./g, "\\.")};`),
    );
    expect(raw).toMatch(new RegExp(`dkim=pass header\\.d=${B}`));
    expect(raw).toMatch(new RegExp(`dmarc=pass \\(policy=reject\\) header\\.from=${B}`));
  });

  test("a user alias and a group alias deliver to their mailboxes", async () => {
    const subject = `alias-${token()}`;
    const text = message({ from: OUTSIDE, to: `team@${A}`, subject, body: "to the team\n" });
    const s = await SmtpSession.open({ host: alpha.ipv4, port: 25 });
    await s.ehlo();
    await s.starttls(ca, alpha.config.mailHost);
    await s.ehlo();
    expect((await s.command(`MAIL FROM:<${OUTSIDE}>`)).code).toBe(250);
    expect((await s.command(`RCPT TO:<team@${A}>`)).code).toBe(250);
    expect((await s.command(`RCPT TO:<sales@${A}>`)).code).toBe(250);
    expect((await s.data(text)).code).toBe(250);
    s.close();
    await waitForMessage(alpha, `alice@${A}`, "INBOX", subject);
    await waitForMessage(alpha, `bob@${A}`, "INBOX", subject);
  });
});

describe("refusals, each beside its control", () => {
  test("relaying for a stranger is refused with 554; local delivery on the same session works", async () => {
    const s = await SmtpSession.open({ host: alpha.ipv4, port: 25 });
    await s.ehlo();
    expect((await s.command(`MAIL FROM:<${OUTSIDE}>`)).code).toBe(250);
    const relay = await s.command("RCPT TO:<victim@elsewhere.example>");
    expect(relay.text).toMatch(/^554 5\.7\.1 <victim@elsewhere\.example>: Relay access denied/);
    expect((await s.command(`RCPT TO:<alice@${A}>`)).code).toBe(250);
    s.close();
  });

  test("AUTH is never offered before TLS (587, 25), after STARTTLS on 587 only", async () => {
    const sub = await SmtpSession.open({ host: alpha.ipv4, port: 587 });
    const before = await sub.ehlo();
    expect(before).toContain("STARTTLS");
    expect(before.some((c) => c.startsWith("AUTH"))).toBe(false);
    expect((await sub.authPlain(`alice@${A}`, "x")).text).toMatch(
      /^530 5\.7\.0 Must issue a STARTTLS command first/,
    );
    await sub.starttls(ca, alpha.config.mailHost);
    expect(await sub.ehlo()).toContain("AUTH PLAIN LOGIN");
    sub.close();

    const mx = await SmtpSession.open({ host: alpha.ipv4, port: 25 });
    expect((await mx.ehlo()).some((c) => c.startsWith("AUTH"))).toBe(false);
    await mx.starttls(ca, alpha.config.mailHost);
    const after = await mx.ehlo();
    expect(after.some((c) => c.startsWith("AUTH"))).toBe(false);
    expect(after).toContain("PIPELINING");
    mx.close();
  });

  test("submission without login is refused; with login it is accepted", async () => {
    const s = await SmtpSession.open({ host: alpha.ipv4, port: 587 });
    await s.ehlo();
    await s.starttls(ca, alpha.config.mailHost);
    await s.ehlo();
    expect((await s.command(`MAIL FROM:<alice@${A}>`)).code).toBe(250);
    const rcpt = await s.command(`RCPT TO:<bob@${B}>`);
    expect(rcpt.text).toMatch(/^554 5\.7\.1 .*Client host rejected: Access denied/);
    s.close();

    const { s: ok, auth } = await submission(
      alpha,
      587,
      `alice@${A}`,
      passwordOf(alpha, `alice@${A}`),
    );
    expect(auth.code).toBe(235);
    expect((await ok.command(`MAIL FROM:<alice@${A}>`)).code).toBe(250);
    expect((await ok.command(`RCPT TO:<bob@${B}>`)).code).toBe(250);
    ok.close();
  });

  test("a user may send as their own address and aliases, not as another user", async () => {
    const alice = `alice@${A}`;
    const { s } = await submission(alpha, 465, alice, passwordOf(alpha, alice));
    for (const own of [alice, `sales@${A}`, `team@${A}`]) {
      expect((await s.command(`MAIL FROM:<${own}>`)).code).toBe(250);
      expect((await s.command(`RCPT TO:<bob@${B}>`)).code).toBe(250);
      expect((await s.command("RSET")).code).toBe(250);
    }
    expect((await s.command(`MAIL FROM:<bob@${A}>`)).code).toBe(250);
    const r = await s.command(`RCPT TO:<bob@${B}>`);
    expect(r.text).toMatch(
      new RegExp(`^553 5\\.7\\.1 <bob@${A}>: Sender address rejected: not owned by user ${alice}`),
    );
    s.close();
  });

  test("a wrong password is refused with 535; the right one is accepted with 235", async () => {
    const alice = `alice@${A}`;
    const { s: bad, auth: refused } = await submission(alpha, 587, alice, "not-the-password");
    expect(refused.text).toMatch(/^535 5\.7\.8 Error: authentication failed/);
    bad.close();
    const { s: good, auth } = await submission(alpha, 587, alice, passwordOf(alpha, alice));
    expect(auth.text).toMatch(/^235 2\.7\.0 Authentication successful/);
    good.close();
    await expect(withImap(alpha, alice, "not-the-password", async () => true)).rejects.toThrow();
    expect(await withImap(alpha, alice, passwordOf(alpha, alice), async () => true)).toBe(true);
  });
});

describe("TLS on every port", () => {
  const ports: [number, string[]][] = [
    [25, ["-starttls", "smtp"]],
    [587, ["-starttls", "smtp"]],
    [465, []],
    [993, []],
  ];
  /** One handshake with openssl; the client allows everything (SECLEVEL 0), the server decides. */
  const handshake = (port: number, extra: string[], args: string[]) =>
    local(
      "openssl",
      [
        "s_client",
        "-connect",
        `${alpha.ipv4}:${port}`,
        "-servername",
        alpha.config.mailHost,
        ...extra,
        ...args,
      ],
      "",
    );
  const accepted = (out: string) => /New, TLSv1\.[0-3], Cipher is (?!\(NONE\))/.test(out);

  describe.each(ports)("port %i", (port, extra) => {
    test("TLS 1.2 and 1.3 accepted; 1.0 and 1.1 refused", () => {
      expect(accepted(handshake(port, extra, ["-tls1_3"]).out)).toBe(true);
      expect(accepted(handshake(port, extra, ["-tls1_2"]).out)).toBe(true);
      for (const old of ["-tls1", "-tls1_1"]) {
        const r = handshake(port, extra, [old, "-cipher", "ALL:@SECLEVEL=0"]);
        expect(accepted(r.out)).toBe(false);
      }
    });

    test("anonymous, DHE, static-RSA and CBC-SHA1 suites refused; ECDHE with AEAD accepted", () => {
      const with12 = (cipher: string) =>
        accepted(handshake(port, extra, ["-tls1_2", "-cipher", `${cipher}:@SECLEVEL=0`]).out);
      expect(with12("ECDHE-ECDSA-AES128-GCM-SHA256")).toBe(true);
      expect(with12("ECDHE-ECDSA-CHACHA20-POLY1305")).toBe(true);
      expect(with12("aNULL")).toBe(false);
      expect(with12("kDHE")).toBe(false);
      expect(with12("kRSA")).toBe(false);
      expect(with12("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")).toBe(false);
    });

    test("the certificate chains to the lab CA and its key is the one in TLSA", () => {
      const r = handshake(port, extra, [
        "-verify_return_error",
        "-verify_hostname",
        alpha.config.mailHost,
        "-CAfile",
        caFile(),
      ]);
      expect(r.out).toMatch(/Verify return code: 0 \(ok\)/);
      const pem = r.out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
      expect(pem).toBeDefined();
      const spki = new X509Certificate(pem!).publicKey.export({ type: "spki", format: "der" });
      const tlsa = local("kdig", [
        `@${SERVICES_IP4}`,
        `_25._tcp.${alpha.config.mailHost}`,
        "TLSA",
        "+short",
      ]).out;
      expect(tlsa.replace(/\s+/g, "").toLowerCase()).toContain(
        `311${createHash("sha256").update(spki).digest("hex")}`,
      );
    });
  });
});

/** The lab CA as a file, for openssl. */
function caFile(): string {
  const path = join(tmpdir(), `mailstack-lab-ca-${process.pid}.pem`);
  writeFileSync(path, ca);
  return path;
}

describe("exposure", () => {
  // From an address of the lab segment outside monitoringAllowedIps (which lets the services
  // address reach the exporters: tests/lab/monitoring.test.ts).
  beforeAll(() => {
    local("ip", ["addr", "replace", `${LAB_CLIENT_IP4}/24`, "dev", BRIDGE]);
  });
  const probe = (port: number) =>
    new Promise<"open" | "closed">((resolve) => {
      const s = connect({ host: alpha.ipv4, port, timeout: 4000, localAddress: LAB_CLIENT_IP4 });
      s.once("connect", () => {
        s.destroy();
        resolve("open");
      });
      s.once("timeout", () => {
        s.destroy();
        resolve("closed");
      });
      s.once("error", () => resolve("closed"));
    });

  test("exactly 22, 25, 465, 587, 993 and 4190 answer from outside", async () => {
    const open = [22, 25, 465, 587, 993, 4190];
    const shut = [80, 110, 143, 443, 995, 2000, 3310, 6379, 9100, 9154, 9900, 11332, 11333, 11334];
    const seen = await Promise.all(
      [...open, ...shut].map(async (p) => [p, await probe(p)] as const),
    );
    expect(Object.fromEntries(seen)).toEqual(
      Object.fromEntries([...open.map((p) => [p, "open"]), ...shut.map((p) => [p, "closed"])]),
    );
  });

  test("on the host, Redis and the Rspamd controller listen on the loopback only", () => {
    const listening = onHost(alpha, "ss -Hltn")
      .split("\n")
      .map((l) => l.trim().split(/\s+/)[3] ?? "");
    for (const port of [6379, 11332, 11334]) {
      const binds = listening.filter((l) => l.endsWith(`:${port}`));
      expect(binds.length).toBeGreaterThan(0);
      for (const b of binds) expect(b).toMatch(/^(127\.0\.0\.1|\[::1\]):/);
    }
  });
});

describe("filtering", () => {
  const clean = (subject: string) =>
    message({ from: OUTSIDE, to: `alice@${A}`, subject, body: "a plain, clean message\n" });

  test("GTUBE is rejected with 5xx; a clean message is accepted", async () => {
    const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
    const spam = await inbound(
      alpha,
      OUTSIDE,
      `alice@${A}`,
      message({ from: OUTSIDE, to: `alice@${A}`, subject: "gtube", body: `${gtube}\n` }),
    );
    expect(spam.data?.text).toMatch(/^554 5\.7\.1 Gtube pattern/);
    const ok = await inbound(alpha, OUTSIDE, `alice@${A}`, clean(`clean-${token()}`));
    expect(ok.data?.code).toBe(250);
  });

  /** A message from the outside world with one attachment. */
  const withAttachment = (filename: string, content: string) => {
    const boundary = "b-" + token();
    return [
      `From: ${OUTSIDE}`,
      `To: alice@${A}`,
      `Subject: attachment-${token()}`,
      `Message-ID: <${token()}@lab.example>`,
      `Date: ${new Date().toUTCString()}`,
      "MIME-Version: 1.0",
      `Content-Type: multipart/mixed; boundary="${boundary}"`,
      "",
      `--${boundary}`,
      "Content-Type: text/plain",
      "",
      "see attachment",
      `--${boundary}`,
      "Content-Type: application/octet-stream",
      `Content-Disposition: attachment; filename="${filename}"`,
      "Content-Transfer-Encoding: base64",
      "",
      Buffer.from(content).toString("base64"),
      `--${boundary}--`,
      "",
    ].join("\r\n");
  };

  test("EICAR is rejected with 5xx by ClamAV; a harmless attachment is accepted", async () => {
    const eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    const r = await inbound(alpha, OUTSIDE, `alice@${A}`, withAttachment("eicar.com", eicar));
    // The lab's signature is unsigned, so ClamAV names it "...UNOFFICIAL".
    expect(r.data?.text).toMatch(/^554 5\.7\.1 clamav: virus found: "Eicar-Test-Signature/);
    const ok = await inbound(alpha, OUTSIDE, `alice@${A}`, withAttachment("notes.txt", "notes\n"));
    expect(ok.data?.code).toBe(250);
  });

  /** Plain SMTP from beta's own address to bob@alpha; the reply to the message. */
  const fromBeta = (sender: string, id: string) => {
    const py = [
      "import smtplib",
      `s=smtplib.SMTP('${alpha.ipv4}',25,local_hostname='${beta.config.mailHost}',timeout=120)`,
      "s.ehlo(); s.starttls(); s.ehlo()",
      `s.mail('${sender}')`,
      `s.rcpt('bob@${A}')`,
      "s.putcmd('data'); s.getreply()",
      `s.send(b'From: ${sender}\\r\\nTo: bob@${A}\\r\\nMessage-ID: <${id}>\\r\\nDate: ${new Date().toUTCString()}\\r\\nSubject: from beta\\r\\n\\r\\nhello\\r\\n.\\r\\n')`,
      "code,msg=s.getreply(); print(code, msg.decode())",
    ].join("; ");
    return onHost(beta, `python3 -c ${JSON.stringify(py)}`).trim();
  };

  test("mail from beta forging alpha's domain fails DMARC and is rejected (p=reject); beta's own is accepted", () => {
    // Sent from beta's address: SPF fails for alpha.example, and nothing signs it.
    const id = `forged-${token()}@beta.example`;
    expect(fromBeta(`alice@${A}`, id)).toMatch(/^554 5\.7\.1 /);
    // Rspamd's verdict on that message names the failed DMARC policy.
    const verdict = onHost(alpha, `journalctl -u rspamd --no-pager | grep -F '<${id}>'`);
    expect(verdict).toMatch(/\(reject\)/);
    expect(verdict).toMatch(/DMARC_POLICY_REJECT/);
    expect(verdict).toMatch(/R_SPF_FAIL/);
    // The same path for beta's own domain: beta's address is its MX, so SPF and DMARC pass.
    expect(fromBeta(`bob@${B}`, `own-${token()}@beta.example`)).toMatch(/^250 /);
  });

  test("a message scored as spam lands in Junk; a clean one in INBOX", async () => {
    // lab.example publishes DMARC p=quarantine and SPF for the test client only: the same
    // sender through beta fails DMARC, and alpha marks it as spam ("X-Spam: Yes").
    const subject = `junk-${token()}`;
    onHost(
      beta,
      `printf 'From: ${OUTSIDE}\\nTo: alice@${A}\\nSubject: ${subject}\\n\\nquarantine me\\n' | /usr/sbin/sendmail -f ${OUTSIDE} alice@${A}`,
    );
    const raw = await waitForMessage(alpha, `alice@${A}`, "Junk", subject);
    expect(raw).toMatch(/^X-Spam: Yes/m);
    expect(raw).toMatch(
      /dmarc=fail reason="[^"]+" header\.from=lab\.example \(policy=quarantine\)/,
    );

    const cleanSubject = `ham-${token()}`;
    expect((await inbound(alpha, OUTSIDE, `alice@${A}`, clean(cleanSubject))).data?.code).toBe(250);
    const ham = await waitForMessage(alpha, `alice@${A}`, "INBOX", cleanSubject);
    expect(ham).not.toMatch(/^X-Spam: Yes/m);
    expect(ham).toMatch(/dmarc=pass \(policy=quarantine\) header\.from=lab\.example/);
  });

  test("a message sent again with its Message-ID is delivered once; to another mailbox, or with a new Message-ID, it is delivered", async () => {
    // As after a sender lost our 250, or Postfix lost Dovecot's in a crash: the same message
    // again, each copy with its own subject to tell them apart.
    const id = `<twice-${token()}@lab.example>`;
    const [first, again, fresh] = ["first", "again", "fresh"].map((w) => `${w}-${token()}`);
    const alice = `alice@${A}`;
    expect((await inbound(alpha, OUTSIDE, alice, withId(alice, first, id))).data?.code).toBe(250);
    await waitForMessage(alpha, alice, "INBOX", first);
    const resent = await inbound(alpha, OUTSIDE, alice, withId(alice, again, id));
    expect(resent.data?.code).toBe(250);
    const queueId = /queued as (\w+)/.exec(resent.data?.text ?? "")?.[1];
    expect(queueId).toMatch(/^\w+$/);
    // The controls: the same Message-ID to bob, and a new one to alice, are delivered.
    const bob = `bob@${A}`;
    expect((await inbound(alpha, OUTSIDE, bob, withId(bob, again, id))).data?.code).toBe(250);
    const freshId = `<fresh-${token()}@lab.example>`;
    expect((await inbound(alpha, OUTSIDE, alice, withId(alice, fresh, freshId))).data?.code).toBe(
      250,
    );
    await waitForMessage(alpha, bob, "INBOX", again);
    await waitForMessage(alpha, alice, "INBOX", fresh);
    // The second copy to alice was delivered as far as Postfix knows (LMTP said 250) ...
    await eventually(
      alpha,
      `journalctl -t postfix/lmtp --no-pager -o cat | grep '^${queueId}: ' || true`,
      /status=sent/,
    );
    // ... and Sieve left it out of her mailbox.
    const inbox = await subjects(alpha, alice, "INBOX");
    expect(inbox.filter((s) => s === first)).toEqual([first]);
    expect(inbox).not.toContain(again);
    expect(inbox).toContain(fresh);
    // Sieve's record of the IDs is committed with each delivery, not up to five seconds later
    // (so a power cut cannot forget an ID whose message is saved): the home is dirsync, while
    // the Maildir below it keeps Dovecot's own syncing.
    const home = `/srv/mail/${A}/alice`;
    expect(onHost(alpha, `lsattr -d ${home} ${home}/Maildir ${home}/Maildir/cur`)).toMatch(
      new RegExp(`^\\S*D\\S* ${home}\n[^D\\s]+ ${home}/Maildir\n[^D\\s]+ ${home}/Maildir/cur\n$`),
    );
  });

  test("a copy delivered again after a stop between Dovecot's save and its record is folded; a message saved before the window, or with a Message-ID of its own, is kept", async () => {
    // What a crash between the save and Sieve's record of the Message-ID leaves: the message
    // in the mailbox, Postfix delivering it again, and no record to keep the second copy out.
    // The record is taken away here by hand, before each copy delivered again.
    const alice = `alice@${A}`;
    const forget = () => onHost(alpha, `rm -f /srv/mail/${A}/alice/.dovecot.lda-dupes`);
    const sendAs = async (subject: string, id: string) => {
      expect((await inbound(alpha, OUTSIDE, alice, withId(alice, subject, id))).data?.code).toBe(
        250,
      );
      await waitForMessage(alpha, alice, "INBOX", subject);
    };
    const [older, olderAgain, first, again, fresh] = [
      "older",
      "older-again",
      "first",
      "again",
      "fresh",
    ].map((w) => `fold-${w}-${token()}`);
    const olderId = `<older-${token()}@lab.example>`;
    const id = `<again-${token()}@lab.example>`;

    // One copy before the window opens, one after: the window holds one, which is kept.
    await sendAs(older, olderId);
    const since = onHost(alpha, "sleep 2; date +%s; sleep 2").trim();
    forget();
    await sendAs(olderAgain, olderId);
    // Both copies in the window: the second is folded.
    await sendAs(first, id);
    forget();
    await sendAs(again, id);
    await sendAs(fresh, `<fresh-${token()}@lab.example>`);

    const out = onHost(alpha, `mailstack-dedup --since ${since}`);
    expect(out).toMatch(
      /^mailstack-dedup: folded 1 of \d+ messages saved since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(as asked\), in INBOX and Junk\n$/,
    );
    const inbox = await subjects(alpha, alice, "INBOX");
    expect(inbox.filter((s) => [first, again].includes(s))).toEqual([first]);
    // The controls: outside the window, and under a Message-ID of its own, nothing is folded.
    expect(inbox).toEqual(expect.arrayContaining([older, olderAgain, fresh]));
    // Run again, it finds nothing left to fold.
    expect(onHost(alpha, `mailstack-dedup --since ${since}`)).toMatch(/: folded 0 of /);
    // At boot it runs once, by its timer, for the window the previous boot's end opened.
    expect(onHost(alpha, "systemctl is-enabled mailstack-dedup.timer").trim()).toBe("enabled");
    expect(onHost(alpha, "mailstack-dedup --since 12 2>&1 || echo exit $?")).toMatch(
      /--since takes seconds since 1970 \(10 digits\); got '12'\n[^]*exit 2\n$/,
    );
  });

  test("a user over quota is refused with 552 at RCPT; a user with room is accepted", async () => {
    const s = await SmtpSession.open({ host: alpha.ipv4, port: 25 });
    await s.ehlo();
    // 2 MB announced against carol's 1 MiB quota.
    expect((await s.command(`MAIL FROM:<${OUTSIDE}> SIZE=2000000`)).code).toBe(250);
    const full = await s.command(`RCPT TO:<carol@${A}>`);
    expect(full.text).toMatch(/^552 5\.2\.2 .*Mailbox is full/);
    expect((await s.command(`RCPT TO:<alice@${A}>`)).code).toBe(250);
    s.close();
  });
});

describe("certificate renewal", () => {
  const served = (port: number, extra: string[]) => {
    const r = local(
      "openssl",
      [
        "s_client",
        "-connect",
        `${alpha.ipv4}:${port}`,
        "-servername",
        alpha.config.mailHost,
        ...extra,
      ],
      "",
    );
    const pem = r.out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
    if (!pem) throw new Error(`no certificate on port ${port}:\n${r.out}`);
    const cert = new X509Certificate(pem);
    return {
      serial: cert.serialNumber,
      key: cert.publicKey.export({ type: "spki", format: "der" }).toString("hex"),
    };
  };

  test("a forced renewal is served by Postfix and Dovecot at once, for the same key", async () => {
    const before = [served(25, ["-starttls", "smtp"]), served(993, [])];
    onHost(alpha, "/usr/local/sbin/mailstack-cert --force");
    const after = [served(25, ["-starttls", "smtp"]), served(993, [])];
    for (let i = 0; i < 2; i++) {
      expect(after[i].serial).not.toBe(before[i].serial);
      expect(after[i].key).toBe(before[i].key);
    }
    expect(after[0].serial).toBe(after[1].serial);
  });
});
