// Pure renderer: HostSpec -> "#cloud-config" text. Deterministic (sorted keys, no clocks, no
// randomness): on Hetzner one changed byte of userData replaces the server. So userData holds
// only what the first boot needs and a running host never changes: the accounts, the host
// key, the deployment program, SSH and firewall settings for the first minutes, and the mount
// of the mail volume. Everything else (packages, configuration, secrets, the full SSH and
// firewall settings) is installed by provisioning, and a change to it never replaces the
// server.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import type { InboundRule } from "../components/firewall";
import { isIpv6Cidr } from "../components/validate";

/** Where the mail volume is mounted; Maildirs, queues' long-term data and indexes live here. */
export const MAIL_ROOT = "/srv/mail";

/** The people's account: their keys log in here, then use sudo. */
export const ADMIN_USER = "admin";

/**
 * The deployment's account: its key runs `mailstack-deploy` and nothing else (no shell, no
 * forwarding, no other command as root).
 */
export const DEPLOY_USER = "deploy";

/** Where sshd reads each account's keys: root's files, which no account can change. */
export const AUTHORIZED_KEYS_DIR = "/etc/ssh/authorized_keys";

/** The program the deployment key is bound to. */
export const DEPLOY_PROGRAM = "/usr/local/sbin/mailstack-deploy";

/** Hetzner's metadata service; it serves userData, so only root may reach it. */
export const METADATA_ADDRESS = "169.254.169.254";

export interface HostSpec {
  /** Host label, e.g. `mail`. */
  hostname: string;
  /** Fully qualified host name, e.g. `mail.example.eu`. */
  fqdn: string;
  /**
   * The deployment key's public half: the only key userData authorizes, bound to
   * `mailstack-deploy`. People's keys are installed by provisioning, so adding an admin
   * never replaces the server.
   */
  deployPublicKey: string;
  /** The pinned SSH host key, OpenSSH format. The only secret userData carries. */
  hostKey: { privateOpenssh: string; publicOpenssh: string };
  /** Block device of the mail volume, e.g. `/dev/disk/by-id/scsi-0HC_Volume_123`. */
  volumeDevice: string;
}

/** Where the first boot's SSH settings go: after the full ones, which provisioning installs. */
export const FIRST_BOOT_SSHD_CONF = "/etc/ssh/sshd_config.d/90-mailstack-first-boot.conf";

const FILES = join(__dirname, "files");
const file = (name: string) => readFileSync(join(FILES, name), "utf8");

interface WriteFile {
  path: string;
  content: string;
  owner: string;
  permissions: string;
}

