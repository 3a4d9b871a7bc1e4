// The config contract: every `mailstack:` key is named here (CONFIG_KEYS) and checked as a
// whole by the pure `parseConfig` before any resource exists. A bad setting stops the run
// with one line per problem naming the key, the rule and the value seen. A stack's run reads
// the keys with stack-config.ts; this file loads no Pulumi, so the tools that check a stack
// file (the privacy notice, the audit, the lab) start without it.
import type * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { defaultBackupBucket, isBucketName } from "./backup-storage";
import { HETZNER_RAM_GB } from "./cost";
import {
  cidrProblem,
  emailProblem,
  isDnsLabel,
  isDomainName,
  isEmail,
  isIpAddress,
  isLoginName,
  sshPrivateKeyProblem,
  sshPublicKeyProblem,
} from "./validate";

export const EU_LOCATIONS = ["fsn1", "nbg1", "hel1"] as const;
export type Location = (typeof EU_LOCATIONS)[number];
export const DMARC_POLICIES = ["none", "quarantine", "reject"] as const;
export type DmarcPolicy = (typeof DMARC_POLICIES)[number];
export const MTA_STS_MODES = ["enforce", "testing", "none"] as const;
export type MtaStsMode = (typeof MTA_STS_MODES)[number];
/**
 * `mailstack:adminMfa`, the second factor people's SSH logins (the admin account) need:
 * `totp`, a code from an authenticator app after the key; `fido2`, FIDO2 security keys
 * that verify their holder (PIN or fingerprint); `off`, the key alone. The deployment's key
 * is not a person's and keeps working alone in every mode.
 */
export const ADMIN_MFA_MODES = ["off", "totp", "fido2"] as const;
export type AdminMfa = (typeof ADMIN_MFA_MODES)[number];
/** The SSH key types of FIDO2 security keys (ssh-keygen -t ed25519-sk / ecdsa-sk). */
export const FIDO2_KEY_TYPES = ["sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"];

/**
 * Smallest server memory, in GB, for a host with ClamAV: clamd holds about 1.5 GB of
 * signatures, next to Rspamd, Postfix and Dovecot.
 */
const CLAMAV_MIN_RAM_GB = 3;

/** Everywhere: IPv4 and IPv6. */
export const ANYWHERE = ["0.0.0.0/0", "::/0"];

export interface UserSpec {
  /** The mailbox address, lower case, inside `domain`. */
  address: string;
  /** Further addresses delivered to this mailbox. */
  aliases: string[];
  /** Mailbox quota in MiB; undefined means no quota. */
  quotaMb?: number;
  /**
   * The user's ASCII-armored OpenPGP public key, published in the Web Key Directory
   * (components/openpgp.ts checks it fully); undefined means none is published.
   */
  openpgpKey?: string;
  /**
   * Per-device passwords the stack generates (`userAppPasswords`), each opening only its
   * protocols; revoked by removing it from the list. Empty when the user has none.
   */
  appPasswords: AppPasswordSpec[];
  /** With it, the main password no longer opens IMAP, SMTP or ManageSieve. */
  appPasswordsOnly: boolean;
}

/**
 * What a password may open: `imap` (IMAPS, 993), `smtp` (submission, 465 and 587), `sieve`
 * (ManageSieve, 4190). The names are Dovecot's protocol names for these logins.
 */
export const MAIL_PROTOCOLS = ["imap", "smtp", "sieve"] as const;
export type MailProtocol = (typeof MAIL_PROTOCOLS)[number];
/** A device's app password opens what a mail client needs unless the config says otherwise. */
export const APP_PASSWORD_DEFAULT_PROTOCOLS: MailProtocol[] = ["imap", "smtp"];

/** `users[i].appPasswords[j]`: one device's password. */
export interface AppPasswordSpec {
  /** The device, `[a-z0-9-]`, unique for the user: part of the generated resource's name. */
  name: string;
  protocols: MailProtocol[];
}

export const BACKUP_PROVIDERS = ["r2", "hetzner"] as const;
export type BackupProvider = (typeof BACKUP_PROVIDERS)[number];

/** `mailstack:backup`: encrypted offsite backups with restic (docs/backup.md). */
export interface BackupSpec {
  /** Off: no bucket, no token, no password, nothing on the host. */
  enabled: boolean;
  /**
   * Where the repository lives: `r2`, a Cloudflare R2 bucket in the EU jurisdiction that the
   * stack makes with a token for it alone; or `hetzner`, Hetzner Object Storage with keys made
   * in the Hetzner Console (the secrets backupAccessKeyId and backupSecretAccessKey).
   */
  provider: BackupProvider;
  /** When the backup runs: a systemd calendar expression (OnCalendar=), `daily` by default. */
  schedule: string;
  /** hetzner: the Object Storage location, the stack's `location` by default; r2: unset. */
  location?: Location;
  /** The bucket's name; by default derived from the mail host (backup-storage.ts). */
  bucket: string;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
}

/**
 * A bastion that provisioning reaches the host through, for a deployment that runs outside
 * `sshAllowedIps` (a hosted CI runner): docs/gitops.md, "Reaching the host from the pipeline".
 */
export interface SshProxySpec {
  /** The bastion's DNS name or IP address. */
  host: string;
  /** Its SSH port. */
  port: number;
  /** The account on the bastion, whose key may only forward to the mail host's port 22. */
  user: string;
  /** The bastion's host key, `type base64`: any other key is refused. */
  hostPublicKey: string;
}

export interface MailStackConfig {
  domain: string;
  hostname: string;
  /** `hostname.domain`: the MX host, the name in PTR, TLS certificate and SMTP banner. */
  mailHost: string;
  cloudflareZoneId: string;
  cloudflareAccountId: string;
  location: Location;
  serverType: string;
  image: string;
  sshPublicKeys: string[];
  /** The second factor of people's SSH logins (ADMIN_MFA_MODES). */
  adminMfa: AdminMfa;
  sshAllowedIps: string[];
  /** The bastion provisioning connects through; direct when unset. */
  sshProxy?: SshProxySpec;
  volumeSizeGb: number;
  users: UserSpec[];
  /** Group and role addresses: alias -> mailbox or alias addresses, all inside `domain`. */
  aliases: Record<string, string[]>;
  dmarcPolicy: DmarcPolicy;
  dmarcReportEmail: string;
  mtaStsMode: MtaStsMode;
  tlsRptEmail: string;
  acmeEmail: string;
  acmeStaging: boolean;
  /**
   * A Cloudflare zone that holds nothing but ACME challenges (acme-dns style). When set,
   * `_acme-challenge.<mailHost>` is a CNAME into it and the host may write only there.
   */
  acmeChallengeZone?: string;
  /** The 32 hex digit ID of `acmeChallengeZone`; set with it. */
  acmeChallengeZoneId?: string;
  /**
   * When the token the stack makes for the host stops working (ISO 8601, UTC); none when
   * unset. Only for the stack's own token (`acmeDnsToken` unset).
   */
  acmeTokenExpiresOn?: string;
  /** The host's DNS token is one the user supplied (`acmeDnsToken`), not one the stack makes. */
  acmeDnsTokenSupplied: boolean;
  /** The CA domain that CAA allows to issue for the mail host. */
  caaIssuer: string;
  dnssec: boolean;
  /**
   * Cloudflare's Universal SSL for the zone, when the stack manages it; unset leaves the
   * zone's setting alone. With it on, Cloudflare adds CAA records for its own CAs beside the
   * stack's (docs/provider-semantics.md).
   */
  universalSsl?: boolean;
  clamav: boolean;
  /** postscreen asks DNS blocklists about every client on port 25. */
  dnsbl: boolean;
  relayHost?: string;
  /** SASL login name at `relayHost`; its password is the secret `relayPassword`. */
  relayUser?: string;
  backup: BackupSpec;
  protect: boolean;
  monitoringAllowedIps: string[];
  dkimSelector: string;
  /** Days journald and the mail logs are kept; they hold IP addresses (personal data, GDPR). */
  logRetentionDays: number;
  /** When a throw-away stack may be destroyed (ISO 8601, UTC); labels the Hetzner resources. */
  expiresAt?: string;
}

