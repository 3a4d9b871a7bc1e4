// The DNS blocklists a mail host's addresses are looked up on: by `npm run check` from
// outside, and by the host itself every quarter hour (mailstack-metrics), from one list.
import * as ipaddr from "ipaddr.js";

/** The reverse name of an address (in-addr.arpa or ip6.arpa). */
export function reverseName(address: string): string {
  const ip = ipaddr.parse(address);
  if (ip.kind() === "ipv4") return `${ip.toByteArray().reverse().join(".")}.in-addr.arpa`;
  const hex = ip
    .toByteArray()
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
  return `${[...hex].reverse().join(".")}.ip6.arpa`;
}

/**
 * DNS blocklists, with the address families each one lists. Each list answers its test
 * point 127.0.0.2 as listed: the check asks that first, so a list that refuses the
 * resolver (Spamhaus refuses public resolvers) shows as "cannot tell", not as clean.
 */
export const BLOCKLISTS: { zone: string; ipv6: boolean }[] = [
  { zone: "zen.spamhaus.org", ipv6: true },
  { zone: "bl.spamcop.net", ipv6: false },
  { zone: "b.barracudacentral.org", ipv6: false },
  { zone: "psbl.surriel.com", ipv6: false },
  { zone: "bl.mailspike.net", ipv6: false },
];

/** The name to ask a blocklist for an address: reversed octets or nibbles, then the zone. */
export function blocklistName(address: string, zone: string): string {
  return `${reverseName(address).replace(/\.(in-addr|ip6)\.arpa$/, "")}.${zone}`;
}

/**
 * What the host asks about its own addresses, one `<list> <address> <name>` line each, for
 * host.conf (BLOCKLIST_QUERIES).
 */
export function blocklistQueries(ipv4: string, ipv6: string): string {
  return BLOCKLISTS.flatMap((b) => (b.ipv6 ? [ipv4, ipv6] : [ipv4]).map((a) => [b.zone, a]))
    .map(([zone, address]) => `${zone} ${address} ${blocklistName(address, zone)}`)
    .join("\n");
}
