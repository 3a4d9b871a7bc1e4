import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { AcmeToken, tokenExpiryNotice } from "./acme-token";
import { MailBackup } from "./backup";
import { discoverySite } from "./discovery";
import { MailDiscovery } from "./discovery-worker";
import { clientSettings, type ClientSettings } from "./client-settings";
import type { MailStackConfig } from "./config";
import { adminTotpUri } from "./admin-mfa";
import { monthlyCostEur } from "./cost";
import { MailDns, recordResourceNames } from "./dns";
import { checkExistingRecords } from "./existing-records";
import { inboundRules } from "./firewall";
import { stackAcme, stackHostFiles, type BackupSettings } from "./host-files";
import { MailKeys } from "./keys";
import { Provisioning } from "./provisioning";
import { recordSummary } from "./records";
import { MailServer } from "./server";

export interface MailStackArgs {
  /** The validated config (components/config.ts). */
  config: MailStackConfig;
  /**
   * Cloudflare token the host uses for ACME DNS-01 (`mailstack:acmeDnsToken`, secret), when
   * the user supplies one. Unset: the stack makes its own (AcmeToken), narrower one.
   */
  acmeDnsToken?: pulumi.Input<string>;
  /** SASL password at `relayHost` (`mailstack:relayPassword`, secret). */
  relayPassword?: pulumi.Input<string>;
  /**
   * Private key of the account on the bastion (`mailstack:sshProxyPrivateKey`, secret);
   * required with `config.sshProxy`.
   */
  sshProxyPrivateKey?: pulumi.Input<string>;
  /**
   * Hetzner Object Storage access key (`mailstack:backupAccessKeyId`, secret); required with
   * `backup.provider: hetzner`.
   */
  backupAccessKeyId?: pulumi.Input<string>;
  /** Its secret key (`mailstack:backupSecretAccessKey`, secret). */
  backupSecretAccessKey?: pulumi.Input<string>;
  /**
   * The Web Key Directory's keys: address to binary public key, as `readOpenPgpKeys` reads
   * them from `users[].openpgpKey` (checked before the stack is made). None when absent.
   */
  openpgpKeys?: Record<string, Uint8Array>;
}

/**
 * The whole mail server: keys, the Hetzner server with its addresses, firewall and volume,
 * every DNS record, and the provisioning of secrets and day-2 settings. What index.ts,
 * staging stacks and the tests instantiate.
 */
export class MailStack extends pulumi.ComponentResource {
  readonly keys: MailKeys;
  readonly server: MailServer;
  readonly dns: MailDns;
  readonly provisioning: Provisioning;
  /** The host's DNS token, when the stack makes it (no `acmeDnsToken` supplied). */
  readonly acmeToken?: AcmeToken;
  /** Bucket, credentials and restic password; unset when `backup.enabled` is false. */
  readonly backup?: MailBackup;
  /** The Worker serving the MTA-STS policy, autoconfig and the Web Key Directory. */
  readonly discovery: MailDiscovery;

  readonly mailHost: string;
  readonly ipv4: pulumi.Output<string>;
  readonly ipv6: pulumi.Output<string>;
  readonly dnsRecords: pulumi.Output<
    { name: string; type: string; content: string; priority?: number }[]
  >;
  readonly dkimSelector: string;
  readonly clientSettings: ClientSettings;
  /** address -> generated password; secret. */
  readonly userPasswords: pulumi.Output<Record<string, string>>;
  /**
   * address -> device -> the app password the stack generated for it (users[].appPasswords);
   * secret. Users without app passwords are absent.
   */
  readonly userAppPasswords: pulumi.Output<Record<string, Record<string, string>>>;
  /**
   * With adminMfa totp: the admin account's TOTP secret as an otpauth:// URI, for an
   * authenticator app (scan it as a QR code); secret. Unset otherwise.
   */
  readonly adminTotpUri: pulumi.Output<string> | undefined;
  /** Password of Rspamd's web interface (loopback only: reach it through SSH); secret. */
  readonly rspamdControllerPassword: pulumi.Output<string>;
  readonly monthlyCostEur: number | undefined;
  readonly dnssecDs: pulumi.Output<string> | undefined;
  /** The backup bucket's name; unset without backups. */
  readonly backupBucket: pulumi.Output<string> | undefined;
  /** restic's repository, `s3:<endpoint>/<bucket>/<mail host>`; unset without backups. */
  readonly backupRepository: string | undefined;
  /** restic's repository password; secret; unset without backups. */
  readonly backupPassword: pulumi.Output<string> | undefined;

