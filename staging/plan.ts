// Pure logic of the throw-away staging servers: which stack and domain a pull request or
// branch gets, the config it deploys with, and when it expires.
import { isDnsLabel } from "../components/validate";
import { parseConfig, type MailStackConfig } from "../components/config";

/** Stacks this driver owns start with these; nothing else is ever listed or destroyed. */
export const STACK_PREFIXES = ["pr-", "br-"] as const;

/** How long a staging server lives unless told otherwise. */
export const DEFAULT_TTL_HOURS = 48;

export interface StagingTarget {
  /** Pulumi stack name, e.g. `pr-42`. */
  stack: string;
  /** Mail domain, e.g. `pr-42.staging.example.eu`. */
  domain: string;
}

/** The stack and domain of a pull request (preferred) or a branch. */
export function stagingTarget(opts: {
  pr?: number;
  branch?: string;
  baseDomain: string;
}): StagingTarget {
  if (opts.pr !== undefined) {
    if (!Number.isInteger(opts.pr) || opts.pr < 1)
      throw new Error(`pull request number must be positive; got ${opts.pr}`);
    return { stack: `pr-${opts.pr}`, domain: `pr-${opts.pr}.${opts.baseDomain}` };
  }
  if (opts.branch) {
    const slug = opts.branch
      .toLowerCase()
      .replace(/^refs\/heads\//, "")
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 40)
      .replace(/-+$/, "");
    if (!isDnsLabel(slug)) throw new Error(`branch '${opts.branch}' gives no usable name`);
    return { stack: `br-${slug}`, domain: `${slug}.${opts.baseDomain}` };
  }
  throw new Error("a staging server needs a pull request number (--pr) or a branch (--branch)");
}

export function expiresAt(now: Date, ttlHours: number): string {
  if (!(ttlHours > 0)) throw new Error(`the lifetime must be positive hours; got ${ttlHours}`);
  return new Date(now.getTime() + ttlHours * 3_600_000).toISOString().replace(/\.\d+Z$/, "Z");
}

export function isExpired(expires: string | undefined, now: Date): boolean {
  return expires !== undefined && Date.parse(expires) <= now.getTime();
}

/**
 * The config of a staging stack, from the base staging stack's settings (Pulumi.staging.yaml):
 * the domain becomes the target's, addresses move with it, the server is the smallest, the
 * CA is ACME's staging one, nothing is protected, MTA-STS only tests, the zone's DNSSEC is
 * left to its owner, and the stack expires.
 * Validated like any stack, so a bad base fails here, before anything is created.
 */
export function stagingConfig(
  base: Record<string, unknown>,
  target: StagingTarget,
  expires: string,
): { config: MailStackConfig; values: Record<string, unknown> } {
  const baseDomain = String(base.domain ?? "");
  const move = (address: string) =>
    address.endsWith(`@${baseDomain}`)
      ? `${address.slice(0, -baseDomain.length)}${target.domain}`
      : address;
  const users = ((base.users ?? []) as { address: string; aliases?: string[] }[]).map((u) => ({
    ...u,
    address: move(u.address),
    ...(u.aliases ? { aliases: u.aliases.map(move) } : {}),
  }));
  const aliases = Object.fromEntries(
    Object.entries((base.aliases ?? {}) as Record<string, string[]>).map(([a, t]) => [
      move(a),
      t.map(move),
    ]),
  );
  const values: Record<string, unknown> = {
    ...base,
    domain: target.domain,
    users,
    ...(base.aliases ? { aliases } : {}),
    serverType: "cx23",
    volumeSizeGb: 10,
    acmeStaging: true,
    protect: false,
    mtaStsMode: "testing",
    dmarcPolicy: "none",
    clamav: false,
    // DNSSEC is a setting of the whole zone, which every staging stack shares: none of them
    // may own it, or destroying one would unsign the zone for all.
    dnssec: false,
    backup: { enabled: false },
    expiresAt: expires,
  };
  for (const key of ["dmarcReportEmail", "tlsRptEmail"]) {
    if (typeof base[key] === "string") values[key] = move(base[key] as string);
  }
  // The DNS token is a secret the driver sets from the environment; here only its presence counts.
  return { config: parseConfig({ ...values, acmeDnsToken: "set by the driver" }), values };
}
