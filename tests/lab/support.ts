// Helpers for the lab's end-to-end suite, which runs inside the lab's network namespace
// (`npm run test:lab` starts it there): commands on the VMs, DNS queries, SMTP and TLS.
import { spawnSync } from "node:child_process";
import { get } from "node:https";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { ImapFlow } from "imapflow";
import { createTransport } from "nodemailer";
import { appPasswords, passwords } from "../../lab/lab";
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

/**
 * The password a user's mail client logs in with: the one the lab generated (the stack's
 * `userPasswords`), or for a user with appPasswordsOnly, the first device's app password.
 */
export function passwordOf(h: LabHost, address: string): string {
  const user = h.config.users.find((u) => u.address === address);
  const pw = user?.appPasswordsOnly
    ? appPasswordOf(h, address, user.appPasswords[0].name)
    : passwords(h)[address];
  if (!pw) throw new Error(`no lab password for ${address}`);
  return pw;
}

/** A device's app password (the stack's `userAppPasswords`). */
export function appPasswordOf(h: LabHost, address: string, device: string): string {
  const pw = appPasswords(h)[address]?.[device];
  if (!pw) throw new Error(`no lab app password for ${address} ${device}`);
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

/** A TCP connection that fails fast (ETIMEDOUT after 10 s) rather than eat a test's wait. */
function connectFrom(host: string, port: number, localAddress?: string): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const s = netConnect({ host, port, localAddress }, () => {
      s.setTimeout(0);
      resolve(s);
    });
    s.setTimeout(10_000, () =>
      s.destroy(Object.assign(new Error(`connection to ${port} timed out`), { code: "ETIMEDOUT" })),
    );
    s.once("error", reject);
  });
}

/** Reads a socket's text until a pattern shows; `write` sends a line. */
function conversation(socket: Socket | TLSSocket) {
  socket.setEncoding("utf8");
  let text = "";
  socket.on("data", (d: string) => (text += d));
  return {
    write: (line: string) => socket.write(`${line}\r\n`),
    /** Resolves with the first match in what came after `from` (an earlier match's end). */
    until: (re: RegExp, from = 0) =>
      new Promise<{ line: string; end: number }>((resolve, reject) => {
        const started = Date.now();
        const check = () => {
          const m = re.exec(text.slice(from));
          if (m) return resolve({ line: m[0].trim(), end: from + m.index + m[0].length });
          if (Date.now() - started > 60_000) return reject(new Error(`no ${re} in ${text}`));
          setTimeout(check, 50);
        };
        check();
      }),
  };
}

/**
 * TLS over a connected socket, verified against the lab CA. A handshake that does not end in
 * 30 s fails with ETIMEDOUT: a connection opened just as Fail2Ban bans its address hangs.
 */
async function tlsOver(plain: Socket, h: LabHost): Promise<TLSSocket> {
  const ca = await acmeRoot();
  return new Promise<TLSSocket>((resolve, reject) => {
    const timer = setTimeout(() => {
      plain.destroy();
      reject(
        Object.assign(new Error(`no TLS handshake with ${h.name} within 30 s`), {
          code: "ETIMEDOUT",
        }),
      );
    }, 30_000);
    const s = tlsConnect({ socket: plain, ca, servername: h.config.mailHost }, () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** LOGIN on IMAPS (993), from `localAddress` when given; the tagged reply (`a1 OK ...`). */
export async function imapLoginAs(
  h: LabHost,
  user: string,
  password: string,
  localAddress?: string,
): Promise<string> {
  const tls = await tlsOver(await connectFrom(h.ipv4, 993, localAddress), h);
  try {
    const c = conversation(tls);
    const greeting = await c.until(/^\* OK.*\r\n/m);
    c.write(`a1 LOGIN "${user}" "${password}"`);
    return (await c.until(/^a1 .*\r\n/m, greeting.end)).line;
  } finally {
    tls.destroy();
  }
}

/** AUTH PLAIN on submission with implicit TLS (465), from `localAddress`; the reply line. */
export async function smtpLoginAs(
  h: LabHost,
  user: string,
  password: string,
  localAddress?: string,
): Promise<string> {
  const attempt = async () => {
    const s = await SmtpSession.open({
      host: h.ipv4,
      port: 465,
      tls: { ca: await acmeRoot(), servername: h.config.mailHost },
      localAddress,
    });
    try {
      await s.ehlo();
      return (await s.authPlain(user, password)).text;
    } finally {
      s.close();
    }
  };
  // Postfix waits 10 s for Dovecot's answer. Dovecot delays a refusal by 2 s, and each login
  // from an address after failures from it by 2 to 15 s; on the busy emulated host an answer
  // can come late, and Postfix answers 454 (try again later). The helper tries once more,
  // as a mail client does; a 454 is never taken for an answer.
  const first = await attempt();
  return /^454 4\.7\.0 /.test(first) ? attempt() : first;
}

/**
 * AUTHENTICATE PLAIN on ManageSieve (4190) after STARTTLS, as a filter client logs in; the
 * reply line (`OK ...` or `NO ...`).
 */
export async function sieveLoginAs(
  h: LabHost,
  user: string,
  password: string,
  localAddress?: string,
): Promise<string> {
  const plain = await connectFrom(h.ipv4, 4190, localAddress);
  let tls: TLSSocket | undefined;
  try {
    const c = conversation(plain);
    const greeting = await c.until(/^OK.*\r\n/m);
    c.write("STARTTLS");
    await c.until(/^OK.*\r\n/m, greeting.end);
    plain.removeAllListeners("data");
    tls = await tlsOver(plain, h);
    const t = conversation(tls);
    // After STARTTLS the server sends its capabilities again, ending in OK.
    const caps = await t.until(/^OK.*\r\n/m);
    const token = Buffer.from(`\0${user}\0${password}`).toString("base64");
    t.write(`AUTHENTICATE "PLAIN" "${token}"`);
    return (await t.until(/^(?:OK|NO|BYE).*\r\n/m, caps.end)).line;
  } finally {
    (tls ?? plain).destroy();
  }
}
