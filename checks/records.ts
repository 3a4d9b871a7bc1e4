// The checks a receiving server and a test site make in DNS: MX and its addresses, PTR,
// SPF, DKIM, DMARC, the MTA-STS and TLS-RPT records, DNSSEC, CAA and the blocklists. Each
// takes the Dns to ask, so a test hands it a crafted zone.
import { createPublicKey } from "node:crypto";
import { isIP } from "node:net";
import * as ipaddr from "ipaddr.js";
import getDmarcRecord from "mailauth/lib/dmarc/get-dmarc-record";
import { resolvePolicy } from "mailauth/lib/mta-sts";
import { spf } from "mailauth/lib/spf";
import { mailauthResolver, txtStrings, type Dns } from "./dns";
import { fail, pass, warn, type CheckResult } from "./result";
import { BLOCKLISTS, blocklistName, reverseName } from "../components/blocklists";

export { BLOCKLISTS, blocklistName, reverseName };

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

export interface MxHost {
  name: string;
  preference: number;
  addresses: string[];
}

/** MX: present, not null, and every exchanger has an IPv4 and an IPv6 address. */
export async function checkMx(
  dns: Dns,
  domain: string,
): Promise<{ result: CheckResult; hosts: MxHost[] }> {
  const name = "MX";
  const reply = await dns.query(domain, "MX");
  const mx = reply.answers
    .map((a) => a.data as { preference: number; exchange: string })
    .map((d) => ({ name: d.exchange.replace(/\.$/, "").toLowerCase(), preference: d.preference }))
    .sort((a, b) => a.preference - b.preference);
  if (mx.length === 0)
    return {
      result: fail(
        name,
        `no MX record for ${domain} (${reply.rcode})`,
        `publish MX 10 <mail host>`,
      ),
      hosts: [],
    };
  if (mx.some((m) => m.name === "" || m.name === "."))
    return {
      result: fail(
        name,
        `null MX: ${domain} accepts no mail (RFC 7505)`,
        "point MX at the mail host",
      ),
      hosts: [],
    };
  const hosts: MxHost[] = [];
  const problems: string[] = [];
  const seen: string[] = [];
  for (const m of mx) {
    const v4 = (await dns.query(m.name, "A")).answers.map((a) => String(a.data));
    const v6 = (await dns.query(m.name, "AAAA")).answers.map((a) => String(a.data));
    hosts.push({ ...m, addresses: [...v4, ...v6] });
    seen.push(`${m.preference} ${m.name} → ${[...v4, ...v6].join(", ") || "no address"}`);
    if (v4.length === 0) problems.push(`${m.name} has no A record`);
    if (v6.length === 0) problems.push(`${m.name} has no AAAA record`);
  }
  const saw = seen.join("; ");
  if (hosts.every((h) => h.addresses.length === 0))
    return { result: fail(name, saw, "publish A and AAAA for the MX host"), hosts };
  if (problems.length)
    return {
      result: (problems.some((p) => p.includes(" A ")) ? fail : warn)(
        name,
        `${saw} (${problems.join("; ")})`,
        "publish both A and AAAA for every MX host",
      ),
      hosts,
    };
  return { result: pass(name, saw), hosts };
}

const sameAddress = (a: string, b: string) => {
  try {
    return ipaddr.parse(a).toNormalizedString() === ipaddr.parse(b).toNormalizedString();
  } catch {
    return false;
  }
};

/** PTR of an MX address: present, naming the MX host, and forward-confirmed (FCrDNS). */
export async function checkPtr(dns: Dns, address: string, mxHost: string): Promise<CheckResult> {
  const name = `PTR ${address}`;
  const reply = await dns.query(reverseName(address), "PTR");
  const names = reply.answers.map((a) => String(a.data).replace(/\.$/, "").toLowerCase());
  if (names.length === 0)
    return fail(
      name,
      `no PTR record (${reply.rcode})`,
      `set reverse DNS of ${address} to ${mxHost} (Hetzner: the Primary IP's rDNS)`,
    );
  const confirmed: string[] = [];
  for (const n of names) {
    const forward = await dns.query(n, isIP(address) === 4 ? "A" : "AAAA");
    if (forward.answers.some((a) => sameAddress(String(a.data), address))) confirmed.push(n);
  }
  const saw = `PTR ${names.join(", ")}`;
  if (confirmed.length === 0)
    return fail(
      name,
      `${saw}, which does not resolve back to ${address}`,
      `make ${names[0]} resolve to ${address}, or set the PTR to ${mxHost}`,
    );
  if (!confirmed.includes(mxHost))
    return warn(
      name,
      `${saw}, forward-confirmed, but not the MX host ${mxHost}`,
      `set the PTR to ${mxHost}: receivers compare it with the greeting`,
    );
  return pass(name, `${saw}, forward-confirmed`);
}

