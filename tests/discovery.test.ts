import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clientSettings } from "../components/client-settings";
import { parseConfig } from "../components/config";
import {
  DISCOVERY_HOSTS,
  discoveryHostnames,
  discoverySite,
  wkdHash,
  workerScript,
  zBase32,
} from "../components/discovery";
import { mtaStsId, mtaStsPolicy, txtValue } from "../components/keymath";
import { buildMailRecords } from "../components/records";
import worker, { type Site } from "../worker/discovery";
import { PROD_RAW } from "./support/config";
import { DKIM_KEY, TLS_KEY } from "./support/keys";

const prod = parseConfig(PROD_RAW);
/** Stand-in key bytes: the Worker serves whatever the binding holds, byte for byte. */
const ALICE_KEY = new Uint8Array([0x98, 0x33, 0x04, 0x00, 0xff, 0x10, 0x80]);
const site: Site = discoverySite(prod, { "alice@example.eu": ALICE_KEY });

/** One request to the Worker, as Cloudflare hands it over. */
function call(url: string, init: RequestInit = {}, s: Site = site): Promise<Response> {
  return worker.fetch(new Request(url, init), { SITE: s });
}

const AUTOCONFIG_XML = `<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.eu">
    <domain>example.eu</domain>
    <displayName>example.eu</displayName>
    <displayShortName>example.eu</displayShortName>
    <incomingServer type="imap">
      <hostname>mail.example.eu</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>mail.example.eu</hostname>
      <port>465</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>mail.example.eu</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
`;

/** The POX answer, with `login` as every <LoginName> line (or none). */
function autodiscoverXml(login?: string): string {
  const name = login === undefined ? "" : `\n        <LoginName>${login}</LoginName>`;
  return `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <Protocol>
        <Type>IMAP</Type>
        <Server>mail.example.eu</Server>
        <Port>993</Port>
        <DomainRequired>off</DomainRequired>${name}
        <SPA>off</SPA>
        <SSL>on</SSL>
        <AuthRequired>on</AuthRequired>
      </Protocol>
      <Protocol>
        <Type>SMTP</Type>
        <Server>mail.example.eu</Server>
        <Port>465</Port>
        <DomainRequired>off</DomainRequired>${name}
        <SPA>off</SPA>
        <SSL>on</SSL>
        <AuthRequired>on</AuthRequired>
        <UsePOPAuth>off</UsePOPAuth>
        <SMTPLast>off</SMTPLast>
      </Protocol>
    </Account>
  </Response>
</Autodiscover>
`;
}

/** The request body Outlook POSTs (MS-OXDSCLI 2.2.3). */
const outlookRequest = (address: string) => `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>${address}</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`;

describe("the SITE binding", () => {
  test("the four host names", () => {
    expect(DISCOVERY_HOSTS).toEqual(["mta-sts", "autoconfig", "autodiscover", "openpgpkey"]);
    expect(discoveryHostnames("example.eu")).toEqual([
      "mta-sts.example.eu",
      "autoconfig.example.eu",
      "autodiscover.example.eu",
      "openpgpkey.example.eu",
    ]);
  });

  test("holds the stack's policy, client settings and keys, nothing else", () => {
    expect(site).toEqual({
      domain: "example.eu",
      mailHost: "mail.example.eu",
      mtaStsPolicy: mtaStsPolicy("enforce", ["mail.example.eu"]),
      clients: clientSettings("mail.example.eu"),
      wkd: { [wkdHash("alice")]: Buffer.from(ALICE_KEY).toString("base64") },
    });
  });

  test("the same keys in another order give the same JSON", () => {
    const other = new Uint8Array([1, 2, 3]);
    const a = discoverySite(prod, { "alice@example.eu": ALICE_KEY, "bob@example.eu": other });
    const b = discoverySite(prod, { "bob@example.eu": other, "alice@example.eu": ALICE_KEY });
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
  });

  test("a key for an address outside the domain is a programming error", () => {
    expect(() => discoverySite(prod, { "alice@example.com": ALICE_KEY })).toThrow(
      "discoverySite: alice@example.com is not an address @example.eu",
    );
  });
});

