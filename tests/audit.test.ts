// The outside audit's parsers and comparisons (checks/audit.ts) on the tools' own output:
// nmap 7.93's XML (-oX) and testssl.sh 3.0.8's flat JSON (--jsonfile), from Debian's
// packages, in tests/fixtures/audit/. The testssl files are real runs against local
// servers: one as the mail host is configured (TLS 1.2+, ECDHE AEAD, server cipher order, a
// certificate for the name from a CA given with --add-ca), one offering TLS 1.0 and 1.1 with
// every cipher and a self-signed certificate, one against a closed port, and one cut short.
// Each refusal is beside a control that passes.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseStackFile } from "../components/config";
import { inboundRules } from "../components/firewall";
import {
  comparePorts,
  expectedOpenPorts,
  formatPortTable,
  formatTlsTable,
  openTcpPorts,
  parseNmapXml,
  parseTestsslJson,
  regressionLines,
  scannedHost,
  testsslArgs,
  testsslStarttlsProtocols,
  tlsRegressions,
  tlsTargetName,
  tlsTargets,
} from "../checks/audit";
import { main } from "../checks/audit-cli";

const FIXTURES = join(__dirname, "fixtures", "audit");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");
const MAIL = [25, 465, 587, 993, 4190];

/** A stack as in production: SSH from two networks, the exporters to one address. */
const rules = inboundRules({
  sshAllowedIps: ["198.51.100.7/32", "2001:db8:7::/48"],
  monitoringAllowedIps: ["198.51.100.50/32"],
});

describe("nmap's XML", () => {
  test("a full scan over IPv4: the host, its open ports, and all 65535 covered", () => {
    const run = parseNmapXml(fixture("nmap-ipv4.xml"));
    expect(run.args).toBe("nmap -Pn -sT -p- --min-rate 5000 -oX - 203.0.113.25");
    expect(run.tcpPortsScanned).toBe(65535);
    const host = scannedHost(run, "203.0.113.25");
    expect([host.address, host.family, host.status]).toEqual(["203.0.113.25", 4, "up"]);
    expect(host.otherPorts).toBe("filtered");
    expect(openTcpPorts(host)).toEqual(MAIL);
  });

  test("over IPv6: the address is found however it is written", () => {
    const run = parseNmapXml(fixture("nmap-ipv6.xml"));
    const host = scannedHost(run, "2001:0db8:0025:0000:0000:0000:0000:0002");
    expect([host.address, host.family]).toEqual(["2001:db8:25::2", 6]);
    expect(openTcpPorts(host)).toEqual([22, ...MAIL]);
  });

  test("a scan cut short is refused (not well-formed); the whole one is the control", () => {
    expect(() => parseNmapXml(fixture("nmap-truncated.xml"))).toThrow(
      /nmap XML: not well-formed .*was the scan cut short\?/,
    );
    expect(() => parseNmapXml(fixture("nmap-ipv4.xml"))).not.toThrow();
  });

  test("a run nmap ended with an error is refused with nmap's message", () => {
    expect(() => parseNmapXml(fixture("nmap-error.xml"))).toThrow(
      "nmap ended with an error: Could not figure out what device to send the packet out on",
    );
  });

  test("a scan of nmap's top 1000 ports is refused: an open port outside them would go unseen", () => {
    const run = parseNmapXml(fixture("nmap-top1000.xml"));
    expect(run.tcpPortsScanned).toBe(1000);
    // Control: the run itself reads (its ports refused the connection, closed).
    expect(run.hosts.map((h) => [h.address, h.otherPorts])).toEqual([["127.0.0.1", "closed"]]);
    expect(() => scannedHost(run, "127.0.0.1")).toThrow(
      "the scan covered 1000 TCP ports, not all 65535 (nmap -p-)",
    );
  });

  test("an address the scan does not hold is refused", () => {
    const run = parseNmapXml(fixture("nmap-ipv4.xml"));
    expect(() => scannedHost(run, "203.0.113.26")).toThrow(
      "the scan has no result for 203.0.113.26",
    );
  });

  test("text that is no nmap run is refused", () => {
    expect(() => parseNmapXml("<html><body/></html>")).toThrow("nmap XML: no <nmaprun> element");
  });
});

