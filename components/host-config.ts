// Pure: the mail daemons' configuration. The files themselves live under cloud-init/host/,
// laid out as on the host (etc/postfix/main.cf is /etc/postfix/main.cf); the stack's settings
// enter them through a few named slots, `{{name}}`. The tables that list users, aliases and
// passwords are data, rendered here. Everything travels in the provisioning bundle, so a
// change never replaces the server.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { HostFile } from "./host-files";
import { MAIL_ROOT } from "../cloud-init/render";
import { MAIL_PROTOCOLS, type MailProtocol, type UserSpec } from "./config";

/** The tree that mirrors the host's paths. */
export const HOST_TREE = join(__dirname, "..", "cloud-init", "host");

/** The values a configuration file may name, and nothing else. */
export interface HostSlots {
  mailHost: string;
  domain: string;
  /** The addresses that carry the PTR: Postfix sends from them. */
  ipv4: string;
  ipv6: string;
  dkimSelector: string;
  /** journald keeps logs this many days. */
  logRetentionDays: number;
  /** postscreen's DNS blocklists with weights; empty turns them off. */
  postscreenDnsblSites: string;
  /** Postfix `relayhost`, empty for direct delivery. */
  relayHost: string;
  /** `yes` when the relay host takes a SASL login. */
  relayAuth: "yes" | "no";
  /** Rspamd's antivirus module on or off. */
  clamav: boolean;
  /** `yes` when `monitoringAllowedIps` names someone: the exporters run. */
  monitoring: "yes" | "no";
  /** Dovecot's OpenMetrics port: 9900 with monitoring, 0 (no listener) without. */
  dovecotMetricsPort: number;
  /** The host's addresses on the DNS blocklists: `<list> <address> <name>` lines. */
  blocklistQueries: string;
}

/** The blocklists postscreen asks (through the host's own resolver), weighted. */
export const POSTSCREEN_DNSBL_SITES =
  "zen.spamhaus.org=127.0.0.[2..11]*3, bl.mailspike.net=127.0.0.[2..4]*2, " +
  "list.dnswl.org=127.0.[0..255].[1..3]*-2";

interface ManifestEntry {
  mode: string;
  owner: string;
  group: string;
}

const ROOT_FILE: ManifestEntry = { mode: "0644", owner: "root", group: "root" };

/**
 * Owner and mode of the tree's files that are not root's 0644, by their path on the host.
 * A test checks that each of them is in the tree.
 */
export const MANIFEST_EXCEPTIONS: Record<string, ManifestEntry> = {
  "/etc/dovecot/dovecot.conf": { mode: "0644", owner: "root", group: "dovecot" },
};

/** Paths of every file in the tree, as on the host, sorted. */
export function treePaths(dir = HOST_TREE): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...treePaths(p));
    else out.push(`/${relative(HOST_TREE, p)}`);
  }
  return out.sort();
}

/** Fills `{{slot}}` placeholders; an unknown slot name is an error, not an empty string. */
export function fillSlots(path: string, text: string, slots: HostSlots): string {
  return text.replace(/\{\{([A-Za-z0-9]+)\}\}/g, (_, name: string) => {
    if (!(name in slots)) throw new Error(`${path}: unknown slot {{${name}}}`);
    return String(slots[name as keyof HostSlots]);
  });
}

/** The configuration tree, rendered for one host. */
export function configFiles(slots: HostSlots): HostFile[] {
  return treePaths().map((path) => {
    const entry = MANIFEST_EXCEPTIONS[path] ?? ROOT_FILE;
    const text = readFileSync(join(HOST_TREE, path), "utf8");
    return { path, ...entry, content: fillSlots(path, text, slots) };
  });
}

/** A user with the hash of the password the stack generated. */
export interface MailUser extends UserSpec {
  /** The main password's hash (dovecotPasswordHash). */
  passwordHash: string;
  /** Each device's app password hash (dovecotAppPasswordHash), in the order of the config. */
  appPasswordHashes: { name: string; protocols: MailProtocol[]; hash: string }[];
}

const HEADER = "# Managed by mailstack: generated from the stack's users and aliases.\n";

