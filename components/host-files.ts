// Pure: the files that provisioning installs on a running host, the bundle they travel in
// and the command that installs them. Pulumi's remote command and the lab send exactly this.
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { hostPackages } from "../cloud-init/packages";
import { ADMIN_USER, AUTHORIZED_KEYS_DIR, renderNftables } from "../cloud-init/render";
import { blocklistQueries } from "./blocklists";
import { FIDO2_KEY_TYPES, type AdminMfa, type MailStackConfig } from "./config";
import { DOVECOT_METRICS_PORT, inboundRules, type InboundRule } from "./firewall";
import {
  configFiles,
  dovecotPasswords,
  dovecotUsers,
  postfixTables,
  relayTables,
  POSTSCREEN_DNSBL_SITES,
  type MailUser,
} from "./host-config";
import { dovecotAppPasswordHash, dovecotPasswordHash } from "./passwords";
import { acmeChallengeName } from "./records";

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

/**
 * Dovecot's mail_crypt global key pair (dovecot.conf names these paths). Under /etc/dovecot,
 * so provisioning restarts Dovecot when they change; on the root disk, never on the volume
 * whose mail they unlock.
 */
export const MAIL_CRYPT_DIR = "/etc/dovecot/mail-crypt";
export const MAIL_CRYPT_PRIVATE_KEY_PATH = `${MAIL_CRYPT_DIR}/private.pem`;
export const MAIL_CRYPT_PUBLIC_KEY_PATH = `${MAIL_CRYPT_DIR}/public.pem`;

/** A mail_crypt key pair as PEM: the private half PKCS#8, the public half SPKI. */
export interface MailCryptKey {
  privateKeyPem: string;
  publicKeyPem: string;
}

/**
 * Refuses a mail_crypt key Dovecot could not read the mail back with (both seen on 2.4.1):
 * - a private key in SEC1 ("EC PRIVATE KEY"): "Couldn't parse private key ...: Unknown key
 *   format", and LMTP and IMAP stop for every user;
 * - a public key of another pair: Dovecot encrypts with the public key alone, so mail is
 *   accepted and written to a key nobody holds ("Private key not available" on every read).
 */
export function checkMailCryptKey(key: MailCryptKey): void {
  const what = "the mail_crypt key";
  if (!/^-----BEGIN PRIVATE KEY-----\n/.test(key.privateKeyPem)) {
    throw new Error(
      `${what}: the private key must be PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----", @pulumi/tls ` +
        `privateKeyPemPkcs8); got "${key.privateKeyPem.split("\n")[0]}"`,
    );
  }
  const der = (k: KeyObject) => k.export({ type: "spki", format: "der" });
  const own = der(createPublicKey(createPrivateKey(key.privateKeyPem)));
  if (!own.equals(der(createPublicKey(key.publicKeyPem)))) {
    throw new Error(`${what}: the public key is not the private key's own`);
  }
}

/**
 * How the host writes its ACME DNS-01 challenge: through Cloudflare's API into one zone, or
 * by RFC 2136 (the lab's knot). Either way only into `AcmeSettings.challenge.zone`.
 */
export type AcmeDns =
  | { kind: "cloudflare"; apiToken: string; zoneId: string }
  | {
      kind: "rfc2136";
      server: string;
      port?: number;
      keyName: string;
      keySecret: string;
      algorithm: string;
    };

export interface AcmeSettings {
  /** ACME directory URL. */
  directory: string;
  email: string;
  /** Where the TXT record goes (records.ts acmeChallengeName). */
  challenge: { name: string; zone: string };
  dns: AcmeDns;
  /** The CA of a private ACME server (the lab's), trusted for talking to that server only. */
  caCertificatePem?: string;
}

export const LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory";
export const LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory";

/** The ACME settings of a stack: Let's Encrypt (or its staging CA) via Cloudflare's API. */
export function stackAcme(cfg: MailStackConfig, cloudflareToken: string): AcmeSettings {
  return {
    directory: cfg.acmeStaging ? LETS_ENCRYPT_STAGING : LETS_ENCRYPT,
    email: cfg.acmeEmail,
    challenge: acmeChallengeName(cfg),
    dns: {
      kind: "cloudflare",
      apiToken: cloudflareToken,
      zoneId: cfg.acmeChallengeZoneId ?? cfg.cloudflareZoneId,
    },
  };
}

