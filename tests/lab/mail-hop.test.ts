// Mail over real SMTP between the two hosts, each found through the lab's DNSSEC-signed
// zones: the hop is encrypted, and the receiver names the sender by its PTR.
import { randomBytes } from "node:crypto";
import { labCaPem } from "../../lab/acme";
import { HOSTS, acmeRoot, onHost, sendMail, waitForMessage } from "./support";

const [alpha, beta] = HOSTS;
const token = () => randomBytes(6).toString("hex");
const esc = (t: string) => t.replace(/\./g, "\\.");

test("a client delivers to alpha over SMTP with verified STARTTLS", async () => {
  const subject = `lab-in-${token()}`;
  const response = await sendMail({
    host: alpha.ipv4,
    port: 25,
    from: "someone@lab.example",
    to: `alice@${alpha.config.domain}`,
    subject,
    text: "hello over SMTP\n",
    ca: await acmeRoot(),
    servername: alpha.config.mailHost,
  });
  expect(response).toMatch(/^250 /);
  const raw = await waitForMessage(alpha, `alice@${alpha.config.domain}`, "INBOX", subject);
  // ESMTPS: the session was encrypted; nodemailer refused anything but a verified certificate.
  expect(raw).toMatch(
    /Received: from client\.lab\.example \(client\.lab\.example \[198\.51\.100\.1\]\)\s+\(using TLSv1\.3[^)]*\)[^]*?by mail\.alpha\.example \(Postfix\) with ESMTPS /,
  );
});

test("a client that trusts another CA refuses alpha's certificate", async () => {
  await expect(
    sendMail({
      host: alpha.ipv4,
      port: 25,
      from: "someone@lab.example",
      to: `alice@${alpha.config.domain}`,
      subject: "never sent",
      text: "x\n",
      ca: labCaPem(),
      servername: alpha.config.mailHost,
    }),
  ).rejects.toThrow(/certificate/);
});

test("alpha hands a message to beta across a real SMTP hop, over DANE-verified TLS", async () => {
  const subject = `lab-hop-${token()}`;
  const from = `alice@${alpha.config.domain}`;
  const to = `bob@${beta.config.domain}`;
  onHost(
    alpha,
    `printf 'From: ${from}\\nTo: ${to}\\nSubject: ${subject}\\n\\nacross the hop\\n' | /usr/sbin/sendmail -f ${from} ${to}`,
  );
  const raw = await waitForMessage(beta, to, "INBOX", subject);
  // beta named the sender by its PTR, and the hop was encrypted (ESMTPS).
  expect(raw).toMatch(
    new RegExp(
      `Received: from ${esc(alpha.config.mailHost)} \\(${esc(alpha.config.mailHost)} \\[(${esc(alpha.ipv4)}|IPv6:${alpha.ipv6})\\]\\)[^]*?` +
        `by ${esc(beta.config.mailHost)} \\(Postfix\\) with ESMTPS `,
    ),
  );
  // alpha checked beta's certificate against its DNSSEC-signed TLSA record.
  expect(onHost(alpha, "journalctl -t postfix/smtp --no-pager")).toMatch(
    new RegExp(`Verified TLS connection established to ${esc(beta.config.mailHost)}\\[`),
  );
});