  /**
   * Stops the run when the zone already holds an SPF or DMARC record that the stack does not
   * manage (components/existing-records.ts); the message names the record and the
   * `pulumi import` that adopts it. Await it before constructing the MailStack `name` at the
   * root of the stack, as index.ts does, so that nothing is registered when it fails.
   */
  static checkZone(name: string, config: MailStackConfig): Promise<void> {
    const dns = dnsName(name);
    return checkExistingRecords({
      domain: config.domain,
      zoneId: config.cloudflareZoneId,
      resourceNames: recordResourceNames(dns, config, "TXT"),
      parentName: dns,
      parentUrn:
        `urn:pulumi:${pulumi.getStack()}::${pulumi.getProject()}::` +
        `mailstack:index:MailStack$mailstack:index:MailDns::${dns}`,
    });
  }

  constructor(name: string, args: MailStackArgs, opts?: pulumi.ComponentResourceOptions) {
    // The settings a policy pack judges the stack by are its recorded inputs.
    const cfg = args.config;
    super(
      "mailstack:index:MailStack",
      name,
      {
        domain: cfg.domain,
        location: cfg.location,
        dmarcPolicy: cfg.dmarcPolicy,
        mtaStsMode: cfg.mtaStsMode,
        protect: cfg.protect,
      },
      opts,
    );
    const parent = { parent: this };

    // An expired token stops the run before anything changes; one about to expire warns.
    if (args.acmeDnsToken === undefined) {
      const notice = tokenExpiryNotice(cfg.acmeTokenExpiresOn, new Date());
      if (notice?.level === "error") throw new pulumi.ResourceError(notice.message, this);
      if (notice) void pulumi.log.warn(notice.message, this);
    }

    // Checked by parseConfig for a stack; a program that builds the args itself is told too.
    if (cfg.sshProxy && args.sshProxyPrivateKey === undefined) {
      throw new pulumi.ResourceError(
        "mailstack:sshProxyPrivateKey: is required when sshProxy is set: the private key of " +
          "the bastion's account (pulumi config set --secret mailstack:sshProxyPrivateKey < key)",
        this,
      );
    }

    // Checked by parseConfig for a stack (readConfig); a program that builds the args itself
    // is told too, before anything of the stack is made.
    if (cfg.backup.enabled && cfg.backup.provider === "hetzner") {
      const missing = (["backupAccessKeyId", "backupSecretAccessKey"] as const).filter(
        (k) => args[k] === undefined,
      );
      if (missing.length > 0) {
        throw new pulumi.ResourceError(
          `${missing.map((k) => `mailstack:${k}`).join(", ")}: ` +
            `${missing.length === 1 ? "is" : "are"} required when ` +
            "backup.provider is hetzner: an Object Storage credential made in the Hetzner " +
            `Console (pulumi config set --secret mailstack:${missing[0]} ...)`,
          this,
        );
      }
    }
    if (!cfg.cloudflareAccountId) {
      throw new pulumi.ResourceError(
        "mailstack:cloudflareAccountId: is required: the account the stack's Worker and the " +
          "R2 backup bucket are made in",
        this,
      );
    }

    // The mail encryption key is protected with the volume whose mail it unlocks.
    this.keys = new MailKeys(`${name}-keys`, { protect: cfg.protect }, parent);

    this.server = new MailServer(
      `${name}-host`,
      {
        location: cfg.location,
        serverType: cfg.serverType,
        image: cfg.image,
        hostname: cfg.hostname,
        mailHost: cfg.mailHost,
        volumeSizeGb: cfg.volumeSizeGb,
        firewall: inboundRules(cfg),
        protect: cfg.protect,
        deployPublicKey: this.keys.deploy.publicKeyOpenssh,
        hostKey: {
          privateOpenssh: this.keys.sshHost.privateKeyOpenssh,
          publicOpenssh: this.keys.sshHost.publicKeyOpenssh,
        },
        labels: {
          stack: labelValue(pulumi.getStack()),
          // Throw-away stacks carry their expiry, as Unix seconds, for the janitor and the console.
          ...(cfg.expiresAt ? { expires: String(Date.parse(cfg.expiresAt) / 1000) } : {}),
        },
      },
      parent,
    );

    this.dns = new MailDns(
      dnsName(name),
      {
        zoneId: cfg.cloudflareZoneId,
        settings: cfg,
        ipv4: this.server.ipv4,
        ipv6: this.server.ipv6,
        dkimPublicKeyPem: this.keys.dkim.publicKeyPem,
        tlsPublicKeyPem: this.keys.tls.publicKeyPem,
        protect: cfg.protect,
        ...(cfg.universalSsl !== undefined ? { universalSsl: cfg.universalSsl } : {}),
      },
      parent,
    );

    // The MTA-STS policy whose digest the `_mta-sts` record above carries, and what mail
    // clients and OpenPGP clients look up, served from Cloudflare: port 443 stays closed here.
    this.discovery = new MailDiscovery(
      `${name}-discovery`,
      {
        accountId: cfg.cloudflareAccountId,
        zoneId: cfg.cloudflareZoneId,
        domain: cfg.domain,
        site: discoverySite(cfg, args.openpgpKeys ?? {}),
      },
      parent,
    );

    // The host's DNS-01 credential: supplied, or made here for exactly what renewal needs.
    let acmeDnsToken: pulumi.Input<string>;
    if (args.acmeDnsToken !== undefined) {
      acmeDnsToken = args.acmeDnsToken;
    } else {
      this.acmeToken = new AcmeToken(
        `${name}-acme-token`,
        {
          zoneId: cfg.acmeChallengeZoneId ?? cfg.cloudflareZoneId,
          mailHost: cfg.mailHost,
          stack: pulumi.getStack(),
          ipv4: this.server.ipv4,
          ipv6Network: this.server.primaryIpv6.ipNetwork,
          ...(cfg.acmeTokenExpiresOn ? { expiresOn: cfg.acmeTokenExpiresOn } : {}),
        },
        parent,
      );
      acmeDnsToken = this.acmeToken.value;
    }

    // Encrypted offsite backups: storage, credentials and the repository's password.
    let backup: pulumi.Output<BackupSettings | undefined> = pulumi.output(undefined);
    if (cfg.backup.enabled) {
      const b = cfg.backup;
      this.backup = new MailBackup(
        `${name}-backup`,
        {
          provider: b.provider,
          bucket: b.bucket,
          mailHost: cfg.mailHost,
          stack: pulumi.getStack(),
          protect: cfg.protect,
          ...(b.provider === "r2"
            ? {
                cloudflareAccountId: cfg.cloudflareAccountId,
                ipv4: this.server.ipv4,
                ipv6Network: this.server.primaryIpv6.ipNetwork,
              }
            : {
                location: b.location,
                accessKeyId: args.backupAccessKeyId,
                secretAccessKey: args.backupSecretAccessKey,
              }),
        },
        parent,
      );
      const repository = this.backup.repository;
      backup = pulumi
        .all([this.backup.accessKeyId, this.backup.secretAccessKey, this.backup.password])
        .apply(([accessKeyId, secretAccessKey, password]) => ({
          repository,
          accessKeyId,
          secretAccessKey,
          password,
          schedule: b.schedule,
          keepDaily: b.keepDaily,
          keepWeekly: b.keepWeekly,
          keepMonthly: b.keepMonthly,
        }));
    }

    const passwords = cfg.users.map(
      (u) =>
        [
          u.address,
          new random.RandomPassword(
            `${name}-password-${u.address.replace(/[^a-z0-9]+/g, "-")}`,
            // 24 letters and digits: ~142 bits, and nothing a mail client mangles.
            { length: 24, special: false },
            parent,
          ).result,
        ] as const,
    );

    // One per device: removing a device from the list deletes its resource, and with it the
    // password's line on the host (revoked); the others keep theirs.
    const appPasswords = cfg.users.flatMap((u) =>
      u.appPasswords.map(
        (d) =>
          [
            u.address,
            d.name,
            new random.RandomPassword(
              `${name}-app-password-${u.address.replace(/[^a-z0-9]+/g, "-")}-${d.name}`,
              { length: 24, special: false },
              parent,
            ).result,
          ] as const,
      ),
    );
    const appPasswordMap = pulumi.all(appPasswords.map(([, , pw]) => pw)).apply((pws) => {
      const map: Record<string, Record<string, string>> = {};
      appPasswords.forEach(([address, device], i) => {
        (map[address] ??= {})[device] = pws[i];
      });
      return map;
    });

    const rspamdPassword = new random.RandomPassword(
      `${name}-rspamd-controller`,
      { length: 24, special: false },
      parent,
    ).result;
    // 20 random bytes, the length RFC 4226 recommends for HMAC-SHA1; kept in the state, so
    // the authenticator apps set up once keep working across deployments.
    const totpHex =
      cfg.adminMfa === "totp"
        ? new random.RandomBytes(`${name}-admin-totp`, { length: 20 }, parent).hex
        : undefined;
    const passwordMap = pulumi
      .all(passwords.map(([, pw]) => pw))
      .apply((pws) => Object.fromEntries(passwords.map(([address], i) => [address, pws[i]])));

    const keys = pulumi.all([
      this.keys.dkim.privateKeyPem,
      this.keys.tls.privateKeyPem,
      // Dovecot reads the mail_crypt key as PKCS#8 only.
      this.keys.mailCrypt.privateKeyPemPkcs8,
      this.keys.mailCrypt.publicKeyPem,
    ]);
    const secrets = pulumi.all([
      passwordMap,
      appPasswordMap,
      rspamdPassword,
      acmeDnsToken,
      pulumi.output(args.relayPassword),
      backup,
      pulumi.output(totpHex),
    ]);
    const files = pulumi
      .all([keys, secrets, this.server.ipv4, this.server.ipv6])
      .apply(
        ([
          [dkimPrivateKeyPem, tlsPrivateKeyPem, mailCryptPrivateKeyPem, mailCryptPublicKeyPem],
          [
            passwords,
            appPasswords,
            rspamdControllerPassword,
            acmeDnsToken,
            relayPassword,
            backup,
            totp,
          ],
          ipv4,
          ipv6,
        ]) =>
          stackHostFiles(cfg, {
            dkimPrivateKeyPem,
            tlsPrivateKeyPem,
            mailCrypt: {
              privateKeyPem: mailCryptPrivateKeyPem,
              publicKeyPem: mailCryptPublicKeyPem,
            },
            ipv4,
            ipv6,
            passwords,
            appPasswords,
            rspamdControllerPassword,
            relayPassword,
            ...(totp ? { adminTotpSecretHex: totp } : {}),
            acme: stackAcme(cfg, acmeDnsToken),
            ...(backup ? { backup } : {}),
          }),
      );
    this.provisioning = new Provisioning(
      `${name}-provision`,
      {
        host: this.server.ipv4,
        hostPublicKey: this.keys.sshHost.publicKeyOpenssh,
        deployPrivateKey: this.keys.deploy.privateKeyOpenssh,
        files,
        volumeAttachment: this.server.volumeAttachment,
        // A new server is provisioned from scratch; a bigger volume grows its file system.
        triggers: [this.server.server.id, this.server.volume.size],
        ...(cfg.sshProxy && args.sshProxyPrivateKey !== undefined
          ? { proxy: { ...cfg.sshProxy, privateKey: pulumi.secret(args.sshProxyPrivateKey) } }
          : {}),
      },
      parent,
    );

    this.mailHost = cfg.mailHost;
    this.ipv4 = this.server.ipv4;
    this.ipv6 = this.server.ipv6;
    this.dnsRecords = this.dns.records.apply(recordSummary);
    this.dkimSelector = cfg.dkimSelector;
    this.clientSettings = clientSettings(cfg.mailHost);
    this.userPasswords = pulumi.secret(passwordMap);
    this.userAppPasswords = pulumi.secret(appPasswordMap);
    this.rspamdControllerPassword = pulumi.secret(rspamdPassword);
    this.adminTotpUri =
      totpHex && pulumi.secret(totpHex.apply((hex) => adminTotpUri(cfg.mailHost, hex)));
    this.monthlyCostEur = monthlyCostEur(cfg.serverType, cfg.volumeSizeGb);
    if (this.monthlyCostEur === undefined) {
      void pulumi.log.warn(
        `no price known for server type ${cfg.serverType}: monthlyCostEur is not set`,
        this,
      );
    }
    this.dnssecDs = this.dns.dnssecDs;
    this.backupBucket = this.backup?.bucket;
    this.backupRepository = this.backup?.repository;
    this.backupPassword = this.backup ? pulumi.secret(this.backup.password) : undefined;

    this.registerOutputs({
      mailHost: this.mailHost,
      ipv4: this.ipv4,
      ipv6: this.ipv6,
      dnsRecords: this.dnsRecords,
      userPasswords: this.userPasswords,
      userAppPasswords: this.userAppPasswords,
      backupBucket: this.backupBucket,
      backupRepository: this.backupRepository,
      backupPassword: this.backupPassword,
    });
  }
}

/** The name of a MailStack's MailDns, the parent of its records. */
function dnsName(name: string): string {
  return `${name}-dns`;
}

/** Hetzner label values: up to 63 of [a-z0-9._-], starting and ending alphanumeric. */
function labelValue(text: string): string {
  return (
    text
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, "-")
      .slice(0, 63)
      .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "") || "stack"
  );
}
