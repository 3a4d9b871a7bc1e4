// Real DNS for the lab: knot serves each lab domain with exactly the records the stack
// publishes on Cloudflare (the same builder), DNSSEC-signed, plus the reverse zones with
// the PTR records; unbound validates it, and the VMs use it as their resolver.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BLOCKLISTS, blocklistName, reverseName } from "../checks/records";
import { discoveryHostnames } from "../components/discovery";
import { buildMailRecords, type DnsRecord } from "../components/records";
import type { LabKeys } from "./keys";
import { daemon, runIn, waitFor } from "./run";
import { tail } from "./log";
import {
  LAB_CLIENT_IP4,
  LAB_NET4,
  LAB_NET6,
  NETNS,
  NS_IP4,
  NS_IP6,
  REVERSE_ZONE4,
  REVERSE_ZONE6,
  SERVICES_IP4,
  SERVICES_IP6,
  STATE_DIR,
  type LabHost,
} from "./settings";

export const DNS_DIR = join(STATE_DIR, "dns");
/**
 * Each host's TSIG key for RFC 2136 updates: how it writes its ACME challenges, into its
 * challenge zone and nowhere else (knot's ACL), as a Cloudflare token made by the stack may.
 */
export const tsigKeyName = (h: LabHost) => `acme-${h.name}`;
export const TSIG_ALGORITHM = "hmac-sha256";

/** A host's challenge zone (config acmeChallengeZone; every lab host has one). */
export function challengeZone(h: LabHost): string {
  if (!h.config.acmeChallengeZone) throw new Error(`${h.name} has no acmeChallengeZone`);
  return h.config.acmeChallengeZone;
}

export function tsigSecret(keyName: string): string {
  const file = join(DNS_DIR, `${keyName}.tsig`);
  if (!existsSync(file)) {
    mkdirSync(DNS_DIR, { recursive: true });
    writeFileSync(file, randomBytes(32).toString("base64"), { mode: 0o600 });
  }
  return readFileSync(file, "utf8").trim();
}

/** The records a host's stack publishes, as the builder makes them for Cloudflare. */
export function hostRecords(h: LabHost, keys: LabKeys): DnsRecord[] {
  return buildMailRecords(h.config, {
    ipv4: h.ipv4,
    ipv6: h.ipv6,
    dkimPublicKeyPem: keys.dkim.publicPem,
    tlsPublicKeyPem: keys.tls.publicPem,
  });
}

const fqdn = (name: string) => (name.endsWith(".") ? name : `${name}.`);

/** A record as a zone-file line; host names in rdata become absolute. */
export function zoneLine(r: DnsRecord): string {
  let rdata = r.content;
  if (r.type === "MX") rdata = `${r.priority} ${fqdn(r.content)}`;
  if (r.type === "CNAME") rdata = fqdn(r.content);
  if (r.type === "SRV") {
    const [p, w, port, target] = r.content.split(" ");
    rdata = `${p} ${w} ${port} ${target === "." ? "." : fqdn(target)}`;
  }
  return `${fqdn(r.name)} ${r.ttl} IN ${r.type} ${rdata}`;
}

function soa(zone: string): string[] {
  return [
    `$TTL 300`,
    `${zone}. 300 IN SOA ns.lab.example. hostmaster.lab.example. 1 3600 600 86400 60`,
    `${zone}. 300 IN NS ns.lab.example.`,
  ];
}

const ptrName = (address: string) => `${reverseName(address)}.`;

