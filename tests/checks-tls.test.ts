// The checker's probes against small servers on 127.0.0.1: for each check, a server that
// behaves and one made to fail it the way a misconfigured mail host would.
import { createHash, X509Certificate } from "node:crypto";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { CheckResult } from "../checks/result";
import {
  daneMatches,
  fetchHttps,
  probeImaps,
  probeSmtp25,
  probeSubmission,
  type Tlsa,
} from "../checks/tls";
import {
  fakeImaps,
  fakeSmtp,
  listen,
  makePki,
  MX,
  type FakeServer,
  type FakeSmtpOptions,
  type TestPki,
} from "./support/fake-mail";

const ADDR = "127.0.0.1";
let pki: TestPki;
const servers: FakeServer[] = [];

beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function smtp(o: Partial<FakeSmtpOptions> = {}) {
  const s = await fakeSmtp({ pem: pki.mx, ...o });
  servers.push(s);
  return s;
}

/** The probes' options against a fake server: our CA trusted, short deadlines. */
const opts = (port: number, ca = [pki.ca.cert]) => ({ port, ca, timeoutMs: 3000 });

/** name → [status, saw], for exact assertions on every line. */
const byName = (rs: CheckResult[]) => Object.fromEntries(rs.map((r) => [r.name, r]));
const statuses = (rs: CheckResult[]) => Object.fromEntries(rs.map((r) => [r.name, r.status]));

const der = (pem: string) => new X509Certificate(pem).raw;

