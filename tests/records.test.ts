import { execFileSync } from "node:child_process";
import { parseConfig } from "../components/config";
import { mtaStsId, mtaStsPolicy, txtPresentation, txtValue } from "../components/keymath";
import { buildMailRecords, type DnsRecord } from "../components/records";
import { MINIMAL_RAW, PROD_RAW, STAGING_RAW } from "./support/config";
import { DKIM_KEY, TLS_KEY } from "./support/keys";

const KEYS = {
  ipv4: "203.0.113.25",
  ipv6: "2001:db8:4d2::1",
  dkimPublicKeyPem: DKIM_KEY.publicPem,
  tlsPublicKeyPem: TLS_KEY.publicPem,
};
const prod = parseConfig(PROD_RAW);
const records = buildMailRecords(prod, KEYS);

const find = (name: string, type: string): DnsRecord[] =>
  records.filter((r) => r.name === name && r.type === type);
const one = (name: string, type: string): DnsRecord => {
  const found = find(name, type);
  expect(found).toHaveLength(1);
  return found[0];
};

/** Base64 body of a PEM block: the DER bytes, read without any crypto library. */
const pemBody = (pem: string) =>
  pem
    .split("\n")
    .filter((l) => l && !l.startsWith("-----"))
    .join("");

describe("mail records", () => {
  test("A and AAAA point the MX host at the server", () => {
    expect(one("mail.example.eu", "A").content).toBe("203.0.113.25");
    expect(one("mail.example.eu", "AAAA").content).toBe("2001:db8:4d2::1");
  });

  test("MX names the mail host", () => {
    expect(one("example.eu", "MX")).toMatchObject({ content: "mail.example.eu", priority: 10 });
  });

  test("SPF lets only the MX send", () => {
    expect(one("example.eu", "TXT").content).toBe('"v=spf1 mx -all"');
  });

  test("DMARC carries the policy and report address", () => {
    expect(one("_dmarc.example.eu", "TXT").content).toBe(
      '"v=DMARC1; p=reject; rua=mailto:postmaster@example.eu"',
    );
    const staging = buildMailRecords(parseConfig(STAGING_RAW), KEYS);
    expect(staging.find((r) => r.name === "_dmarc.staging.example.eu")!.content).toBe(
      '"v=DMARC1; p=quarantine; rua=mailto:postmaster@staging.example.eu"',
    );
  });

  test("DKIM p= is the key's SubjectPublicKeyInfo, split into strings of at most 255 bytes", () => {
    const r = one("mail._domainkey.example.eu", "TXT");
    const strings = [...r.content.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
    expect(strings.length).toBeGreaterThan(1);
    for (const s of strings) expect(Buffer.byteLength(s)).toBeLessThanOrEqual(255);
    expect(txtValue(r.content)).toBe(`v=DKIM1; k=rsa; p=${pemBody(DKIM_KEY.publicPem)}`);
  });

  test("TLSA 3 1 1 is the SHA-256 of the TLS key's SubjectPublicKeyInfo (as openssl computes it)", () => {
    const der = execFileSync("openssl", ["pkey", "-pubin", "-outform", "DER"], {
      input: TLS_KEY.publicPem,
    });
    const digest = execFileSync("openssl", ["dgst", "-sha256", "-r"], { input: der })
      .toString()
      .split(" ")[0];
    const r = one("_25._tcp.mail.example.eu", "TLSA");
    expect(r.content).toBe(`3 1 1 ${digest}`);
    expect(r.data).toEqual({
      kind: "TLSA",
      usage: 3,
      selector: 1,
      matchingType: 1,
      certificate: digest,
    });
  });

  test("no TLSA without DNSSEC: unsigned DANE records are ignored by senders", () => {
    const unsigned = buildMailRecords({ ...prod, dnssec: false }, KEYS);
    expect(unsigned.filter((r) => r.type === "TLSA")).toEqual([]);
  });

  test("MTA-STS id is derived from the policy and TLS-RPT names the report address", () => {
    const policy = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.eu\r\nmax_age: 604800\r\n";
    expect(mtaStsPolicy("enforce", ["mail.example.eu"])).toBe(policy);
    expect(one("_mta-sts.example.eu", "TXT").content).toBe(`"v=STSv1; id=${mtaStsId(policy)}"`);
    expect(mtaStsId(policy)).toMatch(/^[0-9a-f]{32}$/);
    expect(one("_smtp._tls.example.eu", "TXT").content).toBe(
      '"v=TLSRPTv1; rua=mailto:postmaster@example.eu"',
    );
  });

  test("the MTA-STS id changes exactly when the policy text changes", () => {
    const idOf = (cfg: typeof prod) =>
      buildMailRecords(cfg, KEYS).find((r) => r.name.startsWith("_mta-sts."))!.content;
    const base = idOf(prod);
    // Settings outside the policy leave the id alone...
    expect(idOf({ ...prod, dmarcPolicy: "none", tlsRptEmail: "alice@example.eu" })).toBe(base);
    expect(
      buildMailRecords(prod, { ...KEYS, ipv4: "203.0.113.99" }).find((r) =>
        r.name.startsWith("_mta-sts."),
      )!.content,
    ).toBe(base);
    // ...while the mode or the MX host change it.
    expect(idOf({ ...prod, mtaStsMode: "testing" })).not.toBe(base);
    expect(idOf({ ...prod, mailHost: "mx.example.eu" })).not.toBe(base);
  });

  test("CAA on the mail host allows only the ACME CA, by DNS-01, and names a contact", () => {
    expect(find("example.eu", "CAA")).toEqual([]);
    expect(find("mail.example.eu", "CAA").map((r) => r.content)).toEqual([
      '0 issue "letsencrypt.org; validationmethods=dns-01"',
      '0 issuewild ";"',
      '0 iodef "mailto:hostmaster@example.eu"',
    ]);
  });

  test("SRV records advertise submission, submissions, IMAPS and ManageSieve; IMAP and POP3 are not offered", () => {
    const srv = Object.fromEntries(
      records.filter((r) => r.type === "SRV").map((r) => [r.name, r.content]),
    );
    expect(srv).toEqual({
      "_submissions._tcp.example.eu": "0 1 465 mail.example.eu",
      "_submission._tcp.example.eu": "0 1 587 mail.example.eu",
      "_imaps._tcp.example.eu": "0 1 993 mail.example.eu",
      "_sieve._tcp.example.eu": "0 1 4190 mail.example.eu",
      "_imap._tcp.example.eu": "0 0 0 .",
      "_pop3._tcp.example.eu": "0 0 0 .",
      "_pop3s._tcp.example.eu": "0 0 0 .",
    });
  });

  test("a different hostname moves every host-bound record", () => {
    const other = buildMailRecords(parseConfig({ ...MINIMAL_RAW, hostname: "mx1" }), KEYS);
    const names = other.filter((r) => ["A", "AAAA", "CAA"].includes(r.type)).map((r) => r.name);
    expect(new Set(names)).toEqual(new Set(["mx1.example.eu"]));
    expect(other.find((r) => r.type === "MX")!.content).toBe("mx1.example.eu");
  });

  test("golden record set of the prod example", () => {
    expect(records).toMatchSnapshot();
  });

  test("golden record set of the staging example", () => {
    expect(buildMailRecords(parseConfig(STAGING_RAW), KEYS)).toMatchSnapshot();
  });
});

describe("TXT presentation", () => {
  test("short values are one quoted string", () => {
    expect(txtPresentation("v=spf1 mx -all")).toBe('"v=spf1 mx -all"');
  });

  test("quotes and backslashes are escaped and read back", () => {
    const text = 'say "hi" \\ bye';
    expect(txtPresentation(text)).toBe('"say \\"hi\\" \\\\ bye"');
    expect(txtValue(txtPresentation(text))).toBe(text);
  });

  test("long values split at 255 bytes without cutting a UTF-8 character", () => {
    const text = "a".repeat(254) + "é" + "b".repeat(300);
    const out = txtPresentation(text);
    const strings = [...out.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
    expect(strings.map((s) => Buffer.byteLength(s))).toEqual([254, 255, 47]);
    expect(txtValue(out)).toBe(text);
  });
});
