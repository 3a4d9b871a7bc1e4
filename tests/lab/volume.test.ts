// The mail volume through what the provider does to it: grown in place while mail flows (its
// release before a replaced server lets it go is in recovery.test.ts). And the certificate on
// it: Postfix and Dovecot listen with the real one or not at all.
import { randomBytes } from "node:crypto";
import { provision } from "../../lab/lab";
import { resizeVolume } from "../../lab/vm";
import { HOSTS, deliver, eventually, onHost, waitForMessage } from "./support";

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
