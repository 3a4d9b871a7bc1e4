// Mail at rest: what the provider holds of the mail volume (here its raw image on this
// machine, as a snapshot, a backup of the volume or a re-used disk would hold it) carries no
// message text, because Dovecot writes every message encrypted (mail_crypt). Beside it, the
// control that the scan does see through the image.
import { randomBytes } from "node:crypto";
import { mailHome } from "../../components/host-config";
import { shellQuote } from "../../components/host-files";
import { volumeFile } from "../../lab/vm";
import { HOSTS, deliver, fileContains, onHost, waitForMessage } from "./support";

const alpha = HOSTS[0];
const alice = `alice@${alpha.config.domain}`;
const unique = (label: string) => `${label}-${randomBytes(16).toString("hex")}`;

/** What the guest wrote, on the virtual disk: nothing left only in its page cache. */
const flush = () => onHost(alpha, "sync && echo 3 > /proc/sys/vm/drop_caches");

test("a delivered message's body is read over IMAP, and is nowhere in the raw volume image", async () => {
  // The token is in the body alone: Dovecot's index cache keeps header fields in clear (a
  // documented limit), the body never.
  const secret = unique("at-rest-body");
  const subject = unique("at-rest");
  expect(await deliver(alpha, alice, subject, `The token ${secret} is in the body only.\n`)).toBe(
    250,
  );
  // The path works: the message arrived, and IMAP gives its body back, token and all.
  expect(await waitForMessage(alpha, alice, "INBOX", subject)).toContain(secret);

  // Its file on the volume begins with mail_crypt's magic. In Maildir the GUID is the name
  // before the ",S=" size fields.
  const guid = onHost(
    alpha,
    `doveadm fetch -u ${alice} guid mailbox INBOX header Subject ${shellQuote(subject)}`,
  )
    .replace(/^guid: /, "")
    .trim();
  expect(guid).toMatch(/^[^\s/]+$/);
  const stored = onHost(
    alpha,
    `find ${mailHome(alice)}/Maildir -type f -name ${shellQuote(`${guid},*`)}`,
  ).trim();
  expect(stored.split("\n")).toHaveLength(1);
  expect(onHost(alpha, `head -c 7 ${shellQuote(stored)}`)).toBe("CRYPTED");

  // The control: a plaintext file put on the same volume is found by the same scan, in the
  // same pass, so an absent token means absent, not unseen.
  const control = unique("at-rest-control");
  const controlFile = "/srv/mail/.mailstack/at-rest-control";
  onHost(alpha, `printf '%s\\n' ${control} > ${controlFile}`);
  try {
    flush();
    const found = await fileContains(volumeFile(alpha), [control, secret]);
    expect([found.has(control), found.has(secret)]).toEqual([true, false]);
  } finally {
    onHost(alpha, `rm -f ${controlFile}`);
  }
}, 600_000);
