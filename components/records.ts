// The one builder of every DNS record the stack publishes. Cloudflare (MailDns), the lab's
// authoritative server and the conformance checker all take their records from here.
import type { MailStackConfig } from "./config";
import { dkimRecordText, mtaStsId, mtaStsPolicy, tlsaSpkiSha256, txtPresentation } from "./keymath";

export type RecordType = "A" | "AAAA" | "MX" | "TXT" | "CAA" | "TLSA" | "SRV" | "CNAME";

/** Structured rdata for the types Cloudflare does not take as plain `content`. */
export type RecordData =
  | { kind: "SRV"; priority: number; weight: number; port: number; target: string }
  | { kind: "CAA"; flags: number; tag: string; value: string }
  | { kind: "TLSA"; usage: number; selector: number; matchingType: number; certificate: string };

export interface DnsRecord {
  /** Fully qualified owner name without the trailing dot, e.g. `_dmarc.example.eu`. */
  name: string;
  type: RecordType;
  /** Zone-file presentation of the rdata (TXT values quoted, split at 255 bytes). */
  content: string;
  /** MX preference. */
  priority?: number;
  ttl: number;
  data?: RecordData;
}

/** The config keys the records depend on. */
export type RecordSettings = Pick<
  MailStackConfig,
  | "domain"
  | "mailHost"
  | "dmarcPolicy"
  | "dmarcReportEmail"
  | "mtaStsMode"
  | "tlsRptEmail"
  | "acmeEmail"
  | "caaIssuer"
  | "dkimSelector"
  | "dnssec"
  | "acmeChallengeZone"
>;

export interface RecordKeys {
  ipv4: string;
  ipv6: string;
  /** PEM public key of the DKIM signing key. */
  dkimPublicKeyPem: string;
  /** PEM public key of the mail host's TLS key (the one the certificate is issued for). */
  tlsPublicKeyPem: string;
}

export const DEFAULT_TTL = 3600;

/** The ports mail clients use, as published in SRV records (RFC 6186, RFC 8314). */
export const CLIENT_SERVICES = [
  { service: "submissions", port: 465 },
  { service: "submission", port: 587 },
  { service: "imaps", port: 993 },
  // ManageSieve (RFC 5804 1.8).
  { service: "sieve", port: 4190 },
] as const;

/** Services the host does not offer: the SRV target "." says so (RFC 2782, RFC 6186 3.4). */
export const SERVICES_NOT_OFFERED = ["imap", "pop3", "pop3s"] as const;

/** TTL of the challenge CNAME: short, so a change of challenge zone takes effect soon. */
export const ACME_CNAME_TTL = 300;

/**
 * Where the host writes its ACME DNS-01 TXT record: `_acme-challenge.<mailHost>` in the mail
 * zone, or, with a challenge zone, `<mailHost>.<challenge zone>`, which that name is a CNAME
 * to. The mail host's name in it keeps several stacks apart in one challenge zone.
 */
export function acmeChallengeName(
  s: Pick<RecordSettings, "domain" | "mailHost" | "acmeChallengeZone">,
): {
  /** The name the TXT record is written at. */
  name: string;
  /** The zone that holds it. */
  zone: string;
} {
  return s.acmeChallengeZone
    ? { name: `${s.mailHost}.${s.acmeChallengeZone}`, zone: s.acmeChallengeZone }
    : { name: `_acme-challenge.${s.mailHost}`, zone: s.domain };
}

export function buildMailRecords(s: RecordSettings, k: RecordKeys): DnsRecord[] {
  const { domain, mailHost } = s;
  const records: DnsRecord[] = [];
  const add = (name: string, type: RecordType, content: string, extra: Partial<DnsRecord> = {}) =>
    records.push({ name, type, content, ttl: DEFAULT_TTL, ...extra });
  const txt = (name: string, value: string) => add(name, "TXT", txtPresentation(value));

  add(mailHost, "A", k.ipv4);
  add(mailHost, "AAAA", k.ipv6);
  add(domain, "MX", mailHost, { priority: 10 });

  // Only this host sends for the domain; everything else fails hard.
  txt(domain, "v=spf1 mx -all");
  txt(`${s.dkimSelector}._domainkey.${domain}`, dkimRecordText(k.dkimPublicKeyPem));
  txt(`_dmarc.${domain}`, `v=DMARC1; p=${s.dmarcPolicy}; rua=mailto:${s.dmarcReportEmail}`);

  const policy = mtaStsPolicy(s.mtaStsMode, [mailHost]);
  txt(`_mta-sts.${domain}`, `v=STSv1; id=${mtaStsId(policy)}`);
  txt(`_smtp._tls.${domain}`, `v=TLSRPTv1; rua=mailto:${s.tlsRptEmail}`);

  // CAA sits on the mail host, not the apex: it binds only the name this stack owns and
  // leaves a website on the apex free to use any CA. Issuance is further limited to DNS-01,
  // the only method the host uses (RFC 8657).
  const caa = (tag: string, value: string) =>
    add(mailHost, "CAA", `0 ${tag} "${value}"`, { data: { kind: "CAA", flags: 0, tag, value } });
  caa("issue", `${s.caaIssuer}; validationmethods=dns-01`);
  caa("issuewild", ";");
  caa("iodef", `mailto:${s.acmeEmail}`);

  // ACME DNS-01, delegated (acme-dns style): the CA follows this CNAME to the challenge zone,
  // the only zone the host's credential may write. Without a challenge zone the host writes
  // `_acme-challenge.<mailHost>` in this zone itself, and no record is published for it.
  if (s.acmeChallengeZone) {
    add(`_acme-challenge.${mailHost}`, "CNAME", acmeChallengeName(s).name, {
      ttl: ACME_CNAME_TTL,
    });
  }

  // DANE for inbound SMTP. Without DNSSEC a TLSA record is ignored by senders (RFC 7672),
  // so it is published only on a signed zone.
  if (s.dnssec) {
    const digest = tlsaSpkiSha256(k.tlsPublicKeyPem);
    add(`_25._tcp.${mailHost}`, "TLSA", `3 1 1 ${digest}`, {
      data: { kind: "TLSA", usage: 3, selector: 1, matchingType: 1, certificate: digest },
    });
  }

  const srv = (service: string, priority: number, weight: number, port: number, target: string) =>
    add(`_${service}._tcp.${domain}`, "SRV", `${priority} ${weight} ${port} ${target}`, {
      data: { kind: "SRV", priority, weight, port, target },
    });
  for (const { service, port } of CLIENT_SERVICES) srv(service, 0, 1, port, mailHost);
  for (const service of SERVICES_NOT_OFFERED) srv(service, 0, 0, 0, ".");

  return records;
}

/** The `dnsRecords` stack output: `{name, type, content, priority?}` per record. */
export function recordSummary(records: DnsRecord[]) {
  return records.map(({ name, type, content, priority }) =>
    priority === undefined ? { name, type, content } : { name, type, content, priority },
  );
}
