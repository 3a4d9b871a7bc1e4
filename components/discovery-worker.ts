// What the mail host does not serve itself: the MTA-STS policy, client autoconfig and
// autodiscover, the Apple profile and the OpenPGP Web Key Directory, from a Cloudflare Worker.
// Port 443 stays closed on the mail host; the Worker's custom domains give each name its
// DNS record and its certificate.
import { createHash } from "node:crypto";
import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import { discoveryHostnames, workerScript, type Site } from "./discovery";

/** The runtime the script is written for (the Workers compatibility date). */
export const WORKER_COMPATIBILITY_DATE = "2025-09-01";

/**
 * The Worker's name in the account: one per mail domain, so stacks of several domains share
 * an account. Script names are at most 63 characters; a longer one is shortened by a hash.
 */
export function discoveryScriptName(domain: string): string {
  const name = `mailstack-${domain.replace(/\./g, "-")}`;
  if (name.length <= 63) return name;
  return `mailstack-${createHash("sha256").update(domain).digest("hex").slice(0, 32)}`;
}

export interface MailDiscoveryArgs {
  /** The Cloudflare account the Worker is made in (`cloudflareAccountId`). */
  accountId: string;
  /** The mail domain: the Worker answers for four names under it. */
  domain: string;
  /** The zone of the mail domain (`cloudflareZoneId`): the custom domains are made in it. */
  zoneId: string;
  /** The SITE binding: everything the Worker serves that the stack decides (discoverySite). */
  site: pulumi.Input<Site>;
}

/**
 * The discovery Worker of one mail domain: the script (worker/discovery.ts, unchanged by
 * config), its SITE binding, and the custom domains mta-sts., autoconfig., autodiscover. and
 * openpgpkey. under the domain.
 */
export class MailDiscovery extends pulumi.ComponentResource {
  readonly script: cloudflare.WorkersScript;
  readonly domains: cloudflare.WorkersCustomDomain[];
  /** The URL senders fetch the MTA-STS policy from. */
  readonly policyUrl: string;

  constructor(name: string, args: MailDiscoveryArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailstack:index:MailDiscovery", name, {}, opts);
    const scriptName = discoveryScriptName(args.domain);
    this.script = new cloudflare.WorkersScript(
      `${name}-script`,
      {
        accountId: args.accountId,
        scriptName,
        mainModule: "discovery.mjs",
        content: workerScript(),
        compatibilityDate: WORKER_COMPATIBILITY_DATE,
        bindings: [
          {
            name: "SITE",
            type: "json",
            json: pulumi.output(args.site).apply((s) => JSON.stringify(s)),
          },
        ],
      },
      { parent: this },
    );
    this.domains = discoveryHostnames(args.domain).map(
      (hostname) =>
        new cloudflare.WorkersCustomDomain(
          `${name}-${hostname.split(".")[0]}`,
          {
            accountId: args.accountId,
            zoneId: args.zoneId,
            hostname,
            service: this.script.scriptName,
          },
          { parent: this },
        ),
    );
    this.policyUrl = `https://mta-sts.${args.domain}/.well-known/mta-sts.txt`;
    this.registerOutputs({ policyUrl: this.policyUrl });
  }
}
