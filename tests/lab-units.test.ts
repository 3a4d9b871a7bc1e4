// The lab's pure parts, without VMs: what it serves in DNS and how it keys its image cache.
import { zoneLine, zones } from "../lab/dns";
import { imageKey, imagePackages, releaseOf } from "../lab/image";
import { HOSTS, REVERSE_ZONE4, REVERSE_ZONE6 } from "../lab/settings";
import { hostPackages } from "../cloud-init/packages";
import { DKIM_KEY, TLS_KEY, DEPLOY_KEY, SSH_HOST_KEY } from "./support/keys";
import type { LabKeys } from "../lab/keys";

const KEYS: LabKeys = {
  sshHost: SSH_HOST_KEY,
  deploy: DEPLOY_KEY,
  admin: DEPLOY_KEY,
  dkim: { privatePem: DKIM_KEY.privatePem, publicPem: DKIM_KEY.publicPem },
  tls: { privatePem: TLS_KEY.privatePem, publicPem: TLS_KEY.publicPem },
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
  });

  test("each lab domain gets its stack's records; reverse zones map both addresses to the MX host", () => {
    const z = zones(HOSTS, () => KEYS);
    expect(Object.keys(z).sort()).toEqual(
      ["alpha.example", "beta.example", "lab.example", REVERSE_ZONE4, REVERSE_ZONE6].sort(),
    );
    expect(z["alpha.example"]).toContain("alpha.example. 3600 IN MX 10 mail.alpha.example.");
    expect(z[REVERSE_ZONE4]).toContain(
      "10.100.51.198.in-addr.arpa. 300 IN PTR mail.alpha.example.",
    );
    expect(z[REVERSE_ZONE6]).toContain(
      "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR mail.alpha.example.",
    );
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
