// Pure: the files that provisioning installs on a running host, the bundle they travel in
// and the command that installs them. Pulumi's remote command and the lab send exactly this.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ADMIN_USER, renderNftables } from "../cloud-init/render";
import type { InboundRule } from "./firewall";

export interface HostFile {
  /** Absolute path on the host. */
  path: string;
  /** Octal mode, e.g. `0640`. */
  mode: string;
  owner: string;
  group: string;
  content: string;
}

/** Where provisioning keeps the mail host's keys. */
export const KEY_DIR = "/etc/mailstack";

export const dkimKeyPath = (selector: string) => `${KEY_DIR}/dkim/${selector}.key`;
export const TLS_KEY_PATH = `${KEY_DIR}/tls/mail.key`;

export interface HostFileSettings {
  /** People's SSH public keys (`sshPublicKeys`). */
  adminKeys: string[];
  /** The deployment key, always kept so the next deployment can log in. */
  deployPublicKey: string;
  /** The configured inbound rules. */
  firewall: InboundRule[];
  dkimSelector: string;
  dkimPrivateKeyPem: string;
  tlsPrivateKeyPem: string;
}

/** Settings and secrets that may change on a running host, as files. */
export function hostFiles(s: HostFileSettings): HostFile[] {
  const lines = (items: string[]) => items.map((l) => `${l.trim()}\n`).join("");
  return [
    {
      path: `/home/${ADMIN_USER}/.ssh/authorized_keys`,
      mode: "0600",
      owner: ADMIN_USER,
      group: ADMIN_USER,
      content: lines([s.deployPublicKey, ...s.adminKeys]),
    },
    {
      path: "/etc/nftables.conf",
      mode: "0755",
      owner: "root",
      group: "root",
      content: renderNftables(s.firewall),
    },
    {
      // Rspamd signs with it: readable by its group, nobody else.
      path: dkimKeyPath(s.dkimSelector),
      mode: "0640",
      owner: "root",
      group: "_rspamd",
      content: s.dkimPrivateKeyPem,
    },
    {
      // Postfix and Dovecot read it as root before dropping privileges.
      path: TLS_KEY_PATH,
      mode: "0600",
      owner: "root",
      group: "root",
      content: s.tlsPrivateKeyPem,
    },
  ];
}

/** The standard input of the provisioning command: one line per file, content in base64. */
export function renderBundle(files: HostFile[]): string {
  return files
    .map((f) => {
      for (const [field, value] of Object.entries({
        path: f.path,
        owner: f.owner,
        group: f.group,
      })) {
        if (!/^[A-Za-z0-9_./-]+$/.test(value))
          throw new Error(`host file ${field} '${value}' has unsafe characters`);
      }
      if (!/^0[0-7]{3}$/.test(f.mode))
        throw new Error(`host file ${f.path}: mode '${f.mode}' is not octal`);
      return `${f.path} ${f.mode} ${f.owner} ${f.group} ${Buffer.from(f.content, "utf8").toString("base64")}\n`;
    })
    .join("");
}

/** Quotes a string for a POSIX shell. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** The provisioning script, a real file (checked by shellcheck). */
export const PROVISION_SCRIPT = readFileSync(
  join(__dirname, "..", "cloud-init", "files", "mailstack-provision"),
  "utf8",
);

/** The command the admin account runs over SSH: the script, as root, reading the bundle. */
export function provisionCommand(): string {
  return `sudo -n /bin/bash -c ${shellQuote(PROVISION_SCRIPT)} mailstack-provision`;
}
