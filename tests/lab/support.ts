// Helpers for the lab's end-to-end suite, which runs inside the lab's network namespace
// (`npm run test:lab` starts it there): commands on the VMs, DNS queries, SMTP and TLS.
import { spawnSync } from "node:child_process";
import { get } from "node:https";
import { ImapFlow } from "imapflow";
import { createTransport } from "nodemailer";
import { passwords } from "../../lab/lab";
import { labCaPem } from "../../lab/acme";
import { ACME_MANAGEMENT } from "../../lab/settings";
import { labKeys, type LabKeys } from "../../lab/keys";
import { HOSTS, type LabHost } from "../../lab/settings";
import { ssh, type SshResult } from "../../lab/ssh";
import { SmtpSession, message } from "./smtp";
import { shellQuote } from "../../components/host-files";

export { HOSTS };
export { fileContains, imageContains } from "./scan";
export type { LabHost };

export const keys = (h: LabHost): LabKeys => labKeys(h.name);

/** A root command on a VM, as a person runs one (admin, sudo); throws with output on failure. */
export function onHost(h: LabHost, command: string): string {
  const res: SshResult = ssh(h, keys(h), `sudo -n bash -c ${shellQuote(command)}`);
  if (res.status !== 0) {
    throw new Error(`${h.name}: '${command}' exited ${res.status}\n${res.stdout}\n${res.stderr}`);
  }
  return res.stdout;
}

/** Runs a local program (in the lab's namespace, where this suite runs). */
export function local(
  cmd: string,
  args: string[],
  input?: string,
): { status: number; out: string } {
  const res = spawnSync(cmd, args, { input, encoding: "utf8", timeout: 60_000 });
  return { status: res.status ?? -1, out: `${res.stdout ?? ""}${res.stderr ?? ""}` };
}

/** `kdig` against a server; returns the full output. */
export function dig(server: string, name: string, type: string, ...flags: string[]): string {
  const res = local("kdig", [`@${server}`, name, type, "+timeout=2", "+retry=1", ...flags]);
  if (res.status !== 0) throw new Error(`kdig @${server} ${name} ${type} failed:\n${res.out}`);
  return res.out;
}

/** The answer's rdata lines, as kdig prints them with +short. */
export function answers(server: string, name: string, type: string): string[] {
  return dig(server, name, type, "+short")
    .trim()
    .split("\n")
    .filter((l) => l && !l.startsWith(";"));
}

/** Sends one message over SMTP with nodemailer, as a mail client or a remote MTA would. */
export async function sendMail(opts: {
  host: string;
  port: number;
  from: string;
  to: string;
  subject: string;
  text: string;
  /** The CA the server's certificate must chain to; STARTTLS is then required and verified. */
  ca: string;
  servername: string;
}): Promise<string> {
  const transport = createTransport({
    host: opts.host,
    port: opts.port,
    secure: opts.port === 465,
    requireTLS: true,
    tls: { ca: opts.ca, servername: opts.servername },
    name: "client.lab.example",
  });
  const info = await transport.sendMail({
    from: opts.from,
    to: opts.to,
    subject: opts.subject,
    text: opts.text,
  });
  return String(info.response);
}

/** The root certificate of the lab's ACME CA (pebble makes a new one each start). */
export function acmeRoot(): Promise<string> {
  return new Promise((resolve, reject) => {
    get(`${ACME_MANAGEMENT}/roots/0`, { ca: labCaPem() }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () =>
        res.statusCode === 200
          ? resolve(body)
          : reject(new Error(`pebble root: HTTP ${res.statusCode}`)),
      );
    }).on("error", reject);
  });
}

/** Polls a command on a host until its output matches, or fails with the last output. */
export async function eventually(
  h: LabHost,
  command: string,
  pattern: RegExp,
  timeoutMs = 120_000,
): Promise<string> {
  const end = Date.now() + timeoutMs;
  let out = "";
  while (Date.now() < end) {
    out = onHost(h, command);
    if (pattern.test(out)) return out;
    await new Promise((r) => setTimeout(r, 3000));
  }
  throw new Error(
    `${h.name}: '${command}' never matched ${pattern} within ${timeoutMs / 1000} s; last output:\n${out}`,
  );
}

/** The password the lab generated for a user (the stack's `userPasswords`). */
export function passwordOf(h: LabHost, address: string): string {
  const pw = passwords(h)[address];
  if (!pw) throw new Error(`no lab password for ${address}`);
  return pw;
}

/** An IMAPS session as a mail client opens it: port 993, certificate verified. */
export async function withImap<T>(
  h: LabHost,
  user: string,
  password: string,
  fn: (client: ImapFlow) => Promise<T>,
): Promise<T> {
  const client = new ImapFlow({
    host: h.ipv4,
    port: 993,
    secure: true,
    auth: { user, pass: password },
    tls: { ca: await acmeRoot(), servername: h.config.mailHost },
    logger: false,
    connectionTimeout: 60_000,
    greetingTimeout: 60_000,
  });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.logout().catch(() => undefined);
  }
}

/** Waits until a message with this subject is in the mailbox; returns its raw source. */
export async function waitForMessage(
  h: LabHost,
  user: string,
  mailbox: string,
  subject: string,
  timeoutMs = 180_000,
): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const found = await withImap(h, user, passwordOf(h, user), async (c) => {
      const lock = await c.getMailboxLock(mailbox);
      try {
        const uids = (await c.search({ header: { subject } }, { uid: true })) || [];
        if (uids.length === 0) return undefined;
        const msg = await c.fetchOne(String(uids[0]), { source: true }, { uid: true });
        return msg ? msg.source!.toString("utf8") : undefined;
      } finally {
        lock.release();
      }
    });
    if (found) return found;
    if (Date.now() > end)
      throw new Error(`${h.name}: no message '${subject}' in ${user}'s ${mailbox}`);
    await new Promise((r) => setTimeout(r, 3000));
  }
}

/** Subjects of the messages in a mailbox. */
export function subjects(h: LabHost, user: string, mailbox: string): Promise<string[]> {
  return withImap(h, user, passwordOf(h, user), async (c) => {
    const lock = await c.getMailboxLock(mailbox);
    try {
      const out: string[] = [];
      if ((c.mailbox as { exists: number }).exists === 0) return out;
      for await (const m of c.fetch("1:*", { envelope: true })) out.push(m.envelope?.subject ?? "");
      return out;
    } finally {
      lock.release();
    }
  });
}

/** Delivers one plain message to `to` on port 25, as a remote MTA would; the final reply code. */
export async function deliver(
  h: LabHost,
  to: string,
  subject: string,
  body = "kept\n",
): Promise<number> {
  const s = await SmtpSession.open({ host: h.ipv4, port: 25 });
  try {
    await s.ehlo();
    await s.command(`MAIL FROM:<someone@lab.example>`);
    await s.command(`RCPT TO:<${to}>`);
    return (await s.data(message({ from: "someone@lab.example", to, subject, body }))).code;
  } finally {
    s.close();
  }
}

/** The certificates a host serves on port 25 after STARTTLS, as PEM blocks, leaf first. */
export function servedChain(h: LabHost): string[] {
  const served = local(
    "openssl",
    [
      "s_client",
      "-starttls",
      "smtp",
      "-connect",
      `${h.ipv4}:25`,
      "-servername",
      h.config.mailHost,
      "-showcerts",
    ],
    "",
  );
  return served.out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}
