// The Cloudflare API token the mail host renews its certificate with, made by the stack so it
// holds exactly what renewal needs: DNS on one zone (the challenge zone when there is one),
// usable only from the host's own addresses, with an expiry when the config sets one.
import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";

/**
 * Cloudflare's permission groups "DNS Write" and "DNS Read" (the IDs are global, the same in
 * every account). The hook only creates and deletes records by ID; read is granted so a
 * write is never refused for the lack of it, and reveals nothing that is not public.
 */
export const DNS_WRITE_PERMISSION = "4755a26eedb94da69e1066d98aa820be";
export const DNS_READ_PERMISSION = "82e64a83756745bbbb1c9c2701bf816b";

/** How long before the token's expiry each run warns that it must be moved on. */
export const EXPIRY_WARNING_DAYS = 30;

export interface AcmeTokenArgs {
  /** The one zone the token may write: the challenge zone, or the mail zone without one. */
  zoneId: string;
  /** The mail host, in the token's name. */
  mailHost: string;
  /** The stack name, in the token's name (tokens of several stacks live side by side). */
  stack: string;
  /** The host's IPv4 address: the token works from it only (and the IPv6 network). */
  ipv4: pulumi.Input<string>;
  /** The host's IPv6 network (Hetzner routes a /64 to each server). */
  ipv6Network: pulumi.Input<string>;
  /** When the token stops working (ISO 8601, UTC); none when unset. */
  expiresOn?: string;
}

export class AcmeToken extends pulumi.ComponentResource {
  readonly token: cloudflare.ApiToken;
  /** The token, secret. */
  readonly value: pulumi.Output<string>;

  constructor(name: string, args: AcmeTokenArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailstack:index:AcmeToken", name, {}, opts);
    this.token = new cloudflare.ApiToken(
      `${name}-cloudflare`,
      {
        name: `mailstack ${args.stack}: ACME DNS-01 for ${args.mailHost}`,
        policies: [
          {
            effect: "allow",
            permissionGroups: [{ id: DNS_WRITE_PERMISSION }, { id: DNS_READ_PERMISSION }],
            resources: JSON.stringify({ [`com.cloudflare.api.account.zone.${args.zoneId}`]: "*" }),
          },
        ],
        // A copy of the token that leaves the host (a backup, a log) is useless elsewhere.
        condition: {
          requestIp: {
            ins: pulumi.all([args.ipv4, args.ipv6Network]).apply(([v4, v6]) => [`${v4}/32`, v6]),
          },
        },
        ...(args.expiresOn ? { expiresOn: args.expiresOn } : {}),
      },
      { parent: this, additionalSecretOutputs: ["value"] },
    );
    this.value = pulumi.secret(this.token.value);
    this.registerOutputs({});
  }
}

/**
 * What a run says about the token's expiry: an error once it has passed (renewal can no longer
 * work, so the run stops until the key moves on), a warning within EXPIRY_WARNING_DAYS.
 * `now` is read once per run, so a run is deterministic; nothing of it reaches a resource.
 */
export function tokenExpiryNotice(
  expiresOn: string | undefined,
  now: Date,
): { level: "warning" | "error"; message: string } | undefined {
  if (!expiresOn) return undefined;
  const left = Date.parse(expiresOn) - now.getTime();
  const fix = "set a later mailstack:acmeTokenExpiresOn and run pulumi up";
  if (left <= 0) {
    return {
      level: "error",
      message:
        `mailstack:acmeTokenExpiresOn: the host's DNS token expired at ${expiresOn}, so the ` +
        `certificate can no longer be renewed: ${fix}`,
    };
  }
  const days = Math.floor(left / 86_400_000);
  if (days < EXPIRY_WARNING_DAYS) {
    return {
      level: "warning",
      message:
        `mailstack:acmeTokenExpiresOn: the host's DNS token expires in ${days} days ` +
        `(${expiresOn}); after that the certificate cannot be renewed: ${fix}`,
    };
  }
  return undefined;
}
