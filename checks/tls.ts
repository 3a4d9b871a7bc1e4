// The checker's network probes of the mail ports, and what other checks need from TLS: DANE
// matching of the served chain and HTTPS fetches with a verified certificate. The SMTP probes
// live in checks/smtp.ts and are exported from here too, so callers need one module.
import { createHash, X509Certificate } from "node:crypto";
import type { LookupFunction } from "node:net";
import type { IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import type { TLSSocket } from "node:tls";
import {
  DEFAULT_TIMEOUT_MS,
  describeSession,
  errorText,
  handshake,
  readUntil,
  sessionResults,
  settle,
  tcp,
  trustedCas,
  type ProbeOptions,
} from "./net";
import type { CheckResult } from "./result";

export { probeSmtp25, probeSubmission } from "./smtp";
export type { Smtp25Options, Smtp25Probe, SmtpOptions } from "./smtp";
export type { ProbeOptions } from "./net";

/**
 * Probes IMAPS (993) as a mail program would. Lines:
 * - `TLS 993 (address)` and `Certificate 993 (address)`: TLS 1.2+, chain trusted (default roots
 *   plus `opts.ca`), valid for `mxHost`;
 * - `Greeting 993 (address)`: the server greets with `* OK`;
 * - `IMAP login 993 (address)`: the capabilities (in the greeting, else from CAPABILITY) offer
 *   AUTH=PLAIN and not LOGINDISABLED.
 * When nothing answers, the one line `Connect 993 (address)`. Never throws.
 */
export async function probeImaps(
  address: string,
  mxHost: string,
  opts: ProbeOptions = {},
): Promise<CheckResult[]> {
  const at = `993 (${address})`;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const line = (t: string) => t.endsWith("\r\n");
  const connected = await settle(tcp(address, opts.port ?? 993, timeoutMs));
  if ("error" in connected) {
    const fix = "Open TCP port 993 in the firewall";
    return [{ name: `Connect ${at}`, status: "fail", saw: errorText(connected.error), fix }];
  }
  const secured = await settle(
    handshake({ socket: connected.value, address, servername: mxHost, ca: opts.ca }, timeoutMs),
  );
  if ("error" in secured) {
    const fix = "Dovecot: ssl = required with ssl_min_protocol = TLSv1.2 and the certificate";
    return [{ name: `TLS ${at}`, status: "fail", saw: errorText(secured.error), fix }];
  }
  const s = secured.value;
  const results = sessionResults(s, `TLS ${at}`, 993, address, mxHost);
  try {
    const greeting = (await readUntil(s, line, timeoutMs)).trim();
    if (!greeting.startsWith("* OK")) {
      results.push({
        name: `Greeting ${at}`,
        status: "fail",
        saw: greeting,
        fix: "Dovecot must answer on 993 with imaps",
      });
      return results;
    }
    results.push({ name: `Greeting ${at}`, status: "pass", saw: greeting });
    // Dovecot lists its capabilities in the greeting; other servers wait to be asked.
    let caps = /\[CAPABILITY ([^\]]*)\]/i.exec(greeting)?.[1];
    if (!caps) {
      s.write("c1 CAPABILITY\r\n");
      const reply = await readUntil(s, (t) => /(^|\r\n)c1 [^\r\n]*\r\n$/.test(t), timeoutMs);
      caps = /^\* CAPABILITY (.*)$/im.exec(reply)?.[1] ?? "";
    }
    results.push(imapLoginResult(`IMAP login ${at}`, caps.toUpperCase().split(/\s+/)));
    s.write("c2 LOGOUT\r\n");
  } catch (e) {
    results.push({ name: `Greeting ${at}`, status: "fail", saw: errorText(e) });
  } finally {
    s.end();
    setTimeout(() => s.destroy(), 2000).unref();
  }
  return results;
}

function imapLoginResult(name: string, caps: string[]): CheckResult {
  const saw = caps.filter((c) => c.startsWith("AUTH=") || c === "LOGINDISABLED").join(" ");
  if (caps.includes("LOGINDISABLED") || !caps.includes("AUTH=PLAIN")) {
    return {
      name,
      status: "fail",
      saw: saw || "no AUTH= capability",
      fix: "Dovecot: auth_mechanisms = plain login, disable_plaintext_auth = yes (TLS counts as secure)",
    };
  }
  return { name, status: "pass", saw };
}

/** Options of `fetchHttps`. */
export interface FetchOptions {
  timeoutMs?: number;
  /** Extra trusted CA certificates (PEM), added to Node's default roots. */
  ca?: string[];
  /** Connect to this address instead of resolving the URL's host (SNI and Host stay the host). */
  address?: string;
  /** The most body to read; default 1 MiB (an MTA-STS policy is at most 64 KiB). */
  maxBytes?: number;
}

/** A fetch over HTTPS that completed; any HTTP status counts. */
export interface HttpsResponse {
  ok: true;
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The TLS session and certificate: "TLSv1.3, TLS_AES_256_GCM_SHA384, ECDHE X25519; certificate DNS:..." */
  saw: string;
}

/** A fetch that failed: no connection, a certificate not trusted or not for the host, a timeout. */
export interface HttpsFailure {
  ok: false;
  /** Named `HTTPS <host>`, status fail. */
  result: CheckResult;
}

