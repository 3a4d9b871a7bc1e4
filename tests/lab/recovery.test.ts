// Nothing lost: encrypted backups to the lab's bucket (an S3 server, reached exactly as R2 or
// Hetzner's Object Storage is), what happens when a backup breaks, single-mailbox restore,
// and at the end the two ways a server goes: alpha is replaced (a new server, the same volume)
// while beta is lost with its volume and comes back from its backup onto a new server. The
// figures (backup time and size, size added by 1% new mail, restore time) are printed.
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { bucketPidFile, repositoryBytes, repositoryFiles } from "../../lab/bucket";
import { deployRequest, provision, replaceHost } from "../../lab/lab";
import { pidAlive } from "../../lab/run";
import { SERVICES_IP4 } from "../../lab/settings";
import { hostRunning, stopHost, volumeFile } from "../../lab/vm";
import {
  HOSTS,
  answers,
  local,
  onHost,
  passwordOf,
  servedChain,
  waitForMessage,
  withImap,
  acmeRoot,
  type LabHost,
} from "./support";
import { SmtpSession, message } from "./smtp";

const [alpha, beta] = HOSTS;
// The drill runs on beta: it backs up, is lost with its volume, and is restored.
const h = beta;
const domain = h.config.domain;
const postmaster = h.config.users[0].address;
const mailboxes = h.config.users.map((u) => u.address).filter((a) => !a.startsWith("carol@"));
/** Messages delivered before the first backup. */
const N = 100;
const canary = `canary-${randomBytes(12).toString("hex")}`;
const MiB = 1024 * 1024;
const figures: string[] = [];

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** About `bytes` of plain prose in short lines, unique to the message, as people write mail. */
function prose(bytes: number): string {
  const lines: string[] = [];
  for (let n = 0; n < bytes; n += 73) {
    lines.push(
      `Notes for the meeting ${randomBytes(4).toString("hex")}: agenda, minutes, actions.`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/** Delivers messages over one SMTP session on port 25, as a remote MTA does; all must be taken. */
async function deliverAll(
  host: LabHost,
  messages: { to: string; subject: string; body: string }[],
): Promise<void> {
  const s = await SmtpSession.open({ host: host.ipv4, port: 25 });
  try {
    await s.ehlo();
    for (const m of messages) {
      expect((await s.command("MAIL FROM:<someone@lab.example>")).code).toBe(250);
      expect((await s.command(`RCPT TO:<${m.to}>`)).code).toBe(250);
      expect((await s.data(message({ from: "someone@lab.example", ...m }))).code).toBe(250);
    }
  } finally {
    s.close();
  }
}

/** Every message of every mailbox, as IMAP serves it: "<user> <folder>" -> sorted SHA-256s. */
async function mailState(host: LabHost): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const u of host.config.users) {
    await withImap(host, u.address, passwordOf(host, u.address), async (c) => {
      for (const box of await c.list()) {
        const lock = await c.getMailboxLock(box.path);
        try {
          const hashes: string[] = [];
          if ((c.mailbox as { exists: number }).exists > 0) {
            for await (const m of c.fetch("1:*", { source: true })) hashes.push(sha256(m.source!));
          }
          out[`${u.address} ${box.path}`] = hashes.sort();
        } finally {
          lock.release();
        }
      }
    });
  }
  return out;
}

const count = (state: Record<string, string[]>) =>
  Object.values(state).reduce((n, l) => n + l.length, 0);

/** Runs one backup the way its timer does; its unit's result. */
function backupRun(host: LabHost): { ok: boolean; seconds: number } {
  const started = Date.now();
  const out = onHost(host, "systemctl start mailstack-backup.service && echo ok || echo failed");
  return { ok: out.trim() === "ok", seconds: (Date.now() - started) / 1000 };
}

const lastSuccess = (host: LabHost) =>
  Object.fromEntries(
    onHost(host, "cat /var/lib/mailstack/backup/success")
      .trim()
      .split("\n")
      .map((l) => l.split("=") as [string, string]),
  );

/** Messages whose subject starts with the prefix, in the postmaster's INBOX. */
function alertsIn(host: LabHost, prefix: string): Promise<string[]> {
  return withImap(host, postmaster, passwordOf(host, postmaster), async (c) => {
    const lock = await c.getMailboxLock("INBOX");
    try {
      const out: string[] = [];
      if ((c.mailbox as { exists: number }).exists === 0) return out;
      for await (const m of c.fetch("1:*", { envelope: true })) {
        const subject = m.envelope?.subject ?? "";
        if (subject.startsWith(prefix)) out.push(subject);
      }
      return out;
    } finally {
      lock.release();
    }
  });
}

async function waitForAlerts(host: LabHost, prefix: string, n: number): Promise<string[]> {
  const end = Date.now() + 180_000;
  for (;;) {
    const found = await alertsIn(host, prefix);
    if (found.length >= n || Date.now() > end) return found;
    await new Promise((r) => setTimeout(r, 3000));
  }
}

const ALERT = `[mailstack] mailstack-backup.service failed on ${h.config.mailHost}`;

afterAll(() => {
  process.stdout.write(`\nbackup figures (${h.name}):\n${figures.map((f) => `  ${f}\n`).join("")}`);
});

describe("encrypted offsite backups", () => {
  test(`a backup of ${N} messages and a canary: restic's snapshot in the bucket, its figures for the exporter`, async () => {
    const started = Date.now();
    await deliverAll(h, [
      ...Array.from({ length: N }, (_, i) => ({
        to: mailboxes[i % mailboxes.length],
        subject: `stored ${i}`,
        // Sizes from 1 to about 40 KiB, as mail is.
        body: prose(64 + ((i * 397) % 30_000)),
      })),
      { to: postmaster, subject: "the canary", body: `keep this: ${canary}\n` },
    ]);
    await waitForMessage(h, postmaster, "INBOX", "the canary");
    figures.push(`delivered ${N + 1} messages in ${((Date.now() - started) / 1000).toFixed(0)} s`);

    const run = backupRun(h);
    expect(run.ok).toBe(true);
    const s = lastSuccess(h);
    expect(s.snapshot).toMatch(/^[0-9a-f]{64}$/);
    const log = onHost(h, "journalctl -u mailstack-backup -o cat --no-pager -n 30");
    expect(log).toContain(`mailstack-backup: snapshot ${s.snapshot}:`);
    // The first run made the repository in the empty bucket.
    expect(log).toContain("no repository at s3:https://");

    // The snapshot is there, read back from the bucket with the stack's password.
    const snapshots = onHost(h, "mailstack-restore snapshots");
    expect(snapshots).toContain(s.snapshot.slice(0, 8));
    expect(snapshots).toContain(h.config.mailHost);

    // The figures the node exporter serves.
    const prom = onHost(h, "cat /var/lib/prometheus/node-exporter/mailstack_backup.prom");
    expect(prom).toMatch(
      new RegExp(`^mailstack_backup_last_success_timestamp_seconds ${s.time}$`, "m"),
    );
    expect(prom).toMatch(new RegExp(`^mailstack_backup_repository_bytes ${s.repository}$`, "m"));
    expect(prom).toMatch(new RegExp(`^mailstack_backup_last_size_bytes ${s.bytes}$`, "m"));

    figures.push(
      `backup of ${N + 1} messages: ${run.seconds.toFixed(1)} s (restic ${s.seconds} s), ` +
        `${(Number(s.bytes) / MiB).toFixed(1)} MiB read, repository ${(Number(s.repository) / MiB).toFixed(1)} MiB ` +
        `(${(repositoryBytes(h) / MiB).toFixed(1)} MiB of objects in the bucket)`,
    );
  }, 900_000);

  test("the bucket holds nothing readable: the canary is in no object of the repository", () => {
    const files = repositoryFiles(h);
    expect(files.length).toBeGreaterThan(5);
    const hits = files.filter((f) => readFileSync(f).includes(canary));
    expect(hits).toEqual([]);
    // The control: the canary is in the mailbox, as IMAP shows it.
    return expect(
      withImap(h, postmaster, passwordOf(h, postmaster), async (c) => {
        const lock = await c.getMailboxLock("INBOX");
        try {
          return ((await c.search({ body: canary }, { uid: true })) || []).length;
        } finally {
          lock.release();
        }
      }),
    ).resolves.toBe(1);
  });

  test("1% new mail: the next backup adds the new mail and the indexes that changed, not the mailboxes again", async () => {
    const before = Number(lastSuccess(h).repository);
    await deliverAll(
      h,
      Array.from({ length: N / 100 }, (_, i) => ({
        to: mailboxes[0],
        subject: `new ${i}`,
        body: prose(20_000),
      })),
    );
    await waitForMessage(h, mailboxes[0], "INBOX", `new ${N / 100 - 1}`);
    const run = backupRun(h);
    expect(run.ok).toBe(true);
    const s = lastSuccess(h);
    figures.push(
      `backup after 1% new mail: ${run.seconds.toFixed(1)} s, added ${(Number(s.added) / 1024).toFixed(0)} KiB; ` +
        `repository ${(before / MiB).toFixed(2)} -> ${(Number(s.repository) / MiB).toFixed(2)} MiB`,
    );
    // Deduplicated: the new snapshot stores the new mail and changed indexes, not the mailboxes again.
    expect(Number(s.added)).toBeLessThan(before / 4);
    expect(Number(s.added)).toBeGreaterThan(15_000);
  }, 600_000);

  test("a backup killed mid-run leaves a repository restic check passes, and the next run succeeds; the failure is mailed to postmaster", async () => {
    const alertsBefore = (await alertsIn(h, ALERT)).length;
    // Enough new data that the run is still uploading when it is killed.
    onHost(h, "head -c 300M /dev/urandom > /srv/mail/.mailstack/ballast");
    try {
      onHost(h, "systemctl start --no-block mailstack-backup.service");
      // Killed once restic holds its lock in the bucket and has begun writing data.
      await until(() => repositoryFiles(h).some((f) => f.includes("/locks/")), 120_000);
      await new Promise((r) => setTimeout(r, 5000));
      onHost(h, "systemctl kill --signal=KILL mailstack-backup.service");
      await until(
        () => onHost(h, "systemctl is-failed mailstack-backup.service || true").trim() === "failed",
        60_000,
      );
      // The killed run left its lock behind.
      expect(repositoryFiles(h).some((f) => f.includes("/locks/"))).toBe(true);
    } finally {
      onHost(h, "rm -f /srv/mail/.mailstack/ballast");
    }
    // The daily check clears the stale lock and reads the repository: sound.
    const check = onHost(h, "mailstack-backup check 2>&1 && echo passed || echo failed");
    expect(check).toMatch(/no errors were found/);
    expect(check.trim().split("\n").pop()).toBe("passed");
    // The next run succeeds.
    const before = lastSuccess(h).snapshot;
    expect(backupRun(h).ok).toBe(true);
    expect(lastSuccess(h).snapshot).not.toBe(before);
    // Postmaster was told about the killed run, once.
    expect((await waitForAlerts(h, ALERT, alertsBefore + 1)).length).toBe(alertsBefore + 1);
  }, 900_000);

  test("a missed backup: the daily check fails and tells postmaster how old the last good one is", async () => {
    const CHECK_ALERT = `[mailstack] mailstack-backup-check.service failed on ${h.config.mailHost}`;
    const before = (await alertsIn(h, CHECK_ALERT)).length;
    const check = () =>
      onHost(h, "systemctl start mailstack-backup-check && echo passed || echo failed").trim();
    // The control: with a backup from minutes ago, the same check passes.
    expect(check()).toBe("passed");
    const state = "/var/lib/mailstack/backup/success";
    const time = lastSuccess(h).time;
    onHost(h, `sed -i "s/^time=.*/time=$(($(date +%s) - 3 * 86400))/" ${state}`);
    try {
      expect(check()).toBe("failed");
    } finally {
      onHost(h, `sed -i "s/^time=.*/time=${time}/" ${state}`);
    }
    const alerts = await waitForAlerts(h, CHECK_ALERT, before + 1);
    expect(alerts.length).toBe(before + 1);
    expect(alerts[alerts.length - 1]).toContain("the last good backup is 72 h old");
  }, 600_000);

  test("a bucket that does not answer: the backup fails and postmaster is told why; once it answers, the backup succeeds and nobody is mailed", async () => {
    const alertsBefore = (await alertsIn(h, ALERT)).length;
    const pid = pidAlive(bucketPidFile)!;
    // The bucket's server stops answering (connections hang, as with a broken network).
    process.kill(pid, "SIGSTOP");
    let run;
    try {
      run = backupRun(h);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    expect(run.ok).toBe(false);
    const alerts = await waitForAlerts(h, ALERT, alertsBefore + 1);
    expect(alerts.length).toBe(alertsBefore + 1);
    expect(alerts[alerts.length - 1]).toContain("did not answer within 90 s");
    const prom = onHost(h, "cat /var/lib/prometheus/node-exporter/mailstack_backup.prom");
    const metric = (name: string) => Number(prom.match(new RegExp(`^${name} (\\d+)$`, "m"))![1]);
    expect(metric("mailstack_backup_last_failure_timestamp_seconds")).toBeGreaterThan(
      metric("mailstack_backup_last_success_timestamp_seconds"),
    );

    // The control: the same path, with the bucket answering.
    expect(backupRun(h).ok).toBe(true);
    await new Promise((r) => setTimeout(r, 10_000));
    expect((await alertsIn(h, ALERT)).length).toBe(alertsBefore + 1);
  }, 600_000);

  test("one mailbox restored in place: deleted messages come back, nothing present is touched or doubled", async () => {
    const user = mailboxes[1];
    const before = await mailState(h);
    const deleted = await withImap(h, user, passwordOf(h, user), async (c) => {
      const lock = await c.getMailboxLock("INBOX");
      try {
        const uids = (await c.search({ subject: "stored" }, { uid: true })) || [];
        const gone = uids.slice(0, 5);
        await c.messageDelete(gone.join(","), { uid: true });
        return gone.length;
      } finally {
        lock.release();
      }
    });
    expect(deleted).toBe(5);
    // Mail that arrived after the last backup stays.
    await deliverAll(h, [{ to: user, subject: "after the backup", body: "fresh\n" }]);
    await waitForMessage(h, user, "INBOX", "after the backup");
    expect(count(await mailState(h))).toBe(count(before) - 5 + 1);

    const out = onHost(h, `mailstack-restore mailbox ${user}`);
    expect(out).toMatch(
      new RegExp(`^restored 5 messages into ${user} from snapshot [0-9a-f]{8} `, "m"),
    );
    const after = await mailState(h);
    const inbox = `${user} INBOX`;
    expect(after[inbox].length).toBe(before[inbox].length + 1);
    expect(before[inbox].every((x) => after[inbox].includes(x))).toBe(true);
    // The control: an address that is no mailbox here is refused, naming it.
    expect(onHost(h, `mailstack-restore mailbox nobody@${domain} 2>&1 || echo refused`)).toContain(
      `nobody@${domain} is not a mailbox of this host\nrefused`,
    );
  }, 600_000);
});

describe("a server replaced and a server lost", () => {
  test("alpha gets a new server with its volume; beta, lost with its volume, comes back from its backup", async () => {
    // What must survive: every message, as IMAP serves it, on both; alpha's certificate.
    const final = backupRun(h);
    expect(final.ok).toBe(true);
    const betaBefore = await mailState(h);
    const alphaBefore = await mailState(alpha);
    const alphaSerial = certSerial(alpha);
    expect(count(betaBefore)).toBeGreaterThan(N);

    // alpha: Pulumi's replacement, the volume released first (the volume command's delete).
    const superblock = () => local("dumpe2fs", ["-h", volumeFile(alpha)]).out;
    // The control: while the volume is in use its journal is live; a detach now (or a power
    // cut) would leave it needing recovery.
    expect(superblock()).toMatch(/^Filesystem features:.*\bneeds_recovery\b/m);
    const detach = await deployRequest(alpha, "detach");
    expect(detach.status).toBe(0);
    expect(detach.stdout).toContain("unit postfix inactive\nunit dovecot inactive\n");
    expect(detach.stdout).toContain("mail volume unmounted from /srv/mail\n");
    // The provider detaches the volume and deletes the server: here the VM is killed outright.
    stopHost(alpha);
    await until(() => !hostRunning(alpha), 30_000);
    expect(superblock()).not.toMatch(/needs_recovery/);
    expect(superblock()).toMatch(/^Filesystem state:\s+clean$/m);
    const fsck = local("e2fsck", ["-f", "-n", volumeFile(alpha)]);
    // Exit 0: all five passes found nothing to fix, without a journal to replay.
    expect([
      fsck.status,
      /Pass 5/.test(fsck.out),
      /recover|Fix\?|UNEXPECTED/i.test(fsck.out),
    ]).toEqual([0, true, false]);
    // beta: the server and its volume are gone, with no warning.
    stopHost(beta);
    rmSync(volumeFile(beta), { force: true });

    const started = Date.now();
    const secondsOf = async (f: () => Promise<unknown>) => {
      const t = Date.now();
      await f();
      return (Date.now() - t) / 1000;
    };
    const [alphaSeconds, betaSeconds] = await Promise.all(
      [alpha, beta].map((host) =>
        secondsOf(async () => {
          await replaceHost(host, `replacement ${randomBytes(4).toString("hex")}`);
          const attach = await deployRequest(host, "attach");
          expect(attach.status).toBe(0);
          await provision(host);
        }),
      ),
    );
    figures.push(
      `new servers up and provisioned: alpha ${alphaSeconds.toFixed(0)} s, beta ${betaSeconds.toFixed(0)} s (in parallel, ${((Date.now() - started) / 1000).toFixed(0)} s)`,
    );

    // beta before its restore: a working host with the stack's users and no mail. Its backup
    // refuses to run: an empty new volume must not become the latest snapshot.
    expect(count(await mailState(h))).toBe(0);
    expect(onHost(h, "mailstack-backup run 2>&1 || echo refused")).toMatch(
      /the mail volume is new and the repository holds \d+ snapshots of mail\.beta\.example from before: restore them \(mailstack-restore server\)[^\n]*\nrefused\n$/,
    );
    const restoreStarted = Date.now();
    const restore = onHost(h, "mailstack-restore server");
    const restoreSeconds = (Date.now() - restoreStarted) / 1000;
    expect(restore).toMatch(
      /^restored snapshot [0-9a-f]{8} \(.* UTC\): \d+ messages in \d+ mailboxes/m,
    );
    expect(restore).toContain(
      `key /etc/mailstack/dkim/${h.config.dkimSelector}.key: the same as in the backup`,
    );
    expect(restore).toContain("key /etc/mailstack/tls/mail.key: the same as in the backup");
    figures.push(
      `restore of ${count(betaBefore)} messages onto the new beta: ${restoreSeconds.toFixed(1)} s`,
    );

    // Every message back, byte for byte, in its folder; the canary among them.
    expect(await mailState(h)).toEqual(betaBefore);
    // The control: once restored, beta backs up again.
    expect(backupRun(h).ok).toBe(true);
    // The snapshot's ACME account is the one left on the volume: a renewal is issued at once.
    const restoredCert = certSerial(h);
    onHost(h, "/usr/local/sbin/mailstack-cert --force 2>&1");
    expect(certSerial(h)).not.toBe(restoredCert);

    // alpha's volume came along, mounted without journal recovery: the same mail and the same
    // certificate, not a new one.
    const kernel = onHost(
      alpha,
      "journalctl -k -b --no-pager -o cat | grep 'EXT4-fs (vdb)' || true",
    );
    expect(kernel).toMatch(/mounted filesystem/);
    expect(kernel).not.toMatch(/recovery|error/i);
    expect(await mailState(alpha)).toEqual(alphaBefore);
    expect(certSerial(alpha)).toBe(alphaSerial);

    for (const host of [alpha, beta]) {
      const user = host.config.users[1].address;
      // The same passwords open the mailboxes; a wrong one does not.
      await expect(
        withImap(host, user, `${passwordOf(host, user)}x`, async () => "in"),
      ).rejects.toThrow();
      await expect(withImap(host, user, passwordOf(host, user), async () => "in")).resolves.toBe(
        "in",
      );
      keysMatchDns(host);
    }

    // Mail flows again both ways, signed and accepted: beta's user writes to alpha, and back.
    const subject = `after the recovery ${randomBytes(4).toString("hex")}`;
    for (const [from, to] of [
      [beta, alpha],
      [alpha, beta],
    ] as const) {
      const sender = from.config.users[1].address;
      const to_ = to.config.users[1].address;
      const session = await SmtpSession.open({ host: from.ipv4, port: 587 });
      try {
        await session.ehlo();
        await session.starttls(await acmeRoot(), from.config.mailHost);
        await session.ehlo();
        expect((await session.authPlain(sender, passwordOf(from, sender))).code).toBe(235);
        expect((await session.command(`MAIL FROM:<${sender}>`)).code).toBe(250);
        expect((await session.command(`RCPT TO:<${to_}>`)).code).toBe(250);
        const text = message({ from: sender, to: to_, subject, body: "mail flows again\n" });
        expect((await session.data(text)).code).toBe(250);
      } finally {
        session.close();
      }
      const got = await waitForMessage(to, to_, "INBOX", subject, 300_000);
      const results = got.match(/^Authentication-Results: [^]*?(?=\r?\n\S)/m)?.[0] ?? "";
      expect(results).toMatch(new RegExp(`dkim=pass header\\.d=${from.config.domain}`));
    }
  }, 2_400_000);
});

/** The serial of the certificate a host serves on 993. */
function certSerial(host: LabHost): string {
  return onHost(host, "openssl x509 -in /srv/mail/.mailstack/tls/mail.crt -noout -serial").trim();
}

/** The DKIM record names the host's signing key; the TLSA record names the key it serves. */
function keysMatchDns(host: LabHost): void {
  const dkimPublic = onHost(
    host,
    `openssl pkey -in /etc/mailstack/dkim/${host.config.dkimSelector}.key -pubout -outform DER | base64 -w0`,
  ).trim();
  const txt = answers(
    SERVICES_IP4,
    `${host.config.dkimSelector}._domainkey.${host.config.domain}.`,
    "TXT",
  )
    .join("")
    .replace(/"\s*"/g, "")
    .replace(/"/g, "");
  expect(txt).toContain(`p=${dkimPublic}`);
  const spki = new X509Certificate(servedChain(host)[0]).publicKey.export({
    type: "spki",
    format: "der",
  });
  const digest = createHash("sha256").update(spki).digest("hex");
  expect(
    answers(SERVICES_IP4, `_25._tcp.${host.config.mailHost}.`, "TLSA").map((l) =>
      l.toLowerCase().replace(/\s+/g, " "),
    ),
  ).toEqual([`3 1 1 ${digest}`]);
}

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`not met within ${timeoutMs / 1000} s: ${condition}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