export interface HostFileSettings {
  /** Install and run ClamAV (its packages join the list). */
  clamav: boolean;
  /** People's SSH public keys (`sshPublicKeys`). */
  adminKeys: string[];
  /** The second factor people's SSH logins need (`adminMfa`). */
  adminMfa: AdminMfa;
  /** The admin account's TOTP secret (RFC 6238, 20 bytes as hex): with adminMfa totp. */
  adminTotpSecretHex?: string;
  /** The configured inbound rules. */
  firewall: InboundRule[];
  dkimSelector: string;
  dkimPrivateKeyPem: string;
  tlsPrivateKeyPem: string;
  /** Dovecot's mail_crypt global key pair: mail on the volume is encrypted to it. */
  mailCrypt: MailCryptKey;
  /** The mail host name, the certificate's only name. */
  fqdn: string;
  acme: AcmeSettings;
}

/** Cloudflare's DNS answers within seconds; give its edge a margin. A lab server is at once. */
const PROPAGATION_SECONDS = { cloudflare: 30, rfc2136: 2 } as const;

/** The DNS API credential, read by mailstack-acme-hook (`key = value` lines). */
function acmeCredentials(dns: AcmeDns): string {
  if (dns.kind === "cloudflare") {
    return [
      `dns_cloudflare_api_token = ${dns.apiToken}`,
      `dns_cloudflare_zone_id = ${dns.zoneId}`,
      "",
    ].join("\n");
  }
  return [
    `dns_rfc2136_server = ${dns.server}`,
    `dns_rfc2136_port = ${dns.port ?? 53}`,
    `dns_rfc2136_name = ${dns.keyName}`,
    `dns_rfc2136_secret = ${dns.keySecret}`,
    `dns_rfc2136_algorithm = ${dns.algorithm.toLowerCase()}`,
    "",
  ].join("\n");
}

const script = (name: string) =>
  readFileSync(join(__dirname, "..", "cloud-init", "files", name), "utf8");

/** pam_oath's file of the admin account's TOTP secret; pam_oath notes the last code used in it. */
export const ADMIN_TOTP_PATH = `${KEY_DIR}/admin.oath`;
/** The PAM service of people's SSH logins (sshd's PAMServiceName for the admin account). */
export const ADMIN_PAM_SERVICE = "mailstack-admin";

/**
 * sshd's settings for people's logins (the admin account) after the shared ones: the second
 * factor of `adminMfa`. The deployment account is never matched: its key works alone.
 */
function adminMfaSshd(mode: AdminMfa): string {
  if (mode === "off") return "";
  const body =
    mode === "totp"
      ? [
          "# mailstack:adminMfa totp: the key, then a code from the authenticator app (PAM,",
          `# /etc/pam.d/${ADMIN_PAM_SERVICE}).`,
          `Match User ${ADMIN_USER}`,
          "  AuthenticationMethods publickey,keyboard-interactive:pam",
          "  KbdInteractiveAuthentication yes",
          `  PAMServiceName ${ADMIN_PAM_SERVICE}`,
        ]
      : [
          "# mailstack:adminMfa fido2: FIDO2 security keys only, each signature with the holder",
          "# verified by the key (PIN or fingerprint) as well as touched.",
          `Match User ${ADMIN_USER}`,
          `  PubkeyAcceptedAlgorithms ${FIDO2_KEY_TYPES.join(",")}`,
          "  PubkeyAuthOptions touch-required verify-required",
        ];
  return ["", ...body, ""].join("\n");
}

/** With adminMfa totp: the secret for pam_oath and the PAM service that asks for the code. */
function adminTotpFiles(s: HostFileSettings): HostFile[] {
  if (s.adminMfa !== "totp") return [];
  const secret = s.adminTotpSecretHex ?? "";
  if (!/^([0-9a-f]{2}){20,}$/.test(secret)) {
    throw new Error("adminMfa totp needs adminTotpSecretHex: at least 20 bytes as lower-case hex");
  }
  return [
    {
      path: ADMIN_TOTP_PATH,
      mode: "0600",
      owner: "root",
      group: "root",
      content: `HOTP/T30/6 ${ADMIN_USER} - ${secret}\n`,
    },
    {
      path: `/etc/pam.d/${ADMIN_PAM_SERVICE}`,
      mode: "0644",
      owner: "root",
      group: "root",
      content: script("pam-mailstack-admin"),
    },
  ];
}

/** A file root owns, readable by all unless `mode` says otherwise. */
function rootFile(path: string, content: string, mode = "0644"): HostFile {
  return { path, mode, owner: "root", group: "root", content };
}

