// The outside-in check of a mail domain: every check of records.ts, the mail ports of
// smtp.ts and tls.ts, and what the stack's Worker serves, in one report.
import { parsePolicy, validateMx } from "mailauth/lib/mta-sts";
import type { Dns } from "./dns";
import {
  checkBlocklists,
  checkCaa,
  checkDkim,
  checkDmarc,
  checkDnssec,
  checkMtaStsRecord,
  checkMx,
  checkPtr,
  checkSpf,
  checkTlsRpt,
  tlsaRecords,
} from "./records";
import { result, type CheckResult, type Status } from "./result";
import {
  daneMatches,
  fetchHttps,
  probeImaps,
  probeSmtp25,
  probeSubmission,
  type HttpsResponse,
} from "./tls";

export interface CheckOptions {
  /** The mail domain. */
  domain: string;
  /** DKIM selector (the stack output `dkimSelector`); default `mail`. */
  dkimSelector?: string;
  /** Where DNS questions go: a validating resolver, for the DNSSEC and DANE checks. */
  dns: Dns;
  /** Extra trusted CA certificates (PEM): the lab CA, the ACME staging roots. */
  ca?: string[];
  /** Deadline of each network step, ms. */
  timeoutMs?: number;
  /**
   * A staging stack: its zone may be unsigned, so DNSSEC and DANE only warn, and MTA-STS in
   * testing mode passes (Pulumi.staging.yaml).
   */
  staging?: boolean;
  /** The HTTPS port of the Worker's names; 443 (tests serve elsewhere). */
  webPort?: number;
  /**
   * Connect to the IPv4 addresses only: the checker runs where IPv6 does not reach (GitHub's
   * hosted runners have none). The IPv6 addresses' DNS, PTR and blocklists are still checked,
   * and a warning says what was left out.
   */
  ipv4Only?: boolean;
}

/** What to do when the Worker does not answer as it should. */
const WORKER_FIX =
  "serve it from the stack's Worker (pulumi up makes it and its custom domain; a new one's certificate takes minutes)";

/** A check that could not finish (a resolver timing out) is a fail, not a crash of the run. */
function guard(name: string, p: Promise<CheckResult>): Promise<CheckResult> {
  return p.catch((e: unknown) =>
    result(
      name,
      "fail",
      `could not check: ${e instanceof Error ? e.message : String(e)}`,
      "run again; if it persists, check the resolver (--resolver)",
    ),
  );
}

/** The first address of a name, through the checker's resolver. */
async function addressOf(dns: Dns, name: string): Promise<string | undefined> {
  for (const type of ["A", "AAAA"] as const) {
    const a = (await dns.query(name, type)).answers[0];
    if (a) return String(a.data);
  }
  return undefined;
}

/**
 * GETs a path of one of the Worker's names, the name resolved through the checker's resolver:
 * the response when it is a 200 over a trusted certificate, else the failed check with `fix`.
 */
async function web(
  o: CheckOptions,
  name: string,
  host: string,
  path: string,
  fix: string,
): Promise<{ failed: CheckResult } | { response: HttpsResponse }> {
  const url = `https://${host}${o.webPort ? `:${o.webPort}` : ""}${path}`;
  const address = await addressOf(o.dns, host);
  if (!address) return { failed: result(name, "fail", `${host} does not resolve`, fix) };
  const r = await fetchHttps(url, { address, ca: o.ca, timeoutMs: o.timeoutMs });
  if (!r.ok) return { failed: { ...r.result, name } };
  if (r.status !== 200) return { failed: result(name, "fail", `${url}: HTTP ${r.status}`, fix) };
  return { response: r };
}

