// The staging driver's smoke check, run against a real host: what passes must pass, and what
// the host does not offer yet (submission and IMAPS come with the mail configuration) must
// be reported as failing, with the reason.
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
    timeoutMs: 20_000,
  });
  const by = Object.fromEntries(results.map((r) => [r.check, r]));
  expect(Object.keys(by)).toEqual(["SMTP 25", "SMTP 465", "SMTP 587", "IMAPS 993", "MX", "DKIM"]);

  expect(by["SMTP 25"]).toMatchObject({ ok: true });
  expect(by["SMTP 25"].detail).toMatch(
    /^220 mail\.alpha\.example ESMTP .*; TLSv1\.3, certificate DNS:mail\.alpha\.example from Pebble/,
  );
  expect(by.MX).toEqual({ check: "MX", ok: true, detail: "10 mail.alpha.example" });
  expect(by.DKIM.ok).toBe(true);

  expect(by["SMTP 465"]).toEqual({
    check: "SMTP 465",
    ok: false,
    detail: `connect ECONNREFUSED ${h.ipv4}:465`,
  });
  expect(by["SMTP 587"]).toEqual({
    check: "SMTP 587",
    ok: false,
    detail: `connect ECONNREFUSED ${h.ipv4}:587`,
  });
  // Dovecot answers, but with its own placeholder certificate, not the host's.
  expect(by["IMAPS 993"].ok).toBe(false);
  expect(by["IMAPS 993"].detail).not.toContain("DNS:mail.alpha.example");
});
