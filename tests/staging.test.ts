// The staging driver's own logic: names, expiry and the config a staging stack deploys with.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { ConfigError, parseConfig } from "../components/config";
import { expiresAt, isExpired, stagingConfig, stagingTarget } from "../staging/plan";

const base: Record<string, unknown> = Object.fromEntries(
  Object.entries(parse(readFileSync(join(__dirname, "..", "Pulumi.staging.yaml"), "utf8")).config)
    .filter(([k]) => k.startsWith("mailstack:"))
    .map(([k, v]) => [k.slice("mailstack:".length), v]),
);

describe("names", () => {
  test("a pull request gets pr-<n> under the staging domain", () => {
    expect(stagingTarget({ pr: 42, baseDomain: "staging.example.eu" })).toEqual({
      stack: "pr-42",
      domain: "pr-42.staging.example.eu",
    });
  });

  test("a branch gets a DNS-safe slug, and the pull request wins when both are known", () => {
    expect(
      stagingTarget({ branch: "refs/heads/Feature/DKIM_rotation!", baseDomain: "s.example.eu" }),
    ).toEqual({
      stack: "br-feature-dkim-rotation",
      domain: "feature-dkim-rotation.s.example.eu",
    });
    expect(stagingTarget({ pr: 7, branch: "x", baseDomain: "s.example.eu" }).stack).toBe("pr-7");
    expect(stagingTarget({ branch: "a".repeat(80), baseDomain: "s.example.eu" }).stack).toBe(
      `br-${"a".repeat(40)}`,
    );
  });

  test("nothing to name it by, or a name that is no DNS label, is an error", () => {
    expect(() => stagingTarget({ baseDomain: "s.example.eu" })).toThrow(
      /needs a pull request number/,
    );
    expect(() => stagingTarget({ branch: "///", baseDomain: "s.example.eu" })).toThrow(
      /gives no usable name/,
    );
    expect(() => stagingTarget({ pr: 0, baseDomain: "s.example.eu" })).toThrow(/must be positive/);
  });
});

describe("expiry", () => {
  const now = new Date("2026-11-28T10:00:00.123Z");

  test("is now plus the lifetime, in UTC to the second", () => {
    expect(expiresAt(now, 48)).toBe("2026-11-30T10:00:00Z");
    expect(() => expiresAt(now, 0)).toThrow(/positive/);
  });

  test("a stack is expired from its expiry on; one without an expiry never is", () => {
    expect(isExpired("2026-11-28T10:00:00Z", now)).toBe(true);
    expect(isExpired("2026-11-28T11:00:00Z", now)).toBe(false);
    expect(isExpired(undefined, now)).toBe(false);
  });
});

describe("the zone's DNSSEC", () => {
  const prodFile = Object.fromEntries(
    Object.entries(parse(readFileSync(join(__dirname, "..", "Pulumi.prod.yaml"), "utf8")).config)
      .filter(([k]) => k.startsWith("mailstack:"))
      .map(([k, v]) => [k.slice("mailstack:".length), v]),
  );

  test("Pulumi.staging.yaml shares prod's zone and so never owns its DNSSEC", () => {
    expect(base.cloudflareZoneId).toBe(prodFile.cloudflareZoneId);
    expect(base.dnssec).toBe(false);
    expect(prodFile.dnssec).toBe(true);
  });

  test("a throw-away stack that would sign the zone is refused, naming the key", () => {
    const target = stagingTarget({ pr: 42, baseDomain: String(base.domain) });
    const { values } = stagingConfig(base, target, "2026-11-30T10:00:00Z");
    let error: unknown;
    try {
      parseConfig({ ...values, dnssec: true, acmeDnsToken: "t" });
    } catch (e) {
      error = e;
    }
    expect((error as ConfigError).problems).toEqual([
      "mailstack:dnssec: must be false on a throw-away stack (mailstack:expiresAt is set): " +
        "DNSSEC is a setting of the whole zone, which such a stack shares; the zone's own " +
        "stack signs it; got true",
    ]);
    // Control: the same stack without DNSSEC is accepted.
    expect(parseConfig({ ...values, acmeDnsToken: "t" }).dnssec).toBe(false);
  });
});

describe("config", () => {
  const target = stagingTarget({ pr: 42, baseDomain: String(base.domain) });
  const { config, values } = stagingConfig(base, target, "2026-11-30T10:00:00Z");

  test("moves the domain and every address to the staging domain", () => {
    expect(config.domain).toBe("pr-42.staging.example.eu");
    expect(config.mailHost).toBe("mail.pr-42.staging.example.eu");
    expect(config.users.map((u) => u.address)).toEqual(["test@pr-42.staging.example.eu"]);
    expect(config.aliases["postmaster@pr-42.staging.example.eu"]).toEqual([
      "test@pr-42.staging.example.eu",
    ]);
  });

  test("is small, unprotected, on the ACME staging CA, never enforcing, and expiring", () => {
    expect(config).toMatchObject({
      serverType: "cx23",
      volumeSizeGb: 10,
      acmeStaging: true,
      protect: false,
      mtaStsMode: "testing",
      dmarcPolicy: "none",
      clamav: false,
      dnssec: false,
      expiresAt: "2026-11-30T10:00:00Z",
    });
    expect(config.backup.enabled).toBe(false);
  });

  test("keeps the base's zone and keys, and never carries the DNS token in plain values", () => {
    expect(values.cloudflareZoneId).toBe(base.cloudflareZoneId);
    expect(values.sshPublicKeys).toEqual(base.sshPublicKeys);
    expect(values.acmeDnsToken).toBeUndefined();
  });

  test("takes SSH from anywhere, so the hosted runner reaches the host without a bastion", () => {
    // docs/gitops.md, "Reaching the host from the pipeline": a base that restricts SSH needs
    // the bastion, whose key the driver does not pass.
    expect(base.sshAllowedIps).toBeUndefined();
    expect(config.sshAllowedIps).toEqual(["0.0.0.0/0", "::/0"]);
    expect(config.sshProxy).toBeUndefined();
  });

  test("a base with a bastion stops before anything is created, naming the key the driver does not set", () => {
    const bastion = {
      host: "bastion.example.eu",
      user: "mailstack-jump",
      hostPublicKey: String((base.sshPublicKeys as string[])[0]),
    };
    let error: unknown;
    try {
      stagingConfig({ ...base, sshProxy: bastion }, target, "2026-11-30T10:00:00Z");
    } catch (e) {
      error = e;
    }
    expect((error as ConfigError).problems).toEqual([
      "mailstack:sshProxyPrivateKey: is required when sshProxy is set: the private key of the " +
        "bastion's account (pulumi config set --secret mailstack:sshProxyPrivateKey < key); got nothing",
    ]);
  });

  test("a bad base stops before anything is created, naming the key", () => {
    expect(() =>
      stagingConfig({ ...base, location: "ash" }, target, "2026-11-30T10:00:00Z"),
    ).toThrow(ConfigError);
  });
});