/** The MTA-STS policy: over HTTPS with a valid certificate, text/plain, the mode, every MX in it. */
export async function checkMtaStsPolicy(o: CheckOptions, mxHosts: string[]): Promise<CheckResult> {
  const name = "MTA-STS policy";
  const got = await web(o, name, `mta-sts.${o.domain}`, "/.well-known/mta-sts.txt", WORKER_FIX);
  if ("failed" in got) return got.failed;
  const r = got.response;
  const type = String(r.headers["content-type"] ?? "");
  if (!/^text\/plain\b/i.test(type))
    return result(
      name,
      "fail",
      `Content-Type ${type || "missing"}`,
      "serve it as text/plain (RFC 8461 3.2)",
    );
  let policy;
  try {
    policy = parsePolicy(r.body.toString("utf8"));
  } catch (e) {
    return result(name, "fail", (e as Error).message, "serve a valid STSv1 policy");
  }
  const saw = `mode ${policy.mode}, mx ${(policy.mx ?? []).join(" ") || "none"}, max_age ${policy.maxAge}; ${r.saw}`;
  if (policy.mode === "none") return result(name, "fail", saw, "set mtaStsMode enforce");
  const unlisted = mxHosts.filter((mx) => !validateMx(mx, policy).valid);
  if (unlisted.length)
    return result(
      name,
      "fail",
      `${saw}; MX ${unlisted.join(", ")} not in the policy`,
      "list every MX host in the policy",
    );
  if (policy.mode === "testing" && !o.staging)
    return result(name, "warn", saw, "set mtaStsMode enforce once TLS reports are clean");
  return result(name, "pass", saw);
}

/** Thunderbird autoconfig: the IMAP server is the mail host on 993. */
export async function checkAutoconfig(o: CheckOptions, mailHost: string): Promise<CheckResult> {
  const name = "Autoconfig";
  const path = `/mail/config-v1.1.xml?emailaddress=postmaster%40${o.domain}`;
  const got = await web(o, name, `autoconfig.${o.domain}`, path, WORKER_FIX);
  if ("failed" in got) return got.failed;
  const r = got.response;
  const imap =
    /<incomingServer type="imap">([\s\S]*?)<\/incomingServer>/.exec(r.body.toString("utf8"))?.[1] ??
    "";
  const host = /<hostname>([^<]*)<\/hostname>/.exec(imap)?.[1];
  const port = /<port>([^<]*)<\/port>/.exec(imap)?.[1];
  const saw = `IMAP ${host ?? "?"}:${port ?? "?"}; ${r.saw}`;
  if (host !== mailHost || port !== "993")
    return result(
      name,
      "fail",
      saw,
      `name ${mailHost}:993 in config-v1.1.xml (the stack's Worker)`,
    );
  return result(name, "pass", saw);
}

/** Outlook autodiscover, the JSON form newer Outlook asks first: it points at the XML. */
export async function checkAutodiscover(o: CheckOptions): Promise<CheckResult> {
  const name = "Autodiscover";
  const path = `/autodiscover/autodiscover.json/v1.0/postmaster@${o.domain}?Protocol=AutodiscoverV1`;
  const got = await web(o, name, `autodiscover.${o.domain}`, path, WORKER_FIX);
  if ("failed" in got) return got.failed;
  const r = got.response;
  let target = "";
  try {
    target = String((JSON.parse(r.body.toString("utf8")) as { Url?: string }).Url ?? "");
  } catch {
    // reported below
  }
  const saw = `Url ${target || "missing"}; ${r.saw}`;
  if (target !== `https://autodiscover.${o.domain}/autodiscover/autodiscover.xml`)
    return result(name, "fail", saw, "point Url at autodiscover.xml (the stack's Worker)");
  return result(name, "pass", saw);
}

/** The Web Key Directory, advanced method: its policy file is served. */
export async function checkWkd(o: CheckOptions): Promise<CheckResult> {
  const name = "WKD";
  const path = `/.well-known/openpgpkey/${o.domain}/policy`;
  const got = await web(o, name, `openpgpkey.${o.domain}`, path, WORKER_FIX);
  if ("failed" in got) return got.failed;
  return result(name, "pass", `${path}: HTTP 200; ${got.response.saw}`);
}

/** DANE for port 25: validated TLSA records that match the certificate served there. */
export async function checkDane(
  o: CheckOptions,
  mxHost: string,
  chainDer: Buffer[],
): Promise<CheckResult> {
  const name = `DANE ${mxHost}`;
  const soft: Status = o.staging ? "warn" : "fail";
  const tlsa = await tlsaRecords(o.dns, mxHost);
  if (tlsa.records.length === 0)
    return result(
      name,
      soft,
      `no TLSA at _25._tcp.${mxHost}`,
      "sign the zone (dnssec: true): the stack then publishes TLSA 3 1 1",
    );
  if (!tlsa.ad)
    return result(
      name,
      soft,
      `TLSA at _25._tcp.${mxHost} not validated: senders ignore it`,
      "sign the zone and publish its DS",
    );
  const m = daneMatches(tlsa.records, chainDer);
  return m.ok
    ? result(name, "pass", m.saw)
    : result(
        name,
        "fail",
        m.saw,
        "publish TLSA for the key the host serves (the stack keeps it stable)",
      );
}