export function renderCloudInit(spec: HostSpec): string {
  const writeFiles: WriteFile[] = [
    {
      path: FIRST_BOOT_SSHD_CONF,
      content: file("sshd-first-boot.conf"),
      owner: "root:root",
      permissions: "0644",
    },
    {
      // SSH only, until provisioning installs the configured firewall at the same path.
      path: "/etc/nftables.conf",
      content: file("nftables-first-boot.conf"),
      owner: "root:root",
      permissions: "0755",
    },
    {
      path: "/usr/local/sbin/mailstack-bootstrap",
      content: file("mailstack-bootstrap"),
      owner: "root:root",
      permissions: "0755",
    },
    {
      path: DEPLOY_PROGRAM,
      content: file("mailstack-deploy"),
      owner: "root:root",
      permissions: "0755",
    },
    {
      // The key can run the deployment program and nothing else, without a terminal or
      // forwarding, whatever command the client sends.
      path: `${AUTHORIZED_KEYS_DIR}/${DEPLOY_USER}`,
      content: `restrict,command="sudo -n ${DEPLOY_PROGRAM}" ${spec.deployPublicKey.trim()}\n`,
      owner: "root:root",
      permissions: "0644",
    },
    {
      // The only thing the deployment account may run as root; it learns the requested
      // action from SSH_ORIGINAL_COMMAND. No arguments are allowed ("").
      path: "/etc/sudoers.d/mailstack-deploy",
      content: [
        "# Managed by mailstack.",
        `Defaults:${DEPLOY_USER} env_keep += "SSH_ORIGINAL_COMMAND"`,
        `${DEPLOY_USER} ALL=(root) NOPASSWD: ${DEPLOY_PROGRAM} ""`,
        "",
      ].join("\n"),
      owner: "root:root",
      permissions: "0440",
    },
  ];

  const doc = {
    hostname: spec.hostname,
    fqdn: spec.fqdn,
    prefer_fqdn_over_hostname: false,
    manage_etc_hosts: true,

    // Two accounts, key-only, their keys in root's files (AuthorizedKeysFile): people log in
    // as admin and use sudo; the deployment key runs one program. No default distribution
    // user, no root login.
    users: [
      {
        name: ADMIN_USER,
        gecos: "mailstack admin",
        groups: ["adm", "sudo"],
        shell: "/bin/bash",
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        lock_passwd: true,
      },
      {
        name: DEPLOY_USER,
        gecos: "mailstack deployment",
        shell: "/bin/sh",
        lock_passwd: true,
      },
    ],
    disable_root: true,
    ssh_pwauth: false,

    // The host key Pulumi generated replaces any the image brought. Keys are generated only
    // for listed types whose file is missing: the Ed25519 one is given, so none is made.
    ssh_deletekeys: true,
    ssh_genkeytypes: ["ed25519"],
    ssh_keys: {
      ed25519_private: ensureNewline(spec.hostKey.privateOpenssh),
      ed25519_public: spec.hostKey.publicOpenssh.trim(),
    },

    // Hetzner volumes come formatted (ext4); cloud-init never formats here, so an attached
    // volume that already holds mail can only be mounted, never wiped.
    mounts: [
      [
        spec.volumeDevice,
        MAIL_ROOT,
        "ext4",
        "defaults,nofail,discard,x-systemd.device-timeout=60s",
        "0",
        "2",
      ],
    ],

    write_files: writeFiles,
    runcmd: [["/usr/local/sbin/mailstack-bootstrap"]],
  };

  return "#cloud-config\n" + stringify(doc, { sortMapEntries: true, lineWidth: 0 });
}

function ensureNewline(text: string): string {
  return text.endsWith("\n") ? text : `${text}\n`;
}

/**
 * The host firewall. Its own table, replaced as a whole on reload (the empty declaration
 * makes the delete safe on first load), so tables that Fail2Ban adds are left alone.
 */
export function renderNftables(rules: InboundRule[]): string {
  const accept: string[] = [];
  for (const r of rules) {
    const match =
      r.protocol === "icmp" ? "meta l4proto { icmp, ipv6-icmp }" : `tcp dport ${r.port}`;
    const comment = `comment "${r.description}"`;
    if (r.sources.includes("0.0.0.0/0") && r.sources.includes("::/0")) {
      accept.push(`${match} accept ${comment}`);
      continue;
    }
    const v4 = r.sources.filter((c) => !isIpv6Cidr(c));
    const v6 = r.sources.filter((c) => isIpv6Cidr(c));
    if (v4.length > 0) accept.push(`ip saddr { ${v4.join(", ")} } ${match} accept ${comment}`);
    if (v6.length > 0) accept.push(`ip6 saddr { ${v6.join(", ")} } ${match} accept ${comment}`);
  }
  const indent = (lines: string[]) => lines.map((l) => `    ${l}`).join("\n");
  return `#!/usr/sbin/nft -f
# Managed by mailstack: the host firewall, a second layer behind the provider firewall,
# rendered from the same rule list.

table inet mailstack {}
delete table inet mailstack

table inet mailstack {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid drop
    # Loopback addresses belong on lo; arriving anywhere else, they are forged.
    iif != "lo" ip saddr 127.0.0.0/8 drop
    iif != "lo" ip daddr 127.0.0.0/8 drop
    iif != "lo" ip6 saddr ::1 drop
    iif != "lo" ip6 daddr ::1 drop
    iif "lo" accept
    # DHCPv4 replies for the public interface.
    udp sport 67 udp dport 68 accept
${indent(accept)}
  }

  chain forward {
    type filter hook forward priority filter; policy drop;
  }

  chain output {
    type filter hook output priority filter; policy accept;
    # The metadata service serves userData, which holds the SSH host key: root only.
    ip daddr ${METADATA_ADDRESS} meta skuid != 0 reject comment "metadata service: root only"
  }
}
`;
}