/** An address from the documentation range: no SPF record that ends in -all permits it. */
const OUTSIDER = "192.0.2.254";

/**
 * SPF: one record, the MX addresses pass, everyone else fails hard (-all), within the ten
 * DNS lookups of RFC 7208 4.6.4. mailauth evaluates it; the outsider's evaluation walks
 * the whole record, so its lookup count is the record's worst case.
 */
export async function checkSpf(dns: Dns, domain: string, senders: string[]): Promise<CheckResult> {
  const name = "SPF";
  const records = txtStrings(await dns.query(domain, "TXT")).filter((t) =>
    /^v=spf1(\s|$)/i.test(t),
  );
  if (records.length === 0)
    return fail(name, `no v=spf1 record at ${domain}`, `publish "v=spf1 mx -all" at ${domain}`);
  if (records.length > 1)
    return fail(name, `${records.length} SPF records: ${records.join(" | ")}`, "keep exactly one");
  const record = records[0];
  const resolver = mailauthResolver(dns);
  const evaluate = (ip: string) =>
    spf({ sender: `postmaster@${domain}`, ip, helo: domain, mta: "checker", resolver });
  const outsider = await evaluate(OUTSIDER);
  const lookups = outsider.lookups?.count ?? 0;
  const saw = `"${record}", ${lookups} DNS lookup${lookups === 1 ? "" : "s"}`;
  if (outsider.status.result === "permerror")
    return fail(
      name,
      `${saw}: permerror (${outsider.status.comment || "invalid"})`,
      "fix the record: at most 10 lookups",
    );
  if (outsider.status.result !== "fail")
    return fail(
      name,
      `${saw}: an outside address gets ${outsider.status.result}`,
      "end the record with -all",
    );
  for (const ip of senders) {
    const r = await evaluate(ip);
    if (r.status.result !== "pass")
      return fail(
        name,
        `${saw}: the mail host ${ip} gets ${r.status.result}`,
        "include the mail host (mx)",
      );
  }
  return pass(name, `${saw}; ${senders.join(", ")} pass, others fail`);
}

/** DKIM: a key at the selector that a verifier can use: RSA of 2048 bits or more, or Ed25519. */
export async function checkDkim(dns: Dns, domain: string, selector: string): Promise<CheckResult> {
  const name = "DKIM";
  const at = `${selector}._domainkey.${domain}`;
  const records = txtStrings(await dns.query(at, "TXT"));
  if (records.length === 0)
    return fail(name, `no record at ${at}`, "publish the DKIM key the host signs with");
  const tags = Object.fromEntries(
    records[0]
      .split(";")
      .map((t) => t.trim())
      .filter(Boolean)
      .map((t) => [
        t.slice(0, t.indexOf("=")).trim(),
        t.slice(t.indexOf("=") + 1).replace(/\s+/g, ""),
      ]),
  );
  if (tags.v !== undefined && tags.v !== "DKIM1")
    return fail(name, `${at}: v=${tags.v}`, "the record must start with v=DKIM1");
  if (!tags.p) return fail(name, `${at}: empty p= (key revoked)`, "publish the current key");
  const k = tags.k ?? "rsa";
  try {
    const der = Buffer.from(tags.p, "base64");
    if (k === "ed25519") {
      if (der.length !== 32) throw new Error(`Ed25519 key of ${der.length} bytes`);
      return pass(name, `${at}: Ed25519 key`);
    }
    const key = createPublicKey({ key: der, format: "der", type: "spki" });
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (key.asymmetricKeyType !== "rsa")
      throw new Error(`k=rsa but a ${key.asymmetricKeyType} key`);
    const testing = tags.t?.split(":").includes("y") ? " (t=y: testing)" : "";
    if (bits < 1024) return fail(name, `${at}: RSA ${bits} bits`, "use RSA 2048");
    if (bits < 2048) return warn(name, `${at}: RSA ${bits} bits`, "use RSA 2048");
    if (testing) return warn(name, `${at}: RSA ${bits} bits${testing}`, "drop t=y");
    return pass(name, `${at}: RSA ${bits} bits`);
  } catch (e) {
    return fail(name, `${at}: unusable key (${message(e)})`, "publish the key as base64 DER");
  }
}

const MAILTO = /^mailto:([^@\s!,]+)@([^\s!,]+?)(![0-9]+[kmgt]?)?$/i;

