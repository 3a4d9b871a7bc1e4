// Sockets for the checker's probes: TCP and TLS with a deadline on every step, a reader for
// line protocols, and the verdict on a TLS session (protocol, key exchange, certificate) that
// every mail port shares. The socket helpers come from staging/smoke.ts; unlike the smoke
// check, certificates are verified here, as a sending server or a test site would.
import { connect as tcpConnect, type Socket } from "node:net";
import {
  checkServerIdentity,
  connect as tlsConnect,
  createSecureContext,
  rootCertificates,
  type DetailedPeerCertificate,
  type SecureContext,
  type SecureVersion,
  type TLSSocket,
} from "node:tls";
import type { CheckResult } from "./result";

/** Options every probe takes. */
export interface ProbeOptions {
  /**
   * Deadline of each step (connect, handshake, one reply) in ms; default 15000, because
   * postscreen holds back the end of its greeting for about 6 s on a first visit.
   */
  timeoutMs?: number;
  /** Extra trusted CA certificates (PEM), added to Node's default roots: a lab or staging CA. */
  ca?: string[];
  /** TCP port to connect to; default the service's own (25, 465, 587, 993). */
  port?: number;
}

export const DEFAULT_TIMEOUT_MS = 15_000;

/** A certificate this close to expiry is a warning: renewal should have happened by now. */
const EXPIRY_WARN_DAYS = 14;

/** Node's default roots plus the extra ones: `ca` alone would replace the defaults. */
export function trustedCas(extra: string[] = []): string[] {
  return [...rootCertificates, ...extra];
}

/**
 * An error's message with its code, for `saw`. OpenSSL's messages run over several lines of
 * source locations; its `reason` says the same in a few words. (No `instanceof Error`: errors
 * from Node's core come from another realm under jest.)
 */
export function errorText(e: unknown): string {
  const err = e as { message?: unknown; code?: string; reason?: string } | undefined;
  if (typeof err?.message !== "string") return String(e);
  const message = err.reason ?? err.message;
  return err.code && !message.includes(err.code) ? `${message} (${err.code})` : message;
}

/** A promise's value, or what it rejected with: no try/catch around each step. */
export function settle<T>(p: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  return p.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

/**
 * Reads from a socket until `done` says the text is complete. The dialogues are lock-step
 * (the server speaks only when spoken to), so nothing arrives between two reads.
 */
export function readUntil(
  sock: Socket | TLSSocket,
  done: (text: string) => boolean,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(
      () =>
        finish(new Error(`no complete reply within ${timeoutMs} ms (got ${JSON.stringify(text)})`)),
      timeoutMs,
    );
    const onData = (d: Buffer) => {
      text += d.toString("utf8");
      if (done(text)) finish();
    };
    const onError = (e: Error) => finish(e);
    const onEnd = () => finish(new Error(`connection closed (got ${JSON.stringify(text)})`));
    function finish(err?: Error) {
      clearTimeout(timer);
      sock.off("data", onData);
      sock.off("error", onError);
      sock.off("end", onEnd);
      if (err) reject(err);
      else resolve(text);
    }
    sock.on("data", onData);
    sock.on("error", onError);
    sock.on("end", onEnd);
  });
}

/** Opens a TCP connection, or rejects with why not within `timeoutMs`. */
export function tcp(address: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ host: address, port, timeout: timeoutMs }, () => {
      s.setTimeout(0);
      resolve(s);
    });
    s.once("error", reject);
    s.once("timeout", () => s.destroy(new Error(`connect to ${address}:${port} timed out`)));
  });
}

/** What the client offers in one handshake; Node's defaults when absent. */
export interface Offer {
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  ciphers?: string;
}

/** Where to handshake: over `socket` (after STARTTLS) or on a new connection. */
export interface HandshakeTarget {
  socket?: Socket;
  address: string;
  port?: number;
  /** SNI, and the name the certificate is judged against. */
  servername: string;
  /** Extra trusted CAs (PEM). */
  ca?: string[];
  offer?: Offer;
}

/**
 * Secure contexts by what they trust and offer, made once: each parses Node's 150 or so root
 * certificates, which cost more than the rest of a handshake's setup when every probe made
 * its own.
 */
const contexts = new Map<string, SecureContext>();

function secureContext(ca: string[] = [], offer: Offer = {}): SecureContext {
  const key = JSON.stringify([ca, offer.minVersion, offer.maxVersion, offer.ciphers]);
  let context = contexts.get(key);
  if (!context) {
    context = createSecureContext({ ca: trustedCas(ca), ...offer });
    contexts.set(key, context);
  }
  return context;
}

