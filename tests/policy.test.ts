// Each policy on a passing and a failing input, and the whole pack on the stack as built.
import * as pulumi from "@pulumi/pulumi";
import type {
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationArgs,
} from "@pulumi/policy";
import { parseConfig } from "../components/config";
import { policies, stackPolicies } from "../policy/policies";
import { PROD_RAW, STAGING_RAW } from "./support/config";
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

  test("ssh-restricted is advisory and fires only for SSH open to the world", () => {
    const p = policy("ssh-restricted");
    expect(p.enforcementLevel).toBe("advisory");
    expect(check(p, fw([tcp("22", ["198.51.100.7/32"])]))).toEqual([]);
    expect(check(p, fw([tcp("22", ["::/0"])]))).toEqual([
      "SSH (22) is open to the world: set mailstack:sshAllowedIps",
    ]);
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
  });

  test("no-private-key-in-plain-properties", () => {
    const p = policy("no-private-key-in-plain-properties");
    const key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
    expect(check(p, { type: "hcloud:index/server:Server", props: { userData: key } })).toEqual([]);
    expect(
      check(p, { type: "hcloud:index/server:Server", name: "s", props: { labels: { k: key } } }),
    ).toEqual(["hcloud:index/server:Server s: property 'labels' holds a private key"]);
  });
});

test("no-private-key-in-outputs", () => {
  const [p] = stackPolicies;
  const run = (outputs: Record<string, unknown>) => {
    const found: string[] = [];
    const args = {
      resources: [{ type: "pulumi:pulumi:Stack", name: "mailstack-prod", props: outputs }],
    } as unknown as StackValidationArgs;
    void p.validateStack!(args, (m) => found.push(m));
    return found;
  };
  expect(run({ mailHost: "mail.example.eu", userPasswords: { "a@example.eu": "x" } })).toEqual([]);
  expect(run({ debug: "-----BEGIN EC PRIVATE KEY-----\nx" })).toEqual([
    "stack output 'debug' holds a private key",
  ]);
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
    new MailStack(
      "pprod",
      { config: parseConfig(PROD_RAW), acmeDnsToken: "t" },
      { transformations: [record] },
    );
    new MailStack(
      "pstg",
      { config: parseConfig(STAGING_RAW), acmeDnsToken: "t" },
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

  test("prod passes every policy", () => {
    expect(created.filter((r) => r.name.startsWith("pprod-")).length).toBeGreaterThan(30);
    expect(violations("pprod", "production")).toEqual([]);
  });

  test("staging passes with the staging config, and is refused as production", () => {
    expect(violations("pstg", "staging")).toEqual([
      "ssh-restricted: SSH (22) is open to the world: set mailstack:sshAllowedIps",
    ]);
    const asProd = violations("pstg", "production");
    expect(asProd).toEqual(
      expect.arrayContaining([
        "prod-mail-policies-enforced: MTA-STS mode is 'testing'; production needs enforce",
        expect.stringMatching(
          /^prod-data-protected: hcloud:index\/volume:Volume pstg-host-mail is not protected/,
        ),
      ]),
    );
  });
});
