// SPF and DMARC records the zone already holds. A name may carry only one of each: with the
// stack's own beside a foreign one, receivers treat both as invalid (RFC 7208 3.2,
// RFC 7489 6.6.3). The zone is read once, before any resource is registered, so a foreign
// record stops the run (in preview as in up) with nothing changed.
import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import { RECORD_COMMENT } from "./dns";
import { txtValue } from "./keymath";

/** A record as `cloudflare.getDnsRecords` returns it (the fields the check reads). */
export interface ExistingRecord {
  id: string;
  name: string;
  type: string;
  content: string;
  comment?: string;
}

/** The names that may hold only one record of a kind, and how that kind is recognised. */
export const SINGLETONS = [
  {
    kind: "SPF",
    article: "an",
    at: (domain: string) => domain,
    tag: /^v=spf1(\s|$)/i,
    rfc: "RFC 7208 3.2",
  },
  {
    kind: "DMARC",
    article: "a",
    at: (domain: string) => `_dmarc.${domain}`,
    tag: /^v=DMARC1\s*(;|$)/i,
    rfc: "RFC 7489 6.6.3",
  },
] as const;

/** Where the stack's own TXT record at each singleton name lives in the stack. */
export interface RecordOwner {
  domain: string;
  zoneId: string;
  /** Resource name of the stack's TXT record, per owner name (`example.eu`, `_dmarc.…`). */
  resourceNames: Record<string, string>;
  /** Name of the records' parent component (MailDns). */
  parentName: string;
  /** URN of that component. */
  parentUrn: string;
}

/** A TXT record's text: Cloudflare returns it quoted (as the stack sends it) or bare. */
function txtText(content: string): string {
  const c = content.trim();
  return c.startsWith('"') ? txtValue(c) : c;
}

/**
 * One problem per SPF or DMARC record at the stack's names that is not the stack's own. The
 * stack's own carry its comment (RECORD_COMMENT); anything else, whoever wrote it, would
 * stand beside the stack's record.
 */
export function foreignRecordProblems(existing: ExistingRecord[], owner: RecordOwner): string[] {
  const problems: string[] = [];
  for (const s of SINGLETONS) {
    const name = s.at(owner.domain);
    for (const r of existing) {
      if (r.type !== "TXT" || r.name.toLowerCase() !== name) continue;
      const text = txtText(r.content);
      if (!s.tag.test(text) || r.comment === RECORD_COMMENT) continue;
      problems.push(
        `mailstack:domain: the zone ${owner.zoneId} (mailstack:cloudflareZoneId) already has ` +
          `${s.article} ${s.kind} record at ${name} that this stack does not manage: ` +
          `TXT ${JSON.stringify(text)}, record id ${r.id}. The stack publishes its own, and two ` +
          `${s.kind} records at one name make both invalid (${s.rfc}). Remove that record in ` +
          `Cloudflare, or adopt it: set its comment to "${RECORD_COMMENT}", then run ` +
          `pulumi import cloudflare:index/dnsRecord:DnsRecord ${owner.resourceNames[name]} ` +
          `'${owner.zoneId}/${r.id}' --parent '${owner.parentName}=${owner.parentUrn}' ` +
          `--protect=false`,
      );
    }
  }
  return problems;
}

/**
 * Reads the zone's TXT records at the apex and at `_dmarc`, and stops the run with one line
 * per foreign SPF or DMARC record. Awaited before any resource is registered: the inputs are
 * plain config, so the look-up runs in preview too.
 */
export async function checkExistingRecords(
  owner: RecordOwner,
  opts?: pulumi.InvokeOptions,
): Promise<void> {
  const found = await Promise.all(
    SINGLETONS.map((s) =>
      cloudflare.getDnsRecords(
        { zoneId: owner.zoneId, type: "TXT", name: { exact: s.at(owner.domain) } },
        opts,
      ),
    ),
  );
  const problems = foreignRecordProblems(
    found.flatMap((f) => f.results ?? []),
    owner,
  );
  // RunError: Pulumi prints the message alone, without a stack trace.
  if (problems.length > 0) throw new pulumi.RunError(problems.join("\n"));
}