/**
 * DMARC: p=quarantine or p=reject, and every rua a mailto: URI that can receive, with the
 * external-destination record when it lies in another domain (RFC 7489 7.1).
 */
export async function checkDmarc(dns: Dns, domain: string): Promise<CheckResult> {
  const name = "DMARC";
  const record = await getDmarcRecord(domain, mailauthResolver(dns)).catch(() => false as const);
  if (!record)
    return fail(
      name,
      `no DMARC record at _dmarc.${domain}`,
      `publish "v=DMARC1; p=reject; rua=mailto:postmaster@${domain}"`,
    );
  const saw = `"${record.rr}"${record.isOrgRecord ? " (organizational domain)" : ""}`;
  const p = String(record.p ?? "").toLowerCase();
  if (p !== "quarantine" && p !== "reject")
    return fail(name, `${saw}: p=${p || "missing"}`, "set p=quarantine or p=reject");
  if (Number(record.pct ?? 100) < 100)
    return warn(name, `${saw}: the policy covers ${record.pct}%`, "drop pct or set pct=100");
  if (!record.rua) return fail(name, `${saw}: no rua`, `add rua=mailto:postmaster@${domain}`);
  for (const uri of String(record.rua)
    .split(",")
    .map((u) => u.trim())) {
    const m = MAILTO.exec(uri);
    if (!m)
      return fail(name, `${saw}: rua ${uri} is not a mailto: address`, "use rua=mailto:<address>");
    const target = m[2].toLowerCase();
    const inDomain =
      target === domain || target.endsWith(`.${domain}`) || domain.endsWith(`.${target}`);
    if (!inDomain) {
      const at = `${domain}._report._dmarc.${target}`;
      const ok = txtStrings(await dns.query(at, "TXT")).some((t) => /^v=DMARC1\b/i.test(t));
      if (!ok)
        return fail(
          name,
          `${saw}: reports go to ${target}, which does not accept them (no ${at})`,
          `publish "v=DMARC1" at ${at}, or send reports within ${domain}`,
        );
    }
  }
  return pass(name, saw);
}

/** The `_mta-sts` TXT record: one, with an id (RFC 8461 3.1). mailauth reads it. */
export async function checkMtaStsRecord(
  dns: Dns,
  domain: string,
): Promise<{ result: CheckResult; id?: string }> {
  const name = "MTA-STS record";
  try {
    const id = await resolvePolicy(domain, { resolver: mailauthResolver(dns) });
    if (!id)
      return {
        result: fail(
          name,
          `no v=STSv1 record with an id at _mta-sts.${domain}`,
          `publish "v=STSv1; id=<id>"`,
        ),
      };
    return { result: pass(name, `_mta-sts.${domain}: id=${id}`), id };
  } catch (e) {
    return {
      result: fail(
        name,
        `_mta-sts.${domain}: ${message(e) || (e as { code?: string }).code}`,
        "keep exactly one v=STSv1 record",
      ),
    };
  }
}

/** TLS-RPT (RFC 8460): one v=TLSRPTv1 record with rua mailto: or https: URIs. */
export async function checkTlsRpt(dns: Dns, domain: string): Promise<CheckResult> {
  const name = "TLS-RPT";
  const at = `_smtp._tls.${domain}`;
  const records = txtStrings(await dns.query(at, "TXT")).filter((t) => /^v=TLSRPTv1\s*;/.test(t));
  if (records.length !== 1)
    return fail(
      name,
      records.length ? `${records.length} records at ${at}` : `no v=TLSRPTv1 record at ${at}`,
      `publish one "v=TLSRPTv1; rua=mailto:postmaster@${domain}"`,
    );
  const rua = /(?:^|;)\s*rua=([^;]+)/.exec(records[0])?.[1]?.trim();
  const uris = rua?.split(",").map((u) => u.trim()) ?? [];
  const bad = uris.filter((u) => !MAILTO.test(u) && !/^https:\/\/[^\s]+$/i.test(u));
  if (uris.length === 0 || bad.length)
    return fail(
      name,
      `"${records[0]}": rua ${bad.join(", ") || "missing"}`,
      "rua=mailto:<address> or https:<url>",
    );
  return pass(name, `"${records[0]}"`);
}

/**
 * DNSSEC: the resolver validated the answers a sender relies on (the AD bit). A resolver
 * that does not validate says so in the check, rather than passing or failing the zone.
 */