/**
 * GETs `url` over HTTPS with the certificate verified (default roots plus `opts.ca`, name =
 * the URL's host). Redirects are not followed: MTA-STS forbids them (RFC 8461), and other
 * callers can read `location`. Never throws.
 */
export function fetchHttps(
  url: string,
  opts: FetchOptions = {},
): Promise<HttpsResponse | HttpsFailure> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxBytes = opts.maxBytes ?? 1 << 20;
  let u: URL;
  try {
    u = new URL(url);
    if (u.protocol !== "https:") throw new Error(`not an https URL: ${url}`);
  } catch (e) {
    return Promise.resolve(httpsFailure(url, errorText(e)));
  }
  return new Promise((resolve) => {
    const req = httpsRequest(
      u,
      {
        method: "GET",
        ca: trustedCas(opts.ca),
        // No pooled keep-alive socket outlives the fetch.
        agent: false,
        lookup: opts.address ? fixedLookup(opts.address) : undefined,
        timeout: timeoutMs,
      },
      (res) => {
        const socket = res.socket as TLSSocket;
        const cert = socket.getPeerCertificate();
        const saw = `${describeSession(socket)}; certificate ${cert.subjectaltname}, issued by ${cert.issuer?.CN}, expires ${new Date(cert.valid_to).toISOString().slice(0, 10)}`;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) req.destroy(new Error(`body larger than ${maxBytes} bytes`));
          else chunks.push(c);
        });
        res.on("end", () =>
          resolve({
            ok: true,
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            saw,
          }),
        );
        res.on("error", (e) => resolve(httpsFailure(url, errorText(e))));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", (e) => resolve(httpsFailure(url, errorText(e))));
    req.end();
  });
}

/** Resolves every name to `address`. Node 20 asks for all addresses (happy eyeballs) at times. */
function fixedLookup(address: string): LookupFunction {
  const family = address.includes(":") ? 6 : 4;
  return (_host, options, cb) => {
    if (options.all) cb(null, [{ address, family }]);
    else cb(null, address, family);
  };
}

function httpsFailure(url: string, why: string): HttpsFailure {
  let host = url;
  try {
    host = new URL(url).host;
  } catch {
    // Not a URL: name the result after what was given.
  }
  return {
    ok: false,
    result: {
      name: `HTTPS ${host}`,
      status: "fail",
      saw: `${url}: ${why}`,
      fix: "Serve it over HTTPS with a certificate from a public CA that names the host",
    },
  };
}

/** One TLSA record as published: `usage selector matchingType data`. */
export interface Tlsa {
  /** 3 DANE-EE (the leaf), 2 DANE-TA (a CA in the chain); 0 and 1 are unusable for SMTP. */
  usage: number;
  /** 0 the full certificate, 1 its SubjectPublicKeyInfo. */
  selector: number;
  /** 0 exact, 1 SHA-256, 2 SHA-512. */
  matchingType: number;
  /** Hex. */
  data: string;
}

/**
 * Whether any TLSA record matches the chain a server served (leaf first, DER), as a DANE SMTP
 * client decides (RFC 7672): usage 3 against the leaf, usage 2 against the certificates above
 * it; usages 0 and 1 never match. It does not check names: with usage 2 the certificate must
 * also name the MX host, which the `Certificate` line reports.
 */
export function daneMatches(tlsa: Tlsa[], chainDer: Buffer[]): { ok: boolean; saw: string } {
  if (chainDer.length === 0) return { ok: false, saw: "no certificate served" };
  if (tlsa.length === 0) return { ok: false, saw: "no TLSA records" };
  const seen: string[] = [];
  for (const r of tlsa) {
    const label = `${r.usage} ${r.selector} ${r.matchingType}`;
    const candidates =
      r.usage === 3 ? chainDer.slice(0, 1) : r.usage === 2 ? chainDer.slice(1) : [];
    const want = r.data.replace(/\s/g, "").toLowerCase();
    for (const [i, der] of candidates.entries()) {
      const got = associated(der, r.selector, r.matchingType);
      if (got === want) {
        const which = r.usage === 3 ? "the leaf" : `chain certificate ${i + 2}`;
        return { ok: true, saw: `TLSA ${label} matches ${which}` };
      }
      if (got !== undefined && i === 0)
        seen.push(`${label} wants ${short(want)}, served ${short(got)}`);
    }
    if (candidates.length === 0)
      seen.push(`${label}: ${r.usage < 2 ? "usage unusable for SMTP" : "no CA in the chain"}`);
  }
  return { ok: false, saw: `no TLSA record matches: ${seen.join("; ")}` };
}

/** The hex a TLSA record of this selector and matching type holds for `der`; undefined if unknown. */
function associated(der: Buffer, selector: number, matchingType: number): string | undefined {
  const selected =
    selector === 0
      ? der
      : selector === 1
        ? new X509Certificate(der).publicKey.export({ type: "spki", format: "der" })
        : undefined;
  if (!selected) return undefined;
  if (matchingType === 0) return selected.toString("hex");
  if (matchingType === 1) return createHash("sha256").update(selected).digest("hex");
  if (matchingType === 2) return createHash("sha512").update(selected).digest("hex");
  return undefined;
}

const short = (hex: string) => (hex.length > 16 ? `${hex.slice(0, 16)}...` : hex);
