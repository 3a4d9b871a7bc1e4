// A reboot: every service comes back without help, and every accepted message is still there.
import { randomBytes } from "node:crypto";
import { rebootHost } from "../../lab/lab";
import { HOSTS, deliver, eventually, onHost, subjects, waitForMessage } from "./support";

const alpha = HOSTS[0];
const alice = `alice@${alpha.config.domain}`;
const SERVICES = [
  "postfix",
  "dovecot",
  "rspamd",
  "redis-server",
  "unbound",
  "clamav-daemon",
  "fail2ban",
  "nftables",
];

test("after a reboot every mail service is back and every accepted message is still there", async () => {
  const subject = `before-reboot-${randomBytes(4).toString("hex")}`;
  expect(await deliver(alpha, alice, subject)).toBe(250);
  await waitForMessage(alpha, alice, "INBOX", subject);
  const before = await subjects(alpha, alice, "INBOX");

  await rebootHost(alpha);

  await eventually(
    alpha,
    `systemctl is-active ${SERVICES.join(" ")} | sort | uniq -c`,
    new RegExp(`^\\s*${SERVICES.length} active\\s*$`),
    600_000,
  );
  await eventually(alpha, "ss -Hltn 'sport = :11332'", /11332/, 600_000);
  expect(onHost(alpha, "findmnt -n -o TARGET /srv/mail").trim()).toBe("/srv/mail");
  const after = await subjects(alpha, alice, "INBOX");
  expect(after).toEqual(expect.arrayContaining(before));
  // And mail flows again.
  const again = `after-reboot-${randomBytes(4).toString("hex")}`;
  expect(await deliver(alpha, alice, again)).toBe(250);
  await waitForMessage(alpha, alice, "INBOX", again);
  // The fold of copies delivered again after a stop (its timer runs it 15 minutes after boot;
  // here at once) reads its window from the end of the boot before: after a clean shutdown,
  // nothing to fold.
  onHost(alpha, "systemctl start mailstack-dedup.service");
  expect(onHost(alpha, "systemctl show -P Result mailstack-dedup.service").trim()).toBe("success");
  expect(onHost(alpha, "journalctl -u mailstack-dedup -o cat --no-pager -n 20")).toMatch(
    /^mailstack-dedup: folded 0 of \d+ messages saved since .* UTC \(10 minutes before the previous boot's last journal entry\), in INBOX and Junk$/m,
  );
  expect(await subjects(alpha, alice, "INBOX")).toEqual(expect.arrayContaining([...before, again]));
}, 1_200_000);

test("Postfix and Dovecot run only with the mail volume mounted", () => {
  const active = () => onHost(alpha, "systemctl is-active dovecot postfix || true").trim();
  expect(active()).toBe("active\nactive");
  // Both require the volume's mount unit: without it (a volume that is not attached, a mount
  // that fails) systemd does not start them.
  for (const unit of ["dovecot", "postfix"]) {
    expect(onHost(alpha, `systemctl show -P RequiresMountsFor ${unit}`)).toContain("/srv/mail");
    expect(onHost(alpha, `systemctl show -P Requires ${unit}`)).toContain("srv-mail.mount");
  }
  try {
    // Taking the volume away stops them first.
    onHost(alpha, "systemctl stop srv-mail.mount");
    expect(active()).toBe("inactive\ninactive");
    expect(onHost(alpha, "mountpoint -q /srv/mail && echo mounted || echo absent").trim()).toBe(
      "absent",
    );
    // Starting Dovecot mounts the volume before Dovecot runs.
    onHost(alpha, "systemctl start dovecot");
    expect(onHost(alpha, "mountpoint -q /srv/mail && echo mounted || echo absent").trim()).toBe(
      "mounted",
    );
  } finally {
    onHost(alpha, "systemctl start srv-mail.mount dovecot postfix");
  }
  expect(active()).toBe("active\nactive");
});
