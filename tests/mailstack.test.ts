// The MailStack under Pulumi mocks: each test finds resources by type and name and asserts
// the inputs they were given.
import * as pulumi from "@pulumi/pulumi";
import { Secret } from "otpauth";
import { createHash } from "node:crypto";
import { parseConfig, type MailStackConfig } from "../components/config";
import { discoverySite, workerScript } from "../components/discovery";
import { WORKER_COMPATIBILITY_DATE, discoveryScriptName } from "../components/discovery-worker";
import { mtaStsId, txtValue } from "../components/keymath";
import type { MailStack as MailStackType } from "../components/mailstack";
import { buildMailRecords } from "../components/records";
import { argon2Verify } from "hash-wasm";
import { treePaths } from "../components/host-config";
import { PROVISION_SCRIPT, type StackHostInputs } from "../components/host-files";
import { guardedChanges } from "../scripts/replacements";
import { ADMIN_KEY, PROD_RAW, STAGING_RAW } from "./support/config";
import {
  BASTION_HOST_KEY,
  DEPLOY_KEY,
  DKIM_KEY,
  JUMP_KEY,
  MAIL_CRYPT_KEY,
  SSH_HOST_KEY,
  TLS_KEY,
} from "./support/keys";
import {
  MOCK_IPV4,
  MOCK_IPV6_NETWORK,
  installMocks,
  resource,
  resources,
  secretInput,
  settle,
  value,
  type MockedResource,
} from "./support/mocks";

interface Deployed {
  stack: MailStackType;
  config: MailStackConfig;
  opts: Map<string, pulumi.CustomResourceOptions>;
  of: (type: string) => MockedResource[];
  one: (type: string, suffix?: string) => MockedResource;
}

async function deploy(name: string, raw: Record<string, unknown>): Promise<Deployed> {
  const { MailStack } = await import("../components/mailstack");
  const config = parseConfig(raw);
  const opts = new Map<string, pulumi.CustomResourceOptions>();
  const stack = new MailStack(
    name,
    {
      config,
      // A stack without the key gets a token the stack makes (AcmeToken).
      ...(raw.acmeDnsToken !== undefined
        ? { acmeDnsToken: pulumi.secret(`cf-dns-token-${name}`) }
        : {}),
      ...(raw.sshProxyPrivateKey !== undefined
        ? { sshProxyPrivateKey: pulumi.secret(String(raw.sshProxyPrivateKey)) }
        : {}),
      ...(raw.backupAccessKeyId !== undefined
        ? {
            backupAccessKeyId: pulumi.secret(String(raw.backupAccessKeyId)),
            backupSecretAccessKey: pulumi.secret(String(raw.backupSecretAccessKey)),
          }
        : {}),
    },
    {
      // Records every child's options, so protection and replacement order can be asserted.
      transformations: [
        (args) => {
          opts.set(args.name, args.opts as pulumi.CustomResourceOptions);
          return undefined;
        },
      ],
    },
  );
  await settle();
  const of = (type: string) => resources(type, `${name}-`);
  const one = (type: string, suffix = "") => resource(type, `${name}-${suffix}`);
  return { stack, config, opts, of, one };
}

const T = {
  firewall: "hcloud:index/firewall:Firewall",
  server: "hcloud:index/server:Server",
  volume: "hcloud:index/volume:Volume",
  attachment: "hcloud:index/volumeAttachment:VolumeAttachment",
  ip: "hcloud:index/primaryIp:PrimaryIp",
  rdns: "hcloud:index/rdns:Rdns",
  sshKey: "hcloud:index/sshKey:SshKey",
  record: "cloudflare:index/dnsRecord:DnsRecord",
  dnssec: "cloudflare:index/zoneDnssec:ZoneDnssec",
  command: "command:remote:Command",
  apiToken: "cloudflare:index/apiToken:ApiToken",
  password: "random:index/randomPassword:RandomPassword",
  universalSsl: "cloudflare:index/universalSslSetting:UniversalSslSetting",
  bucket: "cloudflare:index/r2Bucket:R2Bucket",
  workerScript: "cloudflare:index/workersScript:WorkersScript",
  customDomain: "cloudflare:index/workersCustomDomain:WorkersCustomDomain",
  key: "tls:index/privateKey:PrivateKey",
};

let prod: Deployed;
let staging: Deployed;
/** Prod as a hosted runner deploys it: through a bastion (mailstack:sshProxy). */
let jump: Deployed;
/** A stack with a challenge zone and the token made by the stack (no acmeDnsToken). */
let narrowed: Deployed;

const CHALLENGE_ZONE_ID = "ffffffffffffffffffffffffffffffff";
const NARROWED_RAW: Record<string, unknown> = {
  ...PROD_RAW,
  domain: "example.org",
  users: JSON.stringify([{ address: "alice@example.org" }]),
  aliases: undefined,
  acmeEmail: "hostmaster@example.org",
  acmeChallengeZone: "acme-example.net",
  acmeChallengeZoneId: CHALLENGE_ZONE_ID,
  acmeTokenExpiresOn: "2099-01-01T00:00:00Z",
};
delete NARROWED_RAW.acmeDnsToken;

const JUMP_RAW: Record<string, unknown> = {
  ...PROD_RAW,
  sshProxy: JSON.stringify({
    host: "bastion.example.eu",
    user: "mailstack-jump",
    hostPublicKey: `${BASTION_HOST_KEY.publicOpenssh.trim()} root@bastion`,
  }),
  sshProxyPrivateKey: JUMP_KEY.privateOpenssh,
};

/** The files provisioning sends, by path (after the first line, the program). */
function sentFiles(d: Deployed): Record<string, { mode: string; owner: string; content: string }> {
  return Object.fromEntries(
    secretInput(d.one(T.command, "provision-install").inputs.stdin)
      .trim()
      .split("\n")
      .slice(1)
      .map((line) => {
        const [path, mode, owner, , b64] = line.split(" ");
        return [path, { mode, owner, content: Buffer.from(b64, "base64").toString() }];
      }),
  );
}

/**
 * What each stack handed the host files (components/host-files.ts stackHostFiles), by its
 * config: the backup settings the host's restic gets are among them. A module mock, as
 * swc's exports are read-only to jest.spyOn; jest hoists it above the imports, and the map,
 * made below it, is used only once MailStack calls stackHostFiles.
 */
const mockHostInputs = new Map<MailStackConfig, StackHostInputs>();
jest.mock("../components/host-files", () => {
  const actual = jest.requireActual<typeof import("../components/host-files")>(
    "../components/host-files",
  );
  return {
    ...actual,
    stackHostFiles: (cfg: MailStackConfig, inputs: StackHostInputs) => {
      mockHostInputs.set(cfg, inputs);
      return actual.stackHostFiles(cfg, inputs);
    },
  };
});

beforeAll(async () => {
  await installMocks();
  prod = await deploy("prod", PROD_RAW);
  staging = await deploy("stg", STAGING_RAW);
  narrowed = await deploy("narrow", NARROWED_RAW);
  jump = await deploy("jump", JUMP_RAW);
});

