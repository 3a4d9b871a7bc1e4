// Probes of the SMTP ports as another mail server (25) or a mail program (465, 587) meets
// them: the greeting, STARTTLS or TLS from the first byte, what TLS the server refuses, who it
// relays for, and when it offers AUTH. checks/tls.ts re-exports them with the other probes.
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import {
  DEFAULT_TIMEOUT_MS,
  describeSession,
  errorText,
  handshake,
  keyExchange,
  peerChain,
  readUntil,
  sessionResults,
  tcp,
  type Offer,
  type ProbeOptions,
} from "./net";
import type { CheckResult } from "./result";

/** Options of the SMTP probes. */
export interface SmtpOptions extends ProbeOptions {
  /** The name the checker gives in EHLO; default `checker.mailstack.invalid`. */
  helo?: string;
}

/** Options of `probeSmtp25`. */
export interface Smtp25Options extends SmtpOptions {
  /**
   * Reverse-path of the relay test; default the null sender `<>`. A made-up sender such as
   * `checker@x.invalid` is refused by `reject_unknown_sender_domain` (mailstack sets it), which
   * would refuse the postmaster control too and leave the relay test unable to tell.
   */
  mailFrom?: string;
}

/** What `probeSmtp25` found. */
export interface Smtp25Probe {
  results: CheckResult[];
  /** The certificates served after STARTTLS, leaf first, DER; empty without TLS. For `daneMatches`. */
  chainDer: Buffer[];
}

/** One SMTP reply. */
export interface Reply {
  code: number;
  /** Each line as sent, code included. */
  lines: string[];
}

const DEFAULT_HELO = "checker.mailstack.invalid";
/** The recipient of the relay test: a domain no mail server here is responsible for. */
const FOREIGN_RCPT = "relay-test@example.org";
/** OpenSSL 3 refuses to even offer TLS 1.0 and 1.1 at its default security level. */
const LEGACY = "DEFAULT@SECLEVEL=0";
/** TLS 1.2 suites without ECDHE: finite-field DHE and static RSA key exchange. */
const NON_ECDHE =
  "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-GCM-SHA256:AES256-SHA:AES128-SHA@SECLEVEL=0";
/** Handshake errors raised before anything reaches the server: our library, not its refusal. */
const LOCAL_TLS_ERROR = /NO_PROTOCOLS_AVAILABLE|NO_CIPHERS_AVAILABLE/;

/** A complete SMTP reply: its last line has a space, or nothing, after the code. */
const complete = (t: string) => /(^|\r\n)\d{3}( [^\r\n]*)?\r\n$/.test(t);

/** Reads one SMTP reply, however many lines (postscreen's greeting comes in two parts). */
export async function readReply(sock: Socket | TLSSocket, timeoutMs: number): Promise<Reply> {
  const lines = (await readUntil(sock, complete, timeoutMs)).split("\r\n").filter(Boolean);
  return { code: Number(lines[lines.length - 1].slice(0, 3)), lines };
}

async function command(sock: Socket | TLSSocket, line: string, timeoutMs: number) {
  sock.write(`${line}\r\n`);
  return readReply(sock, timeoutMs);
}

const show = (r: Reply) => r.lines.join(" | ");

/** The EHLO keywords, upper-cased: "STARTTLS", "AUTH PLAIN LOGIN", ... */
function keywords(ehlo: Reply): string[] {
  return ehlo.lines.slice(1).map((l) => l.slice(4).toUpperCase());
}

/** The SASL mechanisms an EHLO reply offers; `AUTH=` is the pre-RFC form some servers add. */
function authMechanisms(ehlo: Reply): string[] {
  const line = keywords(ehlo).find((k) => /^AUTH[ =]/.test(k));
  return line ? line.slice(5).split(/\s+/).filter(Boolean) : [];
}

interface Target {
  address: string;
  host: string;
  port: number;
  helo: string;
  timeoutMs: number;
  ca?: string[];
}

