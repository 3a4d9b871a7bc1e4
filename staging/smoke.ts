// The smoke check of a freshly deployed mail host: SMTP banners and TLS on 25, 465 and 587,
// IMAPS on 993, and the MX and DKIM records resolvable. Each check says what it saw.
import { Resolver } from "node:dns/promises";
import { connect as tcpConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";

export interface SmokeResult {
  check: string;
  ok: boolean;
  detail: string;
}

export interface SmokeTarget {
  /** Address to connect to. */
  address: string;
  /** The MX host name the certificate must be for. */
  mailHost: string;
  domain: string;
  dkimSelector: string;
  /** DNS servers to ask; the system's when absent. */
  resolvers?: string[];
  /** Per-check timeout. */
  timeoutMs?: number;
}

/** Reads from a socket until `done` says the reply is complete. */
function reply(
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

/** A complete SMTP reply: its last line has a space after the code. */
const smtpDone = (t: string) => /(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(t);

function tcp(address: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ host: address, port, timeout: timeoutMs }, () => resolve(s));
    s.once("error", reject);
    s.once("timeout", () => s.destroy(new Error(`connect to ${address}:${port} timed out`)));
  });
}

function tls(
  opts: { socket?: Socket; address: string; port?: number; servername: string },
  timeoutMs: number,
): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    // Staging certificates come from a staging CA: report who issued it rather than trust it.
    const s = tlsConnect(
      {
        socket: opts.socket,
        host: opts.address,
        port: opts.port,
        servername: opts.servername,
        rejectUnauthorized: false,
        timeout: timeoutMs,
      },
      () => resolve(s),
    );
    s.once("error", reject);
  });
}

function describeCert(s: TLSSocket, mailHost: string): { ok: boolean; detail: string } {
  const cert = s.getPeerCertificate();
  const names = String(cert.subjectaltname ?? "");
  const ok = names.split(", ").includes(`DNS:${mailHost}`);
  return {
    ok,
    detail: `${s.getProtocol()}, certificate ${names || "without names"} from ${cert.issuer?.CN ?? "?"}`,
  };
}

async function smtp(
  t: SmokeTarget,
  port: number,
  mode: "starttls" | "implicit",
): Promise<SmokeResult> {
  const check = `SMTP ${port}`;
  const timeout = t.timeoutMs ?? 15_000;
  let sock: Socket | TLSSocket | undefined;
  try {
    sock =
      mode === "implicit"
        ? await tls({ address: t.address, port, servername: t.mailHost }, timeout)
        : await tcp(t.address, port, timeout);
    const banner = await reply(sock, smtpDone, timeout);
    // The greeting must name the MX host: receivers compare it with the PTR and certificate.
    const greeting = banner.split("\r\n")[0];
    if (!new RegExp(`^220[ -]${t.mailHost.replace(/\./g, "\\.")}( |$)`).test(greeting)) {
      return { check, ok: false, detail: `greeting does not name ${t.mailHost}: ${greeting}` };
    }
    if (mode === "implicit") {
      const c = describeCert(sock as TLSSocket, t.mailHost);
      return { check, ok: c.ok, detail: `${greeting}; ${c.detail}` };
    }
    sock.write("EHLO smoke.mailstack.invalid\r\n");
    const ehlo = await reply(sock, smtpDone, timeout);
    if (!/^250[ -]STARTTLS\r?$/m.test(ehlo))
      return { check, ok: false, detail: `${greeting}; no STARTTLS offered` };
    sock.write("STARTTLS\r\n");
    const go = await reply(sock, smtpDone, timeout);
    if (!go.startsWith("220"))
      return { check, ok: false, detail: `STARTTLS refused: ${go.trim()}` };
    const secured = await tls(
      { socket: sock as Socket, address: t.address, servername: t.mailHost },
      timeout,
    );
    const c = describeCert(secured, t.mailHost);
    secured.destroy();
    return { check, ok: c.ok, detail: `${greeting}; ${c.detail}` };
  } catch (e) {
    return { check, ok: false, detail: (e as Error).message };
  } finally {
    sock?.destroy();
  }
}

async function imaps(t: SmokeTarget): Promise<SmokeResult> {
  const check = "IMAPS 993";
  const timeout = t.timeoutMs ?? 15_000;
  let sock: TLSSocket | undefined;
  try {
    sock = await tls({ address: t.address, port: 993, servername: t.mailHost }, timeout);
    const greeting = await reply(sock, (x) => x.includes("\r\n"), timeout);
    const c = describeCert(sock, t.mailHost);
    return {
      check,
      ok: greeting.startsWith("* OK") && c.ok,
      detail: `${greeting.trim()}; ${c.detail}`,
    };
  } catch (e) {
    return { check, ok: false, detail: (e as Error).message };
  } finally {
    sock?.destroy();
  }
}

async function records(t: SmokeTarget): Promise<SmokeResult[]> {
  const r = new Resolver({ timeout: t.timeoutMs ?? 5000, tries: 2 });
  if (t.resolvers) r.setServers(t.resolvers);
  const out: SmokeResult[] = [];
  try {
    const mx = await r.resolveMx(t.domain);
    const ok = mx.some((m) => m.exchange.replace(/\.$/, "") === t.mailHost);
    out.push({ check: "MX", ok, detail: mx.map((m) => `${m.priority} ${m.exchange}`).join(", ") });
  } catch (e) {
    out.push({ check: "MX", ok: false, detail: (e as Error).message });
  }
  try {
    const txt = (await r.resolveTxt(`${t.dkimSelector}._domainkey.${t.domain}`)).map((parts) =>
      parts.join(""),
    );
    const key = txt.find((v) => v.startsWith("v=DKIM1"));
    out.push({
      check: "DKIM",
      ok: !!key && /; p=[A-Za-z0-9+/=]{300,}/.test(key),
      detail: key ? `${key.slice(0, 40)}...` : "no DKIM record",
    });
  } catch (e) {
    out.push({ check: "DKIM", ok: false, detail: (e as Error).message });
  }
  return out;
}

export async function smokeCheck(t: SmokeTarget): Promise<SmokeResult[]> {
  return [
    await smtp(t, 25, "starttls"),
    await smtp(t, 465, "implicit"),
    await smtp(t, 587, "starttls"),
    await imaps(t),
    ...(await records(t)),
  ];
}

export function formatSmoke(results: SmokeResult[]): string {
  return results
    .map((r) => `${r.ok ? "ok  " : "FAIL"} ${r.check.padEnd(9)} ${r.detail}`)
    .join("\n");
}