describe("the expected open ports come from the firewall's rule list and the scanner's address", () => {
  test("from an address in no allow-list: the mail ports only", () => {
    expect(expectedOpenPorts(rules, 4)).toEqual(MAIL);
    expect(expectedOpenPorts(rules, 6)).toEqual(MAIL);
    expect(expectedOpenPorts(rules, 4, "203.0.113.99")).toEqual(MAIL);
  });

  test("from an address in sshAllowedIps: SSH too, on that address's family", () => {
    expect(expectedOpenPorts(rules, 4, "198.51.100.7")).toEqual([22, ...MAIL]);
    expect(expectedOpenPorts(rules, 6, "2001:db8:7:1::5")).toEqual([22, ...MAIL]);
    // The neighbour of the /32 is outside it.
    expect(expectedOpenPorts(rules, 4, "198.51.100.8")).toEqual(MAIL);
  });

  test("from the monitoring address: the exporters too, and SSH not", () => {
    expect(expectedOpenPorts(rules, 4, "198.51.100.50")).toEqual([...MAIL, 9100, 9154, 9900]);
    // Without monitoringAllowedIps no exporter runs, from anywhere.
    const none = inboundRules({ sshAllowedIps: ["198.51.100.7/32"], monitoringAllowedIps: [] });
    expect(expectedOpenPorts(none, 4, "198.51.100.50")).toEqual(MAIL);
  });

  test("SSH open to everyone (sshAllowedIps unset) is expected from anywhere", () => {
    const open = inboundRules({ sshAllowedIps: ["0.0.0.0/0", "::/0"], monitoringAllowedIps: [] });
    expect(expectedOpenPorts(open, 4)).toEqual([22, ...MAIL]);
    expect(expectedOpenPorts(open, 6)).toEqual([22, ...MAIL]);
  });

  test("a scanner address of the other family is refused", () => {
    expect(() => expectedOpenPorts(rules, 6, "198.51.100.7")).toThrow(
      "scanner address 198.51.100.7 is not IPv6",
    );
  });

  test("Pulumi.prod.yaml, seen from a hosted runner: exactly the mail ports", () => {
    const prod = parseStackFile(readFileSync(join(__dirname, "..", "Pulumi.prod.yaml"), "utf8"));
    expect(expectedOpenPorts(inboundRules(prod), 4)).toEqual(MAIL);
    expect(expectedOpenPorts(inboundRules(prod), 4, "198.51.100.9")).toEqual([22, ...MAIL]);
  });
});

describe("the port comparison", () => {
  const host = (name: string, address: string) => scannedHost(parseNmapXml(fixture(name)), address);

  test("the control: exactly the expected ports open, no regression", () => {
    const rows = comparePorts("203.0.113.25", host("nmap-ipv4.xml", "203.0.113.25"), MAIL, rules);
    expect(rows.map((r) => [r.port, r.expected, r.seen, r.problem])).toEqual(
      MAIL.map((p) => [p, "open", "open", undefined]),
    );
    expect(regressionLines(rows, [])).toEqual([]);
  });

  test("an unexpected open port and a closed mail port are each named", () => {
    const rows = comparePorts(
      "203.0.113.25",
      host("nmap-ipv4-regressions.xml", "203.0.113.25"),
      expectedOpenPorts(rules, 4),
      rules,
    );
    expect(rows.filter((r) => r.problem)).toEqual([
      {
        target: "203.0.113.25",
        port: 4190,
        expected: "open",
        seen: "filtered",
        rule: "ManageSieve",
        problem: "expected port closed",
      },
      {
        target: "203.0.113.25",
        port: 6379,
        expected: "closed",
        seen: "open",
        problem: "unexpected open port",
      },
    ]);
    expect(regressionLines(rows, [])).toEqual([
      "203.0.113.25: expected port 4190 closed (filtered; ManageSieve)",
      "203.0.113.25: unexpected open port 6379",
    ]);
    const table = formatPortTable(rows);
    expect(table).toMatch(
      /^203\.0\.113\.25 +4190 +open +filtered +FAIL: expected port closed +ManageSieve$/m,
    );
    expect(table).toMatch(
      /^203\.0\.113\.25 +6379 +closed +open +FAIL: unexpected open port +\(none\)$/m,
    );
    expect(table).toMatch(/^203\.0\.113\.25 +25 +open +open +ok +SMTP \(MX, postscreen\)$/m);
  });

  test("SSH open over IPv6 passes from an address in sshAllowedIps, and fails from one outside", () => {
    const v6 = host("nmap-ipv6.xml", "2001:db8:25::2");
    const inside = comparePorts("v6", v6, expectedOpenPorts(rules, 6, "2001:db8:7::1"), rules);
    expect(inside.filter((r) => r.problem)).toEqual([]);
    const outside = comparePorts("v6", v6, expectedOpenPorts(rules, 6), rules);
    expect(regressionLines(outside, [])).toEqual(["v6: unexpected open port 22"]);
  });
});

