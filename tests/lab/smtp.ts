// A plain SMTP dialogue for the end-to-end suite: every reply code and text is visible, so
// tests can assert exact refusals (nodemailer hides them behind its own errors).
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";

export interface Reply {
  code: number;
  /** All lines, joined with newlines, codes included. */
  text: string;
}

export class SmtpSession {
  private buffer = "";
  private waiting: ((r: Reply) => void) | undefined;
  private failure: Error | undefined;
  greeting!: Reply;

  private constructor(private socket: Socket | TLSSocket) {
    this.listen(socket);
  }

  private listen(socket: Socket | TLSSocket): void {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      this.deliver();
    });
    socket.on("error", (e) => (this.failure = e));
  }

  private deliver(): void {
    // A reply ends with a line "NNN text" (no hyphen after the code).
    const m = this.buffer.match(/(^|\r\n)(\d{3}) [^\r\n]*\r\n/);
    if (!m || !this.waiting) return;
    const end = (m.index ?? 0) + m[0].length;
    const text = this.buffer.slice(0, end).trim();
    this.buffer = this.buffer.slice(end);
    const resolve = this.waiting;
    this.waiting = undefined;
    resolve({ code: Number(m[2]), text });
  }

  private read(timeoutMs = 60_000): Promise<Reply> {
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      const timer = setTimeout(
        () => reject(new Error(`no SMTP reply within ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
      this.waiting = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
      this.deliver();
    });
  }

  /** Connects; `tls` for implicit TLS (465). Resolves after the greeting. */
  static async open(opts: {
    host: string;
    port: number;
    tls?: { ca: string; servername: string };
    localAddress?: string;
  }): Promise<SmtpSession> {
    let socket: Socket | TLSSocket = await new Promise<Socket>((resolve, reject) => {
      const s = netConnect(
        { host: opts.host, port: opts.port, localAddress: opts.localAddress, timeout: 30_000 },
        () => {
          s.setTimeout(0);
          resolve(s);
        },
      );
      s.once("error", reject);
      s.once("timeout", () => s.destroy(new Error("SMTP connection timed out")));
    });
    const tls = opts.tls;
    if (tls) {
      const plain = socket;
      socket = await new Promise<TLSSocket>((resolve, reject) => {
        const s = tlsConnect({ socket: plain, ca: tls.ca, servername: tls.servername }, () =>
          resolve(s),
        );
        s.once("error", reject);
      });
    }
    const session = new SmtpSession(socket);
    session.greeting = await session.read();
    return session;
  }

  async command(line: string): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    return this.read();
  }

  /** EHLO; returns the extension keywords offered (upper case, without the code). */
  async ehlo(name = "client.lab.example"): Promise<string[]> {
    const r = await this.command(`EHLO ${name}`);
    if (r.code !== 250) throw new Error(`EHLO refused: ${r.text}`);
    return r.text
      .split(/\r?\n/)
      .slice(1)
      .map((l) => l.slice(4).toUpperCase());
  }

  /** STARTTLS, verifying the certificate against `ca`. */
  async starttls(ca: string, servername: string): Promise<void> {
    const r = await this.command("STARTTLS");
    if (r.code !== 220) throw new Error(`STARTTLS refused: ${r.text}`);
    const plain = this.socket;
    plain.removeAllListeners("data");
    this.socket = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({ socket: plain, ca, servername }, () => resolve(s));
      s.once("error", reject);
    });
    this.listen(this.socket);
  }

  /** AUTH PLAIN; returns the reply (235 on success). */
  authPlain(user: string, password: string): Promise<Reply> {
    const token = Buffer.from(`\0${user}\0${password}`).toString("base64");
    return this.command(`AUTH PLAIN ${token}`);
  }

  /** DATA with a message (dot-stuffed here); returns the reply to the final dot. */
  async data(message: string): Promise<Reply> {
    const r = await this.command("DATA");
    if (r.code !== 354) return r;
    const body = message
      .replace(/\r?\n/g, "\r\n")
      .split("\r\n")
      .map((l) => (l.startsWith(".") ? `.${l}` : l))
      .join("\r\n");
    this.socket.write(`${body}\r\n.\r\n`);
    return this.read(180_000);
  }

  close(): void {
    this.socket.end("QUIT\r\n");
    this.socket.destroy();
  }
}

/** A minimal RFC 5322 message. */
export function message(opts: {
  from: string;
  to: string;
  subject: string;
  body: string;
  headers?: Record<string, string>;
}): string {
  const id = `<${Date.now()}.${Math.random().toString(36).slice(2)}@lab.example>`;
  const extra = Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}`);
  return [
    `From: ${opts.from}`,
    `To: ${opts.to}`,
    `Subject: ${opts.subject}`,
    `Message-ID: ${id}`,
    `Date: ${new Date().toUTCString()}`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    ...extra,
    "",
    opts.body,
  ].join("\r\n");
}
