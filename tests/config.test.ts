import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { CONFIG_KEYS, ConfigError, parseConfig, readSecrets } from "../components/config";
import { ADMIN_KEY, MINIMAL_RAW, PROD_RAW, STAGING_RAW } from "./support/config";

/** The problems parseConfig reports for a config, or [] when it passes. */
function problems(raw: Record<string, unknown>, unknown: string[] = []): string[] {
  try {
    parseConfig(raw, unknown);
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
}

const withKey = (key: string, value: unknown) => ({ ...MINIMAL_RAW, [key]: value });

describe("defaults", () => {
  test("a minimal config gets the contract's defaults", () => {
    const c = parseConfig(MINIMAL_RAW);
    expect(c).toMatchObject({
      domain: "example.eu",
      hostname: "mail",
      mailHost: "mail.example.eu",
      location: "fsn1",
      serverType: "cx23",
      image: "debian-13",
      sshAllowedIps: ["0.0.0.0/0", "::/0"],
      volumeSizeGb: 20,
      dmarcPolicy: "reject",
      dmarcReportEmail: "postmaster@example.eu",
      mtaStsMode: "enforce",
      tlsRptEmail: "postmaster@example.eu",
      acmeStaging: false,
      dnssec: true,
      clamav: true,
      protect: true,
      monitoringAllowedIps: [],
      backup: { enabled: true, keepDaily: 7, keepWeekly: 4, keepMonthly: 12 },
      dkimSelector: "mail",
      caaIssuer: "letsencrypt.org",
      logRetentionDays: 14,
      dnsbl: true,
    });
    expect(c.relayHost).toBeUndefined();
    expect(c.relayUser).toBeUndefined();
  });

  test("postmaster@ and abuse@ reach the first user unless defined", () => {
    const c = parseConfig(PROD_RAW);
    expect(c.aliases).toEqual({
      "team@example.eu": ["alice@example.eu", "bob@example.eu"],
      "postmaster@example.eu": ["alice@example.eu"],
      "abuse@example.eu": ["alice@example.eu"],
    });
    const own = parseConfig(
      withKey(
        "users",
        JSON.stringify([{ address: "alice@example.eu" }, { address: "postmaster@example.eu" }]),
      ),
    );
    expect(own.aliases["postmaster@example.eu"]).toBeUndefined();
  });

  test("staging settings are read as typed values", () => {
    const c = parseConfig(STAGING_RAW);
    expect(c).toMatchObject({
      acmeStaging: true,
      protect: false,
      mtaStsMode: "testing",
      clamav: false,
      volumeSizeGb: 10,
    });
  });

  test("addresses are normalised to lower case", () => {
    const c = parseConfig(withKey("users", JSON.stringify([{ address: "Alice@Example.EU" }])));
    expect(c.users[0].address).toBe("alice@example.eu");
  });
});

describe("each rule names the key, the rule and the value", () => {
  test.each([
    [
      "location outside the EU",
      withKey("location", "ash"),
      'mailstack:location: must be one of fsn1, nbg1, hel1; got "ash"',
    ],
    [
      "domain not a DNS name",
      withKey("domain", "exa_mple.eu"),
      "mailstack:domain: must be a DNS name",
    ],
    ["domain of one label", withKey("domain", "localhost"), 'got "localhost"'],
    [
      "hostname not a label",
      withKey("hostname", "mail.host"),
      'mailstack:hostname: must be one DNS label (letters, digits, hyphens; 1-63 characters); got "mail.host"',
    ],
    [
      "hostname with leading hyphen",
      withKey("hostname", "-mail"),
      "mailstack:hostname: must be one DNS label",
    ],
    [
      "volume below 10 GB",
      withKey("volumeSizeGb", "9"),
      "mailstack:volumeSizeGb: must be at least 10 (Hetzner's minimum); got 9",
    ],
    [
      "volume not a number",
      withKey("volumeSizeGb", "big"),
      'mailstack:volumeSizeGb: must be a whole number of at least 0; got "big"',
    ],
    [
      "unknown DMARC policy",
      withKey("dmarcPolicy", "block"),
      'mailstack:dmarcPolicy: must be one of none, quarantine, reject; got "block"',
    ],
    [
      "unknown MTA-STS mode",
      withKey("mtaStsMode", "strict"),
      'mailstack:mtaStsMode: must be one of enforce, testing, none; got "strict"',
    ],
    [
      "malformed acmeEmail",
      withKey("acmeEmail", "hostmaster"),
      'mailstack:acmeEmail: must be an email address (local@domain); got "hostmaster"',
    ],
    [
      "malformed dmarcReportEmail",
      withKey("dmarcReportEmail", "dmarc@"),
      'mailstack:dmarcReportEmail: must be an email address (local@domain); got "dmarc@"',
    ],
    [
      "malformed tlsRptEmail",
      withKey("tlsRptEmail", "a b@example.eu"),
      'mailstack:tlsRptEmail: must be an email address (local@domain); got "a b@example.eu"',
    ],
    [
      "report address nobody receives",
      withKey("tlsRptEmail", "tls@example.eu"),
      "mailstack:tlsRptEmail: is inside example.eu but no mailbox or alias receives it",
    ],
    [
      "CIDR that is not one",
      withKey("sshAllowedIps", JSON.stringify(["198.51.100.7"])),
      'mailstack:sshAllowedIps[0]: must be a CIDR such as 203.0.113.7/32 or 2001:db8::/48; got "198.51.100.7"',
    ],
    [
      "CIDR with a bad prefix",
      withKey("monitoringAllowedIps", JSON.stringify(["10.0.0.0/33"])),
      "mailstack:monitoringAllowedIps[0]: must be a CIDR",
    ],
    [
      "IPv6 CIDR with a bad prefix",
      withKey("sshAllowedIps", JSON.stringify(["2001:db8::/129"])),
      "mailstack:sshAllowedIps[0]: must be a CIDR",
    ],
    [
      "no SSH key",
      withKey("sshPublicKeys", "[]"),
      "mailstack:sshPublicKeys: must hold at least one SSH public key (login is key-only); got []",
    ],
    [
      "SSH key of an unknown type",
      withKey("sshPublicKeys", JSON.stringify(["ssh-dss AAAAB3NzaC1kc3M="])),
      "mailstack:sshPublicKeys[0]: key type 'ssh-dss' is not one of",
    ],
    [
      "SSH key with broken data",
      withKey("sshPublicKeys", JSON.stringify(["ssh-ed25519 AAAAC3NzaC1yc2E="])),
      "mailstack:sshPublicKeys[0]: the key data does not hold a 'ssh-ed25519' key",
    ],
    [
      "SSH key that is no key line",
      withKey("sshPublicKeys", JSON.stringify(["hello"])),
      "mailstack:sshPublicKeys[0]: must be an OpenSSH public key line",
    ],
    [
      "user outside the domain",
      withKey("users", JSON.stringify([{ address: "alice@example.com" }])),
      'mailstack:users[0].address: must be an address @example.eu; got "alice@example.com"',
    ],
    [
      "user duplicated",
      withKey(
        "users",
        JSON.stringify([{ address: "alice@example.eu" }, { address: "ALICE@example.eu" }]),
      ),
      'mailstack:users[1].address: duplicates users[0].address; got "alice@example.eu"',
    ],
    [
      "alias duplicating a user",
      withKey(
        "users",
        JSON.stringify([
          { address: "alice@example.eu" },
          { address: "bob@example.eu", aliases: ["alice@example.eu"] },
        ]),
      ),
      "mailstack:users[1].aliases[0]: duplicates users[0].address",
    ],
    [
      "alias outside the domain",
      withKey(
        "users",
        JSON.stringify([{ address: "alice@example.eu", aliases: ["alice@gmail.com"] }]),
      ),
      "mailstack:users[0].aliases[0]: must be an address @example.eu",
    ],
    [
      "alias pointing nowhere",
      withKey("aliases", JSON.stringify({ "team@example.eu": ["carol@example.eu"] })),
      "mailstack:aliases.team@example.eu: points to carol@example.eu, which is no mailbox or alias",
    ],
    [
      "alias with no target",
      withKey("aliases", JSON.stringify({ "team@example.eu": [] })),
      "mailstack:aliases.team@example.eu: must name one or more target addresses; got []",
    ],
    [
      "zone id malformed",
      withKey("cloudflareZoneId", "my-zone"),
      'mailstack:cloudflareZoneId: must be the 32 hex digit zone ID shown on the zone\'s overview; got "my-zone"',
    ],
    [
      "image not Debian",
      withKey("image", "ubuntu-24.04"),
      'mailstack:image: must be debian-13 or debian-12; got "ubuntu-24.04"',
    ],
    [
      "boolean not a boolean",
      withKey("protect", "yes"),
      'mailstack:protect: must be true or false; got "yes"',
    ],
    [
      "relay host malformed",
      { ...MINIMAL_RAW, relayHost: "smtp relay:587", relayUser: "mailer", relayPassword: "pw" },
      "mailstack:relayHost: must be host, [host] or [host]:port",
    ],
    [
      "backup keeping nothing",
      withKey("backup", JSON.stringify({ keepDaily: 0, keepWeekly: 0, keepMonthly: 0 })),
      "mailstack:backup: keeps no snapshot at all",
    ],
    [
      "backup with an unknown setting",
      withKey("backup", JSON.stringify({ keepYearly: 3 })),
      "mailstack:backup.keepYearly: is not a backup setting",
    ],
    [
      "structured value that is not JSON",
      withKey("users", "alice@example.eu"),
      "mailstack:users: must be structured YAML/JSON",
    ],
  ])("%s", (_, raw, message) => {
    const found = problems(raw);
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(message);
  });

  test("an RSA key below 2048 bits is refused", () => {
    // A 1024-bit RSA public key blob: "ssh-rsa", e = 65537, n of 128 bytes.
    const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
    const blob = Buffer.concat([
      str(Buffer.from("ssh-rsa")),
      str(Buffer.from([1, 0, 1])),
      Buffer.concat([Buffer.from([0, 0, 0, 129, 0]), Buffer.alloc(128, 0xc3)]),
    ]);
    const found = problems(
      withKey("sshPublicKeys", JSON.stringify([`ssh-rsa ${blob.toString("base64")}`])),
    );
    expect(found).toEqual([
      expect.stringContaining("RSA keys need at least 2048 bits; this one has 1024"),
    ]);
  });

  test("an alias loop is reported once, with its path", () => {
    const found = problems(
      withKey(
        "aliases",
        JSON.stringify({
          "a@example.eu": ["b@example.eu"],
          "b@example.eu": ["c@example.eu"],
          "c@example.eu": ["a@example.eu"],
        }),
      ),
    );
    expect(found).toEqual([
      'mailstack:aliases.a@example.eu: loops: a@example.eu -> b@example.eu -> c@example.eu -> a@example.eu; got ["b@example.eu"]',
    ]);
  });

  test("an alias may point to another alias that ends at a mailbox", () => {
    const c = parseConfig(
      withKey(
        "aliases",
        JSON.stringify({
          "all@example.eu": ["team@example.eu"],
          "team@example.eu": ["alice@example.eu"],
        }),
      ),
    );
    expect(c.aliases["all@example.eu"]).toEqual(["team@example.eu"]);
  });

  test.each(["domain", "cloudflareZoneId", "sshPublicKeys", "users", "acmeEmail", "acmeDnsToken"])(
    "%s is required",
    (key) => {
      const raw = { ...MINIMAL_RAW };
      delete raw[key];
      expect(problems(raw)).toEqual([
        expect.stringMatching(new RegExp(`^mailstack:${key}: is required`)),
      ]);
    },
  );

  test("a key the contract does not know is refused, so a typo is not ignored", () => {
    expect(problems(MINIMAL_RAW, ["domian"])).toEqual([
      expect.stringMatching(
        /^mailstack:domian: is not a known setting \(known: domain, hostname, /,
      ),
    ]);
  });

  test("every problem is reported at once, in one error", () => {
    const raw = { ...MINIMAL_RAW, location: "us-east", volumeSizeGb: "5", dmarcPolicy: "off" };
    let error: unknown;
    try {
      parseConfig(raw);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toHaveLength(3);
    expect((error as Error).message).toMatch(
      /^mailstack configuration is invalid \(3 problems\):\n {2}- mailstack:location/,
    );
  });

  test("a good RSA key and a comment are accepted", () => {
    expect(problems(withKey("sshPublicKeys", JSON.stringify([ADMIN_KEY])))).toEqual([]);
  });
});

describe("rules with their exact line, each beside a config that passes", () => {
  const RELAY = {
    relayHost: "[smtp.relay.example]:587",
    relayUser: "mailer",
    relayPassword: "relay-password-for-tests",
  };
  const without = (raw: Record<string, unknown>, key: string) => {
    const copy = { ...raw };
    delete copy[key];
    return copy;
  };

  test("logRetentionDays below 1", () => {
    expect(problems(withKey("logRetentionDays", "0"))).toEqual([
      "mailstack:logRetentionDays: must be a whole number from 1 to 90; got 0",
    ]);
    expect(parseConfig(withKey("logRetentionDays", "1")).logRetentionDays).toBe(1);
  });

  test("logRetentionDays above 90", () => {
    expect(problems(withKey("logRetentionDays", "91"))).toEqual([
      "mailstack:logRetentionDays: must be a whole number from 1 to 90; got 91",
    ]);
    expect(parseConfig(withKey("logRetentionDays", "90")).logRetentionDays).toBe(90);
  });

  test("logRetentionDays not a number", () => {
    expect(problems(withKey("logRetentionDays", "two weeks"))).toEqual([
      'mailstack:logRetentionDays: must be a whole number from 1 to 90; got "two weeks"',
    ]);
    expect(parseConfig(withKey("logRetentionDays", "30")).logRetentionDays).toBe(30);
  });

  test("relayUser that would break Postfix's password table", () => {
    expect(problems({ ...MINIMAL_RAW, ...RELAY, relayUser: "mailer:x" })).toEqual([
      `mailstack:relayUser: must not contain spaces or ':'; got "mailer:x"`,
    ]);
    expect(problems({ ...MINIMAL_RAW, ...RELAY, relayUser: "mailer@relay.example" })).toEqual([]);
  });

  test("dnsbl can be turned off (the lab has no blocklists to ask)", () => {
    expect(problems(withKey("dnsbl", "maybe"))).toEqual([
      'mailstack:dnsbl: must be true or false; got "maybe"',
    ]);
    expect(parseConfig(withKey("dnsbl", "false")).dnsbl).toBe(false);
  });

  test("relayHost without relayUser", () => {
    expect(problems({ ...MINIMAL_RAW, ...without(RELAY, "relayUser") })).toEqual([
      "mailstack:relayUser: is required when relayHost is set (pulumi config set mailstack:relayUser ...); got nothing",
    ]);
    const c = parseConfig({ ...MINIMAL_RAW, ...RELAY });
    expect([c.relayHost, c.relayUser]).toEqual(["[smtp.relay.example]:587", "mailer"]);
  });

  test("relayHost without relayPassword", () => {
    expect(problems({ ...MINIMAL_RAW, ...without(RELAY, "relayPassword") })).toEqual([
      "mailstack:relayPassword: is required when relayHost is set (pulumi config set --secret mailstack:relayPassword ...); got nothing",
    ]);
    expect(problems({ ...MINIMAL_RAW, ...RELAY })).toEqual([]);
  });

  test("relayHost alone: one line for each missing key", () => {
    expect(problems(withKey("relayHost", RELAY.relayHost))).toEqual([
      "mailstack:relayUser: is required when relayHost is set (pulumi config set mailstack:relayUser ...); got nothing",
      "mailstack:relayPassword: is required when relayHost is set (pulumi config set --secret mailstack:relayPassword ...); got nothing",
    ]);
    expect(problems({ ...MINIMAL_RAW, ...RELAY })).toEqual([]);
  });

  test("relayUser without relayHost", () => {
    expect(problems(withKey("relayUser", "mailer"))).toEqual([
      'mailstack:relayUser: is set but relayHost is not: the login is for the smarthost; got "mailer"',
    ]);
    expect(problems({ ...MINIMAL_RAW, ...RELAY })).toEqual([]);
  });

  test("relayPassword without relayHost, and the line does not show the secret", () => {
    expect(problems(withKey("relayPassword", RELAY.relayPassword))).toEqual([
      "mailstack:relayPassword: is set but relayHost is not: the login is for the smarthost; got a secret (not shown)",
    ]);
    expect(problems({ ...MINIMAL_RAW, ...RELAY })).toEqual([]);
  });

  test("ClamAV on a server type with too little memory", () => {
    expect(problems(withKey("serverType", "cpx11"))).toEqual([
      "mailstack:clamav: ClamAV needs about 1.5 GB of RAM; server type cpx11 has 2 GB: choose cx23 or larger, or set mailstack:clamav false; got true",
    ]);
    expect(problems({ ...MINIMAL_RAW, serverType: "cpx11", clamav: "false" })).toEqual([]);
    expect(problems({ ...MINIMAL_RAW, serverType: "cx23", clamav: "true" })).toEqual([]);
  });

  test("ClamAV on a server type missing from the memory table is not checked", () => {
    expect(problems({ ...MINIMAL_RAW, serverType: "cx99", clamav: "true" })).toEqual([]);
  });

  test("an alias that is also a user's address", () => {
    expect(
      problems(
        withKey(
          "users",
          JSON.stringify([
            { address: "alice@example.eu" },
            { address: "bob@example.eu", aliases: ["alice@example.eu"] },
          ]),
        ),
      ),
    ).toEqual([
      'mailstack:users[1].aliases[0]: duplicates users[0].address; got "alice@example.eu"',
    ]);
    expect(
      problems(
        withKey(
          "users",
          JSON.stringify([
            { address: "alice@example.eu" },
            { address: "bob@example.eu", aliases: ["robert@example.eu"] },
          ]),
        ),
      ),
    ).toEqual([]);
  });

  test("a quota below 1 MiB", () => {
    expect(
      problems(withKey("users", JSON.stringify([{ address: "alice@example.eu", quotaMb: 0 }]))),
    ).toEqual(["mailstack:users[0].quotaMb: must be a whole number of MiB, at least 1; got 0"]);
    const c = parseConfig(
      withKey("users", JSON.stringify([{ address: "alice@example.eu", quotaMb: 1 }])),
    );
    expect(c.users[0].quotaMb).toBe(1);
  });

  test("a user outside the domain", () => {
    expect(problems(withKey("users", JSON.stringify([{ address: "alice@example.com" }])))).toEqual([
      'mailstack:users[0].address: must be an address @example.eu; got "alice@example.com"',
    ]);
    expect(problems(withKey("users", JSON.stringify([{ address: "alice@example.eu" }])))).toEqual(
      [],
    );
  });
});

describe("readSecrets", () => {
  afterEach(() => pulumi.runtime.setAllConfig({}, []));

  test("relayPassword is a secret Output when set, and absent when not", async () => {
    pulumi.runtime.setAllConfig(
      { "mailstack:acmeDnsToken": "token", "mailstack:relayPassword": "relay-password" },
      ["mailstack:acmeDnsToken", "mailstack:relayPassword"],
    );
    const secrets = readSecrets();
    expect(secrets.relayPassword).toBeDefined();
    expect(await pulumi.isSecret(secrets.relayPassword!)).toBe(true);

    pulumi.runtime.setAllConfig({ "mailstack:acmeDnsToken": "token" }, ["mailstack:acmeDnsToken"]);
    expect("relayPassword" in readSecrets()).toBe(false);
  });
});

describe("Pulumi.yaml declares the contract", () => {
  const project = parse(readFileSync(join(__dirname, "..", "Pulumi.yaml"), "utf8"));
  const declared = project.config as Record<
    string,
    { type?: string; description?: string; default?: unknown }
  >;

  test("every key, with a type and a description, or documented as an object key", () => {
    const text = readFileSync(join(__dirname, "..", "Pulumi.yaml"), "utf8");
    const objectKeys = [...text.matchAll(/^#\s+mailstack:(\w+)\s/gm)].map((m) => m[1]);
    expect(objectKeys).toEqual(["users", "aliases", "backup"]);
    expect([...Object.keys(declared), ...objectKeys].sort()).toEqual(
      Object.keys(CONFIG_KEYS).sort(),
    );
    for (const [key, spec] of Object.entries(declared)) {
      expect([key, typeof spec.description, typeof spec.type]).toEqual([key, "string", "string"]);
    }
  });

  test("declared defaults equal the validator's defaults", () => {
    const c = parseConfig(MINIMAL_RAW) as unknown as Record<string, unknown>;
    for (const [key, spec] of Object.entries(declared)) {
      if (spec.default === undefined) continue;
      expect([key, spec.default]).toEqual([key, c[key]]);
    }
  });

  test.each(["Pulumi.prod.yaml", "Pulumi.staging.yaml"])("%s passes validation", (file) => {
    const stack = parse(readFileSync(join(__dirname, "..", file), "utf8"));
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(stack.config as Record<string, unknown>)) {
      if (k.startsWith("mailstack:")) raw[k.slice("mailstack:".length)] = v;
    }
    // A stack file cannot hold the token in clear; `pulumi config set --secret` adds it.
    expect(raw.acmeDnsToken).toBeUndefined();
    raw.acmeDnsToken = "set with pulumi config set --secret";
    expect(problems(raw)).toEqual([]);
  });
});