type Step = "connect" | "greeting" | "EHLO" | "STARTTLS" | "handshake" | "EHLO after TLS";

/** How far one SMTP dialogue got. */
interface Dialogue {
  greeting?: Reply;
  /** The EHLO reply before TLS (none with implicit TLS). */
  ehlo?: Reply;
  tls?: TLSSocket;
  /** The EHLO reply inside TLS. */
  ehloTls?: Reply;
  /** Where it stopped and why. At "handshake" the server refused what was offered. */
  stopped?: { step: Step; why: string };
  /** The socket to speak on now. */
  sock?: Socket | TLSSocket;
}

/**
 * Connects and goes as far as `mode` asks: greeting and EHLO in the clear ("plain"), then
 * STARTTLS and EHLO again ("starttls"), or TLS from the first byte ("implicit"). It never
 * throws: a failure ends the dialogue with the step it happened at.
 */
async function dialogue(
  t: Target,
  mode: "plain" | "starttls" | "implicit",
  offer?: Offer,
): Promise<Dialogue> {
  const d: Dialogue = {};
  let step: Step = "connect";
  const secure = async (socket: Socket) => {
    step = "handshake";
    d.tls = await handshake(
      { socket, address: t.address, servername: t.host, ca: t.ca, offer },
      t.timeoutMs,
    );
    d.sock = d.tls;
  };
  try {
    d.sock = await tcp(t.address, t.port, t.timeoutMs);
    if (mode === "implicit") await secure(d.sock);
    step = "greeting";
    d.greeting = await readReply(d.sock, t.timeoutMs);
    if (d.greeting.code !== 220) throw new Error(show(d.greeting));
    step = mode === "implicit" ? "EHLO after TLS" : "EHLO";
    const ehlo = await command(d.sock, `EHLO ${t.helo}`, t.timeoutMs);
    if (ehlo.code !== 250) throw new Error(show(ehlo));
    if (mode === "implicit") d.ehloTls = ehlo;
    else d.ehlo = ehlo;
    if (mode !== "starttls") return d;
    step = "STARTTLS";
    if (!keywords(ehlo).includes("STARTTLS")) throw new Error("not offered in EHLO");
    const go = await command(d.sock, "STARTTLS", t.timeoutMs);
    if (go.code !== 220) throw new Error(show(go));
    await secure(d.sock as Socket);
    step = "EHLO after TLS";
    d.ehloTls = await command(d.sock, `EHLO ${t.helo}`, t.timeoutMs);
    if (d.ehloTls.code !== 250) throw new Error(show(d.ehloTls));
  } catch (e) {
    d.stopped = { step, why: errorText(e) };
  }
  return d;
}

/** Says goodbye without waiting for the answer; the socket goes when the server closes it. */
function close(d: Dialogue) {
  const s = d.sock;
  if (!s || s.destroyed) return;
  s.on("error", () => {});
  s.end("QUIT\r\n");
  setTimeout(() => s.destroy(), 2000).unref();
}

const stoppedText = (d: Dialogue) =>
  d.stopped ? `stopped at ${d.stopped.step}: ${d.stopped.why}` : "";

function target(address: string, host: string, port: number, o: SmtpOptions): Target {
  return {
    address,
    host,
    port,
    helo: o.helo ?? DEFAULT_HELO,
    timeoutMs: o.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    ca: o.ca,
  };
}

function unreachable(d: Dialogue, at: string, port: number): CheckResult {
  return {
    name: `Connect ${at}`,
    status: "fail",
    saw: d.stopped!.why,
    fix: `Open TCP port ${port} in the firewall (and ask the provider to unblock 25 if it does)`,
  };
}