describe("Hetzner", () => {
  test("the firewall opens exactly the mail ports to all, SSH and exporters to their lists, and ICMP", () => {
    const rules = prod.one(T.firewall).inputs.rules;
    expect(rules.map((r: any) => [r.direction, r.protocol, r.port, r.sourceIps])).toEqual([
      ["in", "tcp", "25", ["0.0.0.0/0", "::/0"]],
      ["in", "tcp", "465", ["0.0.0.0/0", "::/0"]],
      ["in", "tcp", "587", ["0.0.0.0/0", "::/0"]],
      ["in", "tcp", "993", ["0.0.0.0/0", "::/0"]],
      ["in", "tcp", "4190", ["0.0.0.0/0", "::/0"]],
      ["in", "tcp", "22", ["198.51.100.7/32", "2001:db8:7::/48"]],
      ["in", "tcp", "9100", ["198.51.100.50/32"]],
      ["in", "tcp", "9154", ["198.51.100.50/32"]],
      ["in", "tcp", "9900", ["198.51.100.50/32"]],
      ["in", "icmp", undefined, ["0.0.0.0/0", "::/0"]],
    ]);
  });

  test("without sshAllowedIps or monitoring, SSH is open and no exporter port is", () => {
    const ports = staging.one(T.firewall).inputs.rules.map((r: any) => r.port ?? r.protocol);
    expect(ports).toEqual(["25", "465", "587", "993", "4190", "22", "icmp"]);
  });

  test("the firewall is attached through firewallIds, so it applies before first boot", () => {
    const fw = prod.one(T.firewall);
    expect(prod.one(T.server).inputs.firewallIds).toEqual([Number(fw.id)]);
  });

  test("server, volume and addresses are in the configured EU location", () => {
    for (const r of [prod.one(T.server), prod.one(T.volume), ...prod.of(T.ip)]) {
      expect([r.name, r.inputs.location]).toEqual([r.name, "nbg1"]);
    }
    expect(staging.one(T.server).inputs.location).toBe("fsn1");
  });

  test("the server boots the configured image and type, named after the MX host", () => {
    expect(prod.one(T.server).inputs).toMatchObject({
      name: "mail.example.eu",
      image: "debian-13",
      serverType: "cx23",
      shutdownBeforeDeletion: true,
    });
  });

  test("both Primary IPs outlive the server and are bound to it", () => {
    const ips = prod.of(T.ip);
    expect(ips.map((r) => [r.inputs.type, r.inputs.autoDelete, r.inputs.assigneeType])).toEqual([
      ["ipv4", false, "server"],
      ["ipv6", false, "server"],
    ]);
    const [v4, v6] = ips;
    expect(prod.one(T.server).inputs.publicNets).toEqual([
      { ipv4Enabled: true, ipv4: Number(v4.id), ipv6Enabled: true, ipv6: Number(v6.id) },
    ]);
  });

  test("reverse DNS of both addresses is the MX host", () => {
    const [v4, v6] = prod.of(T.ip);
    const ptr = prod.of(T.rdns).map((r) => r.inputs);
    expect(ptr).toEqual([
      { primaryIpId: Number(v4.id), ipAddress: MOCK_IPV4, dnsPtr: "mail.example.eu" },
      { primaryIpId: Number(v6.id), ipAddress: "2001:db8:4d2::1", dnsPtr: "mail.example.eu" },
    ]);
  });

  test("the mail volume is ext4, sized as configured, attached without automount", () => {
    const vol = prod.one(T.volume);
    expect(vol.inputs).toMatchObject({ size: 20, format: "ext4", automount: false });
    expect(prod.one(T.attachment).inputs).toEqual({
      serverId: Number(prod.one(T.server).id),
      volumeId: Number(vol.id),
      automount: false,
    });
  });

  test("prod protects volume and addresses, in Pulumi and at Hetzner", () => {
    for (const r of [prod.one(T.volume), ...prod.of(T.ip)]) {
      expect([r.name, prod.opts.get(r.name)?.protect, r.inputs.deleteProtection]).toEqual([
        r.name,
        true,
        true,
      ]);
    }
  });

  test("staging protects nothing", () => {
    for (const r of [staging.one(T.volume), ...staging.of(T.ip)]) {
      expect([
        r.name,
        staging.opts.get(r.name)?.protect ?? false,
        r.inputs.deleteProtection,
      ]).toEqual([r.name, false, false]);
    }
  });

  test("a replacement server is created only after the old one released IPs and volume", () => {
    const server = prod.one(T.server);
    expect(prod.opts.get(server.name)?.deleteBeforeReplace).toBe(true);
    expect(prod.opts.get(prod.one(T.attachment).name)?.deleteBeforeReplace).toBe(true);
  });

  test("the only Hetzner SSH key is the stack's deployment key", () => {
    const key = prod.one(T.sshKey);
    expect(prod.one(T.server).inputs.sshKeys).toEqual([key.id]);
  });

  test("the deployment key goes to Hetzner as Hetzner stores it: without the trailing newline", () => {
    // The tls provider's publicKeyOpenssh ends in "\n"; Hetzner trims it on POST /ssh_keys
    // and the hcloud provider reads the trimmed value back, so an untrimmed input would plan
    // a replacement of the key (and, through sshKeys, of the server) on every later run.
    expect(DEPLOY_KEY.publicOpenssh.endsWith("\n")).toBe(true);
    const key = prod.one(T.sshKey);
    expect(key.inputs.publicKey).toBe(DEPLOY_KEY.publicOpenssh.trim());
    // Hetzner refuses a second key with the same fingerprint: delete before replace.
    expect(prod.opts.get(key.name)?.deleteBeforeReplace).toBe(true);
  });

  test("a changed Hetzner key never replaces the server; userData still authorizes the deployment key", () => {
    expect(prod.opts.get(prod.one(T.server).name)?.ignoreChanges).toEqual(["sshKeys"]);
    const userData = secretInput(prod.one(T.server).inputs.userData);
    expect(userData).toContain(DEPLOY_KEY.publicOpenssh.trim());
  });
});

describe("the mail encryption key (mail_crypt)", () => {
  // Mail stored under a key is readable with that key alone: a replaced key would leave every
  // message on the volume unreadable, so nothing but its own (constant) inputs may touch it.
  test("is ECDSA P-256 with no input from the config: no setting can replace it", async () => {
    const changed = await deploy("rekey", {
      ...PROD_RAW,
      hostname: "mx",
      location: "hel1",
      serverType: "cx33",
      users: JSON.stringify([{ address: "carol@example.eu", quotaMb: 100 }]),
      aliases: undefined,
      clamav: "false",
      dkimSelector: "s2",
      volumeSizeGb: "80",
      protect: "false",
    });
    for (const d of [prod, staging, narrowed, jump, changed]) {
      const key = d.one(T.key, "keys-mail-crypt");
      expect([key.name, key.inputs]).toEqual([
        key.name,
        { algorithm: "ECDSA", ecdsaCurve: "P256" },
      ]);
    }
  });

  test("the deploy's replacement check knows it by its URN, and no other key", async () => {
    const keys = prod.stack.keys;
    const deleted = async (k: { urn: pulumi.Output<string> }) =>
      guardedChanges({ steps: [{ op: "delete", urn: await value(k.urn) }] }).length;
    expect(await deleted(keys.mailCrypt)).toBe(1);
    for (const k of [keys.dkim, keys.tls, keys.sshHost, keys.deploy]) {
      expect(await deleted(k)).toBe(0);
    }
  });

  test("is protected in prod, with the volume whose mail it unlocks; staging protects neither", () => {
    const key = (d: Deployed) => d.opts.get(d.one(T.key, "keys-mail-crypt").name)?.protect ?? false;
    expect([key(prod), prod.opts.get(prod.one(T.volume).name)?.protect]).toEqual([true, true]);
    expect(key(staging)).toBe(false);
    // The other keys can be made again without losing anything stored: not protected.
    for (const suffix of ["keys-dkim", "keys-tls", "keys-ssh-host", "keys-deploy"]) {
      expect([suffix, prod.opts.get(prod.one(T.key, suffix).name)?.protect ?? false]).toEqual([
        suffix,
        false,
      ]);
    }
  });

  test("reaches the host as PKCS#8 beside its public key, root's alone, by the secret provisioning input", () => {
    const files = sentFiles(prod);
    expect(files["/etc/dovecot/mail-crypt/private.pem"]).toEqual({
      mode: "0600",
      owner: "root",
      content: MAIL_CRYPT_KEY.privatePem,
    });
    expect(files["/etc/dovecot/mail-crypt/public.pem"]).toEqual({
      mode: "0644",
      owner: "root",
      content: MAIL_CRYPT_KEY.publicPem,
    });
    // Not the SEC1 privateKeyPem the provider also offers: Dovecot cannot parse that one.
    expect(MAIL_CRYPT_KEY.sec1Pem).toMatch(/^-----BEGIN EC PRIVATE KEY-----/);
    const userData = secretInput(prod.one(T.server).inputs.userData);
    expect(userData).not.toContain(MAIL_CRYPT_KEY.privatePem.split("\n")[1]);
  });
});