/** Every check of one domain, in report order. */
export async function runChecks(o: CheckOptions): Promise<CheckResult[]> {
  const { dns, domain } = o;
  let mx;
  try {
    mx = await checkMx(dns, domain);
  } catch (e) {
    return [await guard("MX", Promise.reject(e))];
  }
  if (mx.hosts.length === 0) return [mx.result];
  const mxHosts = mx.hosts.map((h) => h.name);
  // Mail clients are sent to the first MX host (SRV records and autoconfig name it too).
  const mailHost = mx.hosts[0];
  const addresses = mx.hosts.flatMap((h) => h.addresses);
  const probe = { ca: o.ca, timeoutMs: o.timeoutMs };

  const records = Promise.all([
    guard("SPF", checkSpf(dns, domain, addresses)),
    guard("DKIM", checkDkim(dns, domain, o.dkimSelector ?? "mail")),
    guard("DMARC", checkDmarc(dns, domain)),
    guard(
      "MTA-STS record",
      checkMtaStsRecord(dns, domain).then((r) => r.result),
    ),
    guard("TLS-RPT", checkTlsRpt(dns, domain)),
    guard(
      "DNSSEC",
      checkDnssec(dns, domain, mailHost.name).then((r) =>
        o.staging && r.status === "fail" ? { ...r, status: "warn" as const } : r,
      ),
    ),
    ...mxHosts.map((h) => guard("CAA", checkCaa(dns, h))),
  ]);
  const perAddress = Promise.all(
    mx.hosts.flatMap((h) =>
      h.addresses.map((a) =>
        Promise.all([
          guard(`PTR ${a}`, checkPtr(dns, a, h.name)),
          guard(`Blocklists ${a}`, checkBlocklists(dns, a)),
        ]),
      ),
    ),
  );
  const web = Promise.all([
    guard("MTA-STS policy", checkMtaStsPolicy(o, mxHosts)),
    guard("Autoconfig", checkAutoconfig(o, mailHost.name)),
    guard("Autodiscover", checkAutodiscover(o)),
    guard("WKD", checkWkd(o)),
  ]);
  // The mail ports, one address at a time: postscreen on 25 sees one client, as from a sender.
  const ports: CheckResult[] = [];
  const reached = (a: string) => !(o.ipv4Only && a.includes(":"));
  const skipped = mx.hosts.flatMap((h) => h.addresses).filter((a) => !reached(a));
  if (skipped.length > 0) {
    ports.push(
      result(
        "IPv6 connections",
        "warn",
        `not checked (IPv4 only): ${skipped.join(", ")}`,
        "check them from a machine with IPv6",
      ),
    );
  }
  for (const h of mx.hosts) {
    let chain: Buffer[] = [];
    for (const a of h.addresses.filter(reached)) {
      const p = await probeSmtp25(a, h.name, domain, probe);
      ports.push(...p.results);
      if (chain.length === 0) chain = p.chainDer;
    }
    ports.push(await guard(`DANE ${h.name}`, checkDane(o, h.name, chain)));
  }
  for (const a of mailHost.addresses.filter(reached)) {
    ports.push(
      ...(await probeSubmission(a, mailHost.name, 465, probe)),
      ...(await probeSubmission(a, mailHost.name, 587, probe)),
      ...(await probeImaps(a, mailHost.name, probe)),
    );
  }
  return [mx.result, ...(await perAddress).flat(), ...(await records), ...ports, ...(await web)];
}

const MARK: Record<Status, string> = { pass: "pass", warn: "WARN", fail: "FAIL" };

/** The report: one line per check, and the fix under each one that did not pass. */
export function formatReport(results: CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  return results
    .map(
      (r) =>
        `${MARK[r.status]}  ${r.name.padEnd(width)}  ${r.saw}` +
        (r.fix ? `\n      ${" ".repeat(width)}  fix: ${r.fix}` : ""),
    )
    .join("\n");
}
