// The checker's HTTPS and DANE checks against the stack's own Worker module, served over
// HTTPS on 127.0.0.1 by the lab's adapter: each passes on what the stack serves and fails on
// the fault it exists to catch. Also the command line's parts that need no network.
import { createHash, X509Certificate } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import {
  checkAutoconfig,
  checkAutodiscover,
  checkDane,
  checkMtaStsPolicy,
  checkWkd,
  formatReport,
  type CheckOptions,
} from "../checks/check";
import { stackSettings } from "../checks/cli";
import { discoverySite, type Site } from "../components/discovery";
import { workerListener } from "../lab/web";
import worker from "../worker/discovery";
import { MX, makePki, type TestPki } from "./support/fake-mail";
import { zoneDns, type Zone } from "./support/zone-dns";

const DOMAIN = "example.test";
const good = discoverySite({ domain: DOMAIN, mailHost: MX, mtaStsMode: "enforce" }, {});

let pki: TestPki;
let server: Server;
let port: number;
/** What the next requests are answered with: a Site for the Worker, or a raw reply. */
let serving: { site: Site } | { status: number; type: string; body: string };

const zone = (): Zone => ({
  ...Object.fromEntries(
    ["mta-sts", "autoconfig", "autodiscover", "openpgpkey"].map((l) => [
      `${l}.${DOMAIN}`,
      { A: ["127.0.0.1"] },
    ]),
  ),
  [MX]: { A: ["127.0.0.1"] },
});

const options = (z: Zone = zone(), extra: Partial<CheckOptions> = {}): CheckOptions => ({
  domain: DOMAIN,
  dns: zoneDns(z),
  ca: [pki.ca.cert],
  webPort: port,
  timeoutMs: 5000,
  ...extra,
});

beforeAll(async () => {
  pki = makePki();
  const viaWorker = workerListener({ default: worker }, () =>
    "site" in serving ? serving.site : undefined,
  );
  server = createServer({ key: pki.web.key, cert: pki.web.chain }, (req, res) => {
    if ("site" in serving) return void viaWorker(req, res);
    res.writeHead(serving.status, { "content-type": serving.type }).end(serving.body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
beforeEach(() => (serving = { site: good }));

describe("MTA-STS policy", () => {
  test("the Worker's policy, over HTTPS with a valid certificate, naming the MX, passes", async () => {
    expect(await checkMtaStsPolicy(options(), [MX])).toMatchObject({
      status: "pass",
      saw: expect.stringMatching(/^mode enforce, mx mx\.example\.test, max_age 604800; TLSv1\.3/),
    });
  });
  test("a policy whose MX does not match fails", async () => {
    expect(await checkMtaStsPolicy(options(), ["mail.example.test"])).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("MX mail.example.test not in the policy"),
    });
  });
  test("mode none fails; testing warns, and passes for a staging stack", async () => {
    serving = {
      site: { ...good, mtaStsPolicy: "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n" },
    };
    expect((await checkMtaStsPolicy(options(), [MX])).status).toBe("fail");
    serving = {
      site: {
        ...good,
        mtaStsPolicy: `version: STSv1\r\nmode: testing\r\nmx: ${MX}\r\nmax_age: 86400\r\n`,
      },
    };
    expect((await checkMtaStsPolicy(options(), [MX])).status).toBe("warn");
    expect((await checkMtaStsPolicy(options(zone(), { staging: true }), [MX])).status).toBe("pass");
  });
  test("a policy served as HTML, or not found, fails", async () => {
    serving = { status: 200, type: "text/html", body: good.mtaStsPolicy };
    expect(await checkMtaStsPolicy(options(), [MX])).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("Content-Type text/html"),
    });
    serving = { status: 404, type: "text/plain", body: "not here" };
    expect((await checkMtaStsPolicy(options(), [MX])).saw).toContain("HTTP 404");
  });
  test("a certificate the checker does not trust fails", async () => {
    expect(await checkMtaStsPolicy(options(zone(), { ca: [] }), [MX])).toMatchObject({
      status: "fail",
      name: "MTA-STS policy",
    });
  });
  test("a name that does not resolve fails", async () => {
    const z = zone();
    delete z[`mta-sts.${DOMAIN}`];
    expect(await checkMtaStsPolicy(options(z), [MX])).toMatchObject({
      status: "fail",
      saw: `mta-sts.${DOMAIN} does not resolve`,
    });
  });
});

describe("autoconfig, autodiscover and the Web Key Directory", () => {
  test("the Worker's documents pass", async () => {
    expect(await checkAutoconfig(options(), MX)).toMatchObject({
      status: "pass",
      saw: expect.stringMatching(/^IMAP mx\.example\.test:993; TLSv1\.3/),
    });
    expect(await checkAutodiscover(options())).toMatchObject({
      status: "pass",
      saw: expect.stringContaining(
        `Url https://autodiscover.${DOMAIN}/autodiscover/autodiscover.xml`,
      ),
    });
    expect((await checkWkd(options())).status).toBe("pass");
  });
  test("autoconfig naming another server fails", async () => {
    serving = {
      site: discoverySite(
        { domain: DOMAIN, mailHost: "imap.elsewhere.test", mtaStsMode: "enforce" },
        {},
      ),
    };
    expect(await checkAutoconfig(options(), MX)).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("IMAP imap.elsewhere.test:993"),
    });
  });
  test("no autodiscover and no WKD: both fail", async () => {
    serving = { status: 404, type: "text/plain", body: "not found" };
    expect((await checkAutodiscover(options())).status).toBe("fail");
    expect(await checkWkd(options())).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("HTTP 404"),
    });
  });
});

