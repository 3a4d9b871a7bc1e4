import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import { buildMailRecords, type DnsRecord, type RecordKeys, type RecordSettings } from "./records";

export interface MailDnsArgs {
  /** Cloudflare zone holding the domain. */
  zoneId: string;
  /** The config the records are built from. */
  settings: RecordSettings;
  /** Public IPv4 of the mail host. */
  ipv4: pulumi.Input<string>;
  /** Public IPv6 of the mail host. */
  ipv6: pulumi.Input<string>;
  /** DKIM public key, PEM. */
  dkimPublicKeyPem: pulumi.Input<string>;
  /** Public key of the mail host's TLS key, PEM (for TLSA). */
  tlsPublicKeyPem: pulumi.Input<string>;
  /** Protect the zone's DNSSEC against deletion (prod; `mailstack:protect`). */
  protect: boolean;
  /** Universal SSL for the zone (`mailstack:universalSsl`); default: left as it is. */
  universalSsl?: boolean;
}

/**
 * A fixed, throw-away public key. The set of records (names, types, order) depends only on
 * the settings, but Pulumi must know it before the real keys and addresses exist, so the
 * builder is run once with these stand-ins to lay the records out.
 */
const LAYOUT_PUBLIC_KEY =
  "-----BEGIN PUBLIC KEY-----\n" +
  "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE5H8wOqx459cdwzaKCXV0qAg1g3B8\n" +
  "m9W1pkNW/cXrvIJefZWEmVnWEtGtSb69KXtadL6UmFFMOR8wdjYwwUze3Q==\n" +
  "-----END PUBLIC KEY-----\n";
const LAYOUT_KEYS: RecordKeys = {
  ipv4: "192.0.2.1",
  ipv6: "2001:db8::1",
  dkimPublicKeyPem: LAYOUT_PUBLIC_KEY,
  tlsPublicKeyPem: LAYOUT_PUBLIC_KEY,
};

/**
 * The comment on every record the stack writes. It is how the stack tells its own SPF and
 * DMARC records from ones that were in the zone before (components/existing-records.ts).
 */
export const RECORD_COMMENT = "managed by mailstack";

/**
 * The resource name of the stack's record at each owner name, for the first record of each
 * type there, as MailDns names them: what a `pulumi import` must use to adopt a record.
 */
export function recordResourceNames(
  name: string,
  settings: RecordSettings,
  type: DnsRecord["type"],
): Record<string, string> {
  const names: Record<string, string> = {};
  for (const r of buildMailRecords(settings, LAYOUT_KEYS)) {
    if (r.type === type) names[r.name] ??= `${name}-${resourceSlug(r, settings.domain)}`;
  }
  return names;
}

/**
 * Every mail DNS record on Cloudflare, from the one builder in records.ts. None is proxied:
 * mail protocols do not pass through Cloudflare's HTTP proxy, and a proxied A record would
 * publish Cloudflare's address instead of the host's.
 */
export class MailDns extends pulumi.ComponentResource {
  /** The records as published, with their real contents. */
  readonly records: pulumi.Output<DnsRecord[]>;
  /** DS record to enter at the registrar when DNSSEC is on. */
  readonly dnssecDs?: pulumi.Output<string>;

  constructor(name: string, args: MailDnsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailstack:index:MailDns", name, {}, opts);

    this.records = pulumi
      .all([args.ipv4, args.ipv6, args.dkimPublicKeyPem, args.tlsPublicKeyPem])
      .apply(([ipv4, ipv6, dkimPublicKeyPem, tlsPublicKeyPem]) =>
        buildMailRecords(args.settings, { ipv4, ipv6, dkimPublicKeyPem, tlsPublicKeyPem }),
      );

    const layout = buildMailRecords(args.settings, LAYOUT_KEYS);
    const seen = new Map<string, number>();
    layout.forEach((planned, i) => {
      const record = this.records.apply((all) => {
        const r = all[i];
        if (!r || r.name !== planned.name || r.type !== planned.type) {
          throw new Error(`DNS record ${i} changed shape: planned ${planned.type} ${planned.name}`);
        }
        return r;
      });
      const slug = resourceSlug(planned, args.settings.domain);
      const n = (seen.get(slug) ?? 0) + 1;
      seen.set(slug, n);
      new cloudflare.DnsRecord(
        `${name}-${slug}${n > 1 ? `-${n}` : ""}`,
        {
          zoneId: args.zoneId,
          name: planned.name,
          type: planned.type,
          ttl: planned.ttl,
          proxied: false,
          comment: RECORD_COMMENT,
          ...(planned.data
            ? { data: record.apply((r) => cloudflareData(r)) }
            : { content: record.content }),
          ...(planned.priority === undefined ? {} : { priority: planned.priority }),
          // Cloudflare returns an SRV record's priority at the top level as well as in
          // `data` (terraform-provider-cloudflare #6684): sent only in `data`, every refresh
          // would read back a change. So it goes in both, as it reads back.
          ...(planned.data?.kind === "SRV" ? { priority: planned.data.priority } : {}),
        },
        { parent: this },
      );
    });

    if (args.settings.dnssec) {
      // Deleting a ZoneDnssec disables DNSSEC for the whole zone while the DS stays at the
      // registrar: validating resolvers would then fail every name in it, website included.
      // So it is never deleted by Pulumi (destroy, dnssec false, a rename only forget it),
      // and in prod it cannot be deleted at all. Turning DNSSEC off is a step at the
      // registrar first (remove the DS), then in Cloudflare; docs/provider-semantics.md.
      const dnssec = new cloudflare.ZoneDnssec(
        `${name}-dnssec`,
        { zoneId: args.zoneId, status: "active" },
        // `status` reads back "pending" until the DS is at the registrar (and "active" only
        // then): "active" is what is asked for at creation, and a status read back is never
        // a change to make, or the daily `--expect-no-changes` check would fail until then.
        {
          parent: this,
          retainOnDelete: true,
          protect: args.protect,
          ignoreChanges: ["status"],
        },
      );
      this.dnssecDs = dnssec.ds;
    }

    if (args.universalSsl !== undefined) {
      // With Universal SSL on, Cloudflare publishes CAA records for its own CAs beside any
      // CAA of the zone (hidden from the API), so the stack's single CA and dns-01 limit do
      // not hold against them; off, they are gone, and so is HTTPS for proxied names of the
      // zone. Zone-wide, so never reset by Pulumi: a destroy or an unset key only forgets it.
      new cloudflare.UniversalSslSetting(
        `${name}-universal-ssl`,
        { zoneId: args.zoneId, enabled: args.universalSsl },
        { parent: this, retainOnDelete: true },
      );
    }

    this.registerOutputs({ records: this.records, dnssecDs: this.dnssecDs });
  }
}

/** A stable resource name part: type and owner name relative to the zone. */
function resourceSlug(r: DnsRecord, domain: string): string {
  const relative = r.name === domain ? "apex" : r.name.slice(0, -(domain.length + 1));
  return `${r.type.toLowerCase()}-${relative.replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "")}`;
}

/** Cloudflare's structured `data` for SRV, CAA and TLSA. */
function cloudflareData(r: DnsRecord): cloudflare.types.input.DnsRecordData {
  const d = r.data!;
  switch (d.kind) {
    case "SRV":
      return { priority: d.priority, weight: d.weight, port: d.port, target: d.target };
    case "CAA":
      return { flags: d.flags, tag: d.tag, value: d.value };
    case "TLSA":
      return {
        usage: d.usage,
        selector: d.selector,
        matchingType: d.matchingType,
        certificate: d.certificate,
      };
  }
}