describe("testssl.sh's JSON", () => {
  test("the control: a server configured as the mail host is, with no finding that fails", () => {
    const findings = parseTestsslJson(fixture("testssl-host.json"));
    expect(findings.find((f) => f.id === "TLS1_2")).toMatchObject({
      ip: "mail.example.eu/127.0.0.1",
      port: "9445",
      severity: "OK",
      finding: "offered",
    });
    expect(tlsRegressions("mail:9445", findings)).toEqual([]);
  });

  test("TLS 1.0 and 1.1 offered, and every HIGH and CRITICAL finding, each by its id", () => {
    const findings = parseTestsslJson(fixture("testssl-legacy.json"));
    // testssl rates the old protocols LOW only: the audit counts them anyway.
    expect(findings.filter((f) => f.id === "TLS1" || f.id === "TLS1_1")).toEqual([
      expect.objectContaining({ id: "TLS1", severity: "LOW", finding: "offered (deprecated)" }),
      expect.objectContaining({ id: "TLS1_1", severity: "LOW", finding: "offered (deprecated)" }),
    ]);
    const found = tlsRegressions("weak:9444", findings);
    expect(found.map((g) => [g.id, g.severity, g.why])).toEqual([
      ["TLS1", "LOW", "protocol below TLS 1.2 offered"],
      ["TLS1_1", "LOW", "protocol below TLS 1.2 offered"],
      ["cipherlist_aNULL", "CRITICAL", "severity CRITICAL"],
      ["cipher_order", "HIGH", "severity HIGH"],
      ["cert_subjectAltName", "HIGH", "severity HIGH"],
      ["cert_trust", "HIGH", "severity HIGH"],
      ["cert_chain_of_trust", "CRITICAL", "severity CRITICAL"],
      ["cert_revocation", "HIGH", "severity HIGH"],
    ]);
    expect(regressionLines([], found.slice(0, 1))).toEqual([
      "weak:9444: TLS finding TLS1 (LOW): offered (deprecated)",
    ]);
    expect(formatTlsTable([{ target: "weak:9444", regressions: found }])).toMatch(
      /^weak:9444 +FAIL: cipherlist_aNULL +CRITICAL +offered \(severity CRITICAL\)$/m,
    );
  });

  test("a port testssl could not reach fails the audit (FATAL), not passes it", () => {
    const found = tlsRegressions("closed:9", parseTestsslJson(fixture("testssl-refused.json")));
    expect(found).toEqual([
      {
        target: "closed:9",
        id: "scanProblem",
        severity: "FATAL",
        finding:
          "Can't connect to '127.0.0.1:9' Make sure a firewall is not between you and your scanning target!",
        why: "testssl could not complete the scan",
      },
      {
        target: "closed:9",
        id: "protocols",
        severity: "FATAL",
        finding: "no protocol reported",
        why: "testssl tested nothing: no result for SSLv2 to TLS 1.3",
      },
    ]);
  });

  test("a file cut short, the pretty format, and an unknown severity are refused", () => {
    expect(() => parseTestsslJson(fixture("testssl-truncated.json"))).toThrow(
      /testssl JSON: not JSON .*was the scan cut short\?/,
    );
    expect(() => parseTestsslJson('{"scanResult": []}')).toThrow(
      "not an array of findings (use --jsonfile, not --jsonfile-pretty)",
    );
    expect(() =>
      parseTestsslJson('[{"id": "TLS1", "severity": "SEVERE", "finding": "offered"}]'),
    ).toThrow("finding 0 (TLS1) has unknown severity SEVERE");
    // Control: the same finding with a severity testssl writes.
    expect(parseTestsslJson('[{"id": "TLS1", "severity": "LOW", "finding": "offered"}]')).toEqual([
      { id: "TLS1", ip: "", port: "", severity: "LOW", finding: "offered" },
    ]);
  });
});

