// The lab's fixed layout: one private segment in documentation address ranges, inside a
// network namespace with no route out, holding the DNS server, the resolver, the ACME CA and
// two mail hosts. This machine has no leg on it: every lab command runs inside the namespace
// (`ip netns exec`), so the lab's addresses can never reach, or clash with, a real network.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseConfig, type MailStackConfig } from "../components/config";

export const NETNS = "mailstack-lab";
export const BRIDGE = "mslab0";
export const STATE_DIR = process.env.MAILSTACK_LAB_STATE ?? "/var/lib/mailstack-lab";
export const CACHE_DIR = process.env.MAILSTACK_LAB_CACHE ?? "/var/cache/mailstack-lab";

export const PREFIX4 = 24;
export const PREFIX6 = 64;
/** Resolver (unbound) and ACME CA (pebble). */
export const SERVICES_IP4 = "198.51.100.1";
export const SERVICES_IP6 = "2001:db8:1::1";
/** Authoritative DNS (knot). */
export const NS_IP4 = "198.51.100.2";
export const NS_IP6 = "2001:db8:1::2";
/** A second client address, added by tests that must not disturb others (bans). */
export const LAB_CLIENT_IP4 = "198.51.100.99";
/** An office's shared address (one NAT for several people), for the account throttle's test. */
export const LAB_OFFICE_IP4 = "198.51.100.98";
/**
 * The app-passwords suite's devices: their wrong passwords on purpose are counted by the
 * account throttle per address, apart from other suites' on the lab's own address.
 */
export const LAB_DEVICES_IP4 = "198.51.100.97";
export const LAB_NET4 = "198.51.100.0/24";
export const LAB_NET6 = "2001:db8:1::/64";
export const REVERSE_ZONE4 = "100.51.198.in-addr.arpa";
export const REVERSE_ZONE6 = "0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";

/** Alice's public key; its fingerprint is ALICE_OPENPGP_FINGERPRINT. */
export const ALICE_OPENPGP_KEY = readFileSync(join(__dirname, "openpgp", "alice.asc"), "utf8");
export const ALICE_OPENPGP_FINGERPRINT = "AFA7C7BF4E3D1C234CBBDD969967938165E1393E";

export const ACME_DIRECTORY = `https://${SERVICES_IP4}:14000/dir`;
export const ACME_MANAGEMENT = `https://${SERVICES_IP4}:15000`;

export interface LabHost {
  /** Short name: directory, tap device, volume serial. */
  name: string;
  ipv4: string;
  ipv6: string;
  mac: string;
  memoryMb: number;
  config: MailStackConfig;
}

function host(name: string, n: number, clamav: boolean): LabHost {
  const domain = `${name}.example`;
  return {
    name,
    ipv4: `198.51.100.${n}`,
    ipv6: `2001:db8:1::${n.toString(16)}`,
    mac: `52:54:00:33:64:${n.toString(16).padStart(2, "0")}`,
    memoryMb: clamav ? 2560 : 1536,
    config: parseConfig({
      domain,
      cloudflareZoneId: "0".repeat(32),
      // Not used: lab hosts back up to the lab's own S3 server (lab/bucket.ts).
      cloudflareAccountId: "2".repeat(32),
      // Replaced by the lab admin key at run time; a valid placeholder passes validation.
      sshPublicKeys: [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs lab",
      ],
      sshAllowedIps: [LAB_NET4, LAB_NET6],
      // The lab's Prometheus scrapes from the services address; every other address of the
      // segment (LAB_CLIENT_IP4) must find the exporters closed.
      monitoringAllowedIps: [`${SERVICES_IP4}/32`, `${SERVICES_IP6}/128`],
      users: [
        // Alice publishes her OpenPGP key in the Web Key Directory (one key, a user ID per
        // lab domain; the public half only, made for the lab).
        // Her phone's app password opens IMAP and SMTP; the scanner's sends mail only.
        {
          address: `alice@${domain}`,
          aliases: [`sales@${domain}`],
          openpgpKey: ALICE_OPENPGP_KEY,
          appPasswords: ["phone", { name: "scanner", protocols: ["smtp"] }],
        },
        { address: `bob@${domain}` },
        // A small quota, to be filled by the tests.
        { address: `carol@${domain}`, quotaMb: 1 },
        // App passwords only: his main password opens nothing.
        { address: `dave@${domain}`, appPasswords: ["laptop"], appPasswordsOnly: true },
      ],
      aliases: { [`team@${domain}`]: [`alice@${domain}`, `bob@${domain}`] },
      // The lab has no DNS blocklists to ask.
      dnsbl: false,
      acmeEmail: `hostmaster@${domain}`,
      // The narrowed path: _acme-challenge.<mail host> is a CNAME into a zone of its own,
      // the only zone the host's TSIG key may update (lab/dns.ts).
      acmeChallengeZone: `${name}-acme.example`,
      acmeChallengeZoneId: "1".repeat(32),
      // Not used: lab hosts write their challenges to knot by RFC 2136 (lab/acme.ts).
      acmeDnsToken: "unused-in-the-lab",
      acmeStaging: false,
      clamav,
      protect: false,
    }),
  };
}

/** The mail host under test, and an independent peer for a second domain. */
export const HOSTS: LabHost[] = [host("alpha", 10, true), host("beta", 11, false)];