type Kind = "string" | "boolean" | "integer" | "json" | "secret";

/** Every key of the contract and how Pulumi stores it (config values are strings). */
export const CONFIG_KEYS: Record<string, Kind> = {
  domain: "string",
  hostname: "string",
  cloudflareZoneId: "string",
  cloudflareAccountId: "string",
  location: "string",
  serverType: "string",
  image: "string",
  sshPublicKeys: "json",
  adminMfa: "string",
  sshAllowedIps: "json",
  sshProxy: "json",
  volumeSizeGb: "integer",
  users: "json",
  aliases: "json",
  dmarcPolicy: "string",
  dmarcReportEmail: "string",
  mtaStsMode: "string",
  tlsRptEmail: "string",
  acmeEmail: "string",
  acmeStaging: "boolean",
  acmeChallengeZone: "string",
  acmeChallengeZoneId: "string",
  acmeTokenExpiresOn: "string",
  caaIssuer: "string",
  dnssec: "boolean",
  universalSsl: "boolean",
  clamav: "boolean",
  dnsbl: "boolean",
  relayHost: "string",
  relayUser: "string",
  backup: "json",
  protect: "boolean",
  monitoringAllowedIps: "json",
  dkimSelector: "string",
  logRetentionDays: "integer",
  expiresAt: "string",
  acmeDnsToken: "secret",
  relayPassword: "secret",
  sshProxyPrivateKey: "secret",
  backupAccessKeyId: "secret",
  backupSecretAccessKey: "secret",
};

/** Secrets of the contract: read as Pulumi secrets, never as plain values. */
export interface MailStackSecrets {
  /**
   * Cloudflare API token the host uses for ACME DNS-01, when the user supplies one: DNS edit
   * on the challenge zone (or this zone) only. Unset: the stack makes a narrower one.
   */
  acmeDnsToken?: pulumi.Output<string>;
  /** SASL password for `relayUser` at `relayHost`; set only together with them. */
  relayPassword?: pulumi.Output<string>;
  /** The private key of the account on `sshProxy`; set only together with it. */
  sshProxyPrivateKey?: pulumi.Output<string>;
  /** Hetzner Object Storage access key (`backup.provider: hetzner`). */
  backupAccessKeyId?: pulumi.Output<string>;
  /** Its secret key. */
  backupSecretAccessKey?: pulumi.Output<string>;
}

/** Stands in for a secret's value in parseConfig, which checks only that it is set. */
/** Why the account is always needed: the Worker is part of every stack. */
const ACCOUNT_REQUIRED =
  "is required: the Cloudflare account the stack's Worker is made in (it serves the MTA-STS " +
  "policy, client autoconfig and the Web Key Directory), and the R2 backup bucket " +
  "(pulumi config set mailstack:cloudflareAccountId ...)";

const SECRET_SET = Symbol("secret set");
/** Stands in for a secret whose value is not one line (see ONE_LINE). */
const SECRET_NOT_ONE_LINE = Symbol("secret not one line");

/** Stands in for a secret key whose value is refused: holds why, never the value. */
class SecretRefused {
  constructor(readonly why: string) {}
}

/** Shown in a problem line in place of a value that must not be printed (a key block). */
class Described {
  constructor(readonly text: string) {}
}

/**
 * `users[i].openpgpKey`: an armored key is several lines by nature. It never reaches a file
 * on the host; it is published, in binary, by the discovery Worker.
 */
const MULTI_LINE_PATH = /^users\[\d+\]\.openpgpKey$/;

/**
 * Secrets that are SSH private keys: several lines by nature, checked as keys instead of
 * for being one line. They never reach a file on the host; the provider alone uses them.
 */
const PRIVATE_KEY_SECRETS = new Set(["sshProxyPrivateKey"]);

/**
 * A line break or NUL in a value. Every value may end up in a file on the host (an SSH key
 * in authorized_keys, an address in a Postfix map, the relay login in sasl_passwd, ...),
 * where it would add a line that no check here has seen, or cut one short.
 */
const LINE_BREAK = /[\r\n\0]/;
const ONE_LINE = "must be one line (no line breaks or NUL characters)";

