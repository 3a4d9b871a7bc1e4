// The checker's DNS checks against crafted zones: each passes on the zone the stack
// publishes and fails on the fault it exists to catch.
import { generateKeyPairSync } from "node:crypto";
import {
  BLOCKLISTS,
  blocklistName,
  checkBlocklists,
  checkCaa,
  checkDkim,
  checkDmarc,
  checkDnssec,
  checkMtaStsRecord,
  checkMx,
  checkPtr,
  checkSpf,
  checkTlsRpt,
  reverseName,
  tlsaRecords,
} from "../checks/records";
import { txtValue } from "../components/keymath";
import { buildMailRecords } from "../components/records";
import { txt, zoneDns, type Zone } from "./support/zone-dns";

const DOMAIN = "example.eu";
const MX = "mail.example.eu";
const V4 = "198.51.100.10";
const V6 = "2001:db8:1::a";

const spki = (bits: number) =>
  generateKeyPairSync("rsa", { modulusLength: bits })
    .publicKey.export({ type: "spki", format: "der" })
    .toString("base64");
const KEY_2048 = spki(2048);

/** The zone a healthy stack publishes, plus its reverse names. */
function goodZone(): Zone {
  return {
    [DOMAIN]: {
      MX: [{ preference: 10, exchange: MX }],
      TXT: txt("v=spf1 mx -all", "google-site-verification=abc"),
    },
    [MX]: {
      A: [V4],
      AAAA: [V6],
      CAA: [
        { flags: 0, tag: "issue", value: "letsencrypt.org; validationmethods=dns-01" },
        { flags: 0, tag: "issuewild", value: ";" },
      ],
    },
    [`mail._domainkey.${DOMAIN}`]: { TXT: txt(`v=DKIM1; k=rsa; p=${KEY_2048}`) },
    [`_dmarc.${DOMAIN}`]: { TXT: txt(`v=DMARC1; p=reject; rua=mailto:postmaster@${DOMAIN}`) },
    [`_mta-sts.${DOMAIN}`]: { TXT: txt("v=STSv1; id=0123abcd") },
    [`_smtp._tls.${DOMAIN}`]: { TXT: txt(`v=TLSRPTv1; rua=mailto:postmaster@${DOMAIN}`) },
    [reverseName(V4)]: { PTR: [MX] },
    [reverseName(V6)]: { PTR: [MX] },
    [`_25._tcp.${MX}`]: {
      TLSA: [{ usage: 3, selector: 1, matchingType: 1, certificate: Buffer.alloc(32, 7) }],
    },
  };
}

const edit = (change: (z: Zone) => void): Zone => {
  const z = goodZone();
  change(z);
  return z;
};

describe("MX", () => {
  test("an MX host with both addresses passes and is returned with them", async () => {
    const { result, hosts } = await checkMx(zoneDns(goodZone()), DOMAIN);
    expect(result).toMatchObject({ status: "pass", saw: `10 ${MX} → ${V4}, ${V6}` });
    expect(hosts).toEqual([{ name: MX, preference: 10, addresses: [V4, V6] }]);
  });
  test("no MX fails", async () => {
    const z = edit((z) => delete z[DOMAIN].MX);
    expect((await checkMx(zoneDns(z), DOMAIN)).result.status).toBe("fail");
  });
  test("a null MX fails", async () => {
    const z = edit((z) => (z[DOMAIN].MX = [{ preference: 0, exchange: "." }]));
    expect((await checkMx(zoneDns(z), DOMAIN)).result).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("null MX"),
    });
  });
  test("an MX host without A fails; without AAAA warns", async () => {
    const noA = edit((z) => delete z[MX].A);
    expect((await checkMx(zoneDns(noA), DOMAIN)).result.status).toBe("fail");
    const noAAAA = edit((z) => delete z[MX].AAAA);
    expect((await checkMx(zoneDns(noAAAA), DOMAIN)).result).toMatchObject({
      status: "warn",
      saw: expect.stringContaining(`${MX} has no AAAA record`),
    });
  });
});