/** Settings and secrets that may change on a running host, as files. */
export function hostFiles(s: HostFileSettings): HostFile[] {
  checkMailCryptKey(s.mailCrypt);
  const lines = (items: string[]) => items.map((l) => `${l.trim()}\n`).join("");
  return [
    {
      // What provisioning installs when it is missing: the first run on a new server
      // installs it all, a later change only what it adds.
      path: "/etc/mailstack/packages.list",
      mode: "0644",
      owner: "root",
      group: "root",
      content: lines(hostPackages({ clamav: s.clamav })),
    },
    {
      // The full SSH settings; they win over the first boot's (90-mailstack-first-boot.conf).
      path: "/etc/ssh/sshd_config.d/10-mailstack.conf",
      mode: "0644",
      owner: "root",
      group: "root",
      content: script("sshd-mailstack.conf") + adminMfaSshd(s.adminMfa),
    },
    ...adminTotpFiles(s),
    {
      // People's keys, in root's file: the admin account cannot add one. The deployment
      // key's file comes with userData and is never rewritten here.
      path: `${AUTHORIZED_KEYS_DIR}/${ADMIN_USER}`,
      mode: "0644",
      owner: "root",
      group: "root",
      content: lines(s.adminKeys),
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
    {
      // Dovecot's config process reads it as root at start and hands the key to the mail
      // processes (checked on 2.4.1: LMTP and IMAP, running as vmail, decrypt with this file
      // root's 0600): nobody else reads it.
      path: MAIL_CRYPT_PRIVATE_KEY_PATH,
      mode: "0600",
      owner: "root",
      group: "root",
      content: s.mailCrypt.privateKeyPem,
    },
    {
      path: MAIL_CRYPT_PUBLIC_KEY_PATH,
      mode: "0644",
      owner: "root",
      group: "root",
      content: s.mailCrypt.publicKeyPem,
    },
    {
      path: `${KEY_DIR}/acme.conf`,
      mode: "0644",
      owner: "root",
      group: "root",
      content: [
        `MAILSTACK_FQDN=${shellQuote(s.fqdn)}`,
        `ACME_SERVER=${shellQuote(s.acme.directory)}`,
        `ACME_EMAIL=${shellQuote(s.acme.email)}`,
        `ACME_CHALLENGE_NAME=${shellQuote(s.acme.challenge.name)}`,
        `ACME_CHALLENGE_ZONE=${shellQuote(s.acme.challenge.zone)}`,
        `DNS_API=${s.acme.dns.kind}`,
        `DNS_PROPAGATION_SECONDS=${PROPAGATION_SECONDS[s.acme.dns.kind]}`,
        "",
      ].join("\n"),
    },
    {
      // The DNS API credential: it may write the challenge zone (or, without one, the mail
      // zone), so root only.
      path: `${KEY_DIR}/acme-dns.ini`,
      mode: "0600",
      owner: "root",
      group: "root",
      content: acmeCredentials(s.acme.dns),
    },
    ...(s.acme.caCertificatePem
      ? [
          {
            path: `${KEY_DIR}/acme-ca.crt`,
            mode: "0644",
            owner: "root",
            group: "root",
            content: s.acme.caCertificatePem,
          },
        ]
      : []),
    ...[
      "mailstack-cert.service",
      "mailstack-cert.timer",
      "mailstack-metrics.service",
      "mailstack-metrics.timer",
      "mailstack-report.service",
      "mailstack-report.timer",
      "mailstack-dedup.service",
      "mailstack-dedup.timer",
    ].map((name) => rootFile(`/etc/systemd/system/${name}`, script(name))),
    ...[
      "mailstack-cert",
      "mailstack-acme-hook",
      "mailstack-metrics",
      "mailstack-report",
      "mailstack-dedup",
    ].map((name) => rootFile(`/usr/local/sbin/${name}`, script(name), "0755")),
  ];
}

/**
 * Where the host's restic backs up to, and what it keeps (`mailstack:backup`). Production and
 * the lab differ only in the repository (and the lab's private CA).
 */
export interface BackupSettings {
  /** restic repository: `s3:https://<endpoint>/<bucket>[/<path>]`. */
  repository: string;
  /** S3 credentials that reach this bucket alone. */
  accessKeyId: string;
  secretAccessKey: string;
  /** restic's repository password: generated by the stack, kept and exported as a secret. */
  password: string;
  /** When the backup runs: a systemd calendar expression (`daily`, `*-*-* 03:00`). */
  schedule: string;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
  /** The CA of a private S3 server (the lab's); unset, the system's trust store decides. */
  caCertificatePem?: string;
}

/** The restic password's file on the host: with the stack's state, what decrypts a backup. */
export const BACKUP_PASSWORD_PATH = `${KEY_DIR}/backup.password`;

/**
 * The backup's files: its programs and timers (always, so a host that stops backing up keeps
 * its restore tool), its settings, and with backups on, the bucket's keys and the password.
 */
export function backupFiles(backup: BackupSettings | undefined): HostFile[] {
  if (backup && !/^[^\n\r]+$/.test(backup.schedule))
    throw new Error(`backup schedule '${backup.schedule}' is not one line`);
  const conf = backup
    ? [
        "BACKUP_ENABLED=yes",
        `RESTIC_REPOSITORY=${shellQuote(backup.repository)}`,
        `BACKUP_SCHEDULE=${shellQuote(backup.schedule)}`,
        `BACKUP_KEEP_DAILY=${backup.keepDaily}`,
        `BACKUP_KEEP_WEEKLY=${backup.keepWeekly}`,
        `BACKUP_KEEP_MONTHLY=${backup.keepMonthly}`,
      ]
    : ["BACKUP_ENABLED=no"];
  return [
    rootFile(
      `${KEY_DIR}/backup.conf`,
      `# Managed by mailstack: mailstack:backup (shell syntax).\n${conf.join("\n")}\n`,
    ),
    ...(backup
      ? [
          rootFile(
            `${KEY_DIR}/backup.env`,
            `AWS_ACCESS_KEY_ID=${shellQuote(backup.accessKeyId)}\n` +
              `AWS_SECRET_ACCESS_KEY=${shellQuote(backup.secretAccessKey)}\n`,
            "0600",
          ),
          rootFile(BACKUP_PASSWORD_PATH, `${backup.password}\n`, "0600"),
          ...(backup.caCertificatePem
            ? [rootFile(`${KEY_DIR}/backup-ca.crt`, backup.caCertificatePem)]
            : []),
        ]
      : []),
    ...[
      "mailstack-backup.service",
      "mailstack-backup-check.service",
      "mailstack-backup-check.timer",
      "mailstack-alert@.service",
    ].map((name) => rootFile(`/etc/systemd/system/${name}`, script(name))),
    rootFile(
      "/etc/systemd/system/mailstack-backup.timer",
      script("mailstack-backup.timer").replace("@SCHEDULE@", backup?.schedule ?? "daily"),
    ),
    ...["mailstack-backup", "mailstack-restore", "mailstack-alert"].map((name) =>
      rootFile(`/usr/local/sbin/${name}`, script(name), "0755"),
    ),
  ];
}

/** What a stack's host files are made of besides its config. */
export interface StackHostInputs {
  dkimPrivateKeyPem: string;
  tlsPrivateKeyPem: string;
  /**
   * Dovecot's mail_crypt global key (MailKeys.mailCrypt): the private half as PKCS#8
   * (`privateKeyPemPkcs8`), the public half as `publicKeyPem`.
   */
  mailCrypt: MailCryptKey;
  /** The addresses that carry the PTR. */
  ipv4: string;
  ipv6: string;
  /** With adminMfa totp: the admin account's TOTP secret, hex (`adminTotpUri` holds it). */
  adminTotpSecretHex?: string;
  /** address -> the password the stack generated (`userPasswords`). */
  passwords: Record<string, string>;
  /** address -> device -> its app password (`userAppPasswords`); users without any absent. */
  appPasswords: Record<string, Record<string, string>>;
  /** Password of Rspamd's web interface (`rspamdControllerPassword`). */
  rspamdControllerPassword: string;
  /** `mailstack:relayPassword`, with relayHost. */
  relayPassword?: string;
  acme: AcmeSettings;
  /** Encrypted offsite backups; unset when `backup.enabled` is false. */
  backup?: BackupSettings;
  /** Files only the lab adds: its resolver's trust anchors, a local ClamAV signature. */
  extraFiles?: HostFile[];
}

/** The host files of a stack: what MailStack sends, and the lab sends for its hosts. */
export async function stackHostFiles(
  cfg: MailStackConfig,
  inputs: StackHostInputs,
): Promise<HostFile[]> {
  const base = hostFiles({
    clamav: cfg.clamav,
    fqdn: cfg.mailHost,
    acme: inputs.acme,
    adminKeys: cfg.sshPublicKeys,
    adminMfa: cfg.adminMfa,
    ...(inputs.adminTotpSecretHex ? { adminTotpSecretHex: inputs.adminTotpSecretHex } : {}),
    firewall: inboundRules(cfg),
    dkimSelector: cfg.dkimSelector,
    dkimPrivateKeyPem: inputs.dkimPrivateKeyPem,
    tlsPrivateKeyPem: inputs.tlsPrivateKeyPem,
    mailCrypt: inputs.mailCrypt,
  });
  const config = configFiles({
    mailHost: cfg.mailHost,
    domain: cfg.domain,
    ipv4: inputs.ipv4,
    ipv6: inputs.ipv6,
    dkimSelector: cfg.dkimSelector,
    logRetentionDays: cfg.logRetentionDays,
    postscreenDnsblSites: cfg.dnsbl ? POSTSCREEN_DNSBL_SITES : "",
    relayHost: cfg.relayHost ?? "",
    relayAuth: cfg.relayHost ? "yes" : "no",
    clamav: cfg.clamav,
    monitoring: cfg.monitoringAllowedIps.length > 0 ? "yes" : "no",
    dovecotMetricsPort: cfg.monitoringAllowedIps.length > 0 ? DOVECOT_METRICS_PORT : 0,
    blocklistQueries: blocklistQueries(inputs.ipv4, inputs.ipv6),
  });
  const users: MailUser[] = [];
  for (const u of cfg.users) {
    const password = inputs.passwords[u.address];
    if (!password) throw new Error(`no password for ${u.address}`);
    const appPasswordHashes = u.appPasswords.map((d) => {
      const appPassword = inputs.appPasswords[u.address]?.[d.name];
      if (!appPassword) throw new Error(`no app password for ${u.address} ${d.name}`);
      return { ...d, hash: dovecotAppPasswordHash(u.address, d.name, appPassword) };
    });
    users.push({
      ...u,
      passwordHash: await dovecotPasswordHash(u.address, password),
      appPasswordHashes,
    });
  }
  const tables = postfixTables(cfg.users, cfg.aliases);
  const relay = relayTables(
    cfg.relayHost && cfg.relayUser && inputs.relayPassword
      ? { host: cfg.relayHost, user: cfg.relayUser, password: inputs.relayPassword }
      : undefined,
  );
  const table = (path: string, content: string, mode = "0644"): HostFile => ({
    path,
    mode,
    owner: "root",
    group: "root",
    content,
  });
  const files = [
    ...base,
    ...config,
    { ...table("/etc/dovecot/users", dovecotUsers(users), "0640"), group: "dovecot" },
    { ...table("/etc/dovecot/passwords", dovecotPasswords(users), "0640"), group: "dovecot" },
    table("/etc/postfix/vmailbox", tables.vmailbox),
    table("/etc/postfix/virtual", tables.virtual),
    table("/etc/postfix/sender-login", tables.senderLogin),
    table("/etc/postfix/relay-password", relay.password, "0600"),
    table("/etc/postfix/tls-policy", relay.tlsPolicy),
    table(
      "/etc/mailstack/rspamd-controller.password",
      `${inputs.rspamdControllerPassword}\n`,
      "0600",
    ),
    ...backupFiles(inputs.backup),
    ...(inputs.extraFiles ?? []),
  ];
  const seen = new Set<string>();
  for (const f of files) {
    if (seen.has(f.path)) throw new Error(`host file ${f.path} is given twice`);
    seen.add(f.path);
  }
  return files;
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
        if (!/^[A-Za-z0-9_.@/-]+$/.test(value))
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
export const PROVISION_SCRIPT = script("mailstack-provision");

/**
 * What the deployment asks `mailstack-deploy` for. The key is bound to that program, so this
 * is a request, not a command line: the program itself travels first on standard input.
 */
export const PROVISION_REQUEST = "provision";

/** Mounts the mail volume once the provider attached it (mailstack-deploy `attach`). */
export const VOLUME_ATTACH_REQUEST = "attach";

/** Stops the mail services and unmounts the volume before it is detached (`detach`). */
export const VOLUME_DETACH_REQUEST = "detach";

/** The standard input of a provisioning run: the program, then the files it installs. */
export function provisionInput(files: HostFile[]): string {
  const program = Buffer.from(PROVISION_SCRIPT, "utf8").toString("base64");
  return `mailstack-provision ${program}\n${renderBundle(files)}`;
}