/** The greeting must name the MX host: receivers compare it with the PTR and the certificate. */
function bannerResult(d: Dialogue, name: string, host: string): CheckResult {
  if (!d.greeting) return { name, status: "fail", saw: stoppedText(d), fix: "Greet with 220" };
  const first = d.greeting.lines[0];
  const named = /^220[ -](\S+)/.exec(first)?.[1]?.replace(/\.$/, "");
  if (named?.toLowerCase() === host.toLowerCase()) return { name, status: "pass", saw: first };
  return {
    name,
    status: "fail",
    saw: `${first} (names ${named ?? "nothing"}, not ${host})`,
    fix: `Name ${host} first in the greeting: Postfix myhostname = ${host}, smtpd_banner = $myhostname ESMTP`,
  };
}

/** The TLS session lines, or one failing line saying where TLS stopped. */
function tlsLines(d: Dialogue, label: string, port: number, address: string, host: string) {
  if (d.tls) return sessionResults(d.tls, label, port, address, host);
  const fix =
    d.stopped?.step === "handshake"
      ? "Make TLS 1.2/1.3 with ECDHE work with a certificate for the host (Postfix smtpd_tls_chain_files)"
      : "Offer STARTTLS: Postfix smtpd_tls_security_level = may (25) or encrypt (587), with a certificate";
  return [{ name: label, status: "fail" as const, saw: stoppedText(d), fix }];
}

/** One STARTTLS handshake with a restricted offer, judged for what the server did. */
interface Attempt {
  /** "untested": the checker itself could not make the offer, or never got to make it. */
  outcome: "accepted" | "refused" | "untested";
  saw: string;
  ecdhe?: boolean;
}

async function attempt(t: Target, offer: Offer): Promise<Attempt> {
  const d = await dialogue(t, "starttls", offer);
  const seen = d.tls && { saw: describeSession(d.tls), ecdhe: keyExchange(d.tls).ecdhe };
  close(d);
  if (seen) return { outcome: "accepted", ...seen };
  const why = d.stopped?.why ?? "";
  if (d.stopped?.step === "handshake" && !LOCAL_TLS_ERROR.test(why)) {
    return { outcome: "refused", saw: why };
  }
  return { outcome: "untested", saw: stoppedText(d) };
}

/**
 * TLS 1.0 and 1.1 must be refused. A refusal only counts when TLS 1.2 works on the same path,
 * or a server whose TLS is broken altogether would pass.
 */
function oldTlsResult(name: string, v10: Attempt, v11: Attempt, v12: Attempt): CheckResult {
  const saw = `TLSv1 ${v10.outcome} (${v10.saw}); TLSv1.1 ${v11.outcome} (${v11.saw}); TLSv1.2 control ${v12.outcome} (${v12.saw})`;
  if (v10.outcome === "accepted" || v11.outcome === "accepted") {
    return {
      name,
      status: "fail",
      saw,
      fix: "Postfix: smtpd_tls_protocols = >=TLSv1.2 and smtpd_tls_mandatory_protocols = >=TLSv1.2",
    };
  }
  if (v12.outcome !== "accepted") {
    return {
      name,
      status: "fail",
      saw: `can't tell, the TLS 1.2 control failed too: ${saw}`,
      fix: "Make STARTTLS with TLS 1.2 work (see the STARTTLS line)",
    };
  }
  if (v10.outcome === "untested" || v11.outcome === "untested") {
    return { name, status: "warn", saw, fix: "Run the check again; an old protocol went untested" };
  }
  return { name, status: "pass", saw };
}