describe("PTR", () => {
  test("both addresses name the MX host, forward-confirmed", async () => {
    const dns = zoneDns(goodZone());
    expect(await checkPtr(dns, V4, MX)).toMatchObject({
      status: "pass",
      saw: `PTR ${MX}, forward-confirmed`,
    });
    expect((await checkPtr(dns, V6, MX)).status).toBe("pass");
    expect(reverseName(V6)).toBe(
      "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    );
  });
  test("no PTR fails", async () => {
    const z = edit((z) => delete z[reverseName(V4)]);
    expect((await checkPtr(zoneDns(z), V4, MX)).status).toBe("fail");
  });
  test("a PTR whose name does not resolve back fails", async () => {
    const z = edit((z) => (z[reverseName(V6)].PTR = ["static.10.100.51.198.clients.example"]));
    expect(await checkPtr(zoneDns(z), V6, MX)).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("does not resolve back"),
    });
  });
  test("a forward-confirmed PTR naming another host warns", async () => {
    const z = edit((z) => {
      z[reverseName(V4)].PTR = ["other.example.eu"];
      z["other.example.eu"] = { A: [V4] };
    });
    expect((await checkPtr(zoneDns(z), V4, MX)).status).toBe("warn");
  });
});

describe("SPF", () => {
  test("mx -all: the host passes, others fail, one lookup", async () => {
    expect(await checkSpf(zoneDns(goodZone()), DOMAIN, [V4, V6])).toMatchObject({
      status: "pass",
      saw: `"v=spf1 mx -all", 1 DNS lookup; ${V4}, ${V6} pass, others fail`,
    });
  });
  test("no record fails", async () => {
    const z = edit((z) => (z[DOMAIN].TXT = txt("something else")));
    expect((await checkSpf(zoneDns(z), DOMAIN, [V4])).status).toBe("fail");
  });
  test("~all fails: outsiders only softfail", async () => {
    const z = edit((z) => (z[DOMAIN].TXT = txt("v=spf1 mx ~all")));
    expect(await checkSpf(zoneDns(z), DOMAIN, [V4])).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("gets softfail"),
    });
  });
  test("a record that leaves out the mail host fails", async () => {
    const z = edit((z) => (z[DOMAIN].TXT = txt("v=spf1 ip4:203.0.113.1 -all")));
    expect(await checkSpf(zoneDns(z), DOMAIN, [V4])).toMatchObject({
      status: "fail",
      saw: expect.stringContaining(`the mail host ${V4} gets fail`),
    });
  });
  test("more than ten lookups fails", async () => {
    const z = edit((z) => {
      const includes = Array.from({ length: 11 }, (_, i) => `include:s${i}.example.eu`);
      z[DOMAIN].TXT = txt(`v=spf1 ${includes.join(" ")} mx -all`);
      for (let i = 0; i < 11; i++)
        z[`s${i}.example.eu`] = { TXT: txt("v=spf1 ip4:203.0.113.9 ?all") };
    });
    expect(await checkSpf(zoneDns(z), DOMAIN, [V4])).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("permerror"),
    });
  });
  test("two records fail", async () => {
    const z = edit((z) => (z[DOMAIN].TXT = txt("v=spf1 mx -all", "v=spf1 -all")));
    expect((await checkSpf(zoneDns(z), DOMAIN, [V4])).status).toBe("fail");
  });
});

describe("DKIM", () => {
  test("an RSA 2048 key at the selector passes", async () => {
    expect(await checkDkim(zoneDns(goodZone()), DOMAIN, "mail")).toMatchObject({
      status: "pass",
      saw: `mail._domainkey.${DOMAIN}: RSA 2048 bits`,
    });
  });
  test("no key at the selector fails", async () => {
    expect((await checkDkim(zoneDns(goodZone()), DOMAIN, "other")).status).toBe("fail");
  });
  test("a revoked (empty) key fails, a broken one fails, a 1024-bit one warns", async () => {
    const at = `mail._domainkey.${DOMAIN}`;
    const revoked = edit((z) => (z[at].TXT = txt("v=DKIM1; k=rsa; p=")));
    expect((await checkDkim(zoneDns(revoked), DOMAIN, "mail")).status).toBe("fail");
    const broken = edit((z) => (z[at].TXT = txt("v=DKIM1; k=rsa; p=AAAAnotakey")));
    expect(await checkDkim(zoneDns(broken), DOMAIN, "mail")).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("unusable key"),
    });
    const short = edit((z) => (z[at].TXT = txt(`v=DKIM1; p=${spki(1024)}`)));
    expect((await checkDkim(zoneDns(short), DOMAIN, "mail")).status).toBe("warn");
  });
});

