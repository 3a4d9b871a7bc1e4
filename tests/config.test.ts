import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { CONFIG_KEYS, ConfigError, parseConfig, parseStackFile } from "../components/config";
import { readConfig, readSecrets } from "../components/stack-config";
import { ADMIN_KEY, MINIMAL_RAW, PROD_RAW, SK_KEY, STAGING_RAW } from "./support/config";
import { BASTION_HOST_KEY, DKIM_KEY, JUMP_KEY, TLS_KEY } from "./support/keys";

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
      backup: {
        enabled: true,
        provider: "r2",
        schedule: "daily",
        bucket: "mail-example-eu-backup",
        keepDaily: 7,
        keepWeekly: 4,
        keepMonthly: 12,
      },
      dkimSelector: "mail",
      caaIssuer: "letsencrypt.org",
      logRetentionDays: 14,
      dnsbl: true,
    });
    expect(c.relayHost).toBeUndefined();
    expect(c.relayUser).toBeUndefined();
    // R2 places a bucket by its jurisdiction: no location.
    expect("location" in c.backup).toBe(false);
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
      'mailstack:sshAllowedIps[0]: must be a CIDR with a prefix length: a bare address is not taken as /32 or /128 (did you mean 198.51.100.7/32?); got "198.51.100.7"',
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

  test.each(["domain", "cloudflareZoneId", "sshPublicKeys", "users", "acmeEmail"])(
    "%s is required",
    (key) => {
      const raw = { ...MINIMAL_RAW };
      delete raw[key];
      expect(problems(raw)).toEqual([
        expect.stringMatching(new RegExp(`^mailstack:${key}: is required`)),
      ]);
    },
  );

  test("without acmeDnsToken the stack makes the host's token; with it, the one supplied is used", () => {
    const raw = { ...MINIMAL_RAW };
    delete raw.acmeDnsToken;
    expect(parseConfig(raw).acmeDnsTokenSupplied).toBe(false);
    expect(parseConfig(MINIMAL_RAW).acmeDnsTokenSupplied).toBe(true);
  });

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

  test("universalSsl: unset is not managed; true or false is taken as set", () => {
    expect(parseConfig(MINIMAL_RAW).universalSsl).toBeUndefined();
    expect(parseConfig(withKey("universalSsl", "false")).universalSsl).toBe(false);
    expect(parseConfig(withKey("universalSsl", "true")).universalSsl).toBe(true);
  });

  test("universalSsl that is not true or false", () => {
    expect(problems(withKey("universalSsl", "off"))).toEqual([
      'mailstack:universalSsl: must be true or false; got "off"',
    ]);
  });

  test("universalSsl on a throw-away stack, which shares the zone", () => {
    expect(
      problems({ ...STAGING_RAW, expiresAt: "2026-12-01T18:00:00Z", universalSsl: "false" }),
    ).toEqual([
      "mailstack:universalSsl: must be unset on a throw-away stack (mailstack:expiresAt is " +
        "set): Universal SSL is a setting of the whole zone, which such a stack shares; the " +
        "zone's own stack sets it; got false",
    ]);
  });

  test("adminMfa: off by default; totp and fido2 are taken", () => {
    expect(parseConfig(MINIMAL_RAW).adminMfa).toBe("off");
    expect(parseConfig(withKey("adminMfa", "totp")).adminMfa).toBe("totp");
    const fido2 = { ...withKey("adminMfa", "fido2"), sshPublicKeys: JSON.stringify([SK_KEY]) };
    expect(parseConfig(fido2)).toMatchObject({ adminMfa: "fido2", sshPublicKeys: [SK_KEY] });
  });

  test("adminMfa that is no mode", () => {
    expect(problems(withKey("adminMfa", "yes"))).toEqual([
      'mailstack:adminMfa: must be one of off, totp, fido2; got "yes"',
    ]);
  });

  test("adminMfa fido2 with a key that is no FIDO2 security key", () => {
    expect(
      problems({
        ...withKey("adminMfa", "fido2"),
        sshPublicKeys: JSON.stringify([SK_KEY, ADMIN_KEY]),
      }),
    ).toEqual([
      "mailstack:sshPublicKeys[1]: must be a FIDO2 security key (sk-ssh-ed25519@openssh.com or " +
        "sk-ecdsa-sha2-nistp256@openssh.com) while adminMfa is fido2: make one with ssh-keygen " +
        `-t ed25519-sk -O verify-required, or set adminMfa to totp; got ${JSON.stringify(ADMIN_KEY)}`,
    ]);
  });

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

  describe("users[].appPasswords and appPasswordsOnly", () => {
    const alice = (extra: Record<string, unknown>) =>
      withKey("users", JSON.stringify([{ address: "alice@example.eu", ...extra }]));

    test("names, or {name, protocols}; imap and smtp by default; none by default", () => {
      expect(parseConfig(alice({})).users[0]).toMatchObject({
        appPasswords: [],
        appPasswordsOnly: false,
      });
      const c = parseConfig(
        alice({
          appPasswords: ["phone", { name: "scanner", protocols: ["smtp"] }, "laptop-2"],
          appPasswordsOnly: true,
        }),
      );
      expect(c.users[0]).toMatchObject({
        appPasswords: [
          { name: "phone", protocols: ["imap", "smtp"] },
          { name: "scanner", protocols: ["smtp"] },
          { name: "laptop-2", protocols: ["imap", "smtp"] },
        ],
        appPasswordsOnly: true,
      });
      // Protocols are kept in one order, whatever order the config gives.
      expect(
        parseConfig(alice({ appPasswords: [{ name: "mac", protocols: ["sieve", "imap"] }] }))
          .users[0].appPasswords,
      ).toEqual([{ name: "mac", protocols: ["imap", "sieve"] }]);
    });

    test("bad device names, protocols and settings are refused, naming the entry", () => {
      expect(
        problems(
          alice({
            appPasswords: [
              "Phone",
              "",
              "phone",
              "phone",
              { name: "pop", protocols: ["pop3"] },
              { name: "none", protocols: [] },
              { name: "x", colour: "red" },
              7,
            ],
          }),
        ),
      ).toEqual([
        "mailstack:users[0].appPasswords[0]: must be a device name of 1 to 32 characters a-z, 0-9 and '-' (e.g. phone, laptop-2); got \"Phone\"",
        "mailstack:users[0].appPasswords[1]: must be a device name of 1 to 32 characters a-z, 0-9 and '-' (e.g. phone, laptop-2); got \"\"",
        "mailstack:users[0].appPasswords[3]: names the device 'phone' twice; got \"phone\"",
        'mailstack:users[0].appPasswords[4].protocols: must be a non-empty list of imap, smtp, sieve (what the device may open); got ["pop3"]',
        "mailstack:users[0].appPasswords[5].protocols: must be a non-empty list of imap, smtp, sieve (what the device may open); got []",
        'mailstack:users[0].appPasswords[6].colour: is not an app password setting (known: name, protocols); got "colour"',
        'mailstack:users[0].appPasswords[7]: must be a list of device names or {name, protocols}, e.g. ["phone", "laptop"]; got 7',
      ]);
      expect(problems(alice({ appPasswords: "phone" }))).toEqual([
        'mailstack:users[0].appPasswords: must be a list of device names or {name, protocols}, e.g. ["phone", "laptop"]; got "phone"',
      ]);
      expect(problems(alice({ appPasswords: ["phone"], appPasswordsOnly: "yes" }))).toEqual([
        'mailstack:users[0].appPasswordsOnly: must be true or false; got "yes"',
      ]);
    });

    test("appPasswordsOnly without an app password would lock the mailbox: refused", () => {
      const why =
        "mailstack:users[0].appPasswordsOnly: needs at least one users[].appPasswords entry: " +
        "without one, nothing could open the mailbox; got true";
      expect(problems(alice({ appPasswordsOnly: true }))).toEqual([why]);
      expect(problems(alice({ appPasswordsOnly: true, appPasswords: [] }))).toEqual([why]);
      // The control: with one, it is taken.
      expect(problems(alice({ appPasswordsOnly: true, appPasswords: ["phone"] }))).toEqual([]);
    });
  });

  describe("users[].openpgpKey: the armor is checked here, the key by readOpenPgpKeys", () => {
    const PUBLIC =
      "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEZ\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----";
    const PRIVATE = PUBLIC.replace(/PUBLIC/g, "PRIVATE");
    const withPgp = (openpgpKey: unknown) =>
      withKey("users", JSON.stringify([{ address: "alice@example.eu", openpgpKey }]));

    test("a public key block, several lines, is carried as given", () => {
      expect(parseConfig(withPgp(PUBLIC)).users[0].openpgpKey).toBe(`${PUBLIC}\n`);
      expect(parseConfig(withPgp(`\n${PUBLIC}\r\n`)).users[0].openpgpKey).toBe(`${PUBLIC}\n`);
      expect(
        parseConfig(withKey("users", JSON.stringify([{ address: "alice@example.eu" }]))).users[0],
      ).not.toHaveProperty("openpgpKey");
    });

    test("a private key block is refused without showing it", () => {
      const found = problems(withPgp(PRIVATE));
      expect(found).toEqual([
        "mailstack:users[0].openpgpKey: must be a PUBLIC key: this one is private and would be " +
          "published to anyone who asks (export the public key with gpg --export --armor " +
          "<address>); got a PGP PRIVATE KEY BLOCK (not shown)",
      ]);
      expect(found[0]).not.toContain("xjMEZ");
    });

    test("anything else: the first line is shown", () => {
      expect(problems(withPgp("0123 4567 89AB CDEF\nmore"))).toEqual([
        "mailstack:users[0].openpgpKey: must be an ASCII-armored OpenPGP public key, " +
          "-----BEGIN PGP PUBLIC KEY BLOCK----- to -----END PGP PUBLIC KEY BLOCK----- " +
          '(gpg --export --armor <address>); got "0123 4567 89AB CDEF"',
      ]);
      expect(problems(withPgp(7))).toEqual([
        "mailstack:users[0].openpgpKey: must be an ASCII-armored OpenPGP public key " +
          "(gpg --export --armor); got 7",
      ]);
    });

    test("a line break elsewhere in a user is still refused", () => {
      expect(
        problems(
          withKey("users", JSON.stringify([{ address: "alice@example.eu\n", openpgpKey: PUBLIC }])),
        ),
      ).toEqual([
        'mailstack:users[0].address: must be one line (no line breaks or NUL characters); got "alice@example.eu\\n"',
      ]);
    });
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

describe("input that smuggles lines or widens rules: the exact line, beside a config that passes", () => {
  const ONE_LINE = "must be one line (no line breaks or NUL characters)";
  const users = (list: unknown[]) => withKey("users", JSON.stringify(list));
  const RELAY = {
    relayHost: "[smtp.relay.example]:587",
    relayUser: "mailer",
    relayPassword: "relay-password-for-tests",
  };

  test("an SSH key with an embedded newline would add a second, unchecked authorized_keys line", () => {
    const smuggled = `${ADMIN_KEY}\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA mallory`;
    expect(problems(withKey("sshPublicKeys", JSON.stringify([ADMIN_KEY, smuggled])))).toEqual([
      `mailstack:sshPublicKeys[1]: ${ONE_LINE}; got ${JSON.stringify(smuggled).slice(0, 117)}...`,
    ]);
    expect(problems(withKey("sshPublicKeys", JSON.stringify([ADMIN_KEY, ADMIN_KEY])))).toEqual([]);
  });

  test.each(["\n", "\r", "\0"])("a key ending in %j is refused too", (end) => {
    expect(problems(withKey("sshPublicKeys", JSON.stringify([`${ADMIN_KEY}${end}`])))).toEqual([
      `mailstack:sshPublicKeys[0]: ${ONE_LINE}; got ${JSON.stringify(`${ADMIN_KEY}${end}`)}`,
    ]);
    // Spaces around a value are trimmed, as before.
    expect(problems(withKey("sshPublicKeys", JSON.stringify([`  ${ADMIN_KEY}  `])))).toEqual([]);
  });

  test("the check reads structured values after parsing: pretty-printed JSON is fine", () => {
    expect(problems(users([{ address: "alice@example.eu" }]))).toEqual([]);
    expect(
      problems(withKey("users", JSON.stringify([{ address: "alice@example.eu" }], null, 2))),
    ).toEqual([]);
  });

  // One generic check covers every string: plain keys, list elements, object keys and values.
  test.each<[string, Record<string, unknown>, string, Record<string, unknown>]>([
    [
      "hostname",
      withKey("hostname", "mail\nx"),
      `mailstack:hostname: ${ONE_LINE}; got "mail\\nx"`,
      withKey("hostname", "mail"),
    ],
    [
      "domain",
      withKey("domain", "example.eu\r"),
      `mailstack:domain: ${ONE_LINE}; got "example.eu\\r"`,
      withKey("domain", "example.eu"),
    ],
    [
      "acmeEmail",
      withKey("acmeEmail", "hostmaster@example.eu\0"),
      `mailstack:acmeEmail: ${ONE_LINE}; got "hostmaster@example.eu\\u0000"`,
      withKey("acmeEmail", "hostmaster@example.eu"),
    ],
    [
      "dmarcReportEmail",
      withKey("dmarcReportEmail", "postmaster@example.eu\nrua=mailto:x@evil.example"),
      `mailstack:dmarcReportEmail: ${ONE_LINE}; got "postmaster@example.eu\\nrua=mailto:x@evil.example"`,
      withKey("dmarcReportEmail", "postmaster@example.eu"),
    ],
    [
      "relayHost",
      { ...MINIMAL_RAW, ...RELAY, relayHost: "[smtp.relay.example]:587\nx" },
      `mailstack:relayHost: ${ONE_LINE}; got "[smtp.relay.example]:587\\nx"`,
      { ...MINIMAL_RAW, ...RELAY },
    ],
    [
      "relayUser",
      { ...MINIMAL_RAW, ...RELAY, relayUser: "mailer\nx" },
      `mailstack:relayUser: ${ONE_LINE}; got "mailer\\nx"`,
      { ...MINIMAL_RAW, ...RELAY },
    ],
    [
      "relayPassword, without showing the secret",
      { ...MINIMAL_RAW, ...RELAY, relayPassword: "pw\n[other.example] a:b" },
      `mailstack:relayPassword: ${ONE_LINE}; got a secret (not shown)`,
      { ...MINIMAL_RAW, ...RELAY },
    ],
    [
      "sshAllowedIps element",
      withKey("sshAllowedIps", JSON.stringify(["198.51.100.7/32\n0.0.0.0/0"])),
      `mailstack:sshAllowedIps[0]: ${ONE_LINE}; got "198.51.100.7/32\\n0.0.0.0/0"`,
      withKey("sshAllowedIps", JSON.stringify(["198.51.100.7/32"])),
    ],
    [
      "monitoringAllowedIps element",
      withKey("monitoringAllowedIps", JSON.stringify(["198.51.100.50/32", "\n"])),
      `mailstack:monitoringAllowedIps[1]: ${ONE_LINE}; got "\\n"`,
      withKey("monitoringAllowedIps", JSON.stringify(["198.51.100.50/32"])),
    ],
    [
      "users[].address",
      users([{ address: "alice@example.eu\nbob@example.eu" }]),
      `mailstack:users[0].address: ${ONE_LINE}; got "alice@example.eu\\nbob@example.eu"`,
      users([{ address: "alice@example.eu" }]),
    ],
    [
      "users[].aliases element",
      users([{ address: "alice@example.eu", aliases: ["a.smith@example.eu\r\n"] }]),
      `mailstack:users[0].aliases[0]: ${ONE_LINE}; got "a.smith@example.eu\\r\\n"`,
      users([{ address: "alice@example.eu", aliases: ["a.smith@example.eu"] }]),
    ],
    [
      "an aliases key, named safely in the line",
      withKey("aliases", JSON.stringify({ "team@example.eu\nx": ["alice@example.eu"] })),
      `mailstack:aliases.team@example.eu\\nx: ${ONE_LINE}; got "team@example.eu\\nx"`,
      withKey("aliases", JSON.stringify({ "team@example.eu": ["alice@example.eu"] })),
    ],
    [
      "an aliases target",
      withKey("aliases", JSON.stringify({ "team@example.eu": ["alice@example.eu\n"] })),
      `mailstack:aliases.team@example.eu[0]: ${ONE_LINE}; got "alice@example.eu\\n"`,
      withKey("aliases", JSON.stringify({ "team@example.eu": ["alice@example.eu"] })),
    ],
  ])("%s", (_, raw, message, control) => {
    expect(problems(raw)).toEqual([message]);
    expect(problems(control)).toEqual([]);
  });

  describe("readConfig checks secrets too, and never hands their value on", () => {
    const stack = (relayPassword: string) =>
      pulumi.runtime.setAllConfig(
        Object.fromEntries(
          Object.entries({ ...MINIMAL_RAW, ...RELAY, relayPassword }).map(([k, v]) => [
            `mailstack:${k}`,
            String(v),
          ]),
        ),
        ["mailstack:acmeDnsToken", "mailstack:relayPassword"],
      );
    afterEach(() => pulumi.runtime.setAllConfig({}, []));

    test("a relay password with a line break", () => {
      stack("pw\n[other.example]:25 a:b");
      let error: unknown;
      try {
        readConfig();
      } catch (e) {
        error = e;
      }
      expect((error as ConfigError).problems).toEqual([
        `mailstack:relayPassword: ${ONE_LINE}; got a secret (not shown)`,
      ]);
      stack("pw");
      expect(readConfig().relayUser).toBe("mailer");
    });
  });

  test("an IPv4 address of fewer than four numbers (198.51.100 is 198.51.0.100 to ipaddr.js)", () => {
    expect(problems(withKey("sshAllowedIps", JSON.stringify(["198.51.100/24"])))).toEqual([
      'mailstack:sshAllowedIps[0]: must be a CIDR such as 203.0.113.7/32 or 2001:db8::/48, with all four numbers of the IPv4 address in decimal; got "198.51.100/24"',
    ]);
    expect(problems(withKey("sshAllowedIps", JSON.stringify(["198.51.100.0/24"])))).toEqual([]);
  });

  test("an IPv4 address in octal or hex", () => {
    expect(problems(withKey("monitoringAllowedIps", JSON.stringify(["010.0.0.0/8"])))).toEqual([
      'mailstack:monitoringAllowedIps[0]: must be a CIDR such as 203.0.113.7/32 or 2001:db8::/48, with all four numbers of the IPv4 address in decimal; got "010.0.0.0/8"',
    ]);
    expect(problems(withKey("monitoringAllowedIps", JSON.stringify(["0x0a.0.0.0/8"])))).toEqual([
      'mailstack:monitoringAllowedIps[0]: must be a CIDR such as 203.0.113.7/32 or 2001:db8::/48, with all four numbers of the IPv4 address in decimal; got "0x0a.0.0.0/8"',
    ]);
    expect(problems(withKey("monitoringAllowedIps", JSON.stringify(["10.0.0.0/8"])))).toEqual([]);
  });

  test("an IPv4 network with host bits set would silently open the whole network", () => {
    expect(problems(withKey("sshAllowedIps", JSON.stringify(["198.51.100.7/24"])))).toEqual([
      'mailstack:sshAllowedIps[0]: must be a network address with no host bits set (did you mean 198.51.100.0/24?); got "198.51.100.7/24"',
    ]);
    expect(problems(withKey("sshAllowedIps", JSON.stringify(["198.51.100.7/32"])))).toEqual([]);
    expect(problems(withKey("sshAllowedIps", JSON.stringify(["198.51.100.0/24"])))).toEqual([]);
  });

  test("an IPv6 network with host bits set", () => {
    expect(problems(withKey("monitoringAllowedIps", JSON.stringify(["2001:db8::1/32"])))).toEqual([
      'mailstack:monitoringAllowedIps[0]: must be a network address with no host bits set (did you mean 2001:db8::/32?); got "2001:db8::1/32"',
    ]);
    expect(problems(withKey("monitoringAllowedIps", JSON.stringify(["2001:db8::/32"])))).toEqual(
      [],
    );
  });

  test("a network not written in its one canonical form", () => {
    expect(
      problems(
        withKey("sshAllowedIps", JSON.stringify(["2001:DB8:0::/32", "0::/0", "10.0.0.0/08"])),
      ),
    ).toEqual([
      'mailstack:sshAllowedIps[0]: must be written in canonical form (did you mean 2001:db8::/32?); got "2001:DB8:0::/32"',
      'mailstack:sshAllowedIps[1]: must be written in canonical form (did you mean ::/0?); got "0::/0"',
      'mailstack:sshAllowedIps[2]: must be written in canonical form (did you mean 10.0.0.0/8?); got "10.0.0.0/08"',
    ]);
    const c = parseConfig(
      withKey("sshAllowedIps", JSON.stringify(["2001:db8::/32", "::/0", "10.0.0.0/8"])),
    );
    expect(c.sshAllowedIps).toEqual(["2001:db8::/32", "::/0", "10.0.0.0/8"]);
  });

  test("a bare address is refused, not read as one host", () => {
    expect(problems(withKey("sshAllowedIps", JSON.stringify(["2001:DB8::7"])))).toEqual([
      'mailstack:sshAllowedIps[0]: must be a CIDR with a prefix length: a bare address is not taken as /32 or /128 (did you mean 2001:db8::7/128?); got "2001:DB8::7"',
    ]);
    const c = parseConfig(
      withKey("sshAllowedIps", JSON.stringify(["198.51.100.7/32", "2001:db8::7/128"])),
    );
    expect(c.sshAllowedIps).toEqual(["198.51.100.7/32", "2001:db8::7/128"]);
  });

  const LOCAL_CHARS =
    "the part before @ may hold only a-z, 0-9 and . _ + - (Postfix expands $, and / would split a Maildir path)";
  const DOTS = "the part before @ must not start or end with a dot, nor hold two dots in a row";
  const PLUS =
    "the part before @ must not hold + in a mailbox or alias: + is the recipient delimiter (alice+news@ is read as alice@ with the extension news)";

  test.each(["a$b", "a`b", "a'b", "a|b", "a/b", "a{b}", "a=b", "a%b", "a!b", "a#b", "a*b"])(
    "a user whose local part holds a character outside a-z 0-9 . _ + -: %s",
    (local) => {
      expect(problems(users([{ address: `${local}@example.eu` }]))).toEqual([
        `mailstack:users[0].address: ${LOCAL_CHARS}; got ${JSON.stringify(`${local}@example.eu`)}`,
      ]);
      expect(problems(users([{ address: "a.b_c-9@example.eu" }]))).toEqual([]);
    },
  );

  test("the local part is checked after lower-casing", () => {
    expect(parseConfig(users([{ address: "Alice.Smith@Example.EU" }])).users[0].address).toBe(
      "alice.smith@example.eu",
    );
  });

  test.each([".alice", "alice.", "a..smith"])("a local part with a misplaced dot: %s", (local) => {
    expect(
      problems(users([{ address: "alice@example.eu", aliases: [`${local}@example.eu`] }])),
    ).toEqual([`mailstack:users[0].aliases[0]: ${DOTS}; got "${local}@example.eu"`]);
    expect(
      problems(users([{ address: "alice@example.eu", aliases: ["a.smith@example.eu"] }])),
    ).toEqual([]);
  });

  test("a user address with + could never receive mail: + is the recipient delimiter", () => {
    expect(problems(users([{ address: "alice+news@example.eu" }]))).toEqual([
      `mailstack:users[0].address: ${PLUS}; got "alice+news@example.eu"`,
    ]);
    expect(problems(users([{ address: "alice-news@example.eu" }]))).toEqual([]);
  });

  test("aliases, as keys and as targets, hold no + and only the allowed characters", () => {
    expect(
      problems(withKey("aliases", JSON.stringify({ "team+x@example.eu": ["alice@example.eu"] }))),
    ).toEqual([`mailstack:aliases.team+x@example.eu: ${PLUS}; got "team+x@example.eu"`]);
    expect(
      problems(withKey("aliases", JSON.stringify({ "team@example.eu": ["al{ice}@example.eu"] }))),
    ).toEqual([`mailstack:aliases.team@example.eu[0]: ${LOCAL_CHARS}; got "al{ice}@example.eu"`]);
    expect(
      problems(withKey("aliases", JSON.stringify({ "team_x@example.eu": ["alice@example.eu"] }))),
    ).toEqual([]);
  });

  test("report and ACME addresses outside the domain may hold +, but nothing else unusual", () => {
    expect(problems(withKey("tlsRptEmail", "tls$rpt@reports.example"))).toEqual([
      `mailstack:tlsRptEmail: ${LOCAL_CHARS}; got "tls$rpt@reports.example"`,
    ]);
    expect(problems(withKey("acmeEmail", "host|master@example.net"))).toEqual([
      `mailstack:acmeEmail: ${LOCAL_CHARS}; got "host|master@example.net"`,
    ]);
    expect(problems(withKey("dmarcReportEmail", "dmarc..rua@reports.example"))).toEqual([
      `mailstack:dmarcReportEmail: ${DOTS}; got "dmarc..rua@reports.example"`,
    ]);
    const c = parseConfig({
      ...MINIMAL_RAW,
      dmarcReportEmail: "dmarc+rua@reports.example",
      tlsRptEmail: "tls+rpt@reports.example",
      acmeEmail: "hostmaster+le@example.net",
    });
    expect([c.dmarcReportEmail, c.tlsRptEmail, c.acmeEmail]).toEqual([
      "dmarc+rua@reports.example",
      "tls+rpt@reports.example",
      "hostmaster+le@example.net",
    ]);
  });

  test("a report address inside the domain with + must reach a mailbox before the +", () => {
    expect(problems(withKey("dmarcReportEmail", "carol+dmarc@example.eu"))).toEqual([
      'mailstack:dmarcReportEmail: is inside example.eu but no mailbox or alias receives it; got "carol+dmarc@example.eu"',
    ]);
    expect(
      parseConfig(withKey("dmarcReportEmail", "alice+dmarc@example.eu")).dmarcReportEmail,
    ).toBe("alice+dmarc@example.eu");
  });
});

describe("what the config loads", () => {
  test("config.ts and the privacy notice load no Pulumi; reading the stack does", () => {
    // One fresh Node process: the @pulumi packages loaded after the tools that check a stack
    // file, then after the module a stack's run reads its settings with.
    const pulumiLoaded =
      "console.log(JSON.stringify([...new Set(Object.keys(require.cache)" +
      ".map((k) => k.split('node_modules/').pop().split('/').slice(0, 2).join('/'))" +
      ".filter((p) => p.startsWith('@pulumi/')))]));";
    const script = [
      "require('./components/config');",
      "require('./scripts/privacy-notice');",
      pulumiLoaded,
      "require('./components/stack-config');",
      pulumiLoaded,
    ].join("");
    const res = spawnSync(process.execPath, ["--require", "tsx/cjs", "-e", script], {
      cwd: join(__dirname, ".."),
      encoding: "utf8",
    });
    expect(res.stderr).toBe("");
    // The tools start without Pulumi's seconds of loading; the control: the same probe sees
    // Pulumi once it is loaded.
    expect(res.stdout).toBe('[]\n["@pulumi/pulumi"]\n');
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

describe("ACME challenge zone and token", () => {
  const ZONE_ID = "ffffffffffffffffffffffffffffffff";
  const delegated = {
    ...MINIMAL_RAW,
    acmeChallengeZone: "Acme-Example.NET.",
    acmeChallengeZoneId: ZONE_ID,
  };

  test("a challenge zone is read with its ID, lower case, without the final dot", () => {
    const c = parseConfig(delegated);
    expect([c.acmeChallengeZone, c.acmeChallengeZoneId]).toEqual(["acme-example.net", ZONE_ID]);
  });

  test("control: without the key there is no challenge zone", () => {
    const c = parseConfig(MINIMAL_RAW);
    expect([c.acmeChallengeZone, c.acmeChallengeZoneId]).toEqual([undefined, undefined]);
  });

  test.each([
    [
      "a zone name that is no DNS name",
      { acmeChallengeZone: "acme_zone" },
      'mailstack:acmeChallengeZone: must be the DNS name of a Cloudflare zone that holds only ACME challenges, e.g. acme-example.net; got "acme_zone"',
    ],
    [
      "the mail zone itself",
      { acmeChallengeZone: "example.eu" },
      'mailstack:acmeChallengeZone: must be a zone other than domain: the point is that the host cannot write the mail zone; got "example.eu"',
    ],
    [
      "the mail zone's ID",
      { acmeChallengeZoneId: "0123456789abcdef0123456789abcdef" },
      'mailstack:acmeChallengeZoneId: is the mail zone\'s ID (cloudflareZoneId): the challenge zone must be a zone of its own; got "0123456789abcdef0123456789abcdef"',
    ],
    [
      "an ID that is not 32 hex digits",
      { acmeChallengeZoneId: "acme" },
      'mailstack:acmeChallengeZoneId: must be the 32 hex digit zone ID; got "acme"',
    ],
  ])("refuses %s, naming the key", (_, change, message) => {
    expect(problems({ ...delegated, ...change })).toEqual([message]);
  });

  test("the zone and its ID go together", () => {
    expect(problems({ ...MINIMAL_RAW, acmeChallengeZone: "acme-example.net" })).toEqual([
      "mailstack:acmeChallengeZoneId: is required when acmeChallengeZone is set: the 32 hex digit ID of that zone; got nothing",
    ]);
    expect(problems({ ...MINIMAL_RAW, acmeChallengeZoneId: ZONE_ID })).toEqual([
      `mailstack:acmeChallengeZoneId: is set but acmeChallengeZone is not: set the zone's name too; got "${ZONE_ID}"`,
    ]);
  });

  test("a challenge name longer than DNS allows is refused", () => {
    const long = `${"a".repeat(60)}.${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(60)}.net`;
    expect(problems({ ...delegated, acmeChallengeZone: long })).toEqual([
      expect.stringMatching(
        new RegExp(
          `^mailstack:acmeChallengeZone: makes the challenge name mail\\.example\\.eu\\.${long.replace(/\./g, "\\.")} longer than 253 characters; got "a{60}\\.`,
        ),
      ),
    ]);
  });

  test("the token's expiry is a UTC time, and only for the token the stack makes", () => {
    const made = { ...MINIMAL_RAW };
    delete made.acmeDnsToken;
    expect(
      parseConfig({ ...made, acmeTokenExpiresOn: "2027-06-01T00:00:00Z" }).acmeTokenExpiresOn,
    ).toBe("2027-06-01T00:00:00Z");
    expect(problems({ ...made, acmeTokenExpiresOn: "2027-06-01" })).toEqual([
      'mailstack:acmeTokenExpiresOn: must be a UTC time in ISO 8601, e.g. 2027-01-01T00:00:00Z; got "2027-06-01"',
    ]);
    expect(problems({ ...MINIMAL_RAW, acmeTokenExpiresOn: "2027-06-01T00:00:00Z" })).toEqual([
      'mailstack:acmeTokenExpiresOn: applies only to the token the stack makes: unset acmeDnsToken, or set the expiry on your token at Cloudflare; got "2027-06-01T00:00:00Z"',
    ]);
  });
});

describe("sshProxy: the bastion provisioning connects through", () => {
  const BASTION = {
    host: "bastion.example.eu",
    user: "mailstack-jump",
    hostPublicKey: `${BASTION_HOST_KEY.publicOpenssh.trim()} root@bastion`,
  };
  const proxied = (change: Record<string, unknown> = {}) => ({
    ...MINIMAL_RAW,
    sshProxy: JSON.stringify({ ...BASTION, ...change }),
    sshProxyPrivateKey: JUMP_KEY.privateOpenssh,
  });
  /** An OpenSSH private key whose header names another cipher: what a passphrase makes. */
  const withCipher = (key: string, cipher: string) => {
    const body = Buffer.from(key.split("\n").slice(1, -2).join(""), "base64");
    const magic = "openssh-key-v1\0".length;
    const name = Buffer.alloc(4 + cipher.length);
    name.writeUInt32BE(cipher.length);
    name.write(cipher, 4, "latin1");
    const rest = body.subarray(magic + 4 + body.readUInt32BE(magic));
    const b64 = Buffer.concat([body.subarray(0, magic), name, rest]).toString("base64");
    return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64.match(/.{1,70}/g)!.join("\n")}\n-----END OPENSSH PRIVATE KEY-----\n`;
  };

  test("is read with port 22 by default, the host key pinned as type and key data", () => {
    expect(parseConfig(proxied()).sshProxy).toEqual({
      host: "bastion.example.eu",
      port: 22,
      user: "mailstack-jump",
      hostPublicKey: BASTION_HOST_KEY.publicOpenssh.trim(),
    });
  });

  test("control: unset, there is no bastion, and no key is asked for", () => {
    expect(parseConfig(MINIMAL_RAW).sshProxy).toBeUndefined();
    expect(problems(MINIMAL_RAW)).toEqual([]);
  });

  test("a port, an IP address in either family, a host name in capitals", () => {
    expect(parseConfig(proxied({ port: 2222 })).sshProxy?.port).toBe(2222);
    expect(parseConfig(proxied({ host: "198.51.100.9" })).sshProxy?.host).toBe("198.51.100.9");
    expect(parseConfig(proxied({ host: "2001:db8::9" })).sshProxy?.host).toBe("2001:db8::9");
    expect(parseConfig(proxied({ host: "Bastion.Example.EU" })).sshProxy?.host).toBe(
      "bastion.example.eu",
    );
  });

  test.each([
    [
      "a host with a port",
      { host: "bastion.example.eu:2222" },
      'mailstack:sshProxy.host: must be the bastion\'s DNS name or IP address, without port or brackets, e.g. bastion.example.eu or 198.51.100.9; got "bastion.example.eu:2222"',
    ],
    [
      "an IPv6 address in brackets",
      { host: "[2001:db8::9]" },
      'mailstack:sshProxy.host: must be the bastion\'s DNS name or IP address, without port or brackets, e.g. bastion.example.eu or 198.51.100.9; got "[2001:db8::9]"',
    ],
    [
      "an IPv4 address of three numbers",
      { host: "198.51.9" },
      'mailstack:sshProxy.host: must be the bastion\'s DNS name or IP address, without port or brackets, e.g. bastion.example.eu or 198.51.100.9; got "198.51.9"',
    ],
    [
      "port 0",
      { port: 0 },
      "mailstack:sshProxy.port: must be a whole number from 1 to 65535; got 0",
    ],
    [
      "a port above 65535",
      { port: 65536 },
      "mailstack:sshProxy.port: must be a whole number from 1 to 65535; got 65536",
    ],
    [
      "a port as text",
      { port: "ssh" },
      'mailstack:sshProxy.port: must be a whole number from 1 to 65535; got "ssh"',
    ],
    [
      "a user that is no login name",
      { user: "Mailstack Jump" },
      'mailstack:sshProxy.user: must be a login name: a lower-case letter or _, then letters, digits, _ or -, at most 32 characters; got "Mailstack Jump"',
    ],
    [
      "a host key that is no OpenSSH public key",
      { hostPublicKey: "ssh-ed25519 not-base64!" },
      'mailstack:sshProxy.hostPublicKey: the key data is not base64; got "ssh-ed25519 not-base64!"',
    ],
    [
      "a host key of a type it does not hold",
      { hostPublicKey: BASTION_HOST_KEY.publicOpenssh.trim().replace("ssh-ed25519", "ssh-rsa") },
      `mailstack:sshProxy.hostPublicKey: the key data does not hold a 'ssh-rsa' key; got ${JSON.stringify(BASTION_HOST_KEY.publicOpenssh.trim().replace("ssh-ed25519", "ssh-rsa"))}`,
    ],
    [
      "a host key with a line break",
      { hostPublicKey: `${BASTION_HOST_KEY.publicOpenssh.trim()}\nssh-ed25519 AAAA` },
      `mailstack:sshProxy.hostPublicKey: must be one line (no line breaks or NUL characters); got ${JSON.stringify(`${BASTION_HOST_KEY.publicOpenssh.trim()}\nssh-ed25519 AAAA`)}`,
    ],
  ])("refuses %s, naming the key; the bastion as documented passes", (_, change, message) => {
    expect(problems(proxied(change))).toEqual([message]);
    expect(problems(proxied())).toEqual([]);
  });

  test("every setting but the port is required, and a misspelt one is named", () => {
    expect(problems({ ...proxied(), sshProxy: JSON.stringify({ hostKey: "x" }) })).toEqual([
      'mailstack:sshProxy.hostKey: is not an sshProxy setting (known: host, port, user, hostPublicKey); got "hostKey"',
      "mailstack:sshProxy.host: is required: the bastion's DNS name or IP address; got nothing",
      "mailstack:sshProxy.user: is required: the bastion account provisioning logs in as; got nothing",
      "mailstack:sshProxy.hostPublicKey: is required: the bastion's host key, e.g. from ssh-keyscan; got nothing",
    ]);
    expect(problems({ ...proxied(), sshProxy: JSON.stringify("bastion.example.eu") })).toEqual([
      'mailstack:sshProxy: must be an object {host, port?, user, hostPublicKey}; got "bastion.example.eu"',
    ]);
    expect(problems(proxied())).toEqual([]);
  });

  test("the bastion without its account's key", () => {
    expect(problems({ ...proxied(), sshProxyPrivateKey: undefined })).toEqual([
      "mailstack:sshProxyPrivateKey: is required when sshProxy is set: the private key of the bastion's account (pulumi config set --secret mailstack:sshProxyPrivateKey < key); got nothing",
    ]);
    expect(problems(proxied())).toEqual([]);
  });

  test("the key without the bastion, and the line does not show the secret", () => {
    expect(problems({ ...MINIMAL_RAW, sshProxyPrivateKey: JUMP_KEY.privateOpenssh })).toEqual([
      "mailstack:sshProxyPrivateKey: is set but sshProxy is not: the key is for the bastion's account; got a secret (not shown)",
    ]);
    expect(problems(proxied())).toEqual([]);
  });

  test.each([
    [
      "no key at all",
      "hunter2",
      "must be an SSH private key in OpenSSH or PEM format (-----BEGIN OPENSSH PRIVATE KEY----- ...)",
    ],
    [
      "a public key",
      BASTION_HOST_KEY.publicOpenssh,
      "must be an SSH private key in OpenSSH or PEM format (-----BEGIN OPENSSH PRIVATE KEY----- ...)",
    ],
    [
      "an OpenSSH key with a passphrase",
      withCipher(JUMP_KEY.privateOpenssh, "aes256-ctr"),
      "is protected by a passphrase, which a deployment cannot type: use a key of its own without one (ssh-keygen -t ed25519 -N '')",
    ],
    [
      "a PEM key with a passphrase",
      "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
      "is protected by a passphrase, which a deployment cannot type: use a key of its own without one (ssh-keygen -t ed25519 -N '')",
    ],
    [
      "an encrypted PKCS#8 key",
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
      "is protected by a passphrase, which a deployment cannot type: use a key of its own without one (ssh-keygen -t ed25519 -N '')",
    ],
  ])("a key that is %s", (_, key, rule) => {
    expect(problems({ ...proxied(), sshProxyPrivateKey: key })).toEqual([
      `mailstack:sshProxyPrivateKey: ${rule}; got a secret (not shown)`,
    ]);
    // Controls: the key unencrypted, in OpenSSH, PKCS#1 (RSA) and SEC1 (ECDSA) format.
    expect(withCipher(JUMP_KEY.privateOpenssh, "none")).toBe(JUMP_KEY.privateOpenssh);
    for (const good of [JUMP_KEY.privateOpenssh, DKIM_KEY.privatePem, TLS_KEY.privatePem]) {
      expect(problems({ ...proxied(), sshProxyPrivateKey: good })).toEqual([]);
    }
  });

  describe("readConfig, from the stack", () => {
    const stack = (sshProxyPrivateKey: string) =>
      pulumi.runtime.setAllConfig(
        Object.fromEntries(
          Object.entries({ ...proxied(), sshProxyPrivateKey }).map(([k, v]) => [
            `mailstack:${k}`,
            String(v),
          ]),
        ),
        ["mailstack:acmeDnsToken", "mailstack:sshProxyPrivateKey"],
      );
    afterEach(() => pulumi.runtime.setAllConfig({}, []));

    test("takes the key's lines as a key, refuses a bad one without showing it, and hands it on as a secret", async () => {
      stack("hunter2\nhunter3");
      let error: unknown;
      try {
        readConfig();
      } catch (e) {
        error = e;
      }
      expect((error as ConfigError).problems).toEqual([
        "mailstack:sshProxyPrivateKey: must be an SSH private key in OpenSSH or PEM format (-----BEGIN OPENSSH PRIVATE KEY----- ...); got a secret (not shown)",
      ]);
      // Control: the key, several lines as every private key is, passes.
      stack(JUMP_KEY.privateOpenssh);
      expect(readConfig().sshProxy?.user).toBe("mailstack-jump");
      const secrets = readSecrets();
      expect(await pulumi.isSecret(secrets.sshProxyPrivateKey!)).toBe(true);
      pulumi.runtime.setAllConfig({ "mailstack:acmeDnsToken": "token" }, [
        "mailstack:acmeDnsToken",
      ]);
      expect("sshProxyPrivateKey" in readSecrets()).toBe(false);
    });
  });
});

describe("backup: storage, schedule and what the storage needs", () => {
  const backup = (settings: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    ...MINIMAL_RAW,
    backup: JSON.stringify(settings),
    ...extra,
  });
  /** As a stack's run checks (readConfig): the storage's needs included. */
  const asStack = (raw: Record<string, unknown>) => problems(raw);
  const HETZNER_KEYS = {
    backupAccessKeyId: "HETZNERACCESSKEY0001",
    backupSecretAccessKey: "hetzner-secret-key-for-tests",
  };
  const ONE_LINE = "must be one line (no line breaks or NUL characters)";

  test.each([
    [
      "backup that is no object",
      withKey("backup", "[true]"),
      "mailstack:backup: must be an object {enabled, provider, schedule, location, bucket, " +
        "keepDaily, keepWeekly, keepMonthly}; got [true]",
      withKey("backup", "{}"),
    ],
    [
      "a misspelt backup setting",
      backup({ shedule: "daily" }),
      "mailstack:backup.shedule: is not a backup setting (known: enabled, provider, schedule, " +
        'location, bucket, keepDaily, keepWeekly, keepMonthly); got "shedule"',
      backup({ schedule: "daily" }),
    ],
    [
      "a provider other than r2 or hetzner",
      backup({ provider: "s3" }),
      'mailstack:backup.provider: must be one of r2, hetzner; got "s3"',
      backup({ provider: "r2" }),
    ],
    [
      "an empty schedule",
      backup({ schedule: " " }),
      'mailstack:backup.schedule: must not be empty: a systemd calendar expression such as daily or *-*-* 03:00; got " "',
      backup({ schedule: "daily" }),
    ],
    [
      "a schedule with characters no calendar expression holds (it goes into a unit file)",
      backup({ schedule: "daily; rm -rf /" }),
      "mailstack:backup.schedule: must be a systemd calendar expression (OnCalendar=) such as " +
        "daily or *-*-* 03:00: letters, digits, spaces and * : , . / ~ - only; " +
        'got "daily; rm -rf /"',
      backup({ schedule: "Mon..Fri *-*-* 03:15" }),
    ],
    [
      "a schedule that would add a line to the timer unit",
      backup({ schedule: "daily\nOnCalendar=minutely" }),
      `mailstack:backup.schedule: ${ONE_LINE}; got "daily\\nOnCalendar=minutely"`,
      backup({ schedule: "*-*-1/2 04:00" }),
    ],
    [
      "a schedule that is no string",
      backup({ schedule: 3 }),
      "mailstack:backup.schedule: must be a string; got 3",
      backup({ schedule: "*-*~1 02:30:00" }),
    ],
    [
      "a location outside the EU",
      backup({ provider: "hetzner", location: "ash" }, HETZNER_KEYS),
      'mailstack:backup.location: must be one of fsn1, nbg1, hel1; got "ash"',
      backup({ provider: "hetzner", location: "hel1" }, HETZNER_KEYS),
    ],
    [
      "a location for R2, which places a bucket by its jurisdiction",
      backup({ location: "nbg1" }),
      "mailstack:backup.location: applies to backup.provider hetzner only: an R2 bucket is " +
        'placed by its jurisdiction (eu); got "nbg1"',
      backup({ provider: "hetzner", location: "nbg1" }, HETZNER_KEYS),
    ],
    [
      "a bucket with upper case and an underscore",
      backup({ bucket: "Mail_Backup" }),
      "mailstack:backup.bucket: must be a bucket name: 3 to 63 lower-case letters, digits and " +
        'hyphens, starting and ending with a letter or digit; got "Mail_Backup"',
      backup({ bucket: "mail-backup-2026" }),
    ],
    [
      "a bucket name of two characters",
      backup({ bucket: "mb" }),
      "mailstack:backup.bucket: must be a bucket name: 3 to 63 lower-case letters, digits and " +
        'hyphens, starting and ending with a letter or digit; got "mb"',
      backup({ bucket: "mbx" }),
    ],
    [
      "a bucket name ending in a hyphen",
      backup({ bucket: "mail-backup-" }),
      "mailstack:backup.bucket: must be a bucket name: 3 to 63 lower-case letters, digits and " +
        'hyphens, starting and ending with a letter or digit; got "mail-backup-"',
      backup({ bucket: "mail-backup-1" }),
    ],
    [
      "a bucket name of 64 characters",
      backup({ bucket: "b".repeat(64) }),
      "mailstack:backup.bucket: must be a bucket name: 3 to 63 lower-case letters, digits and " +
        `hyphens, starting and ending with a letter or digit; got "${"b".repeat(64)}"`,
      backup({ bucket: "b".repeat(63) }),
    ],
    [
      "Hetzner's keys with provider r2: secrets nothing uses, and the line does not show them",
      { ...MINIMAL_RAW, backupAccessKeyId: HETZNER_KEYS.backupAccessKeyId },
      "mailstack:backupAccessKeyId: is set but backup.provider is r2: the key is for Hetzner " +
        "Object Storage; got a secret (not shown)",
      backup({ provider: "hetzner" }, HETZNER_KEYS),
    ],
  ])("%s", (_, raw, message, control) => {
    expect(problems(raw)).toEqual([message]);
    expect(problems(control)).toEqual([]);
  });

  test("every stack needs the Cloudflare account: the Worker, and the R2 bucket", () => {
    const raw = { ...MINIMAL_RAW };
    delete raw.cloudflareAccountId;
    const message =
      "mailstack:cloudflareAccountId: is required: the Cloudflare account the stack's Worker is " +
      "made in (it serves the MTA-STS policy, client autoconfig and the Web Key Directory), and " +
      "the R2 backup bucket (pulumi config set mailstack:cloudflareAccountId ...); got nothing";
    expect(asStack(raw)).toEqual([message]);
    // Without backups, or with Hetzner's, the Worker still needs it.
    expect(asStack({ ...raw, backup: JSON.stringify({ enabled: false }) })).toEqual([message]);
    expect(asStack({ ...raw, ...HETZNER_KEYS, backup: '{"provider":"hetzner"}' })).toEqual([
      message,
    ]);
    // Control: with the account.
    expect(asStack(MINIMAL_RAW)).toEqual([]);
    // A malformed account ID is reported once, as malformed.
    expect(asStack({ ...raw, cloudflareAccountId: "my-account" })).toEqual([
      'mailstack:cloudflareAccountId: must be the 32 hex digit account ID; got "my-account"',
    ]);
  });

  test("backup.provider hetzner needs both keys, each named", () => {
    expect(asStack(backup({ provider: "hetzner" }))).toEqual([
      "mailstack:backupAccessKeyId: is required when backup.provider is hetzner: the access key " +
        "of an Object Storage credential made in the Hetzner Console (pulumi config set --secret " +
        "mailstack:backupAccessKeyId ...); got nothing",
      "mailstack:backupSecretAccessKey: is required when backup.provider is hetzner: the secret " +
        "key of an Object Storage credential made in the Hetzner Console (pulumi config set " +
        "--secret mailstack:backupSecretAccessKey ...); got nothing",
    ]);
    expect(
      asStack(
        backup({ provider: "hetzner" }, { backupAccessKeyId: HETZNER_KEYS.backupAccessKeyId }),
      ),
    ).toEqual([expect.stringMatching(/^mailstack:backupSecretAccessKey: is required/)]);
    expect(asStack(backup({ provider: "hetzner" }, HETZNER_KEYS))).toEqual([]);
    // Off, nothing is needed.
    expect(asStack(backup({ provider: "hetzner", enabled: false }))).toEqual([]);
  });

  test("a key with a line break is refused without showing it", () => {
    expect(
      asStack(
        backup(
          { provider: "hetzner" },
          { ...HETZNER_KEYS, backupSecretAccessKey: "secret\nand more" },
        ),
      ),
    ).toEqual([`mailstack:backupSecretAccessKey: ${ONE_LINE}; got a secret (not shown)`]);
  });

  test("read with defaults: Hetzner at the stack's location unless set; the bucket from the mail host", () => {
    const read = (raw: Record<string, unknown>) => parseConfig(raw).backup;
    expect(read(backup({ provider: "hetzner" }, { location: "nbg1", ...HETZNER_KEYS }))).toEqual({
      enabled: true,
      provider: "hetzner",
      schedule: "daily",
      location: "nbg1",
      bucket: "mail-example-eu-backup",
      keepDaily: 7,
      keepWeekly: 4,
      keepMonthly: 12,
    });
    expect(read(backup({ provider: "hetzner", location: "hel1" }, HETZNER_KEYS)).location).toBe(
      "hel1",
    );
    expect(
      read(
        backup(
          { schedule: " *-*-*   03:00 ", bucket: "acme-mail-backups", keepDaily: 3 },
          { hostname: "MX1" },
        ),
      ),
    ).toEqual({
      enabled: true,
      provider: "r2",
      schedule: "*-*-* 03:00",
      bucket: "acme-mail-backups",
      keepDaily: 3,
      keepWeekly: 4,
      keepMonthly: 12,
    });
    expect(read(withKey("hostname", "mx1")).bucket).toBe("mx1-example-eu-backup");
  });

  test("a default bucket name that would pass 63 characters is cut and made unique", () => {
    const domain = `${"a".repeat(30)}.${"b".repeat(30)}.eu`;
    const raw = {
      ...MINIMAL_RAW,
      domain,
      users: JSON.stringify([{ address: `alice@${domain}` }]),
      acmeEmail: `hostmaster@${domain}`,
    };
    const bucket = parseConfig(raw).backup.bucket;
    expect(bucket).toMatch(/^mail-a{30}-b{18}-[0-9a-f]{8}$/);
    expect(bucket).toHaveLength(63);
    const other = parseConfig({ ...raw, hostname: "mx" }).backup.bucket;
    expect(other).toHaveLength(63);
    expect(other).not.toBe(bucket);
  });

  describe("readConfig and readSecrets, from the stack", () => {
    const stack = (raw: Record<string, unknown>, secrets: string[]) =>
      pulumi.runtime.setAllConfig(
        Object.fromEntries(Object.entries(raw).map(([k, v]) => [`mailstack:${k}`, String(v)])),
        secrets.map((k) => `mailstack:${k}`),
      );
    afterEach(() => pulumi.runtime.setAllConfig({}, []));

    test("a stack's run asks for the account; Hetzner's keys are read as secrets", async () => {
      const raw = { ...MINIMAL_RAW };
      delete raw.cloudflareAccountId;
      stack(raw, ["acmeDnsToken"]);
      expect(() => readConfig()).toThrow(/mailstack:cloudflareAccountId: is required: /);

      stack(backup({ provider: "hetzner" }, HETZNER_KEYS), [
        "acmeDnsToken",
        "backupAccessKeyId",
        "backupSecretAccessKey",
      ]);
      expect(readConfig().backup.provider).toBe("hetzner");
      const secrets = readSecrets();
      expect(await pulumi.isSecret(secrets.backupAccessKeyId!)).toBe(true);
      expect(await pulumi.isSecret(secrets.backupSecretAccessKey!)).toBe(true);

      stack(MINIMAL_RAW, ["acmeDnsToken"]);
      expect("backupAccessKeyId" in readSecrets()).toBe(false);
      expect("backupSecretAccessKey" in readSecrets()).toBe(false);
    });
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
    expect(objectKeys).toEqual(["users", "aliases", "backup", "sshProxy"]);
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
    // Nor the bastion account's key, which goes with the bastion.
    expect(raw.sshProxyPrivateKey).toBeUndefined();
    if (raw.sshProxy !== undefined) raw.sshProxyPrivateKey = JUMP_KEY.privateOpenssh;
    // As a stack's run checks it (readConfig): with what its backup storage needs.
    expect(problems(raw)).toEqual([]);
  });
});

describe("parseStackFile: a stack file's settings, for tools that read no secret", () => {
  /** The problems parseStackFile reports for a stack file, or [] when it passes. */
  function fileProblems(yamlText: string): string[] {
    try {
      parseStackFile(yamlText);
      return [];
    } catch (e) {
      if (e instanceof ConfigError) return e.problems;
      throw e;
    }
  }
  /** A stack file holding MINIMAL_RAW's settings (no secret), plus `extra` lines. */
  const stackFile = (...extra: string[]) =>
    [
      "config:",
      "  hcloud:token:",
      "    secure: AAABAJ4k",
      "  mailstack:domain: example.eu",
      "  mailstack:cloudflareZoneId: 0123456789abcdef0123456789abcdef",
      "  mailstack:cloudflareAccountId: 00112233445566778899aabbccddeeff",
      `  mailstack:sshPublicKeys: ["${ADMIN_KEY}"]`,
      "  mailstack:users: [{address: alice@example.eu}]",
      "  mailstack:acmeEmail: hostmaster@example.eu",
      ...extra.map((line) => `  ${line}`),
      "",
    ].join("\n");

  test.each(["Pulumi.prod.yaml", "Pulumi.staging.yaml"])(
    "%s passes, its secrets being kept elsewhere",
    (file) => {
      const text = readFileSync(join(__dirname, "..", file), "utf8");
      const c = parseStackFile(text);
      // The same settings as the stack's run would see.
      const raw: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(parse(text).config as Record<string, unknown>)) {
        if (k.startsWith("mailstack:")) raw[k.slice("mailstack:".length)] = v;
      }
      if (raw.sshProxy !== undefined) raw.sshProxyPrivateKey = JUMP_KEY.privateOpenssh;
      expect(c).toEqual(parseConfig(raw));
    },
  );

  test("a required secret the file does not hold counts as set elsewhere; a stack's run refuses it", () => {
    const settings = [
      'mailstack:relayHost: "[smtp.relay.example]:587"',
      "mailstack:relayUser: mailer@example.eu",
      "mailstack:backup: {provider: hetzner}",
    ];
    expect(fileProblems(stackFile(...settings))).toEqual([]);
    const raw = {
      ...MINIMAL_RAW,
      relayHost: "[smtp.relay.example]:587",
      relayUser: "mailer@example.eu",
      backup: JSON.stringify({ provider: "hetzner" }),
    };
    expect(problems(raw)).toEqual([
      expect.stringMatching(/^mailstack:relayPassword: is required when relayHost is set/),
      expect.stringMatching(/^mailstack:backupAccessKeyId: is required when backup.provider/),
      expect.stringMatching(/^mailstack:backupSecretAccessKey: is required when backup.provider/),
    ]);
  });

  test("an encrypted secret counts as set: one that nothing uses is still refused", () => {
    const secret = ["mailstack:relayPassword:", "    secure: AAABAKk3"];
    expect(fileProblems(stackFile(...secret))).toEqual([
      "mailstack:relayPassword: is set but relayHost is not: the login is for the smarthost; " +
        "got a secret (not shown)",
    ]);
    expect(
      fileProblems(
        stackFile(
          ...secret,
          'mailstack:relayHost: "[smtp.relay.example]:587"',
          "mailstack:relayUser: mailer@example.eu",
        ),
      ),
    ).toEqual([]);
  });

  test("a bad setting is named as a stack's run names it, beside the file that passes", () => {
    expect(fileProblems(stackFile("mailstack:location: ams1"))).toEqual([
      'mailstack:location: must be one of fsn1, nbg1, hel1; got "ams1"',
    ]);
    expect(parseStackFile(stackFile("mailstack:location: hel1")).location).toBe("hel1");
  });

  test("an unknown mailstack: key is refused; other namespaces are not looked at", () => {
    expect(fileProblems(stackFile("mailstack:logRetentionDay: 30"))).toEqual([
      expect.stringMatching(/^mailstack:logRetentionDay: is not a known setting \(known: /),
    ]);
    expect(parseStackFile(stackFile("mailstack:logRetentionDays: 30")).logRetentionDays).toBe(30);
  });

  test("a setting that is no secret, stored encrypted, is refused: it cannot be read", () => {
    expect(fileProblems(stackFile("mailstack:location:", "    secure: AAABAGx1"))).toEqual([
      "mailstack:location: is encrypted in the file (set with --secret), so only the stack can " +
        "read it; it is no secret of the contract: set it in clear",
    ]);
  });

  test("a string setting YAML reads as a number is taken as Pulumi hands it over", () => {
    expect(parseStackFile(stackFile("mailstack:dkimSelector: 2025")).dkimSelector).toBe("2025");
  });

  test("a text that is no stack file is refused as a whole", () => {
    expect(() => parseStackFile("name: mailstack\nruntime: nodejs\n")).toThrow(
      "has no config: section (a stack file is Pulumi.<stack>.yaml)",
    );
    expect(() => parseStackFile("config: [\n")).toThrow();
  });
});