describe("DANE", () => {
  const spkiDigest = (pem: string) =>
    createHash("sha256")
      .update(new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" }))
      .digest();
  const chain = () => [new X509Certificate(pki.mx.cert).raw];
  const withTlsa = (digest: Buffer): Zone => ({
    [`_25._tcp.${MX}`]: { TLSA: [{ usage: 3, selector: 1, matchingType: 1, certificate: digest }] },
  });

  test("a validated 3 1 1 record of the served key passes", async () => {
    const o = options(withTlsa(spkiDigest(pki.mx.cert)));
    expect((await checkDane(o, MX, chain())).status).toBe("pass");
  });
  test("a record of another key fails", async () => {
    const o = options(withTlsa(spkiDigest(pki.other.cert)));
    expect((await checkDane(o, MX, chain())).status).toBe("fail");
  });
  test("no record fails, and only warns for a staging stack", async () => {
    expect((await checkDane(options({}), MX, chain())).status).toBe("fail");
    expect((await checkDane(options({}, { staging: true }), MX, chain())).status).toBe("warn");
  });
  test("a record the resolver did not validate fails: senders ignore it", async () => {
    const o = { ...options(), dns: zoneDns(withTlsa(spkiDigest(pki.mx.cert)), { ad: false }) };
    expect(await checkDane(o, MX, chain())).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("not validated"),
    });
  });
});

describe("the command line", () => {
  test("a stack's config gives the domain, selector and whether it is staging", () => {
    expect(
      stackSettings("config:\n  mailstack:domain: example.eu\n  mailstack:dkimSelector: s1\n"),
    ).toEqual({ domain: "example.eu", dkimSelector: "s1", staging: false });
    expect(
      stackSettings("config:\n  mailstack:domain: pr.example.eu\n  mailstack:dnssec: false\n"),
    ).toEqual({ domain: "pr.example.eu", staging: true });
    expect(() => stackSettings("config:\n  mailstack:location: fsn1\n")).toThrow(
      "has no mailstack:domain",
    );
  });
  test("the report: one line per check, the fix under what did not pass", () => {
    expect(
      formatReport([
        { name: "MX", status: "pass", saw: "10 mail.example.eu" },
        { name: "DMARC", status: "fail", saw: "p=none", fix: "set p=reject" },
      ]),
    ).toBe("pass  MX     10 mail.example.eu\nFAIL  DMARC  p=none\n             fix: set p=reject");
  });
});