describe("DMARC", () => {
  test("p=reject with a report address in the domain passes", async () => {
    expect((await checkDmarc(zoneDns(goodZone()), DOMAIN)).status).toBe("pass");
  });
  test("a zone without DMARC fails", async () => {
    const z = edit((z) => delete z[`_dmarc.${DOMAIN}`]);
    expect((await checkDmarc(zoneDns(z), DOMAIN)).status).toBe("fail");
  });
  test("p=none fails", async () => {
    const z = edit(
      (z) => (z[`_dmarc.${DOMAIN}`].TXT = txt("v=DMARC1; p=none; rua=mailto:d@example.eu")),
    );
    expect(await checkDmarc(zoneDns(z), DOMAIN)).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("p=none"),
    });
  });
  test("no rua fails; a rua that is no mailto: fails", async () => {
    const noRua = edit((z) => (z[`_dmarc.${DOMAIN}`].TXT = txt("v=DMARC1; p=reject")));
    expect((await checkDmarc(zoneDns(noRua), DOMAIN)).status).toBe("fail");
    const bad = edit(
      (z) => (z[`_dmarc.${DOMAIN}`].TXT = txt("v=DMARC1; p=reject; rua=postmaster")),
    );
    expect((await checkDmarc(zoneDns(bad), DOMAIN)).status).toBe("fail");
  });
  test("reports to another domain need that domain's consent", async () => {
    const record = txt("v=DMARC1; p=quarantine; rua=mailto:reports@dmarc.example.net");
    const without = edit((z) => (z[`_dmarc.${DOMAIN}`].TXT = record));
    expect(await checkDmarc(zoneDns(without), DOMAIN)).toMatchObject({
      status: "fail",
      saw: expect.stringContaining(`no ${DOMAIN}._report._dmarc.dmarc.example.net`),
    });
    const consent = edit((z) => {
      z[`_dmarc.${DOMAIN}`].TXT = record;
      z[`${DOMAIN}._report._dmarc.dmarc.example.net`] = { TXT: txt("v=DMARC1") };
    });
    expect((await checkDmarc(zoneDns(consent), DOMAIN)).status).toBe("pass");
  });
});

describe("MTA-STS and TLS-RPT records", () => {
  test("the stack's records pass", async () => {
    const dns = zoneDns(goodZone());
    expect(await checkMtaStsRecord(dns, DOMAIN)).toMatchObject({
      id: "0123abcd",
      result: { status: "pass" },
    });
    expect((await checkTlsRpt(dns, DOMAIN)).status).toBe("pass");
  });
  test("no _mta-sts record fails; two fail", async () => {
    const none = edit((z) => delete z[`_mta-sts.${DOMAIN}`]);
    expect((await checkMtaStsRecord(zoneDns(none), DOMAIN)).result.status).toBe("fail");
    const two = edit((z) => (z[`_mta-sts.${DOMAIN}`].TXT = txt("v=STSv1; id=1", "v=STSv1; id=2")));
    expect((await checkMtaStsRecord(zoneDns(two), DOMAIN)).result.status).toBe("fail");
  });
  test("no TLS-RPT record fails; one without a usable rua fails", async () => {
    const none = edit((z) => delete z[`_smtp._tls.${DOMAIN}`]);
    expect((await checkTlsRpt(zoneDns(none), DOMAIN)).status).toBe("fail");
    const bad = edit((z) => (z[`_smtp._tls.${DOMAIN}`].TXT = txt("v=TLSRPTv1; rua=ftp://x")));
    expect((await checkTlsRpt(zoneDns(bad), DOMAIN)).status).toBe("fail");
  });
});

describe("DNSSEC, DANE records and CAA", () => {
  test("validated answers pass; an unvalidated one fails", async () => {
    expect((await checkDnssec(zoneDns(goodZone()), DOMAIN, MX)).status).toBe("pass");
    expect(await checkDnssec(zoneDns(goodZone(), { unsigned: [MX] }), DOMAIN, MX)).toMatchObject({
      status: "fail",
      saw: expect.stringContaining(`${MX} A`),
    });
  });
  test("TLSA records are read as hex, with their validation", async () => {
    expect(await tlsaRecords(zoneDns(goodZone()), MX)).toEqual({
      ad: true,
      records: [{ usage: 3, selector: 1, matchingType: 1, data: "07".repeat(32) }],
    });
  });
  test("CAA at the host passes; CAA found higher up counts; none fails; issue ';' fails", async () => {
    expect((await checkCaa(zoneDns(goodZone()), MX)).status).toBe("pass");
    const atApex = edit((z) => {
      z[DOMAIN].CAA = z[MX].CAA;
      delete z[MX].CAA;
    });
    expect(await checkCaa(zoneDns(atApex), MX)).toMatchObject({
      status: "pass",
      saw: expect.stringMatching(/^example\.eu:/),
    });
    const none = edit((z) => delete z[MX].CAA);
    expect((await checkCaa(zoneDns(none), MX)).status).toBe("fail");
    const nobody = edit((z) => (z[MX].CAA = [{ flags: 0, tag: "issue", value: ";" }]));
    expect((await checkCaa(zoneDns(nobody), MX)).status).toBe("fail");
  });
});