/** Every suite negotiated must use ECDHE, and a client offering nothing else must be refused. */
function ecdheResult(
  name: string,
  main: { saw: string; ecdhe: boolean } | undefined,
  v12: Attempt,
  nonEcdhe: Attempt,
) {
  const fix =
    "Postfix: smtpd_tls_exclude_ciphers with kRSA and kDHE, tls_high_cipherlist with ECDHE suites only";
  if (!main) {
    return { name, status: "fail", saw: "can't tell: no TLS session", fix } satisfies CheckResult;
  }
  const saw = `default ${main.saw}; max TLS 1.2: ${v12.saw}; non-ECDHE suites only ${nonEcdhe.outcome} (${nonEcdhe.saw})`;
  if (nonEcdhe.outcome === "accepted" || !main.ecdhe || v12.ecdhe === false) {
    return { name, status: "fail", saw, fix } satisfies CheckResult;
  }
  if (nonEcdhe.outcome === "untested") {
    return { name, status: "warn", saw, fix: "Run the check again" } satisfies CheckResult;
  }
  return { name, status: "pass", saw } satisfies CheckResult;
}

/**
 * The server must refuse a recipient in a domain it does not serve, while accepting the
 * domain's own postmaster (the control: a server refusing everyone tells nothing). No DATA is
 * ever sent.
 */
async function relayResult(t: Target, name: string, domain: string, mailFrom: string) {
  const fail = (saw: string, fix: string): CheckResult => ({ name, status: "fail", saw, fix });
  const d = await dialogue(t, "plain");
  try {
    if (d.stopped) return fail(`can't tell: ${stoppedText(d)}`, "Make port 25 answer EHLO");
    const sock = d.sock!;
    const from = await command(sock, `MAIL FROM:<${mailFrom}>`, t.timeoutMs);
    if (from.code !== 250) {
      return fail(`can't tell: MAIL FROM:<${mailFrom}> refused: ${show(from)}`, "Accept mail");
    }
    const control = await command(sock, `RCPT TO:<postmaster@${domain}>`, t.timeoutMs);
    const foreign = await command(sock, `RCPT TO:<${FOREIGN_RCPT}>`, t.timeoutMs);
    await command(sock, "RSET", t.timeoutMs);
    const saw = `postmaster@${domain}: ${show(control)}; ${FOREIGN_RCPT}: ${show(foreign)}`;
    const relayFix =
      "Postfix: smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination";
    if (foreign.code < 400) return fail(`open relay: ${saw}`, relayFix);
    if (control.code >= 300) {
      return fail(
        `can't tell, the domain's own postmaster was refused: ${saw}`,
        `Accept mail for postmaster@${domain} (RFC 5321 requires it)`,
      );
    }
    if (foreign.code < 500) {
      return {
        name,
        status: "warn",
        saw: `refused only temporarily: ${saw}`,
        fix: `Refuse relaying for good (5xx): ${relayFix}`,
      } satisfies CheckResult;
    }
    return { name, status: "pass", saw } satisfies CheckResult;
  } catch (e) {
    return fail(`can't tell: ${errorText(e)}`, "Make port 25 answer MAIL and RCPT");
  } finally {
    close(d);
  }
}

/**
 * Probes port 25 of one MX address as a sending server would, over several connections:
 * - `Banner 25 (address)`: the 220 greeting names `mxHost`;
 * - `STARTTLS 25 (address)` and `Certificate 25 (address)`: STARTTLS offered, TLS 1.2+, the
 *   chain trusted (default roots plus `opts.ca`) and valid for `mxHost`;
 * - `Old TLS 25 (address)`: TLS 1.0 and 1.1 handshakes refused while TLS 1.2 succeeds;
 * - `ECDHE 25 (address)`: the default and TLS 1.2 sessions use ECDHE, non-ECDHE suites refused;
 * - `Relay 25 (address)`: `relay-test@example.org` refused, `postmaster@<domain>` accepted.
 * When nothing answers, the one line `Connect 25 (address)`. Never throws.
 */