/** Addresses every mail domain must accept (RFC 5321 4.5.1, RFC 2142). */
const ROLE_MAILBOXES = ["postmaster", "abuse"];

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `mailstack configuration is invalid (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/**
 * The `mailstack:` settings of a stack file (Pulumi.<stack>.yaml), checked by parseConfig as
 * a stack's run checks them, for tools that work from the file alone (the privacy notice).
 * No secret is read: one the file holds encrypted (`secure:`) counts as set, and one the
 * settings require counts as set elsewhere (`pulumi config set --secret` on another machine,
 * the pipeline's environment). Keys of other namespaces (`hcloud:token`) are not looked at.
 * Throws a ConfigError naming each bad setting, or an Error when the text is no stack file.
 */
export function parseStackFile(yamlText: string): MailStackConfig {
  const doc: unknown = parse(yamlText);
  const config = isObject(doc) ? doc.config : undefined;
  if (!isObject(config)) {
    throw new Error("has no config: section (a stack file is Pulumi.<stack>.yaml)");
  }
  const raw: Record<string, unknown> = {};
  const unknownKeys: string[] = [];
  const problems: string[] = [];
  for (const [name, value] of Object.entries(config)) {
    if (!name.startsWith("mailstack:")) continue;
    const key = name.slice("mailstack:".length);
    const kind = CONFIG_KEYS[key];
    const encrypted = isObject(value) && Object.keys(value).join() === "secure";
    if (kind === undefined) unknownKeys.push(key);
    else if (kind === "secret") raw[key] = encrypted ? SECRET_SET : value;
    else if (encrypted) {
      problems.push(
        `mailstack:${key}: is encrypted in the file (set with --secret), so only the stack can ` +
          "read it; it is no secret of the contract: set it in clear",
      );
    } else if (kind === "string" && (typeof value === "number" || typeof value === "boolean")) {
      // YAML reads `hostname: 123` as a number; Pulumi hands every value over as a string.
      raw[key] = String(value);
    } else raw[key] = value;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return parseConfig(raw, unknownKeys, { secretsElsewhere: true });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What readConfig hands parseConfig for a secret that is set: whether it passes, not what it is. */
export function secretStandIn(key: string, value: string): unknown {
  if (PRIVATE_KEY_SECRETS.has(key)) {
    const why = sshPrivateKeyProblem(value);
    return why === undefined ? SECRET_SET : new SecretRefused(why);
  }
  return LINE_BREAK.test(value) ? SECRET_NOT_ONE_LINE : SECRET_SET;
}

/** How parseConfig treats the secrets of the contract. */
export interface ParseOptions {
  /**
   * The secrets are kept where the caller cannot see them (a tool that reads a stack file,
   * not the stack): a secret that the settings require counts as set. One that is given is
   * still checked, and still refused when nothing uses it. A stack's run never sets this.
   */
  secretsElsewhere?: boolean;
}

/**
 * Validates raw config values (strings as Pulumi stores them, or already typed values) and
 * returns the typed config with defaults filled in. Throws a ConfigError listing every
 * problem found. `unknownKeys` are keys set under `mailstack:` that the contract lacks:
 * a typo there would otherwise be silently ignored.
 */
export function parseConfig(
  raw: Record<string, unknown>,
  unknownKeys: string[] = [],
  options: ParseOptions = {},
): MailStackConfig {
  const secretsElsewhere = options.secretsElsewhere === true;
  const problems: string[] = [];
  // Paths refused for a line break: nothing else is reported about them, or under them.
  const notOneLine: string[] = [];
  let failures = 0; // reported or not
  const fail = (key: string, rule: string, value: unknown) => {
    failures++;
    if (notOneLine.some((p) => key === p || key.startsWith(`${p}.`) || key.startsWith(`${p}[`))) {
      return;
    }
    // A key path may hold what it names (an alias address): the problem stays one line.
    problems.push(escapeLineBreaks(`mailstack:${key}: ${rule}; got ${show(value)}`));
  };

  for (const key of unknownKeys) {
    fail(key, `is not a known setting (known: ${Object.keys(CONFIG_KEYS).join(", ")})`, key);
  }

  const broken = new Set<string>();
  const values = coerceAll(raw, (key, rule, value) => {
    broken.add(key);
    fail(key, rule, value);
  });
  // One check for every string the config holds, at any depth, object keys included.
  for (const [key, kind] of Object.entries(CONFIG_KEYS)) {
    const v = values[key];
    if (kind === "secret") {
      if (PRIVATE_KEY_SECRETS.has(key)) continue; // checked as a key, with sshProxy
      if (v === SECRET_NOT_ONE_LINE || (typeof v === "string" && LINE_BREAK.test(v))) {
        fail(key, ONE_LINE, SECRET_SET);
        notOneLine.push(key);
      }
      continue;
    }
    for (const [path, text] of strings(v, key)) {
      if (!LINE_BREAK.test(text) || MULTI_LINE_PATH.test(path)) continue;
      fail(path, ONE_LINE, text);
      notOneLine.push(path);
    }
  }
  // A key whose value could not be read at all was reported once; nothing else about it is.
  const missing = (key: string) => values[key] === undefined && !broken.has(key);
  const str = (key: string): string | undefined => {
    const v = values[key];
    if (v === undefined) return undefined;
    if (typeof v !== "string") {
      fail(key, "must be a string", v);
      return undefined;
    }
    return v.trim();
  };
  const required = (key: string): string => {
    const v = str(key);
    // A value of the wrong type was reported by str() already.
    if (v === "" || missing(key)) {
      fail(key, `is required (pulumi config set mailstack:${key} ...)`, values[key]);
    }
    return v ?? "";
  };
  const oneOf = <T extends string>(key: string, allowed: readonly T[], def: T): T => {
    const v = str(key) ?? def;
    if (!allowed.includes(v as T)) {
      fail(key, `must be one of ${allowed.join(", ")}`, v);
      return def;
    }
    return v as T;
  };
  const bool = (key: string, def: boolean): boolean => {
    const v = values[key];
    if (v === undefined) return def;
    if (typeof v !== "boolean") {
      fail(key, "must be true or false", v);
      return def;
    }
    return v;
  };

  // --- names -------------------------------------------------------------------------
  let domain = required("domain").toLowerCase();
  if (domain && !isDomainName(domain)) {
    fail("domain", "must be a DNS name of two or more labels (letters, digits, hyphens)", domain);
    domain = ""; // checks that depend on the domain are skipped rather than repeated
  }
  const hostname = (str("hostname") ?? "mail").toLowerCase();
  if (!isDnsLabel(hostname)) {
    fail("hostname", "must be one DNS label (letters, digits, hyphens; 1-63 characters)", hostname);
  }
  const mailHost = `${hostname}.${domain}`;
  if (domain && mailHost.length > 253) {
    fail("hostname", `makes the host name ${mailHost} longer than 253 characters`, hostname);
  }
  const inDomain = (address: string) => address.endsWith(`@${domain}`);

  // --- cloud -------------------------------------------------------------------------
  const cloudflareZoneId = required("cloudflareZoneId");
  if (cloudflareZoneId && !/^[0-9a-f]{32}$/.test(cloudflareZoneId)) {
    fail(
      "cloudflareZoneId",
      "must be the 32 hex digit zone ID shown on the zone's overview",
      cloudflareZoneId,
    );
  }
  const cloudflareAccountId = str("cloudflareAccountId") ?? "";
  if (missing("cloudflareAccountId") || values.cloudflareAccountId === "") {
    fail("cloudflareAccountId", ACCOUNT_REQUIRED, values.cloudflareAccountId);
  } else if (cloudflareAccountId && !/^[0-9a-f]{32}$/.test(cloudflareAccountId)) {
    fail("cloudflareAccountId", "must be the 32 hex digit account ID", cloudflareAccountId);
  }
  const location = oneOf("location", EU_LOCATIONS, "fsn1");
  const serverType = str("serverType") ?? "cx23";
  if (!/^[a-z0-9-]+$/.test(serverType)) {
    fail("serverType", "must be a Hetzner server type name such as cx23", serverType);
  }
  const image = str("image") ?? "debian-13";
  if (!/^debian-1[23]$/.test(image)) {
    // The host configuration is written and tested for these Debian releases only.
    fail("image", "must be debian-13 or debian-12", image);
  }
  const volumeSizeGb = integer(values, "volumeSizeGb", 20, fail);
  if (volumeSizeGb < 10)
    fail("volumeSizeGb", "must be at least 10 (Hetzner's minimum)", volumeSizeGb);
  if (volumeSizeGb > 10240)
    fail("volumeSizeGb", "must be at most 10240 (Hetzner's maximum)", volumeSizeGb);

  // --- access ------------------------------------------------------------------------
  const sshPublicKeys = stringList(values, "sshPublicKeys", undefined, fail);
  if (missing("sshPublicKeys")) {
    fail("sshPublicKeys", "is required: at least one admin SSH public key", undefined);
  } else if (sshPublicKeys.length === 0) {
    fail("sshPublicKeys", "must hold at least one SSH public key (login is key-only)", []);
  }
  const adminMfa = oneOf("adminMfa", ADMIN_MFA_MODES, "off");
  sshPublicKeys.forEach((key, i) => {
    const why = sshPublicKeyProblem(key);
    if (why) fail(`sshPublicKeys[${i}]`, why, key);
    else if (adminMfa === "fido2" && !FIDO2_KEY_TYPES.includes(key.trim().split(/\s+/)[0])) {
      fail(
        `sshPublicKeys[${i}]`,
        "must be a FIDO2 security key (sk-ssh-ed25519@openssh.com or " +
          "sk-ecdsa-sha2-nistp256@openssh.com) while adminMfa is fido2: make one with " +
          "ssh-keygen -t ed25519-sk -O verify-required, or set adminMfa to totp",
        key,
      );
    }
  });
  const sshAllowedIps = cidrList(values, "sshAllowedIps", ANYWHERE, fail);
  const monitoringAllowedIps = cidrList(values, "monitoringAllowedIps", [], fail);
  const sshProxy = sshProxySpec(values, fail);
  // The bastion's key goes with the bastion: without it provisioning could not log in
  // there, and a key without a bastion would be a secret that nothing uses.
  const proxyKey = values.sshProxyPrivateKey;
  if (proxyKey !== undefined && proxyKey !== "") {
    const why =
      proxyKey instanceof SecretRefused
        ? proxyKey.why
        : typeof proxyKey === "string"
          ? sshPrivateKeyProblem(proxyKey)
          : undefined;
    if (why) fail("sshProxyPrivateKey", why, SECRET_SET);
    if (values.sshProxy === undefined && !broken.has("sshProxy")) {
      fail(
        "sshProxyPrivateKey",
        "is set but sshProxy is not: the key is for the bastion's account",
        SECRET_SET,
      );
    }
  } else if (values.sshProxy !== undefined && !secretsElsewhere) {
    fail(
      "sshProxyPrivateKey",
      "is required when sshProxy is set: the private key of the bastion's account " +
        "(pulumi config set --secret mailstack:sshProxyPrivateKey < key)",
      undefined,
    );
  }

  // --- mailboxes -----------------------------------------------------------------------
  const before = failures;
  const { users, aliases } = mailboxes(values, domain, missing("users"), fail);
  const mailboxesOk = failures === before && users.length > 0;

  // --- policy ------------------------------------------------------------------------
  // Report and ACME addresses may hold + (see emailProblem).
  const email = (key: string, def: string): string => {
    const v = (str(key) ?? def).toLowerCase();
    const why = v ? emailProblem(v) : undefined;
    if (why) fail(key, why, v);
    return v;
  };
  const dmarcPolicy = oneOf("dmarcPolicy", DMARC_POLICIES, "reject");
  const dmarcReportEmail = email("dmarcReportEmail", domain ? `postmaster@${domain}` : "");
  const mtaStsMode = oneOf("mtaStsMode", MTA_STS_MODES, "enforce");
  const tlsRptEmail = email("tlsRptEmail", domain ? `postmaster@${domain}` : "");
  const acmeEmail = required("acmeEmail").toLowerCase();
  const acmeEmailProblem = acmeEmail ? emailProblem(acmeEmail) : undefined;
  if (acmeEmailProblem) fail("acmeEmail", acmeEmailProblem, acmeEmail);
  for (const key of ["dmarcReportEmail", "tlsRptEmail"]) {
    const v = key === "dmarcReportEmail" ? dmarcReportEmail : tlsRptEmail;
    // Postfix delivers a+b@ to a@ (recipient_delimiter), so a+b@ is received when a@ is.
    const delivered = v.replace(/\+[^@]*@/, "@");
    if (mailboxesOk && isEmail(v) && inDomain(v) && !isDeliverable(delivered, users, aliases)) {
      fail(key, `is inside ${domain} but no mailbox or alias receives it`, v);
    }
  }
  const caaIssuer = (str("caaIssuer") ?? "letsencrypt.org").toLowerCase();
  if (!isDomainName(caaIssuer))
    fail("caaIssuer", "must be the CA's CAA domain, e.g. letsencrypt.org", caaIssuer);
  const dkimSelector = (str("dkimSelector") ?? "mail").toLowerCase();
  if (!isDnsLabel(dkimSelector)) fail("dkimSelector", "must be one DNS label", dkimSelector);

  const relayHost = str("relayHost");
  if (
    relayHost !== undefined &&
    !/^(\[[a-z0-9.-]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?$/i.test(relayHost)
  ) {
    fail(
      "relayHost",
      "must be host, [host] or [host]:port, e.g. [smtp.relay.example]:587",
      relayHost,
    );
  }
  // The smarthost login: Postfix authenticates at relayHost with relayUser and relayPassword.
  const relayUser = str("relayUser") || undefined;
  const relayPasswordSet = values.relayPassword !== undefined && values.relayPassword !== "";
  if (relayUser !== undefined && !/^[^\s:]+$/.test(relayUser)) {
    // Postfix's password table holds "user:password" after the host, on one line.
    fail("relayUser", "must not contain spaces or ':'", relayUser);
  }
  if (relayHost !== undefined) {
    if (relayUser === undefined) {
      fail(
        "relayUser",
        "is required when relayHost is set (pulumi config set mailstack:relayUser ...)",
        values.relayUser,
      );
    }
    if (!relayPasswordSet && !secretsElsewhere) {
      fail(
        "relayPassword",
        "is required when relayHost is set (pulumi config set --secret mailstack:relayPassword ...)",
        undefined,
      );
    }
  } else {
    if (relayUser !== undefined) {
      fail("relayUser", "is set but relayHost is not: the login is for the smarthost", relayUser);
    }
    if (relayPasswordSet) {
      fail(
        "relayPassword",
        "is set but relayHost is not: the login is for the smarthost",
        SECRET_SET,
      );
    }
  }

  // --- ACME DNS-01 --------------------------------------------------------------------
  // The host's DNS credential is the one secret on the most exposed machine: it may write
  // only the challenge zone when there is one, and the stack makes it unless one is supplied.
  const acmeDnsTokenSupplied = values.acmeDnsToken !== undefined && values.acmeDnsToken !== "";
  let acmeChallengeZone = str("acmeChallengeZone")?.toLowerCase().replace(/\.$/, "");
  const acmeChallengeZoneId = str("acmeChallengeZoneId");
  if (acmeChallengeZone !== undefined) {
    if (!isDomainName(acmeChallengeZone)) {
      fail(
        "acmeChallengeZone",
        "must be the DNS name of a Cloudflare zone that holds only ACME challenges, e.g. acme-example.net",
        acmeChallengeZone,
      );
      acmeChallengeZone = undefined;
    } else if (domain && acmeChallengeZone === domain) {
      fail(
        "acmeChallengeZone",
        "must be a zone other than domain: the point is that the host cannot write the mail zone",
        acmeChallengeZone,
      );
      acmeChallengeZone = undefined;
    } else if (domain && `${mailHost}.${acmeChallengeZone}`.length > 253) {
      fail(
        "acmeChallengeZone",
        `makes the challenge name ${mailHost}.${acmeChallengeZone} longer than 253 characters`,
        acmeChallengeZone,
      );
    }
    if (acmeChallengeZoneId === undefined) {
      fail(
        "acmeChallengeZoneId",
        "is required when acmeChallengeZone is set: the 32 hex digit ID of that zone",
        undefined,
      );
    }
  } else if (acmeChallengeZoneId !== undefined && !broken.has("acmeChallengeZone")) {
    fail(
      "acmeChallengeZoneId",
      "is set but acmeChallengeZone is not: set the zone's name too",
      acmeChallengeZoneId,
    );
  }
  if (acmeChallengeZoneId !== undefined) {
    if (!/^[0-9a-f]{32}$/.test(acmeChallengeZoneId)) {
      fail("acmeChallengeZoneId", "must be the 32 hex digit zone ID", acmeChallengeZoneId);
    } else if (acmeChallengeZoneId === cloudflareZoneId) {
      fail(
        "acmeChallengeZoneId",
        "is the mail zone's ID (cloudflareZoneId): the challenge zone must be a zone of its own",
        acmeChallengeZoneId,
      );
    }
  }
  const acmeTokenExpiresOn = str("acmeTokenExpiresOn");
  if (acmeTokenExpiresOn !== undefined) {
    if (!ISO_UTC.test(acmeTokenExpiresOn) || Number.isNaN(Date.parse(acmeTokenExpiresOn))) {
      fail(
        "acmeTokenExpiresOn",
        "must be a UTC time in ISO 8601, e.g. 2027-01-01T00:00:00Z",
        acmeTokenExpiresOn,
      );
    } else if (acmeDnsTokenSupplied) {
      fail(
        "acmeTokenExpiresOn",
        "applies only to the token the stack makes: unset acmeDnsToken, or set the expiry on your token at Cloudflare",
        acmeTokenExpiresOn,
      );
    }
  }

  const expiresAt = str("expiresAt");
  if (expiresAt !== undefined && !ISO_UTC.test(expiresAt)) {
    fail("expiresAt", "must be a UTC time in ISO 8601, e.g. 2026-12-01T18:00:00Z", expiresAt);
  }

  const backup = backupSpec(values, location, mailHost, fail);
  backupStorage(values, backup, secretsElsewhere, fail);
  const acmeStaging = bool("acmeStaging", false);
  const dnssec = bool("dnssec", true);
  const clamav = bool("clamav", true);
  const dnsbl = bool("dnsbl", true);
  const protect = bool("protect", true);
  if (dnssec && expiresAt !== undefined) {
    // DNSSEC is a setting of the whole zone, which a throw-away stack shares with the stack
    // that owns the zone: destroying or changing it must never unsign the zone for all.
    fail(
      "dnssec",
      "must be false on a throw-away stack (mailstack:expiresAt is set): DNSSEC is a setting " +
        "of the whole zone, which such a stack shares; the zone's own stack signs it",
      dnssec,
    );
  }
  // Unset: the zone's Universal SSL is left as it is. Zone-wide, like DNSSEC: only the stack
  // that owns the zone may set it.
  const universalSsl = values.universalSsl === undefined ? undefined : bool("universalSsl", true);
  if (values.universalSsl !== undefined && expiresAt !== undefined) {
    fail(
      "universalSsl",
      "must be unset on a throw-away stack (mailstack:expiresAt is set): Universal SSL is a " +
        "setting of the whole zone, which such a stack shares; the zone's own stack sets it",
      values.universalSsl,
    );
  }
  const ramGb = HETZNER_RAM_GB[serverType];
  if (clamav && ramGb !== undefined && ramGb < CLAMAV_MIN_RAM_GB) {
    fail(
      "clamav",
      `ClamAV needs about 1.5 GB of RAM; server type ${serverType} has ${ramGb} GB: ` +
        "choose cx23 or larger, or set mailstack:clamav false",
      clamav,
    );
  }
  const logRetentionDays = integer(values, "logRetentionDays", 14, fail, 1, 90);

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    domain,
    hostname,
    mailHost,
    cloudflareZoneId,
    cloudflareAccountId,
    location,
    serverType,
    image,
    sshPublicKeys: sshPublicKeys.map((k) => k.trim()),
    adminMfa,
    sshAllowedIps,
    ...(sshProxy ? { sshProxy } : {}),
    volumeSizeGb,
    users,
    aliases,
    dmarcPolicy,
    dmarcReportEmail,
    mtaStsMode,
    tlsRptEmail,
    acmeEmail,
    acmeStaging,
    ...(acmeChallengeZone && acmeChallengeZoneId ? { acmeChallengeZone, acmeChallengeZoneId } : {}),
    ...(acmeTokenExpiresOn ? { acmeTokenExpiresOn } : {}),
    acmeDnsTokenSupplied,
    caaIssuer,
    dnssec,
    ...(universalSsl !== undefined ? { universalSsl } : {}),
    clamav,
    dnsbl,
    relayHost,
    ...(relayUser !== undefined ? { relayUser } : {}),
    backup,
    protect,
    monitoringAllowedIps,
    dkimSelector,
    logRetentionDays,
    ...(expiresAt ? { expiresAt } : {}),
  };
}

type Fail = (key: string, rule: string, value: unknown) => void;

/** A UTC time in ISO 8601, as `expiresAt` and `acmeTokenExpiresOn` take it. */
const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z$/;

/** Writes line breaks and NUL as JSON escapes, as `show` does for values. */
function escapeLineBreaks(text: string): string {
  return text.replace(/[\r\n\0]/g, (c) => JSON.stringify(c).slice(1, -1));
}

/**
 * Every string in a config value, with the path that names it in a problem line: list
 * elements as `key[0]`, object keys and their values as `key.name`, at any depth.
 */
function* strings(value: unknown, path: string): Generator<[string, string]> {
  if (typeof value === "string") yield [path, value];
  else if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) yield* strings(v, `${path}[${i}]`);
  } else if (typeof value === "object" && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      yield [`${path}.${k}`, k];
      yield* strings(v, `${path}.${k}`);
    }
  }
}

function show(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === SECRET_SET) return "a secret (not shown)";
  if (value instanceof Described) return value.text;
  const text = JSON.stringify(value);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/** Turns Pulumi's string values into the kind each key declares. */
function coerceAll(raw: Record<string, unknown>, fail: Fail): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, kind] of Object.entries(CONFIG_KEYS)) {
    const v = raw[key];
    if (v === undefined || v === null) continue;
    if (kind === "secret" || typeof v !== "string") {
      out[key] = v;
      continue;
    }
    if (kind === "boolean" && (v === "true" || v === "false")) out[key] = v === "true";
    else if (kind === "integer" && /^-?[0-9]+$/.test(v.trim())) out[key] = Number(v);
    else if (kind === "json") {
      try {
        out[key] = JSON.parse(v);
      } catch {
        fail(key, "must be structured YAML/JSON (set it with --path or in the stack file)", v);
      }
    } else out[key] = v;
  }
  return out;
}

function integer(
  values: Record<string, unknown>,
  key: string,
  def: number,
  fail: Fail,
  min = 0,
  max = Infinity,
): number {
  const v = values[key];
  if (v === undefined) return def;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    const range = max === Infinity ? `of at least ${min}` : `from ${min} to ${max}`;
    fail(key, `must be a whole number ${range}`, v);
    return def;
  }
  return v;
}

function stringList(
  values: Record<string, unknown>,
  key: string,
  def: string[] | undefined,
  fail: Fail,
): string[] {
  const v = values[key];
  if (v === undefined) return def ?? [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    fail(key, "must be a list of strings", v);
    return def ?? [];
  }
  return v;
}

function cidrList(
  values: Record<string, unknown>,
  key: string,
  def: string[],
  fail: Fail,
): string[] {
  const list = stringList(values, key, def, fail).map((s) => s.trim());
  list.forEach((cidr, i) => {
    const why = cidrProblem(cidr);
    if (why) fail(`${key}[${i}]`, why, cidr);
  });
  return list;
}

const SSH_PROXY_KEYS = ["host", "port", "user", "hostPublicKey"];

/** `sshProxy`: the bastion's address, port, account and pinned host key; undefined if unset. */
function sshProxySpec(values: Record<string, unknown>, fail: Fail): SshProxySpec | undefined {
  const v = values.sshProxy;
  if (v === undefined) return undefined;
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    fail("sshProxy", "must be an object {host, port?, user, hostPublicKey}", v);
    return undefined;
  }
  const obj = v as Record<string, unknown>;
  let ok = true;
  const refuse = (key: string, rule: string, value: unknown) => {
    ok = false;
    fail(`sshProxy.${key}`, rule, value);
  };
  for (const k of Object.keys(obj).filter((k) => !SSH_PROXY_KEYS.includes(k))) {
    refuse(k, `is not an sshProxy setting (known: ${SSH_PROXY_KEYS.join(", ")})`, k);
  }
  const text = (key: string, what: string): string => {
    const x = obj[key];
    if (x === undefined || (typeof x === "string" && x.trim() === "")) {
      refuse(key, `is required: ${what}`, x);
    } else if (typeof x !== "string") refuse(key, "must be a string", x);
    return typeof x === "string" ? x.trim() : "";
  };

  const host = text("host", "the bastion's DNS name or IP address").toLowerCase();
  if (host && !isDomainName(host) && !isIpAddress(host)) {
    refuse(
      "host",
      "must be the bastion's DNS name or IP address, without port or brackets, e.g. bastion.example.eu or 198.51.100.9",
      obj.host,
    );
  }
  const port = integer(obj, "port", 22, (_, rule, value) => refuse("port", rule, value), 1, 65535);
  const user = text("user", "the bastion account provisioning logs in as");
  if (user && !isLoginName(user)) {
    refuse(
      "user",
      "must be a login name: a lower-case letter or _, then letters, digits, _ or -, at most 32 characters",
      obj.user,
    );
  }
  const hostPublicKey = text("hostPublicKey", "the bastion's host key, e.g. from ssh-keyscan");
  const why = hostPublicKey ? sshPublicKeyProblem(hostPublicKey) : undefined;
  if (why) refuse("hostPublicKey", why, obj.hostPublicKey);
  if (!ok) return undefined;
  // Pinned as the host's own key is sent: type and key data; a comment is no part of the key.
  const [type, data] = hostPublicKey.split(/\s+/);
  return { host, port, user, hostPublicKey: `${type} ${data}` };
}

const BACKUP_KEYS = [
  "enabled",
  "provider",
  "schedule",
  "location",
  "bucket",
  "keepDaily",
  "keepWeekly",
  "keepMonthly",
];

/**
 * What a systemd calendar expression (OnCalendar=) is written with: `daily`, `Mon *-*-* 03:00`,
 * `*-*-* 02,14:30`, `Sat..Sun 04:00`, `*-*-1/2`, `*-*~1`. Only systemd can tell a valid one
 * (`systemd-analyze calendar`), and it does not run here: this keeps to what such an
 * expression may hold, so the value can be nothing else in the timer unit it goes into.
 */
const CALENDAR_CHARS = /^[A-Za-z0-9*:,./~ -]+$/;

/** `backup`: the storage, schedule and retention of the host's restic backups. */
function backupSpec(
  values: Record<string, unknown>,
  stackLocation: Location,
  mailHost: string,
  fail: Fail,
): BackupSpec {
  const def: BackupSpec = {
    enabled: true,
    provider: "r2",
    schedule: "daily",
    bucket: defaultBackupBucket(mailHost),
    keepDaily: 7,
    keepWeekly: 4,
    keepMonthly: 12,
  };
  const v = values.backup;
  if (v === undefined) return def;
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    fail("backup", `must be an object {${BACKUP_KEYS.join(", ")}}`, v);
    return def;
  }
  const obj = v as Record<string, unknown>;
  const out = { ...def };
  for (const k of Object.keys(obj)) {
    if (!BACKUP_KEYS.includes(k))
      fail(`backup.${k}`, `is not a backup setting (known: ${BACKUP_KEYS.join(", ")})`, k);
  }
  if (obj.enabled !== undefined) {
    if (typeof obj.enabled === "boolean") out.enabled = obj.enabled;
    else fail("backup.enabled", "must be true or false", obj.enabled);
  }
  const text = (key: string): string | undefined => {
    const x = obj[key];
    if (x === undefined) return undefined;
    if (typeof x !== "string") {
      fail(`backup.${key}`, "must be a string", x);
      return undefined;
    }
    return x.trim();
  };

  const provider = text("provider");
  if (provider !== undefined) {
    if ((BACKUP_PROVIDERS as readonly string[]).includes(provider)) {
      out.provider = provider as BackupProvider;
    } else fail("backup.provider", `must be one of ${BACKUP_PROVIDERS.join(", ")}`, provider);
  }

  const schedule = text("schedule");
  if (schedule !== undefined) {
    if (schedule === "") {
      fail(
        "backup.schedule",
        "must not be empty: a systemd calendar expression such as daily or *-*-* 03:00",
        obj.schedule,
      );
    } else if (!CALENDAR_CHARS.test(schedule)) {
      fail(
        "backup.schedule",
        "must be a systemd calendar expression (OnCalendar=) such as daily or *-*-* 03:00: " +
          "letters, digits, spaces and * : , . / ~ - only",
        obj.schedule,
      );
    } else out.schedule = schedule.replace(/\s+/g, " ");
  }

  // Hetzner serves Object Storage per location; an R2 bucket is placed by its jurisdiction.
  const location = text("location");
  if (location !== undefined) {
    if (!(EU_LOCATIONS as readonly string[]).includes(location)) {
      fail("backup.location", `must be one of ${EU_LOCATIONS.join(", ")}`, location);
    } else if (out.provider !== "hetzner") {
      fail(
        "backup.location",
        "applies to backup.provider hetzner only: an R2 bucket is placed by its jurisdiction (eu)",
        location,
      );
    }
  }
  if (out.provider === "hetzner") {
    out.location =
      location !== undefined && (EU_LOCATIONS as readonly string[]).includes(location)
        ? (location as Location)
        : stackLocation;
  }

  const bucket = text("bucket");
  if (bucket !== undefined) {
    if (isBucketName(bucket)) out.bucket = bucket;
    else {
      fail(
        "backup.bucket",
        "must be a bucket name: 3 to 63 lower-case letters, digits and hyphens, " +
          "starting and ending with a letter or digit",
        bucket,
      );
    }
  }

  for (const k of ["keepDaily", "keepWeekly", "keepMonthly"] as const) {
    out[k] = integer(obj, k, def[k], (_, rule, value) => fail(`backup.${k}`, rule, value));
  }
  if (out.enabled && out.keepDaily + out.keepWeekly + out.keepMonthly === 0) {
    fail("backup", "keeps no snapshot at all: set keepDaily, keepWeekly or keepMonthly above 0", v);
  }
  return out;
}

/**
 * What the backup storage needs besides `backup`: R2 the Cloudflare account the bucket is made
 * in, Hetzner the keys made in its Console. Keys for Hetzner with another provider are refused
 * as secrets that nothing uses.
 */
function backupStorage(
  values: Record<string, unknown>,
  backup: BackupSpec,
  secretsElsewhere: boolean,
  fail: Fail,
): void {
  const KEYS = ["backupAccessKeyId", "backupSecretAccessKey"] as const;
  const isSet = (key: string) => values[key] !== undefined && values[key] !== "";
  if (backup.provider !== "hetzner") {
    for (const key of KEYS.filter(isSet)) {
      fail(
        key,
        `is set but backup.provider is ${backup.provider}: the key is for Hetzner Object Storage`,
        SECRET_SET,
      );
    }
  }
  if (!backup.enabled || secretsElsewhere) return;
  if (backup.provider === "hetzner") {
    const what = {
      backupAccessKeyId: "the access key",
      backupSecretAccessKey: "the secret key",
    };
    for (const key of KEYS.filter((k) => !isSet(k))) {
      fail(
        key,
        `is required when backup.provider is hetzner: ${what[key]} of an Object Storage ` +
          `credential made in the Hetzner Console (pulumi config set --secret mailstack:${key} ...)`,
        undefined,
      );
    }
  }
}

/** The settings of one `users[]` entry. */
const USER_KEYS = [
  "address",
  "aliases",
  "quotaMb",
  "openpgpKey",
  "appPasswords",
  "appPasswordsOnly",
];

/** A device name: short, lower case, usable in a resource name and a log line. */
const DEVICE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/;

/**
 * `users[i].appPasswords`: a list of device names (`"phone"`), or of `{name, protocols}` to
 * limit a device to some of MAIL_PROTOCOLS (`{name: "scanner", protocols: ["smtp"]}`).
 */
function appPasswordList(value: unknown, where: string, fail: Fail): AppPasswordSpec[] {
  if (value === undefined) return [];
  const usage = 'must be a list of device names or {name, protocols}, e.g. ["phone", "laptop"]';
  if (!Array.isArray(value)) {
    fail(where, usage, value);
    return [];
  }
  const list: AppPasswordSpec[] = [];
  value.forEach((entry: unknown, j) => {
    const at = `${where}[${j}]`;
    const obj: Record<string, unknown> =
      typeof entry === "string" ? { name: entry } : isObject(entry) ? entry : {};
    if (typeof entry !== "string" && !isObject(entry)) {
      fail(at, usage, entry);
      return;
    }
    for (const k of Object.keys(obj)) {
      if (k !== "name" && k !== "protocols") {
        fail(`${at}.${k}`, "is not an app password setting (known: name, protocols)", k);
      }
    }
    const name = obj.name;
    if (typeof name !== "string" || !DEVICE_NAME.test(name)) {
      fail(
        typeof entry === "string" ? at : `${at}.name`,
        "must be a device name of 1 to 32 characters a-z, 0-9 and '-' (e.g. phone, laptop-2)",
        name,
      );
      return;
    }
    if (list.some((d) => d.name === name)) {
      fail(at, `names the device '${name}' twice`, name);
      return;
    }
    let protocols = APP_PASSWORD_DEFAULT_PROTOCOLS;
    if (obj.protocols !== undefined) {
      const p = obj.protocols;
      const known = (x: unknown): x is MailProtocol =>
        typeof x === "string" && (MAIL_PROTOCOLS as readonly string[]).includes(x);
      if (!Array.isArray(p) || p.length === 0 || !p.every(known)) {
        fail(
          `${at}.protocols`,
          `must be a non-empty list of ${MAIL_PROTOCOLS.join(", ")} (what the device may open)`,
          p,
        );
        return;
      }
      protocols = MAIL_PROTOCOLS.filter((m) => p.includes(m));
    }
    list.push({ name, protocols });
  });
  return list;
}

const PUBLIC_KEY_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const PUBLIC_KEY_END = "-----END PGP PUBLIC KEY BLOCK-----";

/**
 * `users[i].openpgpKey`, checked for its armor only: the key itself is parsed
 * asynchronously by readOpenPgpKeys. A private key is refused here already, because
 * everything in this setting is published to the world.
 */
function armoredPublicKey(value: unknown, where: string, fail: Fail): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string") {
    fail(where, "must be an ASCII-armored OpenPGP public key (gpg --export --armor)", value);
    return undefined;
  }
  const text = value.trim();
  if (/-----BEGIN PGP PRIVATE KEY BLOCK-----/.test(text)) {
    fail(
      where,
      "must be a PUBLIC key: this one is private and would be published to anyone who asks " +
        "(export the public key with gpg --export --armor <address>)",
      new Described("a PGP PRIVATE KEY BLOCK (not shown)"),
    );
    return undefined;
  }
  if (!text.startsWith(PUBLIC_KEY_BEGIN) || !text.endsWith(PUBLIC_KEY_END)) {
    // Only the first line is shown: whatever was pasted may be long.
    fail(
      where,
      `must be an ASCII-armored OpenPGP public key, ${PUBLIC_KEY_BEGIN} to ${PUBLIC_KEY_END} ` +
        "(gpg --export --armor <address>)",
      text.split(/\r?\n/)[0],
    );
    return undefined;
  }
  return `${text}\n`;
}

/**
 * Users, their aliases and the group aliases. Every address must be inside the domain and
 * unique; every alias must end at a mailbox; alias chains must not loop. postmaster@ and
 * abuse@ are added as aliases of the first user when the config does not define them.
 */
function mailboxes(
  values: Record<string, unknown>,
  domain: string,
  usersMissing: boolean,
  fail: Fail,
): { users: UserSpec[]; aliases: Record<string, string[]> } {
  const users: UserSpec[] = [];
  const owner = new Map<string, string>(); // address -> where it was defined
  const claim = (address: string, where: string) => {
    const prev = owner.get(address);
    if (prev) fail(where, `duplicates ${prev}`, address);
    else owner.set(address, where);
  };
  // Every address here is one the host receives: + is refused (see emailProblem).
  const checkAddress = (address: unknown, where: string): string | undefined => {
    const a = typeof address === "string" ? address.trim().toLowerCase() : "";
    const why = emailProblem(a, { mailbox: true });
    if (why) {
      fail(where, why, address);
      return undefined;
    }
    if (domain && !a.endsWith(`@${domain}`)) {
      fail(where, `must be an address @${domain}`, address);
      return undefined;
    }
    return a;
  };

  const rawUsers = values.users;
  if (usersMissing) {
    fail("users", "is required: a list of {address, aliases?, quotaMb?, openpgpKey?}", undefined);
  } else if (rawUsers === undefined) {
    // unreadable, reported already
  } else if (!Array.isArray(rawUsers) || rawUsers.length === 0) {
    fail(
      "users",
      "must be a non-empty list of {address, aliases?, quotaMb?, openpgpKey?}",
      rawUsers,
    );
  } else {
    rawUsers.forEach((u: unknown, i) => {
      const where = `users[${i}]`;
      if (typeof u !== "object" || u === null || Array.isArray(u)) {
        fail(where, "must be an object {address, aliases?, quotaMb?, openpgpKey?}", u);
        return;
      }
      const obj = u as Record<string, unknown>;
      for (const k of Object.keys(obj)) {
        if (!USER_KEYS.includes(k)) {
          fail(`${where}.${k}`, `is not a user setting (known: ${USER_KEYS.join(", ")})`, k);
        }
      }
      const address = checkAddress(obj.address, `${where}.address`);
      if (address) claim(address, `${where}.address`);
      const aliases: string[] = [];
      if (obj.aliases !== undefined && !Array.isArray(obj.aliases)) {
        fail(`${where}.aliases`, "must be a list of addresses", obj.aliases);
      } else {
        ((obj.aliases as unknown[]) ?? []).forEach((al, j) => {
          const a = checkAddress(al, `${where}.aliases[${j}]`);
          if (!a) return;
          claim(a, `${where}.aliases[${j}]`);
          aliases.push(a);
        });
      }
      let quotaMb: number | undefined;
      if (obj.quotaMb !== undefined) {
        if (typeof obj.quotaMb === "number" && Number.isInteger(obj.quotaMb) && obj.quotaMb >= 1) {
          quotaMb = obj.quotaMb;
        } else fail(`${where}.quotaMb`, "must be a whole number of MiB, at least 1", obj.quotaMb);
      }
      const openpgpKey = armoredPublicKey(obj.openpgpKey, `${where}.openpgpKey`, fail);
      const appPasswords = appPasswordList(obj.appPasswords, `${where}.appPasswords`, fail);
      const appPasswordsOnly = obj.appPasswordsOnly ?? false;
      if (typeof appPasswordsOnly !== "boolean") {
        fail(`${where}.appPasswordsOnly`, "must be true or false", appPasswordsOnly);
      } else if (
        appPasswordsOnly &&
        appPasswords.length === 0 &&
        // An entry that failed is reported already.
        (!Array.isArray(obj.appPasswords) || obj.appPasswords.length === 0)
      ) {
        fail(
          `${where}.appPasswordsOnly`,
          "needs at least one users[].appPasswords entry: without one, nothing could open the mailbox",
          appPasswordsOnly,
        );
      }
      if (address) {
        users.push({
          address,
          aliases,
          ...(quotaMb ? { quotaMb } : {}),
          ...(openpgpKey ? { openpgpKey } : {}),
          appPasswords,
          appPasswordsOnly: appPasswordsOnly === true,
        });
      }
    });
  }

  const aliases: Record<string, string[]> = {};
  const rawAliases = values.aliases ?? {};
  if (typeof rawAliases !== "object" || rawAliases === null || Array.isArray(rawAliases)) {
    fail("aliases", "must be a map of alias address -> list of target addresses", rawAliases);
  } else {
    for (const [alias, targets] of Object.entries(rawAliases as Record<string, unknown>)) {
      const where = `aliases.${alias}`;
      const a = checkAddress(alias, where);
      if (!a) continue;
      claim(a, where);
      const list = typeof targets === "string" ? [targets] : targets;
      if (!Array.isArray(list) || list.length === 0) {
        fail(where, "must name one or more target addresses", targets);
        continue;
      }
      aliases[a] = list
        .map((t, j) => checkAddress(t, `${where}[${j}]`))
        .filter((t): t is string => t !== undefined);
    }
    // Every target must end at a mailbox, and following aliases must never come back.
    const mailboxAddresses = new Set(users.flatMap((u) => [u.address, ...u.aliases]));
    const resolve = (addr: string, path: string[]): void => {
      if (mailboxAddresses.has(addr)) return;
      if (!(addr in aliases)) {
        fail(
          `aliases.${path[0]}`,
          `points to ${addr}, which is no mailbox or alias`,
          aliases[path[0]],
        );
        return;
      }
      if (path.includes(addr)) {
        // Report each cycle once: from its alphabetically first member.
        const cycle = path.slice(path.indexOf(addr));
        if (addr === path[0] && cycle.every((c) => addr <= c)) {
          fail(`aliases.${addr}`, `loops: ${[...path, addr].join(" -> ")}`, aliases[addr]);
        }
        return;
      }
      for (const t of aliases[addr]) resolve(t, [...path, addr]);
    };
    for (const alias of Object.keys(aliases)) {
      for (const t of aliases[alias]) resolve(t, [alias]);
    }
  }

  if (domain && users.length > 0) {
    for (const role of ROLE_MAILBOXES) {
      const addr = `${role}@${domain}`;
      if (!owner.has(addr)) aliases[addr] = [users[0].address];
    }
  }
  return { users, aliases };
}

function isDeliverable(
  address: string,
  users: UserSpec[],
  aliases: Record<string, string[]>,
): boolean {
  return (
    users.some((u) => u.address === address || u.aliases.includes(address)) || address in aliases
  );
}
