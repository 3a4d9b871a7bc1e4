// The mail volume through what the provider does to it: grown in place while mail flows, and
// released (services stopped, file system unmounted) before a replaced server lets it go. And
// the certificate on it: Postfix and Dovecot listen with the real one or not at all.
import { randomBytes } from "node:crypto";
import { deployRequest, provision, startHost } from "../../lab/lab";
import { hostRunning, resizeVolume, stopHost, volumeFile } from "../../lab/vm";
import { HOSTS, deliver, eventually, local, onHost, subjects, waitForMessage } from "./support";

const alpha = HOSTS[0];
const alice = `alice@${alpha.config.domain}`;
const MiB = 1024 * 1024;

const listening = (port: number) =>
  onHost(alpha, `ss -Hltn 'sport = :${port}' | grep -c . || true`).trim() !== "0";

test("a volume grown at the provider: provisioning grows the file system online, once", async () => {
  const device = onHost(alpha, "findmnt -n -o SOURCE /srv/mail").trim();
  const diskBytes = () => Number(onHost(alpha, `blockdev --getsize64 ${device}`));
  const fsBytes = () => Number(onHost(alpha, "findmnt -b -n -o SIZE /srv/mail"));
  const pids = () => onHost(alpha, "systemctl show -P MainPID dovecot postfix").trim();
  const disk = diskBytes();
  const fs = fsBytes();
  const before = pids();

  await resizeVolume(alpha, disk + 512 * MiB);
  await eventually(alpha, `blockdev --getsize64 ${device}`, new RegExp(`^${disk + 512 * MiB}\n`));
  // The control: the disk grew, and nothing grew the file system by itself.
  expect(fsBytes()).toBe(fs);

  const log = await provision(alpha);
  expect(log).toMatch(/grew \/srv\/mail from \d+ MiB to \d+ MiB, online/);
  expect(fsBytes() - fs).toBeGreaterThan(480 * MiB);
  // Online: the volume stayed mounted and neither Postfix nor Dovecot restarted.
  expect(pids()).toBe(before);
  const subject = `after-grow-${randomBytes(4).toString("hex")}`;
  expect(await deliver(alpha, alice, subject)).toBe(250);
  await waitForMessage(alpha, alice, "INBOX", subject);

  // Once: the next run finds nothing to do.
  expect(await provision(alpha)).toMatch(/\/srv\/mail fills its volume \(\d+ MiB\)/);
}, 900_000);

test("Postfix and Dovecot do not start without the real certificate", () => {
  const cert = "/srv/mail/.mailstack/tls/mail.crt";
  try {
    onHost(alpha, `systemctl stop postfix dovecot && mv ${cert} ${cert}.aside`);
    for (const unit of ["dovecot", "postfix"]) {
      expect(onHost(alpha, `systemctl start ${unit} 2>&1 && echo started || echo refused`)).toMatch(
        /refused\n$/,
      );
      expect(
        onHost(alpha, `journalctl -u ${unit} -n 20 --no-pager -o cat | grep 'refusing to serve'`),
      ).toContain(`mailstack-cert: refusing to serve: there is no certificate at ${cert}`);
    }
    expect([listening(25), listening(993)]).toEqual([false, false]);
  } finally {
    onHost(alpha, `mv ${cert}.aside ${cert}; systemctl reset-failed postfix dovecot || true`);
    onHost(alpha, "systemctl start dovecot postfix");
  }
  // The control: with the certificate back, both start and listen.
  expect(onHost(alpha, "systemctl is-active dovecot postfix").trim()).toBe("active\nactive");
  expect([listening(25), listening(993)]).toEqual([true, true]);
});

test("a server replaced: the volume is released before it is detached, and mounts clean on the next server", async () => {
  const subject = `before-detach-${randomBytes(4).toString("hex")}`;
  expect(await deliver(alpha, alice, subject)).toBe(250);
  await waitForMessage(alpha, alice, "INBOX", subject);
  const superblock = () => local("dumpe2fs", ["-h", volumeFile(alpha)]).out;
  // The control: while the volume is in use its journal is live; a detach now (or a power
  // cut) would leave it needing recovery.
  expect(superblock()).toMatch(/^Filesystem features:.*\bneeds_recovery\b/m);

  // What Pulumi's delete of the volume command sends before the provider detaches the volume.
  const detach = await deployRequest(alpha, "detach");
  expect(detach.status).toBe(0);
  expect(detach.stdout).toContain("unit postfix inactive\nunit dovecot inactive\n");
  expect(detach.stdout).toContain("mail volume unmounted from /srv/mail\n");
  expect(onHost(alpha, "mountpoint -q /srv/mail && echo mounted || echo absent").trim()).toBe(
    "absent",
  );

  // The provider detaches the volume and deletes the server: here the VM is killed outright.
  stopHost(alpha);
  await until(() => !hostRunning(alpha));
  expect(superblock()).not.toMatch(/needs_recovery/);
  expect(superblock()).toMatch(/^Filesystem state:\s+clean$/m);
  const fsck = local("e2fsck", ["-f", "-n", volumeFile(alpha)]);
  // Exit 0: all five passes found nothing to fix, without a journal to replay.
  expect([
    fsck.status,
    /Pass 5/.test(fsck.out),
    /recover|Fix\?|UNEXPECTED/i.test(fsck.out),
  ]).toEqual([0, true, false]);

  // The next server (here the same disks, powered on again) mounts it without recovery, and
  // the attach request finds it mounted.
  await startHost(alpha);
  const attach = await deployRequest(alpha, "attach");
  expect(attach.status).toBe(0);
  expect(attach.stdout).toMatch(/^mail volume \S+ mounted on \/srv\/mail$/m);
  await eventually(alpha, "systemctl is-active dovecot postfix", /^active\nactive\n$/, 600_000);
  await eventually(alpha, "ss -Hltn 'sport = :11332'", /11332/, 600_000);
  const kernel = onHost(alpha, "journalctl -k -b --no-pager -o cat | grep 'EXT4-fs (vdb)' || true");
  expect(kernel).toMatch(/mounted filesystem/);
  expect(kernel).not.toMatch(/recovery|error/i);
  expect(await subjects(alpha, alice, "INBOX")).toContain(subject);
}, 1_200_000);

async function until(condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`not met within ${timeoutMs / 1000} s: ${condition}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
