// The CrossGuard rules of mailstack, as data: policy/index.ts hands them to a PolicyPack,
// and tests/policy.test.ts runs each on a passing and a failing input.
import type { ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { EU_LOCATIONS } from "../components/config";
import { EXPORTER_PORTS, MAIL_PORTS } from "../components/firewall";
import { findKeyMaterial, knownEntries } from "./key-material";

/** Policy config shared by the production-only rules. */
export interface EnvironmentConfig {
  /** `production` (the default) or `staging`: staging stacks may relax the prod-only rules. */
  environment: "production" | "staging";
}

const environmentSchema = {
  properties: {
    environment: {
      type: "string" as const,
      enum: ["production", "staging"],
      default: "production",
    },
  },
};

const isProduction = (args: { getConfig<T extends object>(): T }) =>
  args.getConfig<EnvironmentConfig>().environment !== "staging";

const WORLD = ["0.0.0.0/0", "::/0"];
const opensToWorld = (sources: string[] = []) => sources.some((s) => WORLD.includes(s));

const T = {
  server: "hcloud:index/server:Server",
  volume: "hcloud:index/volume:Volume",
  primaryIp: "hcloud:index/primaryIp:PrimaryIp",
  firewall: "hcloud:index/firewall:Firewall",
  record: "cloudflare:index/dnsRecord:DnsRecord",
  zoneDnssec: "cloudflare:index/zoneDnssec:ZoneDnssec",
  bucket: "cloudflare:index/r2Bucket:R2Bucket",
  apiToken: "cloudflare:index/apiToken:ApiToken",
  mailStack: "mailstack:index:MailStack",
};

interface FirewallRule {
  direction: string;
  protocol: string;
  port?: string;
  sourceIps?: string[];
}

/**
 * The properties that hold key material or a token by design, and that the program marks
 * secret (tested under mocks) or that come from secret config (the providers' credentials).
 * A policy sees secrets unwrapped, so it trusts this list and judges every other property.
 */
const SECRET_PROPERTIES: Record<string, string[]> = {
  "tls:index/privateKey:PrivateKey": ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"],
  [T.server]: ["userData"],
  "command:remote:Command": ["connection", "stdin"],
  "pulumi:providers:hcloud": ["token"],
  "pulumi:providers:cloudflare": ["apiToken", "apiKey", "apiUserServiceKey"],
};

/** An R2 bucket in an API token's policy: `com.cloudflare.edge.r2.bucket.<account>_<jurisdiction>_<bucket>`. */
const R2_BUCKET_RESOURCE = /^com\.cloudflare\.edge\.r2\.bucket\.([0-9a-f]{32})_([a-z]+)_(.+)$/;
const R2_BUCKET_PREFIX = "com.cloudflare.edge.r2.bucket.";

/**
 * The R2 buckets a token's policies name, at any depth of their resources (a bucket may sit
 * under its account). `*` stands for every bucket of an account, in any jurisdiction. In a
 * preview, policies not known yet are skipped; they are judged at the update.
 */
function r2TokenBuckets(policies: unknown): { name: string; jurisdiction: string }[] {
  const found: { name: string; jurisdiction: string }[] = [];
  const walk = (resources: unknown) => {
    if (typeof resources !== "object" || resources === null) return;
    for (const [key, inner] of knownEntries(resources)) {
      if (key.startsWith(R2_BUCKET_PREFIX)) {
        const m = R2_BUCKET_RESOURCE.exec(key);
        found.push(
          m
            ? { name: m[3], jurisdiction: m[2] }
            : { name: key.slice(R2_BUCKET_PREFIX.length), jurisdiction: "any" },
        );
      }
      walk(inner);
    }
  };
  if (!Array.isArray(policies)) return found;
  for (const [, policy] of knownEntries(policies)) {
    const entries = new Map(knownEntries((policy ?? {}) as object));
    const resources = entries.get("resources");
    if (typeof resources === "string") {
      try {
        walk(JSON.parse(resources));
      } catch {
        // Not JSON: Cloudflare refuses it; nothing here to judge.
      }
    } else walk(resources);
  }
  return found;
}

export const policies: ResourceValidationPolicy[] = [
  {
    name: "eu-only-locations",
    description:
      "Servers, volumes and addresses stay in Hetzner's EU locations (fsn1, nbg1, hel1).",
    enforcementLevel: "mandatory",
    validateResource: (args, report) => {
      if (![T.server, T.volume, T.primaryIp].includes(args.type)) return;
      const { location, datacenter } = args.props as { location?: string; datacenter?: string };
      const where = location ?? datacenter?.split("-")[0];
      if (!where || !(EU_LOCATIONS as readonly string[]).includes(where)) {
        report(
          `${args.type} ${args.name} is in '${where ?? "no location"}'; allowed: ${EU_LOCATIONS.join(", ")}`,
        );
      }
    },
  },
  {
    name: "firewall-mail-ports-only",
    description:
      "The firewall opens only the mail ports to everyone; SSH and the exporters only to listed networks; plus ICMP.",
    enforcementLevel: "mandatory",
    validateResource: (args, report) => {
      if (args.type !== T.firewall) return;
      const mail = MAIL_PORTS.map((p) => String(p.port));
      const exporters = EXPORTER_PORTS.map((p) => String(p.port));
      for (const r of (args.props.rules ?? []) as FirewallRule[]) {
        if (r.direction !== "in") continue;
        const what = `${r.protocol}${r.port ? ` ${r.port}` : ""} from ${(r.sourceIps ?? []).join(", ")}`;
        if (r.protocol === "icmp") continue;
        if (r.protocol === "tcp" && r.port && mail.includes(r.port)) continue;
        if (r.protocol === "tcp" && r.port === "22") continue; // see ssh-restricted
        if (r.protocol === "tcp" && r.port && exporters.includes(r.port)) {
          if (opensToWorld(r.sourceIps)) report(`exporter port open to the world: ${what}`);
          continue;
        }
        report(`rule opens more than the mail ports: ${what}`);
      }
    },
  },
  {
    name: "server-has-firewall",
    description:
      "Every server has a Hetzner firewall in its firewallIds, so the rules hold from the first boot.",
    enforcementLevel: "mandatory",
    validateResource: (args, report) => {
      if (args.type !== T.server) return;
      // Only the list's length is read: in a preview a new firewall's id is not known yet.
      // A FirewallAttachment or a firewall's applyTo would attach it after the server has
      // booted, with every port of the stock image open meanwhile: not accepted.
      const ids: unknown = args.props.firewallIds;
      if (!Array.isArray(ids) || ids.length === 0) {
        report(`${args.type} ${args.name} has no firewall in firewallIds`);
      }
    },
  },
  {
    name: "ssh-restricted",
    // Mandatory by default, so production refuses SSH from anywhere; policy/staging.json
    // lowers it to advisory for throw-away stacks, which set no sshAllowedIps.
    description: "SSH is reachable from listed networks only (sshAllowedIps).",
    enforcementLevel: "mandatory",
    validateResource: (args, report) => {
      if (args.type !== T.firewall) return;
      for (const r of (args.props.rules ?? []) as FirewallRule[]) {
        if (
          r.direction === "in" &&
          r.protocol === "tcp" &&
          r.port === "22" &&
          opensToWorld(r.sourceIps)
        ) {
          report("SSH (22) is open to the world: set mailstack:sshAllowedIps");
        }
      }
    },
  },
  {
    name: "no-proxied-mail-records",
    description:
      "No DNS record of the stack goes through Cloudflare's proxy: mail needs the host's own address.",
    enforcementLevel: "mandatory",
    validateResource: (args, report) => {
      if (args.type === T.record && args.props.proxied === true) {
        report(`${args.props.type} ${args.props.name} is proxied`);
      }
    },
  },
  {
    name: "bucket-eu-jurisdiction",
    description:
      "Backup buckets are created in R2's EU jurisdiction, and a token the stack makes reaches R2 buckets there only.",
    enforcementLevel: "mandatory",
    validateResource: (args, report) => {
      if (args.type === T.bucket && args.props.jurisdiction !== "eu") {
        report(
          `bucket ${args.name} has jurisdiction '${args.props.jurisdiction ?? "default"}', not 'eu'`,
        );
      }
      if (args.type === T.apiToken) {
        for (const bucket of r2TokenBuckets(args.props.policies)) {
          if (bucket.jurisdiction !== "eu") {
            report(
              `token ${args.name} reaches R2 bucket ${bucket.name} in jurisdiction '${bucket.jurisdiction}', not 'eu'`,
            );
          }
        }
      }
    },
  },
  {
    name: "prod-mail-policies-enforced",
    description: "In production, DMARC is at least quarantine and MTA-STS enforces.",
    enforcementLevel: "mandatory",
    configSchema: environmentSchema,
    validateResource: (args, report) => {
      if (!isProduction(args)) return;
      if (args.type === T.mailStack) {
        const { dmarcPolicy, mtaStsMode } = args.props as {
          dmarcPolicy?: string;
          mtaStsMode?: string;
        };
        if (!["quarantine", "reject"].includes(dmarcPolicy ?? "")) {
          report(`DMARC policy is '${dmarcPolicy}'; production needs quarantine or reject`);
        }
        if (mtaStsMode !== "enforce")
          report(`MTA-STS mode is '${mtaStsMode}'; production needs enforce`);
      }
      // The published record is checked too, whatever built it.
      if (args.type === T.record && String(args.props.name).startsWith("_dmarc.")) {
        const p = /\bp=(\w+)/.exec(String(args.props.content))?.[1];
        if (!["quarantine", "reject"].includes(p ?? "")) {
          report(`${args.props.name} publishes p=${p}; production needs quarantine or reject`);
        }
      }
    },
  },
  {
    name: "prod-data-protected",
    description:
      "In production, the mail volume, the addresses and the backup bucket are protected.",
    enforcementLevel: "mandatory",
    configSchema: environmentSchema,
    validateResource: (args, report) => {
      if (!isProduction(args) || ![T.volume, T.primaryIp, T.bucket].includes(args.type)) return;
      if (!args.opts.protect)
        report(`${args.type} ${args.name} is not protected (mailstack:protect)`);
      if (args.type !== T.bucket && args.props.deleteProtection !== true) {
        report(`${args.type} ${args.name} has no delete protection at Hetzner`);
      }
    },
  },
  {
    // The name predates the token rules and stays: policy group settings refer to it.
    name: "no-private-key-in-plain-properties",
    description:
      "No private key, in any encoding, and no API token appears in a property other than the ones that hold it as a secret (keys, userData, provisioning, provider credentials).",
    enforcementLevel: "mandatory",
    validateResource: (args, report) => {
      for (const [key, value] of knownEntries(args.props)) {
        if ((SECRET_PROPERTIES[args.type] ?? []).includes(key)) continue;
        const found = findKeyMaterial(value);
        if (found) report(`${args.type} ${args.name}: property '${key}' holds ${found}`);
      }
    },
  },
];

/**
 * Rules over the whole stack. A policy sees secret values already unwrapped, so it cannot
 * tell a secret output from a plain one; that every secret output is secret is proven by the
 * tests under mocks (tests/mailstack.test.ts, tests/program.test.ts). What a policy can
 * refuse is key material or a token in any output at all: the stack exports none.
 */
export const stackPolicies: StackValidationPolicy[] = [
  {
    name: "no-private-key-in-outputs",
    description: "No stack output carries a private key, in any encoding, or an API token.",
    enforcementLevel: "mandatory",
    validateStack: (args, report) => {
      for (const r of args.resources) {
        if (r.type !== "pulumi:pulumi:Stack") continue;
        for (const [key, value] of knownEntries(r.props)) {
          const found = findKeyMaterial(value);
          if (found) report(`stack output '${key}' holds ${found}`);
        }
      }
    },
  },
  {
    name: "prod-dnssec",
    description:
      "In production the zone of the mail records is signed: a ZoneDnssec with status 'active' (mailstack:dnssec). TLSA and DANE depend on it.",
    enforcementLevel: "mandatory",
    configSchema: environmentSchema,
    validateStack: (args, report) => {
      if (!isProduction(args)) return;
      const zones = (
        type: string,
        match: (props: Record<string, unknown>) => boolean = () => true,
      ) =>
        new Set(
          args.resources
            .filter((r) => r.type === type && match(r.props))
            .map((r) => String(r.props.zoneId)),
        );
      const signed = zones(T.zoneDnssec, (p) => p.status === "active");
      if (signed.size === 0) {
        report("no ZoneDnssec with status 'active': production needs mailstack:dnssec true");
        return;
      }
      for (const zone of zones(T.record)) {
        if (!signed.has(zone)) report(`zone ${zone} holds mail records but is not signed`);
      }
    },
  },
];