describe("userData", () => {
  // Hetzner replaces the server when userData changes by one byte.
  test("is byte-identical whatever the day-2 settings: users, keys, firewall, ClamAV, DNS", async () => {
    const changed = await deploy("day2", {
      ...PROD_RAW,
      users: JSON.stringify([{ address: "carol@example.eu", quotaMb: 100 }]),
      aliases: undefined,
      sshAllowedIps: JSON.stringify(["192.0.2.0/24"]),
      monitoringAllowedIps: JSON.stringify(["192.0.2.9/32"]),
      clamav: "false",
      dmarcPolicy: "quarantine",
      logRetentionDays: "3",
      volumeSizeGb: "80",
      backup: JSON.stringify({ schedule: "*-*-* 03:00", keepDaily: 3, bucket: "day2-backups" }),
    });
    // Only the volume's device differs: each mocked volume gets its own id.
    const userData = (d: Deployed) =>
      secretInput(d.one(T.server).inputs.userData).replace(/scsi-0HC_Volume_\d+/, "VOLUME");
    expect(userData(changed)).toBe(userData(prod));
    // The control: the settings did reach the host, through provisioning.
    expect(sentFiles(changed)["/etc/mailstack/packages.list"].content).not.toContain("clamav");
    expect(sentFiles(prod)["/etc/mailstack/packages.list"].content).toContain("clamav");
  });

  test("is the rendered cloud-init, secret, with the pinned host key and the volume's device", async () => {
    const { server } = prod.stack.server;
    expect(await pulumi.isSecret(server.userData)).toBe(true);
    const userData = secretInput(prod.one(T.server).inputs.userData);
    expect(userData).toBe(await value(prod.stack.server.userData));
    expect(userData.startsWith("#cloud-config\n")).toBe(true);
    expect(userData).toContain(SSH_HOST_KEY.privateOpenssh.split("\n")[3]);
    expect(userData).toContain(`/dev/disk/by-id/scsi-0HC_Volume_${prod.one(T.volume).id}`);
  });

  test("holds no admin key, DKIM or TLS key, nor any setting that may change on a running host", () => {
    const userData = secretInput(prod.one(T.server).inputs.userData);
    expect(userData.match(/PRIVATE KEY-----/g)).toHaveLength(2); // BEGIN and END of the host key
    expect(userData).not.toContain(DKIM_KEY.privatePem.split("\n")[1]);
    expect(userData).not.toContain(TLS_KEY.privatePem.split("\n")[1]);
    for (const dayTwo of [
      "198.51.100.7/32",
      "198.51.100.50/32",
      "alice@laptop",
      "alice@example.eu",
      "team@example.eu",
      // The daemons' configuration travels by provisioning: a user, quota or alias change
      // re-runs provisioning and never replaces the server.
      "smtpd_",
      "passwd_file_path",
      "ARGON2ID",
      "dkim_signing",
    ]) {
      expect([dayTwo, userData.includes(dayTwo)]).toEqual([dayTwo, false]);
    }
  });
});