/** Maildir home of an address: /srv/mail/<domain>/<local part>. */
export function mailHome(address: string): string {
  const [local, domain] = address.split("@");
  return `${MAIL_ROOT}/${domain}/${local}`;
}

/**
 * Dovecot's userdb, a passwd-file: one line per user, `user:::::::` with the quota as an
 * extra field. No passwords: those are in dovecotPasswords.
 */
export function dovecotUsers(users: UserSpec[]): string {
  return (
    HEADER +
    users
      .map((u) => {
        const extra = u.quotaMb ? `userdb_quota_storage_size=${u.quotaMb}M` : "";
        return `${u.address}:::::::${extra}\n`;
      })
      .join("")
  );
}

/** The device name of a user's main password in dovecotPasswords. */
export const MAIN_PASSWORD_DEVICE = "-";

/**
 * What the passdb (cloud-init/host/etc/dovecot/mailstack-passdb.lua) checks a login against:
 * one line per password, `address device protocols hash`. The main password is device `-`
 * and opens every protocol, unless the user has appPasswordsOnly; each app password opens
 * its own protocols. Root and Dovecot only.
 */
export function dovecotPasswords(users: MailUser[]): string {
  const line = (address: string, device: string, protocols: readonly string[], hash: string) =>
    `${address} ${device} ${protocols.join(",")} ${hash}\n`;
  return (
    HEADER +
    "# address device protocols hash\n" +
    users
      .flatMap((u) => [
        ...(u.appPasswordsOnly
          ? []
          : [line(u.address, MAIN_PASSWORD_DEVICE, MAIL_PROTOCOLS, u.passwordHash)]),
        ...u.appPasswordHashes.map((d) => line(u.address, d.name, d.protocols, d.hash)),
      ])
      .join("")
  );
}

/** Follows group aliases to the mailboxes they end at. */
function mailboxesOf(
  address: string,
  users: UserSpec[],
  aliases: Record<string, string[]>,
  seen: string[] = [],
): string[] {
  const user = users.find((u) => u.address === address || u.aliases.includes(address));
  if (user) return [user.address];
  if (seen.includes(address) || !(address in aliases)) return [];
  return [
    ...new Set(aliases[address].flatMap((t) => mailboxesOf(t, users, aliases, [...seen, address]))),
  ].sort();
}

/** Postfix tables: the mailboxes, the aliases, and who may send as which address. */
export function postfixTables(
  users: UserSpec[],
  aliases: Record<string, string[]>,
): { vmailbox: string; virtual: string; senderLogin: string } {
  const vmailbox = users.map((u) => `${u.address} OK\n`).join("");
  const virtual = [
    ...users.flatMap((u) => u.aliases.map((a) => `${a} ${u.address}\n`)),
    ...Object.keys(aliases)
      .sort()
      .map((a) => `${a} ${aliases[a].join(",")}\n`),
  ].join("");
  const owners = new Map<string, string[]>();
  for (const u of users) for (const a of [u.address, ...u.aliases]) owners.set(a, [u.address]);
  for (const a of Object.keys(aliases)) owners.set(a, mailboxesOf(a, users, aliases));
  const senderLogin = [...owners.keys()]
    .sort()
    .filter((a) => owners.get(a)!.length > 0)
    .map((a) => `${a} ${owners.get(a)!.join(",")}\n`)
    .join("");
  return {
    vmailbox: HEADER + vmailbox,
    virtual: HEADER + virtual,
    senderLogin: HEADER + senderLogin,
  };
}

/** The relay host's login and TLS policy (empty tables without a relay host). */
export function relayTables(relay: { host: string; user: string; password: string } | undefined): {
  password: string;
  tlsPolicy: string;
} {
  const head = "# Managed by mailstack: mailstack:relayHost.\n";
  if (!relay) return { password: head, tlsPolicy: head };
  return {
    password: `${head}${relay.host} ${relay.user}:${relay.password}\n`,
    // The password never crosses an unencrypted or unverified connection.
    tlsPolicy: `${head}${relay.host} secure\n`,
  };
}