describe("MTA-STS", () => {
  test("the policy is exactly the text whose digest is the _mta-sts TXT id", async () => {
    const res = await call("https://mta-sts.example.eu/.well-known/mta-sts.txt");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    const body = await res.text();
    expect(body).toBe(
      "version: STSv1\r\nmode: enforce\r\nmx: mail.example.eu\r\nmax_age: 604800\r\n",
    );
    expect(body).toBe(mtaStsPolicy(prod.mtaStsMode, [prod.mailHost]));
    const txt = buildMailRecords(prod, {
      ipv4: "203.0.113.25",
      ipv6: "2001:db8:4d2::1",
      dkimPublicKeyPem: DKIM_KEY.publicPem,
      tlsPublicKeyPem: TLS_KEY.publicPem,
    }).filter((r) => r.name === "_mta-sts.example.eu" && r.type === "TXT");
    expect(txt.map((r) => txtValue(r.content))).toEqual([`v=STSv1; id=${mtaStsId(body)}`]);
  });

  test("the host compares without case and port; HEAD has the headers and no body", async () => {
    const res = await call("https://MTA-STS.Example.EU:443/.well-known/mta-sts.txt", {
      method: "HEAD",
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(await res.text()).toBe("");
  });

  test("a testing-mode stack serves its own policy", async () => {
    const testing = discoverySite({ ...prod, mtaStsMode: "testing" }, {});
    const res = await call("https://mta-sts.example.eu/.well-known/mta-sts.txt", {}, testing);
    expect(await res.text()).toBe(mtaStsPolicy("testing", ["mail.example.eu"]));
  });
});

describe("Thunderbird autoconfig", () => {
  test.each([
    "https://autoconfig.example.eu/mail/config-v1.1.xml",
    "https://autoconfig.example.eu/mail/config-v1.1.xml?emailaddress=alice%40example.eu",
    "https://autoconfig.example.eu/.well-known/autoconfig/mail/config-v1.1.xml",
  ])("%s: clientConfig 1.1 from the client settings", async (url) => {
    const res = await call(url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/xml; charset=utf-8");
    expect(await res.text()).toBe(AUTOCONFIG_XML);
  });
});

describe("Outlook autodiscover", () => {
  const URL_XML = "https://autodiscover.example.eu/autodiscover/autodiscover.xml";

  test("POST with the address: IMAP 993 and SMTP 465 over SSL, logging in as the address", async () => {
    const res = await call(URL_XML, { method: "POST", body: outlookRequest("Alice@Example.EU") });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/xml; charset=utf-8");
    expect(await res.text()).toBe(autodiscoverXml("alice@example.eu"));
  });

  test("Outlook's capitalised path answers the same", async () => {
    const res = await call("https://autodiscover.example.eu/Autodiscover/Autodiscover.xml", {
      method: "POST",
      body: outlookRequest("alice@example.eu"),
    });
    expect(await res.text()).toBe(autodiscoverXml("alice@example.eu"));
  });

  test("a hostile address inside the domain is echoed escaped, never as markup", async () => {
    // The request body carries it escaped, as XML must; the answer escapes it again.
    const hostile = `"</LoginName><x>'&amp;"@example.eu`;
    const res = await call(URL_XML, {
      method: "POST",
      body: outlookRequest(hostile.replace(/</g, "&lt;").replace(/>/g, "&gt;")),
    });
    const body = await res.text();
    expect(body).toBe(
      autodiscoverXml("&#34;&#60;/loginname&#62;&#60;x&#62;&#39;&#38;&#34;@example.eu"),
    );
    expect(body).not.toContain("<x");
  });

  test("an address outside the domain, or none: the settings without LoginName", async () => {
    for (const body of [outlookRequest("mallory@example.com"), "not xml at all"]) {
      const res = await call(URL_XML, { method: "POST", body });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(autodiscoverXml());
    }
    expect(await (await call(URL_XML)).text()).toBe(autodiscoverXml());
  });

  const JSON_URL = "https://autodiscover.example.eu/autodiscover/autodiscover.json/v1.0/";

  test("JSON form: AutodiscoverV1 points at the POX endpoint", async () => {
    const res = await call(`${JSON_URL}alice@example.eu?Protocol=AutodiscoverV1`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await res.text()).toBe(
      '{"Protocol":"AutodiscoverV1","Url":"https://autodiscover.example.eu/autodiscover/autodiscover.xml"}',
    );
  });

  test("JSON form: a protocol not offered is Exchange's InvalidProtocol, 404", async () => {
    const res = await call(`${JSON_URL}alice@example.eu?Protocol=ActiveSync`);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await res.json()).toEqual({
      ErrorCode: "InvalidProtocol",
      ErrorMessage:
        "The given protocol value 'ActiveSync' is invalid. Supported values are 'AutodiscoverV1'.",
    });
    const none = await call(`${JSON_URL}alice@example.eu`);
    expect(none.status).toBe(404);
    expect(await none.json()).toMatchObject({ ErrorCode: "InvalidProtocol" });
  });
});

describe("Apple configuration profile", () => {
  const PROFILE = "https://autoconfig.example.eu/mail/mailstack.mobileconfig";

  /** The <key>/<value> pairs of a plist <dict> body (flat: the payload's own dict). */
  function pairs(dict: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const m of dict.matchAll(
      /<key>([^<]+)<\/key>\s*(<true\/>|<false\/>|<(\w+)>([^<]*)<\/\3>)/g,
    )) {
      out[m[1]] = m[3] === undefined ? m[2] : m[4];
    }
    return out;
  }
  const UUID = /^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/;

  test("with the address: one com.apple.mail.managed payload, IMAP 993 and SMTP 465 over SSL", async () => {
    const res = await call(`${PROFILE}?email=Alice%40example.eu`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-apple-aspen-config");
    expect(res.headers.get("content-disposition")).toBe(
      'attachment; filename="example.eu.mobileconfig"',
    );
    const body = await res.text();
    expect(body).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<!DOCTYPE plist PUBLIC/);
    const inner = /<array>\s*<dict>([\s\S]*?)<\/dict>\s*<\/array>/.exec(body)![1];
    const outer = pairs(body.replace(/<key>PayloadContent<\/key>\s*<array>[\s\S]*<\/array>/, ""));
    const mail = pairs(inner);
    expect(mail).toEqual({
      EmailAccountDescription: "alice@example.eu",
      EmailAccountType: "EmailTypeIMAP",
      EmailAddress: "alice@example.eu",
      IncomingMailServerAuthentication: "EmailAuthPassword",
      IncomingMailServerHostName: "mail.example.eu",
      IncomingMailServerPortNumber: "993",
      IncomingMailServerUseSSL: "<true/>",
      IncomingMailServerUsername: "alice@example.eu",
      OutgoingMailServerAuthentication: "EmailAuthPassword",
      OutgoingMailServerHostName: "mail.example.eu",
      OutgoingMailServerPortNumber: "465",
      OutgoingMailServerUseSSL: "<true/>",
      OutgoingMailServerUsername: "alice@example.eu",
      OutgoingPasswordSameAsIncomingPassword: "<true/>",
      PayloadDescription: "IMAP and SMTP settings for example.eu",
      PayloadDisplayName: "Mail (alice@example.eu)",
      PayloadIdentifier: `eu.example.mailstack.mail.${mail.PayloadUUID}`,
      PayloadType: "com.apple.mail.managed",
      PayloadUUID: expect.stringMatching(UUID),
      PayloadVersion: "1",
    });
    expect(outer).toEqual({
      PayloadDescription: "Sets up the mail account alice@example.eu.",
      PayloadDisplayName: "example.eu mail",
      PayloadIdentifier: `eu.example.mailstack.${outer.PayloadUUID}`,
      PayloadOrganization: "example.eu",
      PayloadRemovalDisallowed: "<false/>",
      PayloadType: "Configuration",
      PayloadUUID: expect.stringMatching(UUID),
      PayloadVersion: "1",
    });
    expect(outer.PayloadUUID).not.toBe(mail.PayloadUUID);
    // Derived, not random: the same address gives the same profile, another a different one.
    expect(await (await call(`${PROFILE}?email=alice@example.eu`)).text()).toBe(body);
    const bob = await (await call(`${PROFILE}?email=bob@example.eu`)).text();
    expect(pairs(bob).PayloadUUID).not.toBe(outer.PayloadUUID);
  });

  test("without an address, the device asks for it", async () => {
    const res = await call(PROFILE);
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).not.toContain("EmailAddress");
    expect(body).not.toContain("Username");
    expect(body).toContain("<string>com.apple.mail.managed</string>");
  });

  test("an address outside the domain is refused", async () => {
    const res = await call(`${PROFILE}?email=mallory@example.com`);
    expect(res.status).toBe(400);
    expect(await res.text()).toBe("email must be an address @example.eu\n");
  });
});