export function zones(hosts: LabHost[], keysOf: (h: LabHost) => LabKeys): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of hosts) {
    const lines = [
      ...soa(h.config.domain),
      ...hostRecords(h, keysOf(h)).map(zoneLine),
      // The names Cloudflare's custom domains give the stack's Worker; here, the lab's
      // Worker runtime (lab/web.ts).
      ...discoveryHostnames(h.config.domain).flatMap((n) => [
        `${n}. 300 IN A ${SERVICES_IP4}`,
        `${n}. 300 IN AAAA ${SERVICES_IP6}`,
      ]),
    ];
    out[h.config.domain] = lines.join("\n") + "\n";
    // The challenge zone holds nothing but what the host writes there.
    out[challengeZone(h)] = soa(challengeZone(h)).join("\n") + "\n";
  }
  // The name server's own zone, so its NS name resolves; and the outside world's mail
  // clients: client.lab.example sends for lab.example (SPF, DMARC p=quarantine), as any MTA would.
  const spf = `"v=spf1 ip4:${SERVICES_IP4} ip4:${LAB_CLIENT_IP4} ip6:${SERVICES_IP6} -all"`;
  out["lab.example"] =
    [
      ...soa("lab.example"),
      `ns.lab.example. 300 IN A ${NS_IP4}`,
      `ns.lab.example. 300 IN AAAA ${NS_IP6}`,
      `lab.example. 300 IN MX 10 client.lab.example.`,
      `lab.example. 300 IN TXT ${spf}`,
      // Mail for lab.example from anywhere else is suspect: receivers treat it as spam.
      `_dmarc.lab.example. 300 IN TXT "v=DMARC1; p=quarantine"`,
      `client.lab.example. 300 IN A ${SERVICES_IP4}`,
      `client.lab.example. 300 IN AAAA ${SERVICES_IP6}`,
      `client.lab.example. 300 IN TXT ${spf}`,
      `client2.lab.example. 300 IN A ${LAB_CLIENT_IP4}`,
    ].join("\n") + "\n";
  // The DNS blocklists the checker asks, each listing only its test point 127.0.0.2: the lab's
  // addresses are on none, and the checker sees each list answer (checks/records.ts).
  for (const { zone } of BLOCKLISTS) {
    out[zone] =
      [...soa(zone), `${blocklistName("127.0.0.2", zone)}. 300 IN A 127.0.0.2`].join("\n") + "\n";
  }
  const client = (address: string, name: string) => `${ptrName(address)} 300 IN PTR ${name}`;
  const ptr = (h: LabHost, address: string) =>
    `${ptrName(address)} 300 IN PTR ${fqdn(h.config.mailHost)}`;
  out[REVERSE_ZONE4] =
    [
      ...soa(REVERSE_ZONE4),
      ...hosts.map((h) => ptr(h, h.ipv4)),
      client(SERVICES_IP4, "client.lab.example."),
      client(LAB_CLIENT_IP4, "client2.lab.example."),
    ].join("\n") + "\n";
  out[REVERSE_ZONE6] =
    [
      ...soa(REVERSE_ZONE6),
      ...hosts.map((h) => ptr(h, h.ipv6)),
      client(SERVICES_IP6, "client.lab.example."),
    ].join("\n") + "\n";
  return out;
}

/** knot's configuration: every zone signed; only challenge zones take updates, each from its host's key. */
export function knotConfig(
  zoneNames: string[],
  hosts: LabHost[],
  secretOf: (keyName: string) => string = tsigSecret,
): string {
  const dir = DNS_DIR;
  const updaterOf = (zone: string) => hosts.find((h) => challengeZone(h) === zone);
  return `server:
    rundir: "${dir}/knot-run"
    listen: [ ${NS_IP4}@53, ${NS_IP6}@53 ]
log:
  - target: stderr
    any: info
database:
    storage: "${dir}/knot-db"
key:
${hosts
  .map(
    (h) =>
      `  - id: ${tsigKeyName(h)}\n    algorithm: ${TSIG_ALGORITHM}\n    secret: ${secretOf(tsigKeyName(h))}`,
  )
  .join("\n")}
acl:
${hosts
  .map(
    (h) =>
      `  - id: ${tsigKeyName(h)}\n    address: [ ${LAB_NET4}, ${LAB_NET6} ]\n    key: ${tsigKeyName(h)}\n    action: update`,
  )
  .join("\n")}
policy:
  - id: lab
    algorithm: ecdsap256sha256
    nsec3: off
template:
  - id: default
    storage: "${dir}/zones"
    dnssec-signing: on
    dnssec-policy: lab
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes
zone:
${zoneNames
  .map((z) => {
    // Only a challenge zone takes updates, and only with its own host's key.
    const h = updaterOf(z);
    return `  - domain: ${z}.${h ? `\n    acl: ${tsigKeyName(h)}` : ""}`;
  })
  .join("\n")}
`;
}

