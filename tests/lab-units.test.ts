// The lab's pure parts, without VMs: what it serves in DNS, how it keys its image cache, and
// how the suite scans a raw image.
import { knotConfig, zoneLine, zones } from "../lab/dns";
import { imageKey, imagePackages, releaseOf } from "../lab/image";
import { HOSTS, REVERSE_ZONE4, REVERSE_ZONE6 } from "../lab/settings";
import { hostPackages } from "../cloud-init/packages";
import { DKIM_KEY, TLS_KEY, DEPLOY_KEY, MAIL_CRYPT_KEY, SSH_HOST_KEY } from "./support/keys";
import type { LabKeys } from "../lab/keys";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileContains, imageContains } from "./lab/scan";

const KEYS: LabKeys = {
  sshHost: SSH_HOST_KEY,
  deploy: DEPLOY_KEY,
  admin: DEPLOY_KEY,
  dkim: { privatePem: DKIM_KEY.privatePem, publicPem: DKIM_KEY.publicPem },
  tls: { privatePem: TLS_KEY.privatePem, publicPem: TLS_KEY.publicPem },
  mailCrypt: { privatePem: MAIL_CRYPT_KEY.privatePem, publicPem: MAIL_CRYPT_KEY.publicPem },
};

describe("zone files", () => {
  test("host names in rdata are absolute, TXT stays quoted", () => {
    expect(
      zoneLine({
        name: "a.example",
        type: "MX",
        content: "mail.a.example",
        priority: 10,
        ttl: 3600,
      }),
    ).toBe("a.example. 3600 IN MX 10 mail.a.example.");
    expect(
      zoneLine({
        name: "_imaps._tcp.a.example",
        type: "SRV",
        content: "0 1 993 mail.a.example",
        ttl: 3600,
      }),
    ).toBe("_imaps._tcp.a.example. 3600 IN SRV 0 1 993 mail.a.example.");
    expect(
      zoneLine({ name: "_pop3._tcp.a.example", type: "SRV", content: "0 0 0 .", ttl: 3600 }),
    ).toBe("_pop3._tcp.a.example. 3600 IN SRV 0 0 0 .");
    expect(
      zoneLine({ name: "a.example", type: "TXT", content: '"v=spf1 mx -all"', ttl: 3600 }),
    ).toBe('a.example. 3600 IN TXT "v=spf1 mx -all"');
    expect(
      zoneLine({
        name: "_acme-challenge.mail.a.example",
        type: "CNAME",
        content: "mail.a.example.a-acme.example",
        ttl: 300,
      }),
    ).toBe("_acme-challenge.mail.a.example. 300 IN CNAME mail.a.example.a-acme.example.");
  });

  test("each lab domain gets its stack's records; reverse zones map both addresses to the MX host", () => {
    const z = zones(HOSTS, () => KEYS);
    expect(Object.keys(z).sort()).toEqual(
      [
        "alpha.example",
        "alpha-acme.example",
        "beta.example",
        "beta-acme.example",
        "lab.example",
        REVERSE_ZONE4,
        REVERSE_ZONE6,
        // The blocklists the checker asks, listing their test point alone.
        "zen.spamhaus.org",
        "bl.spamcop.net",
        "b.barracudacentral.org",
        "psbl.surriel.com",
        "bl.mailspike.net",
      ].sort(),
    );
    expect(z["zen.spamhaus.org"]).toContain("2.0.0.127.zen.spamhaus.org. 300 IN A 127.0.0.2");
    expect(z["alpha.example"]).toContain("alpha.example. 3600 IN MX 10 mail.alpha.example.");
    // The Worker's names point at the lab's Worker runtime, as custom domains do on Cloudflare.
    for (const label of ["mta-sts", "autoconfig", "autodiscover", "openpgpkey"]) {
      expect(z["alpha.example"]).toContain(`${label}.alpha.example. 300 IN A 198.51.100.1`);
      expect(z["alpha.example"]).toContain(`${label}.alpha.example. 300 IN AAAA 2001:db8:1::1`);
    }
    // The challenge is delegated into a zone that holds nothing else.
    expect(z["alpha.example"]).toContain(
      "_acme-challenge.mail.alpha.example. 300 IN CNAME mail.alpha.example.alpha-acme.example.",
    );
    expect(z["alpha-acme.example"].trim().split("\n")).toEqual([
      "$TTL 300",
      "alpha-acme.example. 300 IN SOA ns.lab.example. hostmaster.lab.example. 1 3600 600 86400 60",
      "alpha-acme.example. 300 IN NS ns.lab.example.",
    ]);
    expect(z[REVERSE_ZONE4]).toContain(
      "10.100.51.198.in-addr.arpa. 300 IN PTR mail.alpha.example.",
    );
    expect(z[REVERSE_ZONE6]).toContain(
      "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR mail.alpha.example.",
    );
  });
});