describe("probeSmtp25", () => {
  const at = `25 (${ADDR})`;
  const run = (s: FakeServer, ca?: string[]) =>
    probeSmtp25(ADDR, MX, "example.test", opts(s.port, ca));

  test("a well-behaved MX passes every line and hands back the chain for DANE", async () => {
    const s = await smtp();
    const { results, chainDer } = await run(s);
    expect(statuses(results)).toEqual({
      [`Banner ${at}`]: "pass",
      [`STARTTLS ${at}`]: "pass",
      [`Certificate ${at}`]: "pass",
      [`Old TLS ${at}`]: "pass",
      [`ECDHE ${at}`]: "pass",
      [`Relay ${at}`]: "pass",
    });
    const r = byName(results);
    expect(r[`Banner ${at}`].saw).toBe(`220-${MX} ESMTP screening`);
    expect(r[`STARTTLS ${at}`].saw).toMatch(/^TLSv1\.3, TLS_\w+, ECDHE X25519$/);
    expect(r[`Certificate ${at}`].saw).toContain(`DNS:${MX}`);
    expect(r[`Certificate ${at}`].saw).toContain("issued by Checker Test CA");
    expect(r[`Certificate ${at}`].saw).toContain(`trusted, valid for ${MX}`);
    expect(r[`Old TLS ${at}`].saw).toMatch(/^TLSv1 refused .*TLSv1\.1 refused .*control accepted/);
    expect(r[`ECDHE ${at}`].saw).toContain("non-ECDHE suites only refused");
    expect(r[`Relay ${at}`].saw).toBe(
      "postmaster@example.test: 250 2.1.5 Ok; relay-test@example.org: 554 5.7.1 Relay access denied",
    );
    expect(chainDer).toEqual([der(pki.mx.cert), der(pki.ca.cert)]);
    // A distinctive EHLO name, the null sender by default, and never DATA.
    expect(s.commands).toContain("EHLO checker.mailstack.invalid");
    expect(s.commands).toContain("MAIL FROM:<>");
    expect(s.commands).not.toContain("DATA");
  });

  test("a greeting naming another host fails the banner", async () => {
    const { results } = await run(await smtp({ host: "other.example.test" }));
    const r = byName(results)[`Banner ${at}`];
    expect(r.status).toBe("fail");
    expect(r.saw).toContain(`names other.example.test, not ${MX}`);
  });

  test("a certificate for another name fails, with what it names", async () => {
    const { results } = await run(await smtp({ pem: pki.other }));
    const r = byName(results)[`Certificate ${at}`];
    expect(r.status).toBe("fail");
    expect(r.saw).toContain("DNS:other.example.test");
    expect(r.saw).toContain(`not valid for ${MX}`);
    expect(byName(results)[`STARTTLS ${at}`].status).toBe("pass");
  });

  test("a self-signed certificate fails, and passes once its CA is passed in", async () => {
    const s = await smtp({ pem: pki.selfSigned });
    const untrusted = byName((await run(s)).results)[`Certificate ${at}`];
    expect(untrusted.status).toBe("fail");
    expect(untrusted.saw).toContain("not trusted: DEPTH_ZERO_SELF_SIGNED_CERT");
    const trusted = byName((await run(s, [pki.selfSigned.cert])).results)[`Certificate ${at}`];
    expect(trusted.status).toBe("pass");
  });

  test("a server accepting TLS 1.0 fails the old-TLS line", async () => {
    const tls = { minVersion: "TLSv1" as const, ciphers: "DEFAULT@SECLEVEL=0" };
    const r = byName((await run(await smtp({ tls }))).results)[`Old TLS ${at}`];
    expect(r.status).toBe("fail");
    expect(r.saw).toMatch(/^TLSv1 accepted \(TLSv1, ECDHE-RSA-AES256-SHA/);
    expect(r.saw).toContain("TLSv1.1 accepted");
  });

  test("a server accepting TLS 1.1 but not 1.0 fails too", async () => {
    const tls = { minVersion: "TLSv1.1" as const, ciphers: "DEFAULT@SECLEVEL=0" };
    const r = byName((await run(await smtp({ tls }))).results)[`Old TLS ${at}`];
    expect(r.status).toBe("fail");
    expect(r.saw).toMatch(/^TLSv1 refused .*TLSv1\.1 accepted/);
  });

  test("a server whose TLS is broken does not pass the refusals (the control fails)", async () => {
    const { results } = await run(await smtp({ brokenTls: true }));
    const r = byName(results);
    expect(r[`STARTTLS ${at}`].status).toBe("fail");
    expect(r[`STARTTLS ${at}`].saw).toContain("stopped at handshake");
    expect(r[`Certificate ${at}`]).toBeUndefined();
    expect(r[`Old TLS ${at}`].status).toBe("fail");
    expect(r[`Old TLS ${at}`].saw).toMatch(/^can't tell, the TLS 1\.2 control failed too/);
    expect(r[`ECDHE ${at}`].status).toBe("fail");
    expect(r[`ECDHE ${at}`].saw).toBe("can't tell: no TLS session");
  });

  test("a server without STARTTLS fails STARTTLS, and the TLS lines can't tell", async () => {
    const r = byName((await run(await smtp({ starttls: false }))).results);
    expect(r[`STARTTLS ${at}`]).toMatchObject({
      status: "fail",
      saw: "stopped at STARTTLS: not offered in EHLO",
    });
    expect(r[`Old TLS ${at}`].status).toBe("fail");
    expect(r[`Relay ${at}`].status).toBe("pass");
  });

  test("a server accepting a suite without ECDHE fails", async () => {
    // Node's default server list still has static-RSA suites such as AES256-GCM-SHA384.
    const tls = { minVersion: "TLSv1.2" as const };
    const r = byName((await run(await smtp({ tls }))).results);
    expect(r[`ECDHE ${at}`].status).toBe("fail");
    expect(r[`ECDHE ${at}`].saw).toMatch(
      /non-ECDHE suites only accepted \(TLSv1\.2, AES256-GCM-SHA384, no ephemeral key/,
    );
    expect(r[`Old TLS ${at}`].status).toBe("pass");
  });

  test("a server negotiating DHE by default fails even before the non-ECDHE offer", async () => {
    const tls = {
      minVersion: "TLSv1.2" as const,
      maxVersion: "TLSv1.2" as const,
      ciphers: "DHE-RSA-AES128-GCM-SHA256",
      dhparam: "auto" as const,
    };
    const r = byName((await run(await smtp({ tls }))).results)[`ECDHE ${at}`];
    expect(r.status).toBe("fail");
    expect(r.saw).toMatch(/^default TLSv1\.2, DHE-RSA-AES128-GCM-SHA256, DHE \d+ bits/);
  });

  test("an open relay fails", async () => {
    const r = byName((await run(await smtp({ rcpt: () => "250 2.1.5 Ok" }))).results);
    expect(r[`Relay ${at}`].status).toBe("fail");
    expect(r[`Relay ${at}`].saw).toMatch(/^open relay: .*relay-test@example.org: 250 2\.1\.5 Ok$/);
  });

  test("a server refusing its own postmaster too can't pass the relay line", async () => {
    const r = byName((await run(await smtp({ rcpt: () => "554 5.7.1 Go away" }))).results);
    expect(r[`Relay ${at}`].status).toBe("fail");
    expect(r[`Relay ${at}`].saw).toMatch(/^can't tell, the domain's own postmaster was refused/);
  });

  test("a temporary refusal of the foreign recipient is a warning", async () => {
    const rcpt = (to: string) => (to.startsWith("postmaster@") ? "250 Ok" : "450 4.7.1 Later");
    const r = byName((await run(await smtp({ rcpt }))).results)[`Relay ${at}`];
    expect(r.status).toBe("warn");
    expect(r.saw).toContain("relay-test@example.org: 450 4.7.1 Later");
  });

  test("nothing listening is one failing line", async () => {
    const gone = await listen(() => {});
    await gone.close();
    const { results, chainDer } = await probeSmtp25(ADDR, MX, "example.test", opts(gone.port));
    expect(results).toEqual([
      expect.objectContaining({
        name: `Connect ${at}`,
        status: "fail",
        saw: expect.stringContaining("ECONNREFUSED"),
      }),
    ]);
    expect(chainDer).toEqual([]);
  });
});

describe("probeSubmission", () => {
  test("587 with STARTTLS and AUTH only inside TLS passes", async () => {
    const s = await smtp();
    const rs = await probeSubmission(ADDR, MX, 587, opts(s.port));
    const at = `587 (${ADDR})`;
    expect(statuses(rs)).toEqual({
      [`Banner ${at}`]: "pass",
      [`STARTTLS ${at}`]: "pass",
      [`Certificate ${at}`]: "pass",
      [`AUTH ${at}`]: "pass",
    });
    expect(byName(rs)[`AUTH ${at}`].saw).toBe("none before STARTTLS; inside TLS: AUTH PLAIN LOGIN");
  });

  test("587 offering AUTH before STARTTLS fails", async () => {
    const s = await smtp({ auth: "always" });
    const r = byName(await probeSubmission(ADDR, MX, 587, opts(s.port)))[`AUTH 587 (${ADDR})`];
    expect(r).toMatchObject({ status: "fail", saw: "AUTH PLAIN LOGIN offered before STARTTLS" });
  });

  test("587 without AUTH inside TLS fails", async () => {
    const s = await smtp({ auth: "never" });
    const r = byName(await probeSubmission(ADDR, MX, 587, opts(s.port)))[`AUTH 587 (${ADDR})`];
    expect(r).toMatchObject({ status: "fail", saw: "none before STARTTLS; inside TLS: no AUTH" });
  });

  test("465 with TLS from the first byte passes", async () => {
    const s = await smtp({ implicitTls: true });
    const rs = await probeSubmission(ADDR, MX, 465, opts(s.port));
    const at = `465 (${ADDR})`;
    expect(statuses(rs)).toEqual({
      [`Banner ${at}`]: "pass",
      [`TLS ${at}`]: "pass",
      [`Certificate ${at}`]: "pass",
      [`AUTH ${at}`]: "pass",
    });
    expect(byName(rs)[`AUTH ${at}`].saw).toBe("inside TLS: AUTH PLAIN LOGIN");
  });

  test("465 with a certificate for another name fails the certificate line", async () => {
    const s = await smtp({ implicitTls: true, pem: pki.other });
    const r = byName(await probeSubmission(ADDR, MX, 465, opts(s.port)))[
      `Certificate 465 (${ADDR})`
    ];
    expect(r.status).toBe("fail");
    expect(r.saw).toContain(`not valid for ${MX}`);
  });

  test("465 speaking plain SMTP fails TLS", async () => {
    const s = await smtp();
    const rs = await probeSubmission(ADDR, MX, 465, opts(s.port));
    expect(rs).toEqual([
      expect.objectContaining({
        name: `TLS 465 (${ADDR})`,
        status: "fail",
        saw: expect.stringContaining("stopped at handshake"),
      }),
      expect.objectContaining({ name: `AUTH 465 (${ADDR})`, status: "fail" }),
    ]);
  });
});

describe("probeImaps", () => {
  const at = `993 (${ADDR})`;
  async function imaps(o: Partial<Parameters<typeof fakeImaps>[0]> = {}) {
    const s = await fakeImaps({ pem: pki.mx, ...o });
    servers.push(s);
    return s;
  }

  test("Dovecot's way (capabilities in the greeting) passes", async () => {
    const s = await imaps({ inGreeting: true });
    const rs = await probeImaps(ADDR, MX, opts(s.port));
    expect(statuses(rs)).toEqual({
      [`TLS ${at}`]: "pass",
      [`Certificate ${at}`]: "pass",
      [`Greeting ${at}`]: "pass",
      [`IMAP login ${at}`]: "pass",
    });
    expect(byName(rs)[`IMAP login ${at}`].saw).toBe("AUTH=PLAIN");
    expect(s.commands).not.toContainEqual(expect.stringContaining("CAPABILITY"));
  });

  test("LOGINDISABLED, asked with CAPABILITY, fails the login line", async () => {
    const s = await imaps({ capabilities: "IMAP4rev1 LOGINDISABLED AUTH=PLAIN" });
    const r = byName(await probeImaps(ADDR, MX, opts(s.port)))[`IMAP login ${at}`];
    expect(r).toMatchObject({ status: "fail", saw: "LOGINDISABLED AUTH=PLAIN" });
    expect(s.commands).toContain("c1 CAPABILITY");
  });

  test("a self-signed certificate fails, and passes with it as an extra CA", async () => {
    const s = await imaps({ pem: pki.selfSigned });
    expect(byName(await probeImaps(ADDR, MX, opts(s.port)))[`Certificate ${at}`].status).toBe(
      "fail",
    );
    const trusted = await probeImaps(ADDR, MX, opts(s.port, [pki.selfSigned.cert]));
    expect(byName(trusted)[`Certificate ${at}`].status).toBe("pass");
  });

  test("a certificate expiring within two weeks is a warning", async () => {
    const s = await imaps({ pem: pki.expiring });
    const r = byName(await probeImaps(ADDR, MX, opts(s.port)))[`Certificate ${at}`];
    expect(r.status).toBe("warn");
    expect(r.saw).toMatch(/; expires in [45] days$/);
  });

  test("nothing listening is one failing line", async () => {
    const gone = await listen(() => {});
    await gone.close();
    expect(await probeImaps(ADDR, MX, opts(gone.port))).toEqual([
      expect.objectContaining({ name: `Connect ${at}`, status: "fail" }),
    ]);
  });
});

describe("daneMatches", () => {
  const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  const spki = (pem: string) =>
    new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" });
  let chain: Buffer[];
  beforeAll(() => {
    chain = [der(pki.mx.cert), der(pki.ca.cert)];
  });
  const rec = (usage: number, selector: number, matchingType: number, data: string): Tlsa => ({
    usage,
    selector,
    matchingType,
    data,
  });

  test("3 1 1 with the leaf key's digest matches", () => {
    expect(daneMatches([rec(3, 1, 1, sha256(spki(pki.mx.cert)))], chain)).toEqual({
      ok: true,
      saw: "TLSA 3 1 1 matches the leaf",
    });
  });

  test("3 0 2 (SHA-512 of the certificate) and 3 0 0 (the certificate itself) match", () => {
    const sha512 = createHash("sha512").update(chain[0]).digest("hex");
    expect(daneMatches([rec(3, 0, 2, sha512.toUpperCase())], chain).ok).toBe(true);
    expect(daneMatches([rec(3, 0, 0, chain[0].toString("hex"))], chain).ok).toBe(true);
  });

  test("a wrong digest does not match, and says what was served", () => {
    const got = daneMatches([rec(3, 1, 1, "00".repeat(32))], chain);
    expect(got.ok).toBe(false);
    expect(got.saw).toBe(
      `no TLSA record matches: 3 1 1 wants 0000000000000000..., served ${sha256(spki(pki.mx.cert)).slice(0, 16)}...`,
    );
  });

  test("usage 2 matches the CA, and usage 3 with the CA's digest does not", () => {
    const caDigest = sha256(chain[1]);
    expect(daneMatches([rec(2, 0, 1, caDigest)], chain)).toEqual({
      ok: true,
      saw: "TLSA 2 0 1 matches chain certificate 2",
    });
    expect(daneMatches([rec(3, 0, 1, caDigest)], chain).ok).toBe(false);
    expect(daneMatches([rec(2, 0, 1, sha256(chain[0]))], chain).ok).toBe(false);
  });

  test("usage 1 is unusable for SMTP; no records or no chain never match", () => {
    expect(daneMatches([rec(1, 0, 1, sha256(chain[0]))], chain)).toEqual({
      ok: false,
      saw: "no TLSA record matches: 1 0 1: usage unusable for SMTP",
    });
    expect(daneMatches([], chain)).toEqual({ ok: false, saw: "no TLSA records" });
    expect(daneMatches([rec(3, 0, 1, sha256(chain[0]))], [])).toEqual({
      ok: false,
      saw: "no certificate served",
    });
  });

  test("the chain probeSmtp25 hands back matches a record made from the served key", async () => {
    const s = await smtp();
    const { chainDer } = await probeSmtp25(ADDR, MX, "example.test", opts(s.port));
    expect(daneMatches([rec(3, 1, 1, sha256(spki(pki.mx.cert)))], chainDer).ok).toBe(true);
  });
});

describe("fetchHttps", () => {
  async function https(pem = pki.mx) {
    const server = createHttpsServer({ key: pem.key, cert: pem.chain }, (_req, res) => {
      res.setHeader("content-type", "text/plain");
      res.end("version: STSv1\nmode: enforce\n");
    });
    await new Promise<void>((r) => server.listen(0, ADDR, r));
    const port = (server.address() as AddressInfo).port;
    servers.push({
      port,
      commands: [],
      close: () => new Promise((r) => server.close(() => r())),
    });
    return port;
  }

  test("GETs with a verified certificate, connecting to the given address", async () => {
    const port = await https();
    const got = await fetchHttps(`https://mta-sts.example.test:${port}/.well-known/mta-sts.txt`, {
      address: ADDR,
      ca: [pki.ca.cert],
      timeoutMs: 3000,
    });
    if (!got.ok) throw new Error(got.result.saw);
    expect(got.status).toBe(200);
    expect(got.headers["content-type"]).toBe("text/plain");
    expect(got.body.toString()).toBe("version: STSv1\nmode: enforce\n");
    expect(got.saw).toMatch(/^TLSv1\.3, .*certificate DNS:mx\.example\.test, DNS:mta-sts/);
    expect(got.saw).toContain("issued by Checker Test CA");
  });

  test("an untrusted certificate is a failing result, not a response", async () => {
    const port = await https();
    const got = await fetchHttps(`https://mta-sts.example.test:${port}/`, {
      address: ADDR,
      timeoutMs: 3000,
    });
    expect(got.ok).toBe(false);
    if (got.ok) return;
    expect(got.result).toMatchObject({
      name: `HTTPS mta-sts.example.test:${port}`,
      status: "fail",
    });
    expect(got.result.saw).toContain("self-signed certificate in certificate chain");
  });

  test("a certificate for another name is a failing result", async () => {
    const port = await https(pki.other);
    const got = await fetchHttps(`https://mta-sts.example.test:${port}/`, {
      address: ADDR,
      ca: [pki.ca.cert],
      timeoutMs: 3000,
    });
    expect(got.ok).toBe(false);
    if (!got.ok) expect(got.result.saw).toContain("ERR_TLS_CERT_ALTNAME_INVALID");
  });
});