describe("the TLS targets", () => {
  test("every TLS port of every address, and the MTA-STS policy host", () => {
    const targets = tlsTargets("mail.example.eu", "example.eu", ["203.0.113.25", "2001:db8:25::2"]);
    expect(targets.map(tlsTargetName)).toEqual([
      "203.0.113.25:25 (STARTTLS smtp)",
      "203.0.113.25:465",
      "203.0.113.25:587 (STARTTLS smtp)",
      "203.0.113.25:993",
      "203.0.113.25:4190 (STARTTLS sieve)",
      "[2001:db8:25::2]:25 (STARTTLS smtp)",
      "[2001:db8:25::2]:465",
      "[2001:db8:25::2]:587 (STARTTLS smtp)",
      "[2001:db8:25::2]:993",
      "[2001:db8:25::2]:4190 (STARTTLS sieve)",
      "mta-sts.example.eu:443",
    ]);
    expect(testsslArgs(targets[0], "/tmp/x.json", "/tmp/ca.pem")).toEqual([
      "--quiet",
      "--color",
      "0",
      "--warnings",
      "off",
      "--jsonfile",
      "/tmp/x.json",
      "--starttls",
      "smtp",
      "--ip",
      "203.0.113.25",
      "--add-ca",
      "/tmp/ca.pem",
      "mail.example.eu:25",
    ]);
    expect(testsslArgs(targets[10], "/tmp/y.json").slice(-3)).toEqual([
      "--ip",
      "one",
      "mta-sts.example.eu:443",
    ]);
  });

  test("ManageSieve is tested only by a testssl.sh that speaks its STARTTLS (3.0.8 does not)", () => {
    const known = testsslStarttlsProtocols(fixture("testssl-3.0.8-help.txt"));
    expect(known).toEqual(
      "ftp smtp lmtp pop3 imap xmpp telnet ldap nntp postgres mysql".split(" "),
    );
    expect(known).not.toContain("sieve");
    expect(testsslStarttlsProtocols("protocol is <ftp|smtp|imap|sieve>")).toContain("sieve");
  });
});

describe("npm run audit: bad usage stops it before any scan (exit 2)", () => {
  const run = async (argv: string[]) => {
    let err = "";
    const code = await main(argv, { out: () => undefined, err: (t) => (err += t) });
    return { code, err };
  };

  test("without --config, with a bad address, or two scanner addresses of one family", async () => {
    // Control: --help answers and stops.
    expect(await run(["--help"])).toEqual({ code: 0, err: "" });
    expect(await run([])).toEqual({ code: 2, err: expect.stringMatching(/--config is required/) });
    expect(await run(["--config", "Pulumi.prod.yaml", "--from", "198.51.100"])).toEqual({
      code: 2,
      err: expect.stringMatching(/--from: an IPv4 or IPv6 address; got 198\.51\.100/),
    });
    expect(
      await run(["--config", "Pulumi.prod.yaml", "--from", "192.0.2.1", "--from", "192.0.2.2"]),
    ).toEqual({
      code: 2,
      err: expect.stringMatching(/one address per family; got 192\.0\.2\.1 and 192\.0\.2\.2/),
    });
    expect(await run(["--config", "no-such-file.yaml"])).toEqual({
      code: 2,
      err: expect.stringMatching(/--config no-such-file\.yaml: ENOENT/),
    });
  });
});