describe("blocklists", () => {
  const lists = (
    listed: string[],
    answers: (zone: string) => string[] = () => ["127.0.0.2"],
  ): Zone =>
    Object.fromEntries(
      BLOCKLISTS.flatMap((b) => [
        [blocklistName("127.0.0.2", b.zone), { A: answers(b.zone) }],
        ...listed.map((a) => [blocklistName(a, b.zone), { A: ["127.0.0.4"] }]),
      ]),
    );
  test("the names asked: reversed octets and nibbles", () => {
    expect(blocklistName("198.51.100.10", "zen.spamhaus.org")).toBe(
      "10.100.51.198.zen.spamhaus.org",
    );
    expect(blocklistName(V6, "zen.spamhaus.org")).toMatch(
      /^a\.0\.0\.0\..*\.2\.zen\.spamhaus\.org$/,
    );
  });
  test("an address on no list passes, once each list answers its test point", async () => {
    expect(await checkBlocklists(zoneDns(lists([])), V4)).toMatchObject({
      status: "pass",
      saw: `not listed on ${BLOCKLISTS.map((b) => b.zone).join(", ")}`,
    });
    expect((await checkBlocklists(zoneDns(lists([])), V6)).saw).toBe(
      "not listed on zen.spamhaus.org",
    );
  });
  test("a listed address fails, naming the list", async () => {
    expect(await checkBlocklists(zoneDns(lists([V4])), V4)).toMatchObject({
      status: "fail",
      saw: expect.stringContaining("zen.spamhaus.org (127.0.0.4)"),
    });
  });
  test("a list that refuses the resolver cannot tell: a warning, not a pass", async () => {
    const refused = lists([], (zone) =>
      zone === "zen.spamhaus.org" ? ["127.255.255.254"] : ["127.0.0.2"],
    );
    expect(await checkBlocklists(zoneDns(refused), V4)).toMatchObject({
      status: "warn",
      saw: expect.stringContaining(
        "cannot tell for zen.spamhaus.org (test point: 127.255.255.254)",
      ),
    });
  });
});

test("the zone the stack publishes passes every record check", async () => {
  const records = buildMailRecords(
    {
      domain: DOMAIN,
      mailHost: MX,
      dmarcPolicy: "reject",
      dmarcReportEmail: `postmaster@${DOMAIN}`,
      mtaStsMode: "enforce",
      tlsRptEmail: `postmaster@${DOMAIN}`,
      acmeEmail: `hostmaster@${DOMAIN}`,
      caaIssuer: "letsencrypt.org",
      dkimSelector: "mail",
      dnssec: true,
      acmeChallengeZone: undefined,
    },
    {
      ipv4: V4,
      ipv6: V6,
      dkimPublicKeyPem: `-----BEGIN PUBLIC KEY-----\n${KEY_2048}\n-----END PUBLIC KEY-----\n`,
      tlsPublicKeyPem: `-----BEGIN PUBLIC KEY-----\n${KEY_2048}\n-----END PUBLIC KEY-----\n`,
    },
  );
  const z: Zone = { [reverseName(V4)]: { PTR: [MX] }, [reverseName(V6)]: { PTR: [MX] } };
  for (const r of records) {
    const node = (z[r.name] ??= {});
    const data =
      r.type === "TXT"
        ? [Buffer.from(txtValue(r.content))]
        : r.type === "MX"
          ? { preference: r.priority, exchange: r.content }
          : r.type === "CAA"
            ? {
                flags: 0,
                tag: (r.data as { tag: string }).tag,
                value: (r.data as { value: string }).value,
              }
            : r.content;
    (node[r.type as "A"] ??= []).push(data);
  }
  const dns = zoneDns(z);
  const results = [
    (await checkMx(dns, DOMAIN)).result,
    await checkPtr(dns, V4, MX),
    await checkPtr(dns, V6, MX),
    await checkSpf(dns, DOMAIN, [V4, V6]),
    await checkDkim(dns, DOMAIN, "mail"),
    await checkDmarc(dns, DOMAIN),
    (await checkMtaStsRecord(dns, DOMAIN)).result,
    await checkTlsRpt(dns, DOMAIN),
    await checkDnssec(dns, DOMAIN, MX),
    await checkCaa(dns, MX),
  ];
  expect(results.filter((r) => r.status !== "pass")).toEqual([]);
});