export async function probeSmtp25(
  address: string,
  mxHost: string,
  domain: string,
  opts: Smtp25Options = {},
): Promise<Smtp25Probe> {
  const t = target(address, mxHost, opts.port ?? 25, opts);
  const at = `25 (${address})`;
  const main = await dialogue(t, "starttls");
  if (main.stopped?.step === "connect")
    return { results: [unreachable(main, at, 25)], chainDer: [] };
  const results = [
    bannerResult(main, `Banner ${at}`, mxHost),
    ...tlsLines(main, `STARTTLS ${at}`, 25, address, mxHost),
  ];
  // Read the session before the socket goes: a closed one no longer knows its cipher.
  const session = main.tls && {
    saw: describeSession(main.tls),
    ecdhe: keyExchange(main.tls).ecdhe,
  };
  const chainDer = main.tls ? peerChain(main.tls) : [];
  close(main);
  const v10 = await attempt(t, { minVersion: "TLSv1", maxVersion: "TLSv1", ciphers: LEGACY });
  const v11 = await attempt(t, { minVersion: "TLSv1.1", maxVersion: "TLSv1.1", ciphers: LEGACY });
  const v12 = await attempt(t, { minVersion: "TLSv1.2", maxVersion: "TLSv1.2" });
  const nonEcdhe = await attempt(t, { maxVersion: "TLSv1.2", ciphers: NON_ECDHE });
  results.push(
    oldTlsResult(`Old TLS ${at}`, v10, v11, v12),
    ecdheResult(`ECDHE ${at}`, session, v12, nonEcdhe),
    await relayResult(t, `Relay ${at}`, domain, opts.mailFrom ?? ""),
  );
  return { results, chainDer };
}

/**
 * Probes a submission port as a mail program would: 465 with TLS from the first byte, 587 with
 * STARTTLS (`port` picks the mode; `opts.port` only where to connect). Lines:
 * - `Banner <port> (address)`: the 220 greeting names `mxHost`;
 * - `TLS 465 (address)` or `STARTTLS 587 (address)`, and `Certificate <port> (address)`;
 * - `AUTH <port> (address)`: EHLO inside TLS offers PLAIN or LOGIN, and on 587 EHLO before
 *   STARTTLS offers no AUTH (a password must never be invited in the clear).
 * When nothing answers, the one line `Connect <port> (address)`. Never throws.
 */
export async function probeSubmission(
  address: string,
  mxHost: string,
  port: 465 | 587,
  opts: SmtpOptions = {},
): Promise<CheckResult[]> {
  const t = target(address, mxHost, opts.port ?? port, opts);
  const at = `${port} (${address})`;
  const d = await dialogue(t, port === 465 ? "implicit" : "starttls");
  if (d.stopped?.step === "connect") return [unreachable(d, at, port)];
  const results: CheckResult[] = [];
  if (port === 587 || d.greeting) results.push(bannerResult(d, `Banner ${at}`, mxHost));
  results.push(...tlsLines(d, `${port === 465 ? "TLS" : "STARTTLS"} ${at}`, port, address, mxHost));
  results.push(authResult(d, `AUTH ${at}`));
  close(d);
  return results;
}

function authResult(d: Dialogue, name: string): CheckResult {
  const before = d.ehlo ? authMechanisms(d.ehlo) : [];
  if (before.length > 0) {
    return {
      name,
      status: "fail",
      saw: `AUTH ${before.join(" ")} offered before STARTTLS`,
      fix: "Postfix: smtpd_tls_auth_only = yes (and smtpd_tls_security_level = encrypt on 587)",
    };
  }
  if (!d.ehloTls) return { name, status: "fail", saw: `can't tell: ${stoppedText(d)}` };
  const after = authMechanisms(d.ehloTls);
  const saw = `${d.ehlo ? "none before STARTTLS; " : ""}inside TLS: ${
    after.length ? `AUTH ${after.join(" ")}` : "no AUTH"
  }`;
  if (after.includes("PLAIN") || after.includes("LOGIN")) return { name, status: "pass", saw };
  return {
    name,
    status: "fail",
    saw,
    fix: "Postfix: smtpd_sasl_auth_enable = yes on the submission services (Dovecot auth with PLAIN and LOGIN)",
  };
}
