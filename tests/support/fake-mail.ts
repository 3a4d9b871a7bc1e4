// Small mail servers for the checker's probes: SMTP (greeting in two parts as postscreen sends
// it, STARTTLS or TLS from the first byte, configurable AUTH and RCPT answers), IMAP over TLS,
// and certificates made with openssl for each test run.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSecureContext, TLSSocket, type SecureVersion } from "node:tls";

export const MX = "mx.example.test";

/** A certificate and its key, PEM; `chain` is the certificate followed by its issuer. */
export interface Pem {
  key: string;
  cert: string;
  chain: string;
}

export interface TestPki {
  ca: Pem;
  /** RSA, for mx.example.test and mta-sts.example.test, issued by the CA. */
  mx: Pem;
  /** EC, for other.example.test, issued by the CA. */
  other: Pem;
  /** EC, self-signed, for mx.example.test. */
  selfSigned: Pem;
  /** EC, for mx.example.test, issued by the CA, expiring in 5 days. */
  expiring: Pem;
  /** EC, for the discovery Worker's four names under example.test, issued by the CA. */
  web: Pem;
}

/** Makes a CA and four certificates with openssl in a temporary directory. */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "checks-pki-"));
  const f = (n: string) => join(dir, n);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
  const read = (n: string) => readFileSync(f(n), "utf8");
  try {
    ssl(
      ...["req", "-x509", ...ec, "-nodes", "-days", "365", "-keyout", f("ca.key")],
      ...["-out", f("ca.pem"), "-subj", "/CN=Checker Test CA"],
    );
    const issue = (file: string, keyArgs: string[], sans: string, days = 365): Pem => {
      ssl(
        ...["req", "-new", ...keyArgs, "-nodes", "-keyout", f(`${file}.key`)],
        ...["-out", f(`${file}.csr`), "-subj", `/CN=${file}`],
      );
      writeFileSync(f(`${file}.ext`), `subjectAltName=${sans}\n`);
      ssl(
        ...["x509", "-req", "-in", f(`${file}.csr`), "-CA", f("ca.pem"), "-CAkey", f("ca.key")],
        ...["-CAcreateserial", "-days", String(days), "-extfile", f(`${file}.ext`)],
        ...["-out", f(`${file}.pem`)],
      );
      const cert = read(`${file}.pem`);
      return { key: read(`${file}.key`), cert, chain: cert + read("ca.pem") };
    };
    const ca = read("ca.pem");
    const mx = issue(MX, ["-newkey", "rsa:2048"], `DNS:${MX},DNS:mta-sts.example.test`);
    const other = issue("other.example.test", ec, "DNS:other.example.test");
    const expiring = issue("expiring", ec, `DNS:${MX}`, 5);
    const web = issue(
      "web",
      ec,
      ["mta-sts", "autoconfig", "autodiscover", "openpgpkey"]
        .map((l) => `DNS:${l}.example.test`)
        .join(","),
    );
    ssl(
      ...["req", "-x509", ...ec, "-nodes", "-days", "365", "-keyout", f("self.key")],
      ...["-out", f("self.pem"), "-subj", `/CN=${MX}`, "-addext", `subjectAltName=DNS:${MX}`],
    );
    const self = read("self.pem");
    return {
      ca: { key: read("ca.key"), cert: ca, chain: ca },
      mx,
      other,
      selfSigned: { key: read("self.key"), cert: self, chain: self },
      expiring,
      web,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What the server side of TLS accepts. */
export interface ServerTls {
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  ciphers?: string;
  /** "auto" lets the server negotiate DHE suites. */
  dhparam?: "auto";
}

/** TLS 1.2 and 1.3, ECDHE only: what mailstack's Postfix and Dovecot accept. */
export const GOOD_TLS: ServerTls = {
  minVersion: "TLSv1.2",
  ciphers: "ECDHE+AESGCM:ECDHE+CHACHA20",
};

export interface FakeSmtpOptions {
  pem: Pem;
  tls?: ServerTls;
  /** The host named in the greeting and EHLO; default mx.example.test. */
  host?: string;
  /** TLS from the first byte (465). */
  implicitTls?: boolean;
  /** Offer STARTTLS; default true. */
  starttls?: boolean;
  /** Answer 220 to STARTTLS, then hang up instead of handshaking. */
  brokenTls?: boolean;
  /** When AUTH is offered: inside TLS only (default), also before it, or never. */
  auth?: "tls" | "always" | "never";
  /** The answer to RCPT TO; default 250 for postmaster@example.test, 554 otherwise. */
  rcpt?: (to: string) => string;
}

export interface FakeServer {
  port: number;
  /** Every line received, in order, all connections together. */
  commands: string[];
  close(): Promise<void>;
}

/** A fake SMTP server on 127.0.0.1 and an ephemeral port. */
export function fakeSmtp(o: FakeSmtpOptions): Promise<FakeServer> {
  const host = o.host ?? MX;
  const ctx = createSecureContext({ key: o.pem.key, cert: o.pem.chain, ...(o.tls ?? GOOD_TLS) });
  const rcpt =
    o.rcpt ??
    ((to: string) =>
      to === "postmaster@example.test" ? "250 2.1.5 Ok" : "554 5.7.1 Relay access denied");
  const commands: string[] = [];

  function serve(sock: Socket | TLSSocket, secure: boolean) {
    let buf = "";
    // Lines are written "250 text"; all but the last become "250-text".
    const reply = (lines: string[]) =>
      sock.write(
        lines
          .map((l, i) => (i < lines.length - 1 ? `${l.slice(0, 3)}-${l.slice(4)}` : l) + "\r\n")
          .join(""),
      );
    const onData = (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf("\r\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (handle(line) === "upgraded") return;
      }
    };
    function handle(line: string): "upgraded" | void {
      commands.push(line);
      const verb = line.split(/[ :]/)[0].toUpperCase();
      if (verb === "EHLO") {
        const auth = o.auth === "always" || ((o.auth ?? "tls") === "tls" && secure);
        const offerTls = !secure && (o.starttls ?? true);
        reply([
          `250 ${host}`,
          "250 PIPELINING",
          ...(offerTls ? ["250 STARTTLS"] : []),
          ...(auth ? ["250 AUTH PLAIN LOGIN"] : []),
          "250 8BITMIME",
        ]);
      } else if (verb === "STARTTLS" && !secure) {
        sock.write("220 2.0.0 Ready to start TLS\r\n");
        sock.off("data", onData);
        if (o.brokenTls) sock.destroy();
        else serve(new TLSSocket(sock, { isServer: true, secureContext: ctx }), true);
        return "upgraded";
      } else if (verb === "MAIL") reply(["250 2.1.0 Ok"]);
      else if (verb === "RCPT") reply([rcpt(/<([^>]*)>/.exec(line)?.[1] ?? "")]);
      else if (verb === "RSET") reply(["250 2.0.0 Ok"]);
      else if (verb === "QUIT") sock.end("221 2.0.0 Bye\r\n");
      else reply(["502 5.5.2 Error: command not recognized"]);
    }
    sock.on("data", onData);
    sock.on("error", () => sock.destroy());
    // No greeting inside STARTTLS. Two parts, as postscreen sends them: the reader must wait.
    if (!secure || o.implicitTls) {
      sock.write(`220-${host} ESMTP screening\r\n`);
      setTimeout(() => sock.writable && sock.write(`220 ${host} ESMTP\r\n`), 30);
    }
  }

  return listen((sock) =>
    o.implicitTls
      ? serve(new TLSSocket(sock, { isServer: true, secureContext: ctx }), true)
      : serve(sock, false),
  ).then((s) => ({ ...s, commands }));
}

export interface FakeImapOptions {
  pem: Pem;
  /** Capabilities, in the greeting when `inGreeting` (Dovecot's way), else on CAPABILITY. */
  capabilities?: string;
  inGreeting?: boolean;
}

/** A fake IMAPS server on 127.0.0.1 and an ephemeral port. */
export function fakeImaps(o: FakeImapOptions): Promise<FakeServer> {
  const ctx = createSecureContext({ key: o.pem.key, cert: o.pem.chain, ...GOOD_TLS });
  const caps = o.capabilities ?? "IMAP4rev1 SASL-IR ID ENABLE IDLE AUTH=PLAIN";
  const commands: string[] = [];
  return listen((raw) => {
    const sock = new TLSSocket(raw, { isServer: true, secureContext: ctx });
    sock.on("error", () => sock.destroy());
    sock.write(`* OK ${o.inGreeting ? `[CAPABILITY ${caps}] ` : ""}ready.\r\n`);
    sock.on("data", (d: Buffer) => {
      for (const line of d.toString().split("\r\n").filter(Boolean)) {
        commands.push(line);
        const [tag, verb] = line.split(" ");
        if (verb?.toUpperCase() === "CAPABILITY")
          sock.write(`* CAPABILITY ${caps}\r\n${tag} OK\r\n`);
        else if (verb?.toUpperCase() === "LOGOUT") sock.end(`* BYE\r\n${tag} OK\r\n`);
        else sock.write(`${tag} BAD\r\n`);
      }
    });
  }).then((s) => ({ ...s, commands }));
}

/** Listens on 127.0.0.1; close() also ends the connections still open. */
export function listen(
  onConnection: (s: Socket) => void,
): Promise<{ port: number; close(): Promise<void> }> {
  const open = new Set<Socket>();
  const server: Server = createServer((s) => {
    open.add(s);
    s.on("close", () => open.delete(s));
    onConnection(s);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            for (const s of open) s.destroy();
            server.close(() => done());
          }),
      }),
    ),
  );
}