export async function checkDnssec(dns: Dns, domain: string, mxHost: string): Promise<CheckResult> {
  const name = "DNSSEC";
  const probes = [
    [domain, "MX"],
    [mxHost, "A"],
  ] as const;
  const unsigned: string[] = [];
  for (const [n, t] of probes) {
    const r = await dns.query(n, t);
    if (r.rcode !== "NOERROR")
      return fail(name, `${n} ${t}: ${r.rcode}`, "fix the zone's signatures");
    if (!r.ad) unsigned.push(`${n} ${t}`);
  }
  if (unsigned.length === 0)
    return pass(
      name,
      `${probes.map(([n, t]) => `${n} ${t}`).join(", ")} validated (AD) by ${dns.describe}`,
    );
  return fail(
    name,
    `not validated by ${dns.describe}: ${unsigned.join(", ")}`,
    "sign the zone and publish its DS at the registrar (stack output dnssecDs); or ask a validating resolver (--resolver)",
  );
}

export interface TlsaRecord {
  usage: number;
  selector: number;
  matchingType: number;
  /** Hex. */
  data: string;
}

/** The TLSA records at `_25._tcp.<mx>`, and whether they were validated. */
export async function tlsaRecords(
  dns: Dns,
  mxHost: string,
): Promise<{ records: TlsaRecord[]; ad: boolean }> {
  const r = await dns.query(`_25._tcp.${mxHost}`, "TLSA");
  return {
    ad: r.ad,
    records: r.answers.map((a) => {
      const d = a.data as {
        usage: number;
        selector: number;
        matchingType: number;
        certificate: Buffer;
      };
      return {
        usage: d.usage,
        selector: d.selector,
        matchingType: d.matchingType,
        data: Buffer.from(d.certificate).toString("hex"),
      };
    }),
  };
}

/** CAA: the record set that governs the MX host (the closest one up the tree, RFC 8659 3). */
export async function checkCaa(dns: Dns, mxHost: string): Promise<CheckResult> {
  const name = "CAA";
  const labels = mxHost.split(".");
  for (let i = 0; i < labels.length - 1; i++) {
    const at = labels.slice(i).join(".");
    const r = await dns.query(at, "CAA");
    if (r.answers.length === 0) continue;
    const props = r.answers.map((a) => a.data as { tag: string; value: string; flags?: number });
    const issue = props.filter((p) => p.tag === "issue").map((p) => p.value);
    const saw = `${at}: ${props.map((p) => `${p.tag} "${p.value}"`).join(", ")}`;
    if (issue.length === 0 || issue.every((v) => v.trim().startsWith(";")))
      return fail(name, `${saw}: no CA may issue`, "allow the CA the host uses (caaIssuer)");
    return pass(name, saw);
  }
  return fail(
    name,
    `no CAA record at ${mxHost} or above`,
    `publish CAA 0 issue "letsencrypt.org" at ${mxHost}`,
  );
}

/** A listing is an answer in 127.0.0.0/8; 127.255.255.x are the lists' error codes. */
const listing = (a: string) => a.startsWith("127.") && !a.startsWith("127.255.255.");

export async function checkBlocklists(dns: Dns, address: string): Promise<CheckResult> {
  const name = `Blocklists ${address}`;
  const family = isIP(address);
  const listed: string[] = [];
  const unknown: string[] = [];
  let asked = 0;
  for (const bl of BLOCKLISTS.filter((b) => family === 4 || b.ipv6)) {
    try {
      const control = (await dns.query(blocklistName("127.0.0.2", bl.zone), "A")).answers.map((a) =>
        String(a.data),
      );
      if (!control.some(listing)) {
        unknown.push(`${bl.zone} (test point: ${control.join(", ") || "not listed"})`);
        continue;
      }
      const answer = (await dns.query(blocklistName(address, bl.zone), "A")).answers.map((a) =>
        String(a.data),
      );
      asked++;
      if (answer.some(listing)) listed.push(`${bl.zone} (${answer.join(", ")})`);
    } catch (e) {
      unknown.push(`${bl.zone} (${message(e)})`);
    }
  }
  if (listed.length)
    return fail(
      name,
      `listed on ${listed.join(", ")}`,
      "ask each list for removal, or get another address before cutover (a new Primary IP)",
    );
  if (unknown.length)
    return warn(
      name,
      `not listed on ${asked} list${asked === 1 ? "" : "s"}; cannot tell for ${unknown.join(", ")}`,
      "ask through a resolver of your own (--resolver): the lists refuse public resolvers",
    );
  return pass(
    name,
    `not listed on ${BLOCKLISTS.filter((b) => family === 4 || b.ipv6)
      .map((b) => b.zone)
      .join(", ")}`,
  );
}