function unboundConfig(zoneNames: string[]): string {
  const dir = DNS_DIR;
  return `server:
    verbosity: 1
    interface: ${SERVICES_IP4}
    interface: ${SERVICES_IP6}
    port: 53
    access-control: ${LAB_NET4} allow
    access-control: ${LAB_NET6} allow
    username: ""
    chroot: ""
    directory: "${dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    do-daemonize: no
    do-not-query-localhost: no
    module-config: "validator iterator"
    trust-anchor-file: "${dir}/anchors"
    val-log-level: 2
    # ACME challenges appear shortly after a miss and change within seconds (pebble asks this
    # resolver, where Let's Encrypt asks the authoritative servers): keep nothing long.
    cache-max-negative-ttl: 1
    cache-max-ttl: 1
    # unbound answers the documentation ranges' reverse zones itself (RFC 6303); the lab
    # lives in them, so its own server answers instead.
    local-zone: "${REVERSE_ZONE4}." nodefault
    local-zone: "8.b.d.0.1.0.0.2.ip6.arpa." nodefault
${zoneNames.map((z) => `stub-zone:\n    name: "${z}."\n    stub-addr: ${NS_IP4}\n`).join("")}`;
}

/** Writes zones and configs, starts knot, reads its keys as trust anchors, starts unbound. */
export async function startDns(hosts: LabHost[], keysOf: (h: LabHost) => LabKeys): Promise<void> {
  const zs = zones(hosts, keysOf);
  const names = Object.keys(zs);
  for (const d of ["zones", "knot-db", "knot-run"])
    mkdirSync(join(DNS_DIR, d), { recursive: true });
  for (const [name, text] of Object.entries(zs))
    writeFileSync(join(DNS_DIR, "zones", `${name}.zone`), text);
  writeFileSync(join(DNS_DIR, "knot.conf"), knotConfig(names, hosts));
  const knotLog = join(DNS_DIR, "knot.log");
  daemon(
    "ip",
    ["netns", "exec", NETNS, "knotd", "-c", join(DNS_DIR, "knot.conf")],
    knotLog,
    join(DNS_DIR, "knot.pid"),
  );

  // Every zone signed: its key-signing key is the resolver's trust anchor.
  const anchors: string[] = [];
  for (const z of names) {
    const ksk = await waitFor(
      `knot to sign ${z}`,
      30_000,
      () =>
        query(NS_IP4, `${z}.`, "DNSKEY", "+short")
          ?.split("\n")
          .find((l) => l.startsWith("257 ")),
      () => tail(knotLog),
      500,
    );
    anchors.push(`${z}. IN DNSKEY ${ksk}`);
  }
  writeFileSync(join(DNS_DIR, "anchors"), anchors.join("\n") + "\n");
  writeFileSync(join(DNS_DIR, "unbound.conf"), unboundConfig(names));
  runIn(NETNS, "unbound-checkconf", [join(DNS_DIR, "unbound.conf")]);
  const unboundLog = join(DNS_DIR, "unbound.log");
  daemon(
    "ip",
    ["netns", "exec", NETNS, "unbound", "-d", "-c", join(DNS_DIR, "unbound.conf")],
    unboundLog,
    join(DNS_DIR, "unbound.pid"),
  );
  await waitFor(
    "the validating resolver",
    30_000,
    () => {
      const out = query(SERVICES_IP4, `${hosts[0].config.domain}.`, "SOA", "+dnssec");
      return out && / ad[ ;]/.test(out) ? true : undefined;
    },
    () => tail(unboundLog),
    500,
  );
}

/** One quick query from inside the lab; undefined when the server does not answer (yet). */
function query(server: string, name: string, type: string, ...flags: string[]): string | undefined {
  try {
    return runIn(NETNS, "kdig", [`@${server}`, name, type, "+timeout=1", "+retry=0", ...flags], {
      stdio: "pipe",
    });
  } catch {
    return undefined;
  }
}

/**
 * The lab's part of a host's own resolver: the lab has no root servers, so the host's
 * Unbound forwards to the lab resolver and validates the lab's zones with their keys, the
 * way it validates real zones from the root key in production.
 */
export function hostResolverLabConfig(): string {
  const anchors = readFileSync(join(DNS_DIR, "anchors"), "utf8").trim().split("\n");
  return `# The lab only: no root servers here, so forward to the lab resolver and trust the lab's
# zone keys (production validates from the root key).
server:
${anchors.map((a) => `    trust-anchor: "${a}"`).join("\n")}
    local-zone: "${REVERSE_ZONE4}." nodefault
    local-zone: "8.b.d.0.1.0.0.2.ip6.arpa." nodefault
forward-zone:
    name: "."
    forward-addr: ${SERVICES_IP4}
`;
}