/**
 * Completes a TLS handshake or rejects within `timeoutMs`. It does not reject a bad
 * certificate: `sessionResults` judges it afterwards, so the report says what was served
 * rather than only that the handshake was aborted.
 */
export function handshake(t: HandshakeTarget, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      socket: t.socket,
      host: t.socket ? undefined : t.address,
      port: t.socket ? undefined : t.port,
      servername: t.servername,
      secureContext: secureContext(t.ca, t.offer),
      rejectUnauthorized: false,
      // `authorized` then reflects the chain alone; the name is checked in sessionResults.
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(
      () => s.destroy(new Error(`TLS handshake did not complete within ${timeoutMs} ms`)),
      timeoutMs,
    );
    s.once("secureConnect", () => {
      clearTimeout(timer);
      s.off("error", onError);
      resolve(s);
    });
    const onError = (e: Error) => {
      clearTimeout(timer);
      s.destroy();
      t.socket?.destroy();
      reject(e);
    };
    s.once("error", onError);
  });
}

/** The certificates the peer presented, leaf first, each as DER. */
export function peerChain(s: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c: DetailedPeerCertificate | undefined = s.getPeerCertificate(true);
  // A self-signed root is its own issuer: stop at the first certificate seen twice.
  while (c?.raw && !out.some((d) => d.equals(c!.raw))) {
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

/** The session's key exchange: ECDHE when the ephemeral key is an elliptic-curve one. */
export function keyExchange(s: TLSSocket): { ecdhe: boolean; text: string } {
  const k = s.getEphemeralKeyInfo() as { type?: string; name?: string; size?: number } | null;
  if (k?.type === "ECDH") return { ecdhe: true, text: `ECDHE ${k.name}` };
  if (k?.type === "DH") return { ecdhe: false, text: `DHE ${k.size} bits` };
  return { ecdhe: false, text: "no ephemeral key (static RSA)" };
}

/** "TLSv1.3, TLS_AES_256_GCM_SHA384, ECDHE X25519". */
export function describeSession(s: TLSSocket): string {
  return `${s.getProtocol()}, ${s.getCipher().name}, ${keyExchange(s).text}`;
}

/** True for the protocols every port must be limited to. */
export function modernProtocol(protocol: string | null): boolean {
  return protocol === "TLSv1.2" || protocol === "TLSv1.3";
}

/**
 * The two lines every TLS port gets: the protocol of a default handshake (`<label>`), and
 * the certificate (`Certificate <port> (<address>)`): chain trusted, valid for `host`, and
 * not about to expire.
 */
export function sessionResults(
  s: TLSSocket,
  label: string,
  port: number,
  address: string,
  host: string,
): CheckResult[] {
  const protocol = s.getProtocol();
  const session: CheckResult = modernProtocol(protocol)
    ? { name: label, status: "pass", saw: describeSession(s) }
    : {
        name: label,
        status: "fail",
        saw: describeSession(s),
        fix: "Accept TLS 1.2 and 1.3 only (Postfix smtpd_tls_protocols and smtpd_tls_mandatory_protocols = >=TLSv1.2; Dovecot ssl_min_protocol = TLSv1.2)",
      };
  return [session, certificateResult(s, `Certificate ${port} (${address})`, host)];
}

function certificateResult(s: TLSSocket, name: string, host: string): CheckResult {
  const cert = s.getPeerCertificate();
  if (!cert.raw) return { name, status: "fail", saw: "no certificate", fix: "Serve a certificate" };
  const expires = new Date(cert.valid_to);
  const seen = `${cert.subjectaltname || `CN=${cert.subject?.CN ?? "?"}, no names`}, issued by ${
    cert.issuer?.CN ?? "?"
  }, expires ${expires.toISOString().slice(0, 10)}`;
  if (!s.authorized) {
    return {
      name,
      status: "fail",
      saw: `${seen}; not trusted: ${String(s.authorizationError)}`,
      fix: "Serve the full chain (fullchain.pem) from a public CA; a lab or staging CA is trusted only when passed as an extra CA",
    };
  }
  const mismatch = checkServerIdentity(host, cert);
  if (mismatch) {
    return {
      name,
      status: "fail",
      saw: `${seen}; not valid for ${host}: ${mismatch.message}`,
      fix: `Get a certificate whose subjectAltName includes ${host}`,
    };
  }
  const daysLeft = (expires.getTime() - Date.now()) / 86_400_000;
  if (daysLeft < EXPIRY_WARN_DAYS) {
    return {
      name,
      status: "warn",
      saw: `${seen}; expires in ${Math.floor(daysLeft)} days`,
      fix: "Renewal is late: check the ACME renewal timer and its log",
    };
  }
  return { name, status: "pass", saw: `${seen}; trusted, valid for ${host}` };
}
