// Each policy on a passing and a failing input, and the whole pack on the stack as built.
import * as openpgp from "openpgp";
import { readOpenPgpKeys } from "../components/openpgp";
import * as pulumi from "@pulumi/pulumi";
import type {
  EnforcementLevel,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";
import { createPrivateKey } from "node:crypto";
import { parseConfig } from "../components/config";
import { dkimRecordText, tlsaSpkiSha256, txtPresentation } from "../components/keymath";
import { policies, stackPolicies } from "../policy/policies";
import stagingConfig from "../policy/staging.json";
import { PROD_RAW, STAGING_RAW } from "./support/config";
import { DKIM_KEY, SSH_HOST_KEY, TLS_KEY } from "./support/keys";
import { created, installMocks, settle } from "./support/mocks";

interface Input {
  type: string;
  name?: string;
  props: Record<string, unknown>;
  protect?: boolean;
}

const policy = (name: string): ResourceValidationPolicy => {
  const p = policies.find((x) => x.name === name);
  if (!p) throw new Error(`no policy ${name}`);
  return p;
};

/** The violations a policy reports for one resource. */
function check(p: ResourceValidationPolicy, r: Input, environment = "production"): string[] {
  const violations: string[] = [];
  const args = {
    type: r.type,
    name: r.name ?? "res",
    urn: `urn:pulumi:prod::mailstack::${r.type}::${r.name ?? "res"}`,
    props: r.props,
    opts: {
      protect: r.protect ?? false,
      ignoreChanges: [],
      aliases: [],
      customTimeouts: {},
      additionalSecretOutputs: [],
    },
    stackTags: new Map(),
    getConfig: () => ({ environment }),
    isType: () => false,
    asType: () => undefined,
    notApplicable: () => {
      throw new Error("not applicable");
    },
  } as unknown as ResourceValidationArgs;
  const validate = p.validateResource;
  for (const v of Array.isArray(validate) ? validate : validate ? [validate] : []) {
    void v(args, (message) => violations.push(message));
  }
  return violations;
}

const stackPolicy = (name: string): StackValidationPolicy => {
  const p = stackPolicies.find((x) => x.name === name);
  if (!p) throw new Error(`no stack policy ${name}`);
  return p;
};

interface StackInput {
  type: string;
  name?: string;
  props: Record<string, unknown>;
}

/** The violations a stack policy reports for a set of resources. */
function checkStack(
  p: StackValidationPolicy,
  resources: StackInput[],
  environment = "production",
): string[] {
  const violations: string[] = [];
  const args = {
    resources: resources.map((r) => ({ ...r, name: r.name ?? "res" })),
    getConfig: () => ({ environment }),
  } as unknown as StackValidationArgs;
  void p.validateStack(args, (message) => violations.push(message));
  return violations;
}

/**
 * The level a policy runs at under a policy pack config, as the engine resolves it: the
 * policy's entry in the config (a level, or an object with `enforcementLevel`), else its own.
 */
function levelUnder(config: Record<string, unknown>, name: string): EnforcementLevel | undefined {
  const entry = config[name];
  if (typeof entry === "string") return entry as EnforcementLevel;
  const configured = (entry as { enforcementLevel?: EnforcementLevel } | undefined)
    ?.enforcementLevel;
  return (
    configured ?? [...policies, ...stackPolicies].find((p) => p.name === name)?.enforcementLevel
  );
}

const fw = (rules: object[]) => ({ type: "hcloud:index/firewall:Firewall", props: { rules } });
const tcp = (port: string, sourceIps = ["0.0.0.0/0", "::/0"]) => ({
  direction: "in",
  protocol: "tcp",
  port,
  sourceIps,
});

describe("each policy", () => {
  test("eu-only-locations", () => {
    const p = policy("eu-only-locations");
    expect(check(p, { type: "hcloud:index/server:Server", props: { location: "hel1" } })).toEqual(
      [],
    );
    expect(
      check(p, { type: "hcloud:index/volume:Volume", name: "vol", props: { location: "ash" } }),
    ).toEqual(["hcloud:index/volume:Volume vol is in 'ash'; allowed: fsn1, nbg1, hel1"]);
    expect(
      check(p, { type: "hcloud:index/primaryIp:PrimaryIp", props: { datacenter: "hil-dc1" } }),
    ).toHaveLength(1);
  });

  test("firewall-mail-ports-only", () => {
    const p = policy("firewall-mail-ports-only");
    const good = [
      tcp("25"),
      tcp("465"),
      tcp("587"),
      tcp("993"),
      tcp("4190"),
      tcp("22"),
      tcp("9100", ["198.51.100.5/32"]),
      { direction: "in", protocol: "icmp", sourceIps: ["0.0.0.0/0"] },
    ];
    expect(check(p, fw(good))).toEqual([]);
    expect(check(p, fw([...good, tcp("80")]))).toEqual([
      "rule opens more than the mail ports: tcp 80 from 0.0.0.0/0, ::/0",
    ]);
    expect(check(p, fw([tcp("9154")]))).toEqual([
      "exporter port open to the world: tcp 9154 from 0.0.0.0/0, ::/0",
    ]);
    expect(
      check(p, fw([{ direction: "in", protocol: "udp", port: "53", sourceIps: ["0.0.0.0/0"] }])),
    ).toHaveLength(1);
  });

  test("ssh-restricted is mandatory in production, advisory for staging stacks", () => {
    const p = policy("ssh-restricted");
    expect(levelUnder({}, "ssh-restricted")).toBe("mandatory");
    expect(levelUnder(stagingConfig, "ssh-restricted")).toBe("advisory");
    expect(check(p, fw([tcp("22", ["198.51.100.7/32"])]))).toEqual([]);
    expect(check(p, fw([tcp("22", ["::/0"])]))).toEqual([
      "SSH (22) is open to the world: set mailstack:sshAllowedIps",
    ]);
  });

  test("staging.json relaxes only the production rules, and disables none", () => {
    const names = [...policies, ...stackPolicies].map((p) => p.name);
    for (const [name, entry] of Object.entries(stagingConfig)) {
      expect(names).toContain(name);
      expect(levelUnder(stagingConfig, name)).not.toBe("disabled");
      if (name !== "ssh-restricted") expect(entry).toEqual({ environment: "staging" });
    }
    const mandatory = names.filter((n) => levelUnder(stagingConfig, n) === "mandatory");
    expect(mandatory).toEqual(
      expect.arrayContaining([
        "eu-only-locations",
        "firewall-mail-ports-only",
        "server-has-firewall",
        "no-private-key-in-plain-properties",
        "no-private-key-in-outputs",
      ]),
    );
  });

  test("server-has-firewall", () => {
    const p = policy("server-has-firewall");
    const server = (props: Record<string, unknown>) => ({
      type: "hcloud:index/server:Server",
      name: "s",
      props: { location: "fsn1", ...props },
    });
    expect(check(p, server({ firewallIds: [1001] }))).toEqual([]);
    expect(check(p, server({ firewallIds: [] }))).toEqual([
      "hcloud:index/server:Server s has no firewall in firewallIds",
    ]);
    expect(check(p, server({}))).toHaveLength(1);
    expect(check(p, server({}), "staging")).toHaveLength(1);
  });

  test("no-proxied-mail-records", () => {
    const p = policy("no-proxied-mail-records");
    const rec = {
      type: "cloudflare:index/dnsRecord:DnsRecord",
      props: { name: "mail.example.eu", type: "A", proxied: false },
    };
    expect(check(p, rec)).toEqual([]);
    expect(check(p, { ...rec, props: { ...rec.props, proxied: true } })).toEqual([
      "A mail.example.eu is proxied",
    ]);
  });

  test("bucket-eu-jurisdiction", () => {
    const p = policy("bucket-eu-jurisdiction");
    const bucket = {
      type: "cloudflare:index/r2Bucket:R2Bucket",
      name: "backup",
      props: { jurisdiction: "eu" },
    };
    expect(check(p, bucket)).toEqual([]);
    expect(check(p, { ...bucket, props: {} })).toEqual([
      "bucket backup has jurisdiction 'default', not 'eu'",
    ]);
    expect(check(p, { ...bucket, props: { jurisdiction: "EU" } })).toEqual([
      "bucket backup has jurisdiction 'EU', not 'eu'",
    ]);
  });

  test("bucket-eu-jurisdiction: a token reaches R2 buckets in the EU jurisdiction only", () => {
    const p = policy("bucket-eu-jurisdiction");
    const account = "fedcba9876543210fedcba9876543210";
    const token = (resources: unknown) => ({
      type: "cloudflare:index/apiToken:ApiToken",
      name: "backup-token",
      props: {
        name: "t",
        policies: [{ effect: "allow", permissionGroups: [{ id: "x" }], resources }],
      },
    });
    const bucket = (j: string) => `com.cloudflare.edge.r2.bucket.${account}_${j}_mail-backup`;
    expect(check(p, token(JSON.stringify({ [bucket("eu")]: "*" })))).toEqual([]);
    expect(check(p, token(JSON.stringify({ [bucket("default")]: "*" })))).toEqual([
      "token backup-token reaches R2 bucket mail-backup in jurisdiction 'default', not 'eu'",
    ]);
    // Every bucket of the account, under the account: any jurisdiction.
    const all = {
      [`com.cloudflare.api.account.${account}`]: { "com.cloudflare.edge.r2.bucket.*": "*" },
    };
    expect(check(p, token(JSON.stringify(all)))).toEqual([
      "token backup-token reaches R2 bucket * in jurisdiction 'any', not 'eu'",
    ]);
    // Control: a DNS token names no bucket at all.
    const dns = { [`com.cloudflare.api.account.zone.${"0".repeat(32)}`]: "*" };
    expect(check(p, token(JSON.stringify(dns)))).toEqual([]);
    // In a preview the resources may not be known yet: judged at the update, not refused now.
    const proxy = require("@pulumi/policy/proxy");
    const unknown = proxy.unknownCheckingProxy({
      policies: [{ effect: "allow", resources: proxy.unknownStringValue }],
    });
    expect(check(p, { type: "cloudflare:index/apiToken:ApiToken", props: unknown })).toEqual([]);
  });

  test("prod-mail-policies-enforced, relaxed for staging", () => {
    const p = policy("prod-mail-policies-enforced");
    const stack = {
      type: "mailstack:index:MailStack",
      props: { dmarcPolicy: "reject", mtaStsMode: "enforce" },
    };
    expect(check(p, stack)).toEqual([]);
    const weak = { ...stack, props: { dmarcPolicy: "none", mtaStsMode: "testing" } };
    expect(check(p, weak)).toEqual([
      "DMARC policy is 'none'; production needs quarantine or reject",
      "MTA-STS mode is 'testing'; production needs enforce",
    ]);
    expect(check(p, weak, "staging")).toEqual([]);
    const record = {
      type: "cloudflare:index/dnsRecord:DnsRecord",
      props: { name: "_dmarc.example.eu", content: '"v=DMARC1; p=none"' },
    };
    expect(check(p, record)).toEqual([
      "_dmarc.example.eu publishes p=none; production needs quarantine or reject",
    ]);
  });

  test("prod-data-protected, relaxed for staging", () => {
    const p = policy("prod-data-protected");
    const vol = {
      type: "hcloud:index/volume:Volume",
      name: "mail",
      props: { deleteProtection: true },
      protect: true,
    };
    expect(check(p, vol)).toEqual([]);
    expect(check(p, { ...vol, protect: false, props: {} })).toEqual([
      "hcloud:index/volume:Volume mail is not protected (mailstack:protect)",
      "hcloud:index/volume:Volume mail has no delete protection at Hetzner",
    ]);
    expect(check(p, { ...vol, protect: false, props: {} }, "staging")).toEqual([]);
    const bucket = {
      type: "cloudflare:index/r2Bucket:R2Bucket",
      name: "backup",
      props: { jurisdiction: "eu" },
    };
    expect(check(p, { ...bucket, protect: true })).toEqual([]);
    expect(check(p, bucket)).toEqual([
      "cloudflare:index/r2Bucket:R2Bucket backup is not protected (mailstack:protect)",
    ]);
  });

  test("no-private-key-in-plain-properties: a PEM key in a plain property, not in userData", () => {
    const p = policy("no-private-key-in-plain-properties");
    const key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
    expect(check(p, { type: "hcloud:index/server:Server", props: { userData: key } })).toEqual([]);
    expect(
      check(p, { type: "hcloud:index/server:Server", name: "s", props: { labels: { k: key } } }),
    ).toEqual(["hcloud:index/server:Server s: property 'labels' holds a PEM private key"]);
  });
});

describe("key material in any encoding, each beside the legitimate value it resembles", () => {
  const p = policy("no-private-key-in-plain-properties");
  const b64 = (text: string | Buffer) => Buffer.from(text).toString("base64");
  /** `openssl base64`: 64 characters a line. */
  const wrapped = (text: string) => b64(text).replace(/.{64}/g, "$&\n");
  const der = (pem: string) =>
    createPrivateKey(pem).export({ type: "pkcs8", format: "der" }) as Buffer;
  const tlsa = tlsaSpkiSha256(TLS_KEY.publicPem);
  const cloudflareToken = "Xq7rT2vLp9sKd4Wm8Nc1Bz6Hj3Fg5Yt0Ua_e-Rk2";
  const hetznerToken = "jP7sQ2wE9rT4yU1iO6pA3sD8fG5hJ0kL2zX7cV4bN9mQ1wE6rT3yU8iO5pA0sD7f";

  const record = (props: Record<string, unknown>) => ({
    type: "cloudflare:index/dnsRecord:DnsRecord",
    name: "r",
    props: { zoneId: "0123456789abcdef0123456789abcdef", proxied: false, ...props },
  });
  const holds = (what: string) => [
    `cloudflare:index/dnsRecord:DnsRecord r: property 'content' holds ${what}`,
  ];

  test.each([
    ["PEM", DKIM_KEY.privatePem, DKIM_KEY.publicPem, "a PEM private key"],
    [
      "base64 of a PEM",
      b64(TLS_KEY.privatePem),
      b64(TLS_KEY.publicPem),
      "a PEM private key (base64)",
    ],
    [
      "wrapped base64 of a PEM",
      wrapped(SSH_HOST_KEY.privateOpenssh),
      wrapped(DKIM_KEY.publicPem),
      "a PEM private key (base64)",
    ],
    [
      "base64url of a PEM after a name",
      `KEY=${Buffer.from(TLS_KEY.privatePem).toString("base64url")}`,
      `KEY=${Buffer.from(TLS_KEY.publicPem).toString("base64url")}`,
      "a PEM private key (base64)",
    ],
    [
      "base64 of base64 of a PEM",
      b64(b64(TLS_KEY.privatePem)),
      b64(b64(TLS_KEY.publicPem)),
      "a PEM private key (base64 in base64)",
    ],
    [
      "hex of a PEM",
      Buffer.from(TLS_KEY.privatePem).toString("hex"),
      `3 1 1 ${tlsa}`,
      "a PEM private key (hex)",
    ],
    [
      "percent-encoded PEM",
      encodeURIComponent(TLS_KEY.privatePem),
      encodeURIComponent(TLS_KEY.publicPem),
      "a PEM private key (percent-encoding)",
    ],
    [
      "OpenSSH private key without its armour",
      SSH_HOST_KEY.privateOpenssh.split("\n").slice(1, -2).join(""),
      SSH_HOST_KEY.publicOpenssh,
      "an OpenSSH private key (base64)",
    ],
    [
      "DER private key as a DKIM record",
      `v=DKIM1; k=rsa; p=${der(DKIM_KEY.privatePem).toString("base64")}`,
      txtPresentation(dkimRecordText(DKIM_KEY.publicPem)),
      "a DER private key (base64)",
    ],
    [
      "DER private key in hex",
      der(TLS_KEY.privatePem).toString("hex"),
      tlsa.toUpperCase(),
      "a DER private key (hex)",
    ],
    [
      "Cloudflare API token",
      `token ${cloudflareToken}`,
      // A zone id, a commit id and a 40-character name.
      "0123456789abcdef0123456789abcdef 4b63987aa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5 mailstack-staging-feature-branch-name-xx",
      "a Cloudflare API token",
    ],
    [
      "Hetzner API token",
      `HCLOUD_TOKEN=${hetznerToken}`,
      `example.eu. 3600 IN DS 2371 13 2 ${tlsa}`,
      "a Hetzner API token",
    ],
    [
      "base64 of a token",
      b64(`HCLOUD_TOKEN=${hetznerToken}`),
      b64(`DS 2371 13 2 ${tlsa}`),
      "a Hetzner API token (base64)",
    ],
    [
      "Cloudflare Global API Key",
      "0123456789abcdef0123456789abcdef01234",
      "0123456789abcdef0123456789abcdef",
      "a Cloudflare Global API Key",
    ],
    [
      "Pulumi access token",
      `pul-${tlsa.slice(0, 40)}`,
      `sha1-${tlsa.slice(0, 40)}`,
      "a Pulumi access token",
    ],
  ])("%s is refused; its neighbour passes", (_, bad, good, what) => {
    expect(check(p, record({ content: bad }))).toEqual(holds(what));
    expect(check(p, record({ content: good }))).toEqual([]);
  });

  test("the message names the property and never the value", () => {
    const [message] = check(p, record({ comment: cloudflareToken }));
    expect(message).toBe(
      "cloudflare:index/dnsRecord:DnsRecord r: property 'comment' holds a Cloudflare API token",
    );
  });

  test("a provider's own token passes; the same token anywhere else is refused", () => {
    expect(check(p, { type: "pulumi:providers:hcloud", props: { token: hetznerToken } })).toEqual(
      [],
    );
    expect(
      check(p, { type: "pulumi:providers:cloudflare", props: { apiToken: cloudflareToken } }),
    ).toEqual([]);
    expect(
      check(p, {
        type: "hcloud:index/server:Server",
        name: "s",
        props: { labels: { token: hetznerToken } },
      }),
    ).toEqual(["hcloud:index/server:Server s: property 'labels' holds a Hetzner API token"]);
  });

  test("in a preview, values not known yet are skipped and the known ones judged", () => {
    // The SDK's own proxy over a preview's inputs, with its marker for an unknown string.
    const proxy = require("@pulumi/policy/proxy");
    const props = proxy.unknownCheckingProxy({
      content: proxy.unknownStringValue,
      comment: `token ${cloudflareToken}`,
      data: { certificate: proxy.unknownStringValue, value: b64(TLS_KEY.privatePem) },
    });
    expect(check(p, { type: "cloudflare:index/dnsRecord:DnsRecord", name: "r", props })).toEqual([
      "cloudflare:index/dnsRecord:DnsRecord r: property 'comment' holds a Cloudflare API token",
      "cloudflare:index/dnsRecord:DnsRecord r: property 'data' holds a PEM private key (base64)",
    ]);
  });
});

test("no-private-key-in-outputs", () => {
  const p = stackPolicy("no-private-key-in-outputs");
  const run = (outputs: Record<string, unknown>) =>
    checkStack(p, [{ type: "pulumi:pulumi:Stack", name: "mailstack-prod", props: outputs }]);
  expect(
    run({
      mailHost: "mail.example.eu",
      userPasswords: { "a@example.eu": "x" },
      dnssecDs: `example.eu. 3600 IN DS 2371 13 2 ${"ab".repeat(32)}`,
    }),
  ).toEqual([]);
  expect(run({ debug: "-----BEGIN EC PRIVATE KEY-----\nx" })).toEqual([
    "stack output 'debug' holds a PEM private key",
  ]);
  expect(run({ debug: Buffer.from(TLS_KEY.privatePem).toString("base64") })).toEqual([
    "stack output 'debug' holds a PEM private key (base64)",
  ]);
  expect(run({ token: "Xq7rT2vLp9sKd4Wm8Nc1Bz6Hj3Fg5Yt0Ua_e-Rk2" })).toEqual([
    "stack output 'token' holds a Cloudflare API token",
  ]);
});

test("prod-dnssec, relaxed for staging", () => {
  const p = stackPolicy("prod-dnssec");
  const zone = "0123456789abcdef0123456789abcdef";
  const rec = { type: "cloudflare:index/dnsRecord:DnsRecord", props: { zoneId: zone } };
  const dnssec = (status: string, zoneId = zone) => ({
    type: "cloudflare:index/zoneDnssec:ZoneDnssec",
    props: { zoneId, status },
  });
  expect(checkStack(p, [rec, dnssec("active")])).toEqual([]);
  const unsigned = ["no ZoneDnssec with status 'active': production needs mailstack:dnssec true"];
  expect(checkStack(p, [rec])).toEqual(unsigned);
  expect(checkStack(p, [rec, dnssec("disabled")])).toEqual(unsigned);
  expect(checkStack(p, [rec, dnssec("active", "fedcba9876543210fedcba9876543210")])).toEqual([
    `zone ${zone} holds mail records but is not signed`,
  ]);
  expect(checkStack(p, [rec], "staging")).toEqual([]);
});

describe("the stack as built", () => {
  const opts = new Map<string, pulumi.CustomResourceOptions>();
  beforeAll(async () => {
    await installMocks();
    const { MailStack } = await import("../components/mailstack");
    const record = (args: pulumi.ResourceTransformationArgs) => {
      opts.set(args.name, args.opts as pulumi.CustomResourceOptions);
      return undefined;
    };
    // With a user's OpenPGP key in the Worker's binding: a public key, which no rule may
    // mistake for a private one or a token.
    const { publicKey } = await openpgp.generateKey({
      type: "ecc",
      curve: "curve25519Legacy",
      userIDs: [{ name: "Alice", email: "alice@example.eu" }],
      format: "armored",
    });
    const config = parseConfig(PROD_RAW);
    const openpgpKeys = await readOpenPgpKeys([
      { address: "alice@example.eu", openpgpKey: publicKey },
    ]);
    new MailStack(
      "pprod",
      { config, acmeDnsToken: "t", openpgpKeys },
      { transformations: [record] },
    );
    // DNSSEC off, as the staging driver sets it (staging/plan.ts).
    new MailStack(
      "pstg",
      { config: parseConfig({ ...STAGING_RAW, dnssec: "false" }), acmeDnsToken: "t" },
      { transformations: [record] },
    );
    await settle();
  });

  const violations = (prefix: string, environment: string) =>
    policies.flatMap((p) =>
      created
        .filter((r) => r.name.startsWith(prefix))
        .flatMap((r) =>
          check(
            p,
            { type: r.type, name: r.name, props: r.inputs, protect: opts.get(r.name)?.protect },
            environment,
          ).map((v) => `${p.name}: ${v}`),
        ),
    );

  const stackViolations = (prefix: string, environment: string) =>
    stackPolicies.flatMap((p) =>
      checkStack(
        p,
        created
          .filter((r) => r.name.startsWith(prefix))
          .map((r) => ({ type: r.type, name: r.name, props: r.state })),
        environment,
      ).map((v) => `${p.name}: ${v}`),
    );

  test("prod passes every policy", () => {
    expect(created.filter((r) => r.name.startsWith("pprod-")).length).toBeGreaterThan(30);
    // Among them the server with its firewall, the signed zone and every record with its key.
    const types = created.filter((r) => r.name.startsWith("pprod-")).map((r) => r.type);
    expect(types).toEqual(
      expect.arrayContaining([
        "hcloud:index/server:Server",
        "cloudflare:index/zoneDnssec:ZoneDnssec",
        "command:remote:Command",
        "cloudflare:index/r2Bucket:R2Bucket",
        "cloudflare:index/apiToken:ApiToken",
        "cloudflare:index/workersScript:WorkersScript",
      ]),
    );
    const script = created.find((r) => r.name === "pprod-discovery-script")!;
    expect(Object.keys(JSON.parse(script.inputs.bindings[0].json).wkd)).toHaveLength(1);
    expect(violations("pprod", "production")).toEqual([]);
    expect(stackViolations("pprod", "production")).toEqual([]);
  });

  test("staging passes with the staging config, and is refused as production", () => {
    const asStaging = [...violations("pstg", "staging"), ...stackViolations("pstg", "staging")];
    expect(asStaging).toEqual([
      "ssh-restricted: SSH (22) is open to the world: set mailstack:sshAllowedIps",
    ]);
    // What staging.json leaves is advisory: the run goes through.
    for (const v of asStaging) {
      expect(levelUnder(stagingConfig, v.split(":")[0])).toBe("advisory");
    }
    const asProd = [...violations("pstg", "production"), ...stackViolations("pstg", "production")];
    expect(asProd).toEqual(
      expect.arrayContaining([
        "prod-mail-policies-enforced: MTA-STS mode is 'testing'; production needs enforce",
        expect.stringMatching(
          /^prod-data-protected: hcloud:index\/volume:Volume pstg-host-mail is not protected/,
        ),
        "prod-dnssec: no ZoneDnssec with status 'active': production needs mailstack:dnssec true",
      ]),
    );
    // Without staging.json SSH from anywhere stops the run.
    expect(levelUnder({}, "ssh-restricted")).toBe("mandatory");
    expect(asProd).toContain(
      "ssh-restricted: SSH (22) is open to the world: set mailstack:sshAllowedIps",
    );
  });
});
