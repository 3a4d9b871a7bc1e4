// The checker's --ipv4-only, run for real against a crafted zone: where IPv6 does not reach
// (GitHub's hosted runners), the IPv6 addresses are named in a warning, not probed.
import { runChecks } from "../checks/check";
import type { CheckResult } from "../checks/result";
import { zoneDns } from "./support/zone-dns";

describe("the checker's --ipv4-only", () => {
  // The MX on this machine's loopback addresses, where no mail server listens: every probe
  // fails at once, which is all this needs.
  const zone = zoneDns({
    "example.test": { MX: [{ preference: 10, exchange: "mail.example.test" }] },
    "mail.example.test": { A: ["127.0.0.1"], AAAA: ["::1"] },
  });
  const names = (r: CheckResult[]) => r.map((x) => x.name);

  test("connects to the IPv4 address only, warns naming the IPv6 one, and still checks its PTR", async () => {
    const r = await runChecks({
      domain: "example.test",
      dns: zone,
      timeoutMs: 2000,
      ipv4Only: true,
    });
    expect(r).toContainEqual(
      expect.objectContaining({
        name: "IPv6 connections",
        status: "warn",
        saw: "not checked (IPv4 only): ::1",
      }),
    );
    expect(names(r)).toContain("Connect 25 (127.0.0.1)");
    expect(names(r)).toContain("PTR ::1");
    expect(names(r).filter((n) => /\(::1\)$/.test(n))).toEqual([]);
  });

  test("control: without it, the IPv6 address is probed too", async () => {
    const r = await runChecks({ domain: "example.test", dns: zone, timeoutMs: 2000 });
    expect(names(r)).toContain("Connect 25 (::1)");
    expect(names(r)).not.toContain("IPv6 connections");
  });
});