describe("Cloudflare", () => {
  test("publishes exactly the builder's records, none proxied", async () => {
    const expected = buildMailRecords(prod.config, {
      ipv4: MOCK_IPV4,
      ipv6: "2001:db8:4d2::1",
      dkimPublicKeyPem: DKIM_KEY.publicPem,
      tlsPublicKeyPem: TLS_KEY.publicPem,
    });
    const published = prod.of(T.record).map((r) => r.inputs);
    for (const r of published) {
      expect(r).toMatchObject({
        zoneId: "0123456789abcdef0123456789abcdef",
        ttl: 3600,
        proxied: false,
      });
    }
    // Registration order is not program order: compare as sorted lists.
    const sorted = (o?: object) => (o ? Object.fromEntries(Object.entries(o).sort()) : null);
    const key = (r: Record<string, any>) =>
      JSON.stringify([r.name, r.type, r.content ?? null, r.priority ?? null, sorted(r.data)]);
    const wanted = expected.map((e) => {
      if (!e.data) return key(e);
      // eslint-disable-next-line @typescript-eslint/no-unused-vars
      const { kind, ...data } = e.data;
      // An SRV record's priority goes at the top level too, as Cloudflare reads it back.
      const priority = e.data.kind === "SRV" ? e.data.priority : e.priority;
      return key({ name: e.name, type: e.type, priority, data });
    });
    expect(published.map(key).sort()).toEqual(wanted.sort());
    expect(await value(prod.stack.dnsRecords)).toEqual(
      expected.map(({ name, type, content, priority }) => ({
        name,
        type,
        content,
        ...(priority ? { priority } : {}),
      })),
    );
  });

  const record = (name: string, type: string) => {
    const found = prod.of(T.record).filter((r) => r.inputs.name === name && r.inputs.type === type);
    expect(found).toHaveLength(1);
    return found[0].inputs;
  };

  test("MX points at the mail host, SPF allows only it", () => {
    expect(record("example.eu", "MX")).toMatchObject({ content: "mail.example.eu", priority: 10 });
    expect(record("example.eu", "TXT").content).toBe('"v=spf1 mx -all"');
    expect(record("mail.example.eu", "A").content).toBe(MOCK_IPV4);
    expect(record("mail.example.eu", "AAAA").content).toBe("2001:db8:4d2::1");
  });

  test("the DKIM record carries the generated key's SubjectPublicKeyInfo", () => {
    const spki = DKIM_KEY.publicPem
      .split("\n")
      .filter((l) => l && !l.startsWith("-----"))
      .join("");
    expect(txtValue(record("mail._domainkey.example.eu", "TXT").content)).toBe(
      `v=DKIM1; k=rsa; p=${spki}`,
    );
  });

  test("TLSA, CAA and SRV go as structured data", () => {
    expect(record("_25._tcp.mail.example.eu", "TLSA").data).toEqual({
      usage: 3,
      selector: 1,
      matchingType: 1,
      certificate: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    const caa = prod
      .of(T.record)
      .filter((r) => r.inputs.type === "CAA")
      .map((r) => r.inputs.data);
    expect(caa).toEqual([
      { flags: 0, tag: "issue", value: "letsencrypt.org; validationmethods=dns-01" },
      { flags: 0, tag: "issuewild", value: ";" },
      { flags: 0, tag: "iodef", value: "mailto:hostmaster@example.eu" },
    ]);
    expect(record("_submissions._tcp.example.eu", "SRV").data).toEqual({
      priority: 0,
      weight: 1,
      port: 465,
      target: "mail.example.eu",
    });
    expect(record("_pop3._tcp.example.eu", "SRV").data).toEqual({
      priority: 0,
      weight: 0,
      port: 0,
      target: ".",
    });
  });

  test("DMARC, MTA-STS and TLS-RPT follow the stack's settings", () => {
    expect(record("_dmarc.example.eu", "TXT").content).toBe(
      '"v=DMARC1; p=reject; rua=mailto:postmaster@example.eu"',
    );
    expect(record("_mta-sts.example.eu", "TXT").content).toMatch(/^"v=STSv1; id=[0-9a-f]{32}"$/);
    expect(record("_smtp._tls.example.eu", "TXT").content).toBe(
      '"v=TLSRPTv1; rua=mailto:postmaster@example.eu"',
    );
  });

  test("DNSSEC is turned on for the zone when configured, and its DS is exported", async () => {
    expect(prod.one(T.dnssec).inputs).toEqual({
      zoneId: "0123456789abcdef0123456789abcdef",
      status: "active",
    });
    expect(await value(prod.stack.dnssecDs!)).toMatch(/ IN DS /);
  });

  test("the zone's DNSSEC is never deleted by Pulumi, and cannot be deleted in prod", () => {
    // Deleting a ZoneDnssec disables DNSSEC for the zone while the DS stays at the registrar.
    const dnssec = prod.one(T.dnssec);
    expect(prod.opts.get(dnssec.name)).toMatchObject({ retainOnDelete: true, protect: true });
  });

  test("staging, as Pulumi.staging.yaml sets it, leaves the zone's DNSSEC alone", () => {
    expect(staging.of(T.dnssec)).toEqual([]);
    expect(staging.of(T.record).filter((r) => r.inputs.type === "TLSA")).toEqual([]);
  });

  /**
   * What a refresh reads back for a record or the zone's DNSSEC, given the inputs the stack
   * sent, for the fields where Cloudflare's answer is not the request:
   * - an SRV record's priority comes back at the top level too, next to `data.priority`
   *   (Cloudflare API, DNS Records for a Zone: `priority` "Required for MX, SRV and URI
   *   records"; terraform-provider-cloudflare #6684, v5 dns_record reads it into state);
   * - a zone's DNSSEC status comes back "pending" until the DS is at the registrar
   *   (Cloudflare API, DNSSEC Details: status active, pending, disabled, pending-disabled,
   *   error; Cloudflare docs, "Enable DNSSEC": pending until the DS is added).
   */
  function refreshed(r: MockedResource): Record<string, any> {
    if (r.type === T.dnssec) return { ...r.inputs, status: "pending" };
    if (r.inputs.type === "SRV") return { ...r.inputs, priority: r.inputs.data.priority };
    return r.inputs;
  }

  /** The inputs a plan after that refresh would change, honouring ignoreChanges. */
  function plannedChanges(d: Deployed, r: MockedResource): string[] {
    const after = refreshed(r);
    const ignored = d.opts.get(r.name)?.ignoreChanges ?? [];
    return [...new Set([...Object.keys(r.inputs), ...Object.keys(after)])]
      .filter((k) => JSON.stringify(r.inputs[k]) !== JSON.stringify(after[k]))
      .filter((k) => !ignored.includes(k));
  }

  test("records and DNSSEC are sent as a refresh reads them back: no drift that is not drift", () => {
    const all = [...prod.of(T.record), prod.one(T.dnssec)];
    expect(all.filter((r) => r.inputs.type === "SRV")).toHaveLength(7);
    expect(all.map((r) => [r.name, plannedChanges(prod, r)])).toEqual(all.map((r) => [r.name, []]));
    expect(record("_imaps._tcp.example.eu", "SRV")).toMatchObject({
      priority: 0,
      data: { priority: 0, weight: 1, port: 993, target: "mail.example.eu" },
    });
    // "active" is still what DNSSEC is turned on with.
    expect(prod.one(T.dnssec).inputs.status).toBe("active");
    expect(prod.opts.get(prod.one(T.dnssec).name)?.ignoreChanges).toEqual(["status"]);
  });

  test("universalSsl false turns the zone's Universal SSL off, and a destroy never turns it back on", async () => {
    // With it on, Cloudflare adds CAA records for its own CAs beside the stack's.
    const off = await deploy("ussl", { ...PROD_RAW, universalSsl: "false" });
    const setting = off.one(T.universalSsl);
    expect(setting.name).toBe("ussl-dns-universal-ssl");
    expect(setting.inputs).toEqual({ zoneId: "0123456789abcdef0123456789abcdef", enabled: false });
    expect(off.opts.get(setting.name)).toMatchObject({ retainOnDelete: true });
    expect(off.opts.get(setting.name)?.protect).toBeFalsy();
    expect(off.opts.get(setting.name)?.parent).toBe(off.stack.dns);
  });

  test("control: unset, the zone's Universal SSL is left alone", () => {
    expect(prod.of(T.universalSsl)).toEqual([]);
    expect(staging.of(T.universalSsl)).toEqual([]);
    expect(narrowed.of(T.universalSsl)).toEqual([]);
  });

  test("resource names are unique per stack, so two stacks never collide", () => {
    const names = [...prod.of(T.record), ...staging.of(T.record)].map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
  });
});

describe("provisioning", () => {
  test("connects as admin with the deployment key and accepts only the pinned host key", () => {
    const cmd = prod.one(T.command, "provision-install");
    // The whole connection is secret, since the private key in it is.
    const { host, user, privateKey, hostKey } = secretInput<Record<string, unknown>>(
      cmd.inputs.connection,
    );
    expect({ host, user, hostKey, privateKey }).toEqual({
      host: MOCK_IPV4,
      user: "deploy",
      hostKey: SSH_HOST_KEY.publicOpenssh.trim(),
      privateKey: DEPLOY_KEY.privateOpenssh,
    });
    // A request to mailstack-deploy, which the key is bound to; the program comes on stdin.
    expect(cmd.inputs.create).toBe("provision");
    // A new server, or a bigger volume (its file system grows), re-runs it.
    expect(cmd.inputs.triggers).toEqual([prod.one(T.server).id, prod.config.volumeSizeGb]);
  });

  test("the mail volume is mounted after its attachment and released before it goes", () => {
    const volume = prod.one(T.command, "provision-volume");
    const attachment = prod.one(T.attachment);
    // mailstack-deploy requests: `attach` mounts the volume; `detach` stops the mail services
    // and unmounts it. Pulumi deletes dependents first, so `detach` runs before the provider
    // detaches the volume, on a replacement and on a destroy.
    expect([volume.inputs.create, volume.inputs.delete]).toEqual(["attach", "detach"]);
    const volumeOpts = prod.opts.get(volume.name);
    expect(volumeOpts?.dependsOn).toEqual([prod.stack.server.volumeAttachment]);
    expect(volumeOpts?.deleteBeforeReplace).toBe(true);
    // One per attachment: a new server (and with it a new attachment) attaches anew.
    expect(volume.inputs.triggers).toEqual([attachment.id]);
    expect(secretInput<Record<string, unknown>>(volume.inputs.connection)).toEqual(
      secretInput<Record<string, unknown>>(
        prod.one(T.command, "provision-install").inputs.connection,
      ),
    );
    // Provisioning runs with the volume mounted.
    expect(prod.opts.get(prod.one(T.command, "provision-install").name)?.dependsOn).toEqual([
      prod.stack.provisioning.volume,
    ]);
  });

  /** The connection to the host itself, as it always was. */
  const DIRECT = {
    host: MOCK_IPV4,
    // The SDK's default, sent as it always was.
    port: 22,
    user: "deploy",
    privateKey: DEPLOY_KEY.privateOpenssh,
    hostKey: SSH_HOST_KEY.publicOpenssh.trim(),
    dialErrorLimit: 40,
    perDialTimeout: 15,
  };

  test("control: without sshProxy, the host is dialled directly, with no proxy at all", () => {
    expect(secretInput(prod.one(T.command, "provision-install").inputs.connection)).toEqual(DIRECT);
  });

  test("with sshProxy, through the bastion: its host key pinned, its account's key, retried as the host", () => {
    expect(secretInput(jump.one(T.command, "provision-install").inputs.connection)).toEqual({
      ...DIRECT,
      proxy: {
        host: "bastion.example.eu",
        port: 22,
        user: "mailstack-jump",
        privateKey: JUMP_KEY.privateOpenssh,
        hostKey: BASTION_HOST_KEY.publicOpenssh.trim(),
        dialErrorLimit: 40,
        perDialTimeout: 15,
      },
    });
  });

  test("a MailStack given sshProxy but not the account's key stops, naming the key", async () => {
    const { MailStack } = await import("../components/mailstack");
    expect(() => new MailStack("nokey", { config: parseConfig(JUMP_RAW) })).toThrow(
      "mailstack:sshProxyPrivateKey: is required when sshProxy is set: the private key of " +
        "the bastion's account (pulumi config set --secret mailstack:sshProxyPrivateKey < key)",
    );
    // Control: given the key, as index.ts passes it, the same config deploys (jump, above).
    expect(jump.one(T.command, "provision-install").inputs.connection).toBeDefined();
  });

  test("sends the secrets and day-2 settings on standard input, as a secret", async () => {
    expect(await pulumi.isSecret(prod.stack.provisioning.command.stdin)).toBe(true);
    const [program, ...bundle] = secretInput(prod.one(T.command, "provision-install").inputs.stdin)
      .trim()
      .split("\n");
    expect(program).toBe(`mailstack-provision ${Buffer.from(PROVISION_SCRIPT).toString("base64")}`);
    const files = Object.fromEntries(
      bundle.map((line) => {
        const [path, mode, owner, group, b64] = line.split(" ");
        return [path, { mode, owner, group, content: Buffer.from(b64, "base64").toString() }];
      }),
    );
    expect(Object.keys(files).sort()).toEqual(
      [
        "/etc/mailstack/packages.list",
        "/etc/ssh/sshd_config.d/10-mailstack.conf",
        // adminMfa totp: the admin account's TOTP secret and the PAM service that asks for it.
        "/etc/mailstack/admin.oath",
        "/etc/pam.d/mailstack-admin",
        "/etc/mailstack/acme-dns.ini",
        "/etc/mailstack/acme.conf",
        "/etc/mailstack/dkim/mail.key",
        "/etc/mailstack/tls/mail.key",
        "/etc/dovecot/mail-crypt/private.pem",
        "/etc/dovecot/mail-crypt/public.pem",
        "/etc/nftables.conf",
        "/etc/systemd/system/mailstack-cert.service",
        "/etc/systemd/system/mailstack-cert.timer",
        "/etc/ssh/authorized_keys/admin",
        "/usr/local/sbin/mailstack-cert",
        "/usr/local/sbin/mailstack-acme-hook",
        // The host's facts for the node exporter, every minute.
        "/etc/systemd/system/mailstack-metrics.service",
        "/etc/systemd/system/mailstack-metrics.timer",
        "/usr/local/sbin/mailstack-metrics",
        // The daily report to postmaster.
        "/etc/systemd/system/mailstack-report.service",
        "/etc/systemd/system/mailstack-report.timer",
        "/usr/local/sbin/mailstack-report",
        // Once a boot: the copies Postfix delivered again after a stop.
        "/etc/systemd/system/mailstack-dedup.service",
        "/etc/systemd/system/mailstack-dedup.timer",
        "/usr/local/sbin/mailstack-dedup",
        // Backups: settings, timers, the backup, restore and alert programs.
        "/etc/mailstack/backup.conf",
        "/etc/mailstack/backup.env",
        "/etc/mailstack/backup.password",
        "/etc/systemd/system/mailstack-backup.service",
        "/etc/systemd/system/mailstack-backup.timer",
        "/etc/systemd/system/mailstack-backup-check.service",
        "/etc/systemd/system/mailstack-backup-check.timer",
        "/etc/systemd/system/mailstack-alert@.service",
        "/usr/local/sbin/mailstack-backup",
        "/usr/local/sbin/mailstack-restore",
        "/usr/local/sbin/mailstack-alert",
        // The daemons' configuration tree, and the tables made from the stack's users.
        ...treePaths(),
        "/etc/dovecot/users",
        "/etc/dovecot/passwords",
        "/etc/postfix/vmailbox",
        "/etc/postfix/virtual",
        "/etc/postfix/sender-login",
        "/etc/postfix/relay-password",
        "/etc/postfix/tls-policy",
        "/etc/mailstack/rspamd-controller.password",
      ].sort(),
    );
    // Every exported password opens its mailbox: the passwords file holds its hash, for the
    // protocols it may open. Alice has appPasswordsOnly: her main password has no line.
    const pw = await value(prod.stack.userPasswords);
    const appPw = await value(prod.stack.userAppPasswords);
    expect(await pulumi.isSecret(prod.stack.userAppPasswords)).toBe(true);
    for (const path of ["/etc/dovecot/users", "/etc/dovecot/passwords"]) {
      expect(files[path]).toMatchObject({ mode: "0640", owner: "root", group: "dovecot" });
    }
    expect(files["/etc/dovecot/users"].content).not.toMatch(/ARGON2ID|SSHA512/);
    const lines = files["/etc/dovecot/passwords"].content
      .split("\n")
      .filter((l) => l && !l.startsWith("#"))
      .map((l) => l.split(" "));
    expect(lines.map(([address, device, protocols]) => [address, device, protocols])).toEqual([
      ["alice@example.eu", "phone", "imap,smtp"],
      ["alice@example.eu", "laptop", "imap,smtp"],
      ["bob@example.eu", "-", "imap,smtp,sieve"],
      ["bob@example.eu", "phone", "imap,smtp"],
      ["bob@example.eu", "scanner", "smtp"],
    ]);
    const hashOf = (address: string, device: string) =>
      lines.find(([a, d]) => a === address && d === device)![3];
    const bobMain = hashOf("bob@example.eu", "-").replace(/^\{ARGON2ID\}/, "");
    expect(await argon2Verify({ password: pw["bob@example.eu"], hash: bobMain })).toBe(true);
    expect(await argon2Verify({ password: `${pw["bob@example.eu"]}x`, hash: bobMain })).toBe(false);
    // {SSHA512}: base64 of SHA-512(password + salt) and the salt.
    const sshaVerify = (password: string, field: string) => {
      const raw = Buffer.from(field.replace(/^\{SSHA512\}/, ""), "base64");
      const salt = raw.subarray(64);
      return createHash("sha512")
        .update(password)
        .update(salt)
        .digest()
        .equals(raw.subarray(0, 64));
    };
    expect(Object.keys(appPw).sort()).toEqual(["alice@example.eu", "bob@example.eu"]);
    for (const [address, devices] of Object.entries(appPw)) {
      for (const [device, password] of Object.entries(devices)) {
        expect(password).toHaveLength(24);
        expect(sshaVerify(password, hashOf(address, device))).toBe(true);
        expect(sshaVerify(`${password}x`, hashOf(address, device))).toBe(false);
      }
    }
    // The host's restic opens the repository with the password the stack exports.
    expect(files["/etc/mailstack/backup.password"]).toEqual({
      mode: "0600",
      owner: "root",
      group: "root",
      content: `${await value(prod.stack.backupPassword!)}\n`,
    });
    expect(files["/etc/mailstack/rspamd-controller.password"]).toEqual({
      mode: "0600",
      owner: "root",
      group: "root",
      content: `${await value(prod.stack.rspamdControllerPassword)}\n`,
    });
    // Postfix sends from the addresses that carry the PTR.
    expect(files["/etc/postfix/main.cf"].content).toContain(`smtp_bind_address = ${MOCK_IPV4}\n`);
    expect(files["/etc/postfix/main.cf"].content).toContain(
      "smtp_bind_address6 = 2001:db8:4d2::1\n",
    );
    expect(files["/etc/postfix/main.cf"].content).not.toMatch(/\{\{/);
    expect(files["/etc/mailstack/acme-dns.ini"]).toEqual({
      mode: "0600",
      owner: "root",
      group: "root",
      content:
        "dns_cloudflare_api_token = cf-dns-token-prod\n" +
        "dns_cloudflare_zone_id = 0123456789abcdef0123456789abcdef\n",
    });
    // Without a challenge zone the host writes _acme-challenge in the mail zone itself.
    expect(files["/etc/mailstack/acme.conf"].content).toBe(
      [
        "MAILSTACK_FQDN='mail.example.eu'",
        "ACME_SERVER='https://acme-v02.api.letsencrypt.org/directory'",
        "ACME_EMAIL='hostmaster@example.eu'",
        "ACME_CHALLENGE_NAME='_acme-challenge.mail.example.eu'",
        "ACME_CHALLENGE_ZONE='example.eu'",
        "DNS_API=cloudflare",
        "DNS_PROPAGATION_SECONDS=30",
        "",
      ].join("\n"),
    );
    expect(files["/etc/mailstack/dkim/mail.key"]).toEqual({
      mode: "0640",
      owner: "root",
      group: "_rspamd",
      content: DKIM_KEY.privatePem,
    });
    expect(files["/etc/mailstack/tls/mail.key"]).toMatchObject({
      mode: "0600",
      owner: "root",
      content: TLS_KEY.privatePem,
    });
    // People's keys, in root's file; the deployment key is not among them.
    expect(files["/etc/ssh/authorized_keys/admin"]).toEqual({
      mode: "0644",
      owner: "root",
      group: "root",
      content: `${ADMIN_KEY}\n`,
    });
    expect(files["/etc/nftables.conf"].content).toContain(
      "ip saddr { 198.51.100.7/32 } tcp dport 22 accept",
    );
  });

  test("staging stacks use the ACME staging CA", () => {
    const stdin = secretInput(staging.one(T.command, "provision-install").inputs.stdin);
    const line = stdin.split("\n").find((l) => l.startsWith("/etc/mailstack/acme.conf "))!;
    expect(Buffer.from(line.split(" ")[4], "base64").toString()).toContain(
      "ACME_SERVER='https://acme-staging-v02.api.letsencrypt.org/directory'",
    );
  });
});

describe("ACME: the host's DNS credential", () => {
  test("with a challenge zone, _acme-challenge.<mail host> is a CNAME into it, not proxied", () => {
    const cname = narrowed.of(T.record).filter((r) => r.inputs.type === "CNAME");
    expect(cname.map((r) => r.inputs)).toEqual([
      {
        zoneId: "0123456789abcdef0123456789abcdef",
        name: "_acme-challenge.mail.example.org",
        type: "CNAME",
        content: "mail.example.org.acme-example.net",
        ttl: 300,
        proxied: false,
        comment: "managed by mailstack",
      },
    ]);
  });

  test("control: without the key, no CNAME is published", () => {
    expect(prod.of(T.record).filter((r) => r.inputs.type === "CNAME")).toEqual([]);
    expect(staging.of(T.record).filter((r) => r.inputs.type === "CNAME")).toEqual([]);
  });

  test("the stack's token: DNS on the challenge zone only, from the host's addresses only, with the configured expiry", () => {
    expect(narrowed.one(T.apiToken, "acme-token").inputs).toEqual({
      name: "mailstack prod: ACME DNS-01 for mail.example.org",
      policies: [
        {
          effect: "allow",
          permissionGroups: [
            { id: "4755a26eedb94da69e1066d98aa820be" }, // DNS Write
            { id: "82e64a83756745bbbb1c9c2701bf816b" }, // DNS Read
          ],
          resources: JSON.stringify({
            [`com.cloudflare.api.account.zone.${CHALLENGE_ZONE_ID}`]: "*",
          }),
        },
      ],
      condition: { requestIp: { ins: [`${MOCK_IPV4}/32`, MOCK_IPV6_NETWORK] } },
      expiresOn: "2099-01-01T00:00:00Z",
    });
  });

  test("the host gets that token, and writes only at the delegated name in the challenge zone", () => {
    const files = sentFiles(narrowed);
    expect(files["/etc/mailstack/acme-dns.ini"]).toEqual({
      mode: "0600",
      owner: "root",
      content:
        "dns_cloudflare_api_token = cf-made-token-narrow-acme-token-cloudflare\n" +
        `dns_cloudflare_zone_id = ${CHALLENGE_ZONE_ID}\n`,
    });
    expect(files["/etc/mailstack/acme.conf"].content).toContain(
      "ACME_CHALLENGE_NAME='mail.example.org.acme-example.net'\n" +
        "ACME_CHALLENGE_ZONE='acme-example.net'\n" +
        "DNS_API=cloudflare\n",
    );
  });

  test("an expiry warns within 30 days and stops the run once passed; none, nothing", async () => {
    const { tokenExpiryNotice } = await import("../components/acme-token");
    const at = "2027-03-01T00:00:00Z";
    expect(tokenExpiryNotice(undefined, new Date("2027-02-28T00:00:00Z"))).toBeUndefined();
    expect(tokenExpiryNotice(at, new Date("2027-01-01T00:00:00Z"))).toBeUndefined();
    expect(tokenExpiryNotice(at, new Date("2027-02-10T00:00:00Z"))).toEqual({
      level: "warning",
      message:
        "mailstack:acmeTokenExpiresOn: the host's DNS token expires in 19 days (2027-03-01T00:00:00Z); " +
        "after that the certificate cannot be renewed: set a later mailstack:acmeTokenExpiresOn and run pulumi up",
    });
    expect(tokenExpiryNotice(at, new Date(at))?.level).toBe("error");
  });

  test("control: a supplied acmeDnsToken is used as it is, and no token is made", () => {
    expect(resources(T.apiToken, "prod-acme-token")).toEqual([]);
    expect(staging.of(T.apiToken)).toEqual([]);
    expect(sentFiles(prod)["/etc/mailstack/acme-dns.ini"].content).toContain(
      "dns_cloudflare_api_token = cf-dns-token-prod\n",
    );
  });
});

describe("the discovery Worker", () => {
  const ACCOUNT = "fedcba9876543210fedcba9876543210"; // PROD_RAW's cloudflareAccountId
  const ZONE = "0123456789abcdef0123456789abcdef"; // its cloudflareZoneId

  test("one script per domain: the uploaded module of worker/discovery.ts and its SITE binding", () => {
    const script = prod.one(T.workerScript);
    expect(script.inputs).toEqual({
      accountId: ACCOUNT,
      scriptName: "mailstack-example-eu",
      mainModule: "discovery.mjs",
      content: workerScript(),
      compatibilityDate: WORKER_COMPATIBILITY_DATE,
      bindings: [
        { name: "SITE", type: "json", json: JSON.stringify(discoverySite(prod.config, {})) },
      ],
    });
  });

  test("the policy it serves is the one whose digest the _mta-sts record carries", () => {
    const site = JSON.parse(prod.one(T.workerScript).inputs.bindings[0].json);
    expect(site.mtaStsPolicy).toBe(
      "version: STSv1\r\nmode: enforce\r\nmx: mail.example.eu\r\nmax_age: 604800\r\n",
    );
    const txt = prod
      .of(T.record)
      .find((r) => r.inputs.name === "_mta-sts.example.eu" && r.inputs.type === "TXT")!;
    expect(txtValue(txt.inputs.content)).toBe(`v=STSv1; id=${mtaStsId(site.mtaStsPolicy)}`);
  });

  test("four custom domains in the mail zone point at it", () => {
    expect(prod.of(T.customDomain).map((r) => r.inputs)).toEqual(
      ["mta-sts", "autoconfig", "autodiscover", "openpgpkey"].map((label) => ({
        accountId: ACCOUNT,
        zoneId: ZONE,
        hostname: `${label}.example.eu`,
        service: "mailstack-example-eu",
      })),
    );
  });

  test("a long domain still gets a valid script name", () => {
    const long = `${"a".repeat(60)}.example.eu`;
    expect(discoveryScriptName(long)).toMatch(/^mailstack-[0-9a-f]{32}$/);
    expect(discoveryScriptName("example.eu")).toBe("mailstack-example-eu");
  });
});

describe("backup storage", () => {
  const ACCOUNT = "fedcba9876543210fedcba9876543210"; // PROD_RAW's cloudflareAccountId
  const HETZNER = {
    backupAccessKeyId: "HZACCESSKEY000000001",
    backupSecretAccessKey: "hetzner-secret-key-for-tests",
  };
  /** r2, protect false. */
  let open: Deployed;
  /** hetzner at the stack's location (nbg1), and at hel1. */
  let hetzner: Deployed;
  let helsinki: Deployed;

  beforeAll(async () => {
    open = await deploy("open", { ...PROD_RAW, protect: "false" });
    hetzner = await deploy("hz", {
      ...PROD_RAW,
      ...HETZNER,
      backup: JSON.stringify({ provider: "hetzner", schedule: "*-*-* 02:30", keepMonthly: 24 }),
    });
    helsinki = await deploy("hzhel", {
      ...PROD_RAW,
      ...HETZNER,
      backup: JSON.stringify({ provider: "hetzner", location: "hel1" }),
    });
  });

  test("R2: one bucket, in the EU jurisdiction, named after the mail host, in the configured account", () => {
    expect(prod.of(T.bucket).map((r) => [r.name, r.inputs])).toEqual([
      [
        "prod-backup-bucket",
        { accountId: ACCOUNT, name: "mail-example-eu-backup", jurisdiction: "eu" },
      ],
    ]);
  });

  test("prod protects the bucket and keeps it on delete; the password is protected and outlives the bucket", () => {
    const bucket = prod.opts.get("prod-backup-bucket")!;
    expect([bucket.protect, bucket.retainOnDelete]).toEqual([true, true]);
    expect(prod.opts.get("prod-backup-password")!.protect).toBe(true);
    // The bucket depends on the password, so a destroy deletes the bucket first: when R2
    // refuses (it still holds snapshots), the run stops with the password still in the state.
    expect(bucket.dependsOn).toEqual([prod.stack.backup!.passwordResource]);
  });

  test("control: unprotected, bucket and password can be deleted", () => {
    const bucket = open.opts.get("open-backup-bucket")!;
    expect([bucket.protect, bucket.retainOnDelete]).toEqual([false, false]);
    expect(open.opts.get("open-backup-password")!.protect).toBe(false);
  });

  test("the token may read and write objects in that one bucket, nothing else, from the host's addresses only", () => {
    const token = prod.one(T.apiToken, "backup-token");
    expect(token.inputs).toEqual({
      name: "mailstack prod: restic backups to R2 bucket mail-example-eu-backup",
      policies: [
        {
          effect: "allow",
          permissionGroups: [
            { id: "2efd5506f9c8494dacb1fa10a3e7d5b6" }, // Workers R2 Storage Bucket Item Write
            { id: "6a018a9f2fc74eb6b293b0c548f38b39" }, // Workers R2 Storage Bucket Item Read
          ],
          resources: JSON.stringify({
            [`com.cloudflare.edge.r2.bucket.${ACCOUNT}_eu_mail-example-eu-backup`]: "*",
          }),
        },
      ],
      condition: { requestIp: { ins: [`${MOCK_IPV4}/32`, MOCK_IPV6_NETWORK] } },
    });
    // The token's value never shows in the state in clear.
    expect(prod.opts.get("prod-backup-token")!.additionalSecretOutputs).toContain("value");
    // The only tokens of the stack: the backup's (the ACME token is supplied in prod).
    expect(prod.of(T.apiToken).map((r) => r.name)).toEqual(["prod-backup-token"]);
  });

  test("the host gets S3 credentials derived from the token: its ID, and the SHA-256 of its value", async () => {
    const token = prod.one(T.apiToken, "backup-token");
    const backup = mockHostInputs.get(prod.config)!.backup!;
    expect(backup.accessKeyId).toBe(token.id);
    expect(backup.secretAccessKey).toBe(
      createHash("sha256").update(token.state.value).digest("hex"),
    );
    expect(backup.secretAccessKey).toMatch(/^[0-9a-f]{64}$/);
    expect(await pulumi.isSecret(prod.stack.backup!.accessKeyId)).toBe(true);
    expect(await pulumi.isSecret(prod.stack.backup!.secretAccessKey)).toBe(true);
  });

  test("the host gets the repository, the password, the schedule and the retention", async () => {
    const backup = mockHostInputs.get(prod.config)!.backup!;
    expect(backup).toEqual({
      repository:
        `s3:https://${ACCOUNT}.eu.r2.cloudflarestorage.com/mail-example-eu-backup/` +
        "mail.example.eu",
      accessKeyId: expect.any(String),
      secretAccessKey: expect.any(String),
      password: await value(prod.stack.backupPassword!),
      schedule: "daily",
      keepDaily: 7,
      keepWeekly: 4,
      keepMonthly: 12,
    });
    // And it reaches the host only through provisioning: the stdin is secret as a whole.
    secretInput(prod.one(T.command, "provision-install").inputs.stdin);
  });

  test("the restic password: 32 letters and digits, generated once, secret in every output", async () => {
    expect(prod.one(T.password, "backup-password").inputs).toEqual({ length: 32, special: false });
    expect(await pulumi.isSecret(prod.stack.backupPassword!)).toBe(true);
    expect(await pulumi.isSecret(prod.stack.backup!.password)).toBe(true);
    const password = await value(prod.stack.backupPassword!);
    expect(password).toHaveLength(32);
    expect(password).toBe(prod.one(T.password, "backup-password").state.result);
  });

  test("outputs: the bucket and the repository, in clear", async () => {
    expect(await value(prod.stack.backupBucket!)).toBe("mail-example-eu-backup");
    expect(await pulumi.isSecret(prod.stack.backupBucket!)).toBe(false);
    expect(prod.stack.backupRepository).toBe(
      `s3:https://${ACCOUNT}.eu.r2.cloudflarestorage.com/mail-example-eu-backup/mail.example.eu`,
    );
  });

  test("hetzner: the endpoint of the stack's location, the keys from the secrets, no bucket or token made", async () => {
    expect(hetzner.of(T.bucket)).toEqual([]);
    expect(hetzner.of(T.apiToken)).toEqual([]);
    const backup = mockHostInputs.get(hetzner.config)!.backup!;
    expect(backup).toEqual({
      repository: "s3:https://nbg1.your-objectstorage.com/mail-example-eu-backup/mail.example.eu",
      accessKeyId: "HZACCESSKEY000000001",
      secretAccessKey: "hetzner-secret-key-for-tests",
      password: await value(hetzner.stack.backupPassword!),
      schedule: "*-*-* 02:30",
      keepDaily: 7,
      keepWeekly: 4,
      keepMonthly: 24,
    });
    expect(await pulumi.isSecret(hetzner.stack.backup!.accessKeyId)).toBe(true);
    expect(await pulumi.isSecret(hetzner.stack.backup!.secretAccessKey)).toBe(true);
    expect(await value(hetzner.stack.backupBucket!)).toBe("mail-example-eu-backup");
    expect(hetzner.opts.get("hz-backup-password")!.protect).toBe(true);
  });

  test("hetzner: backup.location picks the endpoint; every EU location has its own", async () => {
    expect(helsinki.stack.backupRepository).toBe(
      "s3:https://hel1.your-objectstorage.com/mail-example-eu-backup/mail.example.eu",
    );
    const { hetznerEndpoint } = await import("../components/backup-storage");
    expect(["fsn1", "nbg1", "hel1"].map(hetznerEndpoint)).toEqual([
      "https://fsn1.your-objectstorage.com",
      "https://nbg1.your-objectstorage.com",
      "https://hel1.your-objectstorage.com",
    ]);
  });

  test("backup.enabled false: no bucket, no token, no password, nothing for the host, no output", () => {
    expect(staging.config.backup.enabled).toBe(false);
    expect(staging.of(T.bucket)).toEqual([]);
    expect(staging.of(T.apiToken)).toEqual([]);
    expect(staging.of(T.password).map((r) => r.name)).toEqual([
      "stg-password-test-staging-example-eu",
      "stg-rspamd-controller",
    ]);
    expect(resources("mailstack:index:MailBackup", "stg-")).toEqual([]);
    expect(staging.stack.backup).toBeUndefined();
    expect("backup" in mockHostInputs.get(staging.config)!).toBe(false);
    expect(staging.stack.backupBucket).toBeUndefined();
    expect(staging.stack.backupRepository).toBeUndefined();
    expect(staging.stack.backupPassword).toBeUndefined();
  });

  test("a MailStack without what its storage needs stops before anything is made, naming the keys", async () => {
    const { MailStack } = await import("../components/mailstack");
    const withoutAccount = { ...parseConfig(PROD_RAW), cloudflareAccountId: "" };
    expect(() => new MailStack("noacct", { config: withoutAccount, acmeDnsToken: "t" })).toThrow(
      "mailstack:cloudflareAccountId: is required: the account the stack's Worker and the R2 " +
        "backup bucket are made in",
    );
    // The config names the keys as set; the program passes no secrets for them.
    const hetznerConfig = parseConfig({
      ...PROD_RAW,
      backup: '{"provider":"hetzner"}',
      backupAccessKeyId: "set",
      backupSecretAccessKey: "set",
    });
    expect(() => new MailStack("nokeys", { config: hetznerConfig, acmeDnsToken: "t" })).toThrow(
      "mailstack:backupAccessKeyId, mailstack:backupSecretAccessKey: are required when " +
        "backup.provider is hetzner: an Object Storage credential made in the Hetzner Console " +
        "(pulumi config set --secret mailstack:backupAccessKeyId ...)",
    );
    await settle();
    expect(resources(T.server, "noacct-")).toEqual([]);
    expect(resources(T.server, "nokeys-")).toEqual([]);
  });
});

describe("outputs", () => {
  test("user passwords are generated per user and secret", async () => {
    expect(await pulumi.isSecret(prod.stack.userPasswords)).toBe(true);
    const pw = await value(prod.stack.userPasswords);
    expect(Object.keys(pw)).toEqual(["alice@example.eu", "bob@example.eu"]);
    for (const p of Object.values(pw)) expect(p).toHaveLength(24);
    // One per user, one per device, and the Rspamd controller's (besides the backup's: see
    // "backup storage").
    const passwords = prod.of(T.password).filter((r) => !r.name.startsWith("prod-backup-"));
    expect(passwords.map((r) => r.name).sort()).toEqual([
      "prod-app-password-alice-example-eu-laptop",
      "prod-app-password-alice-example-eu-phone",
      "prod-app-password-bob-example-eu-phone",
      "prod-app-password-bob-example-eu-scanner",
      "prod-password-alice-example-eu",
      "prod-password-bob-example-eu",
      "prod-rspamd-controller",
    ]);
    for (const r of passwords) expect(r.inputs).toEqual({ length: 24, special: false });
    expect(await pulumi.isSecret(prod.stack.rspamdControllerPassword)).toBe(true);
  });

  test("app passwords: one per device, each its own, exported as a secret", async () => {
    expect(await pulumi.isSecret(prod.stack.userAppPasswords)).toBe(true);
    const app = await value(prod.stack.userAppPasswords);
    expect(Object.fromEntries(Object.entries(app).map(([a, d]) => [a, Object.keys(d)]))).toEqual({
      "alice@example.eu": ["phone", "laptop"],
      "bob@example.eu": ["phone", "scanner"],
    });
    const all = Object.values(app).flatMap((d) => Object.values(d));
    expect(new Set(all).size).toBe(4);
    // Staging has none: the output is an empty map, and no resource is made.
    expect(await value(staging.stack.userAppPasswords)).toEqual({});
    expect(staging.of(T.password).filter((r) => r.name.includes("app-password"))).toEqual([]);
  });

  test("with adminMfa totp, the admin account's TOTP secret: on the host for pam_oath, out as a secret otpauth URI", async () => {
    const [bytes] = prod.of("random:index/randomBytes:RandomBytes");
    expect([bytes.name, bytes.inputs]).toEqual(["prod-admin-totp", { length: 20 }]);
    const hex = bytes.state.hex as string;
    expect(sentFiles(prod)["/etc/mailstack/admin.oath"]).toEqual({
      mode: "0600",
      owner: "root",
      content: `HOTP/T30/6 admin - ${hex}\n`,
    });
    expect(await pulumi.isSecret(prod.stack.adminTotpUri!)).toBe(true);
    const uri = new URL(await value(prod.stack.adminTotpUri!));
    expect(`${uri.protocol}//${uri.host}${decodeURIComponent(uri.pathname)}`).toBe(
      "otpauth://totp/mailstack:admin@mail.example.eu",
    );
    expect(Object.fromEntries(uri.searchParams)).toEqual({
      issuer: "mailstack",
      secret: Secret.fromHex(hex).base32,
      algorithm: "SHA1",
      digits: "6",
      period: "30",
    });
    // Staging keeps the key alone: no secret, no output.
    expect(staging.of("random:index/randomBytes:RandomBytes")).toEqual([]);
    expect(staging.stack.adminTotpUri).toBeUndefined();
    expect(sentFiles(staging)["/etc/mailstack/admin.oath"]).toBeUndefined();
  });

  test("addresses, host, selector, client settings and cost", async () => {
    expect(prod.stack.mailHost).toBe("mail.example.eu");
    expect(await value(prod.stack.ipv4)).toBe(MOCK_IPV4);
    expect(await value(prod.stack.ipv6)).toBe("2001:db8:4d2::1");
    expect(prod.stack.dkimSelector).toBe("mail");
    expect(prod.stack.clientSettings.incoming).toEqual({
      protocol: "IMAP",
      host: "mail.example.eu",
      port: 993,
      security: "SSL/TLS",
    });
    // cx23 3.99 + IPv4 0.50 + 20 GB x 0.044
    expect(prod.stack.monthlyCostEur).toBe(5.37);
  });
});
