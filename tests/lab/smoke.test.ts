// The staging driver's smoke check, run against a real host: every check passes on a
// configured mail host, and each says what it saw.
import { smokeCheck } from "../../staging/smoke";
import { SERVICES_IP4 } from "../../lab/settings";
import { HOSTS } from "./support";

test("smoke check of mail.alpha.example", async () => {
  const h = HOSTS[0];
  const results = await smokeCheck({
    address: h.ipv4,
    mailHost: h.config.mailHost,
    domain: h.config.domain,
    dkimSelector: h.config.dkimSelector,
    resolvers: [SERVICES_IP4],
    timeoutMs: 30_000,
  });
  const by = Object.fromEntries(results.map((r) => [r.check, r]));
  expect(Object.keys(by)).toEqual(["SMTP 25", "SMTP 465", "SMTP 587", "IMAPS 993", "MX", "DKIM"]);
  for (const r of results) expect([r.check, r.ok, r.detail]).toEqual([r.check, true, r.detail]);

  const tls = /TLSv1\.3, certificate DNS:mail\.alpha\.example from Pebble/;
  for (const port of [25, 465, 587]) {
    expect(by[`SMTP ${port}`].detail).toMatch(/^220 mail\.alpha\.example ESMTP/);
    expect(by[`SMTP ${port}`].detail).toMatch(tls);
  }
  expect(by["IMAPS 993"].detail).toMatch(tls);
  expect(by.MX).toEqual({ check: "MX", ok: true, detail: "10 mail.alpha.example" });
});
