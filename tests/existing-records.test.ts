// A zone that already holds an SPF or DMARC record: the stack's own beside it would make
// both invalid, so index.ts stops before any resource is registered, naming the record and
// how to remove or adopt it. Under mocks, the zone's records are what the mocked
// getDnsRecords invoke answers.
import * as pulumi from "@pulumi/pulumi";
import { parseConfig } from "../components/config";
import main from "../index";
import { PROD_RAW } from "./support/config";
import { calls, created, installMocks, settle, value, zoneRecords } from "./support/mocks";

const ZONE = "0123456789abcdef0123456789abcdef";
const DNS_URN =
  "urn:pulumi:prod::mailstack::mailstack:index:MailStack$mailstack:index:MailDns::mailstack-dns";
const RECORD = "cloudflare:index/dnsRecord:DnsRecord";

/** Runs index.ts as Pulumi does: awaits the function it exports. */
async function runProgram(): Promise<Record<string, any>> {
  const outputs = await main();
  await settle();
  return outputs;
}

/**
 * The error the program stops with, and whether it is a RunError (which Pulumi prints
 * without a stack trace).
 */
async function failure(run: Promise<unknown>): Promise<{ runError: boolean; message: string }> {
  try {
    await run;
  } catch (e) {
    return { runError: pulumi.RunError.isInstance(e), message: (e as Error).message };
  }
  throw new Error("the program ran to its end");
}

beforeAll(async () => {
  await installMocks("prod");
  pulumi.runtime.setAllConfig(
    Object.fromEntries(Object.entries(PROD_RAW).map(([k, v]) => [`mailstack:${k}`, String(v)])),
    ["mailstack:acmeDnsToken"],
  );
});
beforeEach(() => {
  zoneRecords.length = 0;
  calls.length = 0;
});

test("the zone is asked for its TXT records at the apex and at _dmarc, by exact name", async () => {
  await runProgram();
  expect(calls.map((c) => [c.token, c.args])).toEqual([
    [
      "cloudflare:index/getDnsRecords:getDnsRecords",
      { zoneId: ZONE, type: "TXT", name: { exact: "example.eu" } },
    ],
    [
      "cloudflare:index/getDnsRecords:getDnsRecords",
      { zoneId: ZONE, type: "TXT", name: { exact: "_dmarc.example.eu" } },
    ],
  ]);
});

test("a foreign SPF at the apex stops the run before any resource, naming it and its import", async () => {
  zoneRecords.push({
    zoneId: ZONE,
    id: "372e67954025e0ba6aaa6d586b9e0b59",
    name: "example.eu",
    type: "TXT",
    content: '"v=spf1 include:_spf.mail.example.net ~all"',
  });
  const before = created.length;
  expect(await failure(runProgram())).toEqual({
    runError: true,
    message:
      `mailstack:domain: the zone ${ZONE} (mailstack:cloudflareZoneId) already has an SPF ` +
      "record at example.eu that this stack does not manage: " +
      'TXT "v=spf1 include:_spf.mail.example.net ~all", record id ' +
      "372e67954025e0ba6aaa6d586b9e0b59. The stack publishes its own, and two SPF records " +
      "at one name make both invalid (RFC 7208 3.2). Remove that record in Cloudflare, or " +
      'adopt it: set its comment to "managed by mailstack", then run pulumi import ' +
      "cloudflare:index/dnsRecord:DnsRecord mailstack-dns-txt-apex " +
      `'${ZONE}/372e67954025e0ba6aaa6d586b9e0b59' --parent 'mailstack-dns=${DNS_URN}' ` +
      "--protect=false",
  });
  expect(created.length).toBe(before);
});

test("a foreign DMARC record stops the run the same way", async () => {
  zoneRecords.push({
    zoneId: ZONE,
    id: "d1a2",
    name: "_dmarc.example.eu",
    type: "TXT",
    // Bare, as records written outside Cloudflare's quoting read back.
    content: "v=DMARC1; p=none",
    comment: "added by hand",
  });
  const before = created.length;
  expect(await failure(runProgram())).toEqual({
    runError: true,
    message:
      `mailstack:domain: the zone ${ZONE} (mailstack:cloudflareZoneId) already has a DMARC ` +
      'record at _dmarc.example.eu that this stack does not manage: TXT "v=DMARC1; p=none", ' +
      "record id d1a2. The stack publishes its own, and two DMARC records at one name make " +
      "both invalid (RFC 7489 6.6.3). Remove that record in Cloudflare, or adopt it: set " +
      'its comment to "managed by mailstack", then run pulumi import ' +
      "cloudflare:index/dnsRecord:DnsRecord mailstack-dns-txt-dmarc " +
      `'${ZONE}/d1a2' --parent 'mailstack-dns=${DNS_URN}' --protect=false`,
  });
  expect(created.length).toBe(before);
});

test("control: a zone with other TXT records at those names passes, and every record is written", async () => {
  zoneRecords.push(
    {
      zoneId: ZONE,
      id: "v1",
      name: "example.eu",
      type: "TXT",
      content: '"google-site-verification=abc"',
    },
    // Another name's SPF is no concern of this stack.
    {
      zoneId: ZONE,
      id: "s1",
      name: "staging.example.eu",
      type: "TXT",
      content: '"v=spf1 mx -all"',
    },
  );
  const before = created.length;
  const outputs = await runProgram();
  const records = created.slice(before).filter((r) => r.type === RECORD);
  expect(records.length).toBe((await value<unknown[]>(outputs.dnsRecords)).length);
});

test("control: the stack's own SPF and DMARC (its comment) pass", async () => {
  zoneRecords.push(
    {
      zoneId: ZONE,
      id: "own-spf",
      name: "example.eu",
      type: "TXT",
      content: '"v=spf1 mx -all"',
      comment: "managed by mailstack",
    },
    {
      zoneId: ZONE,
      id: "own-dmarc",
      name: "_dmarc.example.eu",
      type: "TXT",
      content: '"v=DMARC1; p=reject; rua=mailto:postmaster@example.eu"',
      comment: "managed by mailstack",
    },
  );
  const before = created.length;
  await runProgram();
  const records = created.slice(before).filter((r) => r.type === RECORD);
  expect(records.every((r) => r.inputs.comment === "managed by mailstack")).toBe(true);
  expect(records.length).toBeGreaterThan(10);
});

test("the import command names the record and parent the program declares", async () => {
  const { MailStack } = await import("../components/mailstack");
  const stack = new MailStack("mailstack", { config: parseConfig(PROD_RAW) });
  await settle();
  expect(await value(stack.dns.urn)).toBe(DNS_URN);
  const spf = created.filter((r) => r.type === RECORD && r.name === "mailstack-dns-txt-apex");
  const dmarc = created.filter((r) => r.type === RECORD && r.name === "mailstack-dns-txt-dmarc");
  expect(spf.at(-1)?.inputs.content).toBe('"v=spf1 mx -all"');
  expect(dmarc.at(-1)?.inputs.content).toMatch(/^"v=DMARC1; /);
});