describe("OpenPGP Web Key Directory", () => {
  test("the hash: the draft's test vector, and z-base-32 itself", () => {
    expect(wkdHash("Joe.Doe")).toBe("iy9q119eutrkn8s1mk4r39qejnbu3n5q");
    expect(wkdHash("joe.doe")).toBe("iy9q119eutrkn8s1mk4r39qejnbu3n5q");
    // Bits 00000 00001 ... from the spec's alphabet ybndrfg8ejkmcpqxot1uwisza345h769.
    expect(zBase32(new Uint8Array([0x00, 0x44, 0x32, 0x14, 0xc7]))).toBe("ybndrfg8");
  });

  const BASE = "https://openpgpkey.example.eu/.well-known/openpgpkey/example.eu";

  test("the key for alice's hash, binary, to any origin", async () => {
    const res = await call(`${BASE}/hu/${wkdHash("alice")}?l=alice`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(ALICE_KEY);
  });

  test("another hash, or a malformed one: 404", async () => {
    for (const hu of [wkdHash("bob"), "not-a-hash", `${wkdHash("alice")}x`]) {
      expect((await call(`${BASE}/hu/${hu}`)).status).toBe(404);
    }
    expect((await call(`${BASE}/hu/__proto__`)).status).toBe(404);
  });

  test("the policy file exists, empty", async () => {
    const res = await call(`${BASE}/policy`);
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(await res.text()).toBe("");
  });

  test("another domain's directory: 404", async () => {
    const res = await call(
      `https://openpgpkey.example.eu/.well-known/openpgpkey/example.com/hu/${wkdHash("alice")}`,
    );
    expect(res.status).toBe(404);
  });
});

describe("everything else", () => {
  test.each([
    "https://example.eu/.well-known/mta-sts.txt",
    "https://mta-sts.example.com/.well-known/mta-sts.txt",
    "https://mta-sts.example.eu/",
    "https://autoconfig.example.eu/.well-known/mta-sts.txt",
    "https://openpgpkey.example.eu/.well-known/mta-sts.txt",
    "https://autodiscover.example.eu/autodiscover/autodiscover.jsonp?Protocol=AutodiscoverV1",
  ])("%s: 404 text", async (url) => {
    const res = await call(url);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(await res.text()).toBe("Not found\n");
  });

  test("PUT, DELETE, or POST outside autodiscover: 405 naming what is allowed", async () => {
    const put = await call("https://mta-sts.example.eu/.well-known/mta-sts.txt", {
      method: "PUT",
      body: "x",
    });
    expect(put.status).toBe(405);
    expect(put.headers.get("allow")).toBe("GET, HEAD");
    const post = await call("https://autoconfig.example.eu/mail/config-v1.1.xml", {
      method: "POST",
      body: "x",
    });
    expect(post.status).toBe(405);
    const del = await call("https://autodiscover.example.eu/autodiscover/autodiscover.xml", {
      method: "DELETE",
    });
    expect(del.status).toBe(405);
    expect(del.headers.get("allow")).toBe("GET, HEAD, POST");
  });
});

describe("the uploaded script", () => {
  test("is deterministic and imports nothing at run time", () => {
    const script = workerScript();
    expect(workerScript()).toBe(script);
    expect(script).not.toMatch(/^\s*import\s/m);
    expect(script).not.toMatch(/\brequire\(/);
    expect(script).toContain("export default");
  });

  test("runs as an ES module in a fresh node: it serves the policy from a JSON SITE", () => {
    const dir = mkdtempSync(join(tmpdir(), "mailstack-worker-"));
    try {
      writeFileSync(join(dir, "worker.mjs"), workerScript());
      const runner = `
        import worker from "./worker.mjs";
        const site = JSON.parse(process.argv[2]);
        const get = async (url, init) => {
          const res = await worker.fetch(new Request(url, init), { SITE: site });
          return [res.status, res.headers.get("content-type"), await res.text()];
        };
        const out = [
          await get("https://mta-sts.example.eu/.well-known/mta-sts.txt"),
          await get("https://autodiscover.example.eu/autodiscover/autodiscover.xml", {
            method: "POST",
            body: "<EMailAddress>alice@example.eu</EMailAddress>",
          }),
          await get("https://autoconfig.example.eu/mail/mailstack.mobileconfig?email=alice@example.eu"),
        ];
        process.stdout.write(JSON.stringify(out));
      `;
      writeFileSync(join(dir, "run.mjs"), runner);
      const out = JSON.parse(
        execFileSync(process.execPath, [join(dir, "run.mjs"), JSON.stringify(site)], {
          encoding: "utf8",
        }),
      );
      expect(out[0]).toEqual([200, "text/plain; charset=utf-8", site.mtaStsPolicy]);
      expect(out[1][2]).toBe(autodiscoverXml("alice@example.eu"));
      expect(out[2][0]).toBe(200);
      expect(out[2][2]).toContain("<string>alice@example.eu</string>");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
