// Mail over real SMTP: into a host from a client, and from one host to the other with the
// receiving host found in the lab's DNSSEC-signed zones. Postfix runs with the settings
// provisioning gives it so far (TLS with the ACME certificate, the MX host as its name) and
// delivers to local mailboxes; the mailbox configuration itself comes with the mail host.
import { randomBytes } from "node:crypto";
import { labCaPem } from "../../lab/acme";
import { HOSTS, acmeRoot, eventually, onHost, sendMail } from "./support";

const [alpha, beta] = HOSTS;
const token = () => randomBytes(6).toString("hex");

test("a client delivers to alpha over SMTP with verified STARTTLS", async () => {
  const subject = `lab-in-${token()}`;
  const response = await sendMail({
    host: alpha.ipv4,
    port: 25,
    from: "someone@beta.example",
    to: `root@${alpha.config.mailHost}`,
    subject,
    text: "hello over SMTP\n",
    ca: await acmeRoot(),
    servername: alpha.config.mailHost,
  });
  expect(response).toMatch(/^250 /);
  const box = await eventually(
    alpha,
    "cat /var/mail/root 2>/dev/null || true",
    new RegExp(`Subject: ${subject}`),
  );
  // ESMTPS: the session was encrypted; nodemailer refused anything but a verified certificate.
  expect(box).toMatch(
    /Received: from client\.lab\.example \(unknown \[198\.51\.100\.1\]\)\s+by mail\.alpha\.example \(Postfix\) with ESMTPS /,
  );
});

test("a client that trusts another CA refuses alpha's certificate", async () => {
  await expect(
    sendMail({
      host: alpha.ipv4,
      port: 25,
      from: "someone@beta.example",
      to: `root@${alpha.config.mailHost}`,
      subject: "never sent",
      text: "x\n",
      ca: labCaPem(),
      servername: alpha.config.mailHost,
    }),
  ).rejects.toThrow(/certificate/);
});

test("alpha hands a message to beta across a real SMTP hop, over TLS", async () => {
  const subject = `lab-hop-${token()}`;
  onHost(
    alpha,
    `printf 'Subject: ${subject}\\n\\nacross the hop\\n' | /usr/sbin/sendmail -f root@${alpha.config.mailHost} root@${beta.config.mailHost}`,
  );
  const box = await eventually(
    beta,
    "cat /var/mail/root 2>/dev/null || true",
    new RegExp(`Subject: ${subject}`),
  );
  // beta named the sender by its PTR (mail.alpha.example), and the hop was encrypted (ESMTPS).
  const message = box.split(/\n(?=From )/).find((m) => m.includes(`Subject: ${subject}`));
  const esc = (t: string) => t.replace(/\./g, "\\.");
  expect(message).toMatch(
    new RegExp(
      `Received: from ${esc(alpha.config.mailHost)} \\(${esc(alpha.config.mailHost)} \\[(${esc(alpha.ipv4)}|IPv6:${alpha.ipv6})\\]\\)\\s+` +
        `by ${esc(beta.config.mailHost)} \\(Postfix\\) with ESMTPS `,
    ),
  );
});