describe("knot", () => {
  const conf = knotConfig(
    Object.keys(zones(HOSTS, () => KEYS)).sort(),
    HOSTS,
    (k) => `${k}-secret`,
  );
  const zoneBlock = (zone: string) =>
    conf.split(/\n(?= {2}- domain: )/).find((b) => b.includes(`domain: ${zone}.`))!;

  test("each host's key may update its own challenge zone and no other", () => {
    expect(zoneBlock("alpha-acme.example").trim()).toBe(
      "- domain: alpha-acme.example.\n    acl: acme-alpha",
    );
    expect(zoneBlock("beta-acme.example").trim()).toBe(
      "- domain: beta-acme.example.\n    acl: acme-beta",
    );
    expect(conf).toContain(
      "  - id: acme-alpha\n    address: [ 198.51.100.0/24, 2001:db8:1::/64 ]\n    key: acme-alpha\n    action: update",
    );
    expect(conf).toContain(
      "  - id: acme-alpha\n    algorithm: hmac-sha256\n    secret: acme-alpha-secret",
    );
  });

  test("control: the mail zones take no update at all", () => {
    for (const zone of ["alpha.example", "beta.example", "lab.example"]) {
      expect(zoneBlock(zone).trim()).toBe(`- domain: ${zone}.`);
    }
    expect(conf.match(/acl: /g)).toHaveLength(2);
  });
});

describe("image cache", () => {
  test("the stock image holds what a cloud image holds, and no mail package", () => {
    const stock = imagePackages(false);
    expect(stock).toEqual(
      expect.arrayContaining(["cloud-init", "linux-image-cloud-amd64", "openssh-server"]),
    );
    for (const p of hostPackages({ clamav: true })) {
      if (!["nftables", "ca-certificates"].includes(p))
        expect([p, stock.includes(p)]).toEqual([p, false]);
    }
  });

  test("the fast mode bakes every package a host installs", () => {
    const baked = imagePackages(true);
    for (const p of hostPackages({ clamav: true })) expect(baked).toContain(p);
  });

  test("is keyed by the release of the configured image", () => {
    expect(releaseOf("debian-13")).toBe("trixie");
    expect(releaseOf("debian-12")).toBe("bookworm");
    expect(imageKey("trixie", false)).toMatch(/^trixie-stock-[0-9a-f]{16}$/);
    expect(imageKey("trixie", true)).toMatch(/^trixie-baked-[0-9a-f]{16}$/);
    expect(imageKey("trixie", false)).toBe(imageKey("trixie", false));
    expect(imageKey("bookworm", false)).not.toBe(
      imageKey("trixie", false).replace("trixie", "bookworm"),
    );
  });
});

describe("the scan for a token in a raw image", () => {
  const dir = mkdtempSync(join(tmpdir(), "scan-"));
  // A sparse file bigger than several chunks, with text at chosen offsets, as a volume image.
  const image = join(dir, "volume.raw");
  const chunk = 64 * 1024;
  const fd = openSync(image, "w");
  const put = (offset: number, text: string) =>
    writeSync(fd, Buffer.from(text), 0, text.length, offset);
  put(chunk - 5, "straddles-the-boundary"); // split across the first two chunks
  put(3 * chunk + 100, "deep-inside");
  put(5 * chunk - 4, "last"); // the file's final bytes
  closeSync(fd);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("finds tokens anywhere, across chunk boundaries, in one pass", async () => {
    const found = await fileContains(
      image,
      ["straddles-the-boundary", "deep-inside", "last", "absent"],
      chunk,
    );
    expect([...found].sort()).toEqual(["deep-inside", "last", "straddles-the-boundary"]);
    expect(await imageContains(image, "straddles-the-boundary")).toBe(true);
    // The control: a token that is not there is not found, whatever the chunk size.
    expect(await imageContains(image, "at-rest-absent")).toBe(false);
    for (const size of [7, 4096, chunk, 10 * chunk]) {
      expect([size, [...(await fileContains(image, ["straddles-the-boundary"], size))]]).toEqual([
        size,
        ["straddles-the-boundary"],
      ]);
    }
  });

  test("refuses an empty token, which would be found everywhere", async () => {
    await expect(fileContains(image, [""])).rejects.toThrow("empty token");
  });
});
