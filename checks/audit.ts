// The outside audit (`npm run audit`): which ports of the mail host answer, by a full nmap scan,
// against exactly the ports the firewall opens to the scanner's address; and what testssl.sh
// finds on each TLS port. Parsers and comparisons are pure, so the unit tests run them on the
// tools' real output formats; the lab suite runs the same scan against its hosts.
import { spawn } from "node:child_process";
import * as ipaddr from "ipaddr.js";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import type { InboundRule } from "../components/firewall";

// ---------------------------------------------------------------------------------
// nmap
// ---------------------------------------------------------------------------------

export interface NmapPort {
  port: number;
  protocol: string;
  /** open, closed, filtered, ... as nmap says. */
  state: string;
  /** Why nmap says so: syn-ack, conn-refused, no-response. */
  reason: string;
}

export interface NmapHost {
  address: string;
  family: 4 | 6;
  /** up or down; with -Pn always up. */
  status: string;
  /** The ports nmap lists one by one. */
  ports: NmapPort[];
  /** The state of all the others (nmap's extraports), e.g. filtered, or closed/filtered. */
  otherPorts: string;
}

export interface NmapRun {
  /** The command line nmap records. */
  args: string;
  /** How many TCP ports the scan covered (scaninfo numservices): 65535 for -p-. */
  tcpPortsScanned: number;
  hosts: NmapHost[];
}

/** Every TCP port: a scan that covered fewer could miss an open one. */
export const ALL_TCP_PORTS = 65535;

/** nmap's options for the audit: no ping, connect scan, all TCP ports, XML on stdout. */
export const NMAP_ARGS = ["-Pn", "-sT", "-p-", "--min-rate", "5000", "-oX", "-"];

/** What fast-xml-parser makes of nmap's elements: attributes as plain properties. */
type Attrs = Record<string, string | undefined>;
/** A <port>: portid and protocol, and its <state> element. */
type RawPort = Record<string, string | Attrs | undefined> & { portid?: string; protocol?: string };
interface RawHost {
  address?: Attrs[];
  ports?: { port?: RawPort[]; extraports?: Attrs[] };
  status?: Attrs;
}
interface RawRun {
  args?: string;
  scaninfo?: Attrs[];
  host?: RawHost[];
  runstats?: { finished?: Attrs };
}

const asArray = <T>(v: T | T[] | undefined): T[] =>
  v === undefined ? [] : Array.isArray(v) ? v : [v];

/**
 * Reads nmap's XML output (`-oX`). Throws on text that is not well-formed XML (a scan cut
 * short leaves the document unclosed), on a document that is not an nmap run, and on a run
 * nmap itself ended with an error, naming nmap's message.
 */
export function parseNmapXml(xml: string): NmapRun {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw new Error(
      `nmap XML: not well-formed (${valid.err.msg}, line ${valid.err.line}): was the scan cut short?`,
    );
  }
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: "",
    parseAttributeValue: false,
    // nmap writes "--" in attributes as "-&#45;"; numeric references need this to decode.
    htmlEntities: true,
    isArray: (name) => ["host", "port", "address", "scaninfo", "extraports"].includes(name),
  });
  const run = (parser.parse(xml) as { nmaprun?: RawRun | string }).nmaprun;
  if (typeof run !== "object" || run === null) throw new Error("nmap XML: no <nmaprun> element");
  const finished = run.runstats?.finished;
  if (finished?.exit === "error") {
    throw new Error(`nmap ended with an error: ${finished.errormsg ?? "(no message)"}`);
  }
  if (finished === undefined) throw new Error("nmap XML: no <runstats> (the scan did not finish)");
  const tcp = asArray(run.scaninfo).find((s) => s.protocol === "tcp");
  const hosts: NmapHost[] = asArray(run.host).map((h) => {
    const addr = asArray(h.address).find((a) => a.addrtype === "ipv4" || a.addrtype === "ipv6");
    if (!addr) throw new Error("nmap XML: a <host> without an IPv4 or IPv6 address");
    return {
      address: addr.addr ?? "",
      family: addr.addrtype === "ipv6" ? 6 : 4,
      status: h.status?.state ?? "unknown",
      ports: asArray(h.ports?.port).map((p) => {
        const state = p.state as unknown as Attrs | undefined;
        return {
          port: Number(p.portid),
          protocol: p.protocol ?? "",
          state: state?.state ?? "unknown",
          reason: state?.reason ?? "",
        };
      }),
      otherPorts: [...new Set(asArray(h.ports?.extraports).map((e) => e.state ?? "unknown"))].join(
        "/",
      ),
    };
  });
  return { args: run.args ?? "", tcpPortsScanned: Number(tcp?.numservices ?? 0), hosts };
}

/** The open TCP ports of one host, sorted. */
export function openTcpPorts(host: NmapHost): number[] {
  return host.ports
    .filter((p) => p.protocol === "tcp" && p.state === "open")
    .map((p) => p.port)
    .sort((a, b) => a - b);
}

/** Runs a program; its standard output, standard error and exit status. */
export function runTool(
  cmd: string,
  args: string[],
  timeoutMs: number,
  debianPackage = cmd,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (e) =>
      reject(
        (e as NodeJS.ErrnoException).code === "ENOENT"
          ? new Error(`${cmd} is not installed (Debian: apt-get install ${debianPackage})`)
          : e,
      ),
    );
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

export interface ScanOptions {
  /** Source address of the scan (nmap -S); needs `device` too. */
  source?: string;
  /** Network device to send from (nmap -e). */
  device?: string;
  /** Further nmap options, e.g. ["--max-retries", "2"]. */
  extraArgs?: string[];
  timeoutMs?: number;
}

/** A full TCP connect scan of one address with nmap; the host as nmap saw it. */
export async function scanTcp(address: string, opts: ScanOptions = {}): Promise<NmapHost> {
  const family = ipaddr.parse(address).kind() === "ipv6" ? 6 : 4;
  const args = [
    ...NMAP_ARGS,
    ...(family === 6 ? ["-6"] : []),
    ...(opts.source ? ["-S", opts.source] : []),
    ...(opts.device ? ["-e", opts.device] : []),
    ...(opts.extraArgs ?? []),
    address,
  ];
  const res = await runTool("nmap", args, opts.timeoutMs ?? 15 * 60_000);
  try {
    return scannedHost(parseNmapXml(res.stdout), address);
  } catch (e) {
    throw new Error(
      `nmap ${args.join(" ")} (exit ${res.status}): ${(e as Error).message}\n${res.stderr}`,
    );
  }
}

/**
 * The host at `address` in a run that covered every TCP port. Throws when the run covered
 * fewer (an open port outside them would go unseen) or does not hold the address.
 */
export function scannedHost(run: NmapRun, address: string): NmapHost {
  if (run.tcpPortsScanned !== ALL_TCP_PORTS) {
    throw new Error(
      `the scan covered ${run.tcpPortsScanned} TCP ports, not all ${ALL_TCP_PORTS} (nmap -p-)`,
    );
  }
  const wanted = ipaddr.parse(address).toNormalizedString();
  const host = run.hosts.find((h) => ipaddr.parse(h.address).toNormalizedString() === wanted);
  if (!host) throw new Error(`the scan has no result for ${address}`);
  return host;
}

// ---------------------------------------------------------------------------------
// Expected ports, from the firewall's own rule list
// ---------------------------------------------------------------------------------

/** Whether `address` lies in `cidr` (false across address families). */
export function inCidr(address: string, cidr: string): boolean {
  const a = ipaddr.process(address);
  const [net, bits] = ipaddr.parseCIDR(cidr);
  if (a.kind() !== net.kind()) return false;
  return a.kind() === "ipv4"
    ? (a as ipaddr.IPv4).match(net as ipaddr.IPv4, bits)
    : (a as ipaddr.IPv6).match(net as ipaddr.IPv6, bits);
}

/**
 * The TCP ports the firewall (inboundRules, the list both the Hetzner and the host firewall
 * are built from) opens to a scan of the host's IPv4 or IPv6 address. From `scanner`, the
 * address the host sees the scan come from: a port whose sources hold it. Without one, the
 * scanner is taken to be in no allow-list: only the ports open to everyone (0.0.0.0/0, ::/0).
 */
export function expectedOpenPorts(rules: InboundRule[], family: 4 | 6, scanner?: string): number[] {
  if (scanner !== undefined && (ipaddr.process(scanner).kind() === "ipv6" ? 6 : 4) !== family) {
    throw new Error(`scanner address ${scanner} is not IPv${family}`);
  }
  const world = family === 4 ? "0.0.0.0/0" : "::/0";
  const ports = rules
    .filter((r) => r.protocol === "tcp" && r.port !== undefined)
    .filter((r) =>
      r.sources.some((s) => (scanner === undefined ? s === world : inCidr(scanner, s))),
    )
    .map((r) => r.port!);
  return [...new Set(ports)].sort((a, b) => a - b);
}

export type PortProblem = "unexpected open port" | "expected port closed";

export interface PortRow {
  target: string;
  port: number;
  expected: "open" | "closed";
  /** What nmap saw: open, or the state of the port (filtered, closed) when it was not. */
  seen: string;
  /** The rule that opens the port, when one does. */
  rule?: string;
  problem?: PortProblem;
}

/**
 * Every port that is expected open or was seen open, with nmap's state and the regression
 * it is, if any. `target` names the scanned address in the report.
 */
export function comparePorts(
  target: string,
  host: NmapHost,
  expected: number[],
  rules: InboundRule[] = [],
): PortRow[] {
  const open = new Set(openTcpPorts(host));
  const stateOf = (port: number) =>
    host.ports.find((p) => p.protocol === "tcp" && p.port === port)?.state ??
    (host.otherPorts || "not listed");
  const ports = [...new Set([...expected, ...open])].sort((a, b) => a - b);
  return ports.map((port) => {
    const want = expected.includes(port) ? "open" : "closed";
    const seen = open.has(port) ? "open" : stateOf(port);
    const rule = rules.find((r) => r.protocol === "tcp" && r.port === port)?.description;
    const problem: PortProblem | undefined =
      want === "open" && seen !== "open"
        ? "expected port closed"
        : want === "closed" && seen === "open"
          ? "unexpected open port"
          : undefined;
    return {
      target,
      port,
      expected: want,
      seen,
      ...(rule ? { rule } : {}),
      ...(problem ? { problem } : {}),
    };
  });
}

// ---------------------------------------------------------------------------------
// testssl.sh
// ---------------------------------------------------------------------------------

/** One finding of testssl.sh's flat JSON (`--jsonfile`). */
export interface TestsslFinding {
  id: string;
  /** `host/address` as testssl writes it. */
  ip: string;
  port: string;
  severity: string;
  finding: string;
  cve?: string;
  cwe?: string;
}

/** testssl.sh's severities, lowest first; FATAL and WARN are about the scan itself. */
const SEVERITIES = ["DEBUG", "INFO", "OK", "LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL"];

/**
 * Reads testssl.sh's flat JSON (`--jsonfile FILE`, or `--json`): an array of findings. Throws
 * on anything else, naming what is wrong.
 */
export function parseTestsslJson(text: string): TestsslFinding[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new Error(`testssl JSON: not JSON (${(e as Error).message}): was the scan cut short?`);
  }
  if (!Array.isArray(doc)) {
    throw new Error(
      "testssl JSON: not an array of findings (use --jsonfile, not --jsonfile-pretty)",
    );
  }
  return doc.map((f, i) => {
    const o = f as Record<string, unknown>;
    for (const key of ["id", "severity", "finding"]) {
      if (typeof o[key] !== "string") throw new Error(`testssl JSON: finding ${i} has no ${key}`);
    }
    if (!SEVERITIES.includes(o.severity as string)) {
      throw new Error(`testssl JSON: finding ${i} (${o.id}) has unknown severity ${o.severity}`);
    }
    return {
      id: o.id as string,
      ip: String(o.ip ?? ""),
      port: String(o.port ?? ""),
      severity: o.severity as string,
      finding: o.finding as string,
      ...(typeof o.cve === "string" ? { cve: o.cve } : {}),
      ...(typeof o.cwe === "string" ? { cwe: o.cwe } : {}),
    };
  });
}

/** The protocols below TLS 1.2, by testssl's ids. */
export const OLD_PROTOCOLS = ["SSLv2", "SSLv3", "TLS1", "TLS1_1"];

/** What every complete testssl run reports on: the protocols. */
const PROTOCOL_IDS = [...OLD_PROTOCOLS, "TLS1_2", "TLS1_3"];

export interface TlsRegression {
  target: string;
  id: string;
  severity: string;
  finding: string;
  why: string;
}

/**
 * The findings that fail the audit: any of severity HIGH or CRITICAL; a protocol below TLS
 * 1.2 offered (testssl rates TLS 1.0 and 1.1 LOW or INFO only); a scan testssl gave up on
 * (FATAL); and a run that reported on no protocol at all, which tested nothing.
 */
export function tlsRegressions(target: string, findings: TestsslFinding[]): TlsRegression[] {
  const out: TlsRegression[] = [];
  for (const f of findings) {
    const row = { target, id: f.id, severity: f.severity, finding: f.finding };
    if (OLD_PROTOCOLS.includes(f.id) && /^offered/.test(f.finding)) {
      out.push({ ...row, why: "protocol below TLS 1.2 offered" });
    } else if (f.severity === "HIGH" || f.severity === "CRITICAL") {
      out.push({ ...row, why: `severity ${f.severity}` });
    } else if (f.severity === "FATAL") {
      out.push({ ...row, why: "testssl could not complete the scan" });
    }
  }
  const missing = PROTOCOL_IDS.filter((id) => !findings.some((f) => f.id === id));
  if (missing.length === PROTOCOL_IDS.length) {
    out.push({
      target,
      id: "protocols",
      severity: "FATAL",
      finding: "no protocol reported",
      why: "testssl tested nothing: no result for SSLv2 to TLS 1.3",
    });
  }
  return out;
}

/** A TLS endpoint to give testssl.sh. */
export interface TlsTarget {
  /** Host name: the name the certificate must hold. */
  host: string;
  port: number;
  /** testssl's --starttls protocol, for ports that begin in plain text. */
  starttls?: "smtp" | "imap" | "sieve";
  /** Test this address instead of the host name's (testssl --ip). */
  address?: string;
}

export function tlsTargetName(t: TlsTarget): string {
  const where = t.address ? (t.address.includes(":") ? `[${t.address}]` : t.address) : t.host;
  return `${where}:${t.port}${t.starttls ? ` (STARTTLS ${t.starttls})` : ""}`;
}

/**
 * The TLS endpoints of a deployment: on the mail host 25 and 587 (STARTTLS), 465 and 993
 * (TLS), 4190 (ManageSieve, STARTTLS), and 443 of the MTA-STS policy host, which senders
 * fetch the policy from (the Worker on Cloudflare: its TLS is the zone's).
 */
export function tlsTargets(mailHost: string, domain: string, addresses: string[]): TlsTarget[] {
  const onHost: Omit<TlsTarget, "host" | "address">[] = [
    { port: 25, starttls: "smtp" },
    { port: 465 },
    { port: 587, starttls: "smtp" },
    { port: 993 },
    { port: 4190, starttls: "sieve" },
  ];
  const hostTargets = (addresses.length > 0 ? addresses : [undefined]).flatMap((address) =>
    onHost.map((t) => ({ host: mailHost, ...t, ...(address ? { address } : {}) })),
  );
  return [...hostTargets, { host: `mta-sts.${domain}`, port: 443 }];
}

/**
 * The --starttls protocols an installed testssl.sh knows, from its --help text
 * ("protocol is <ftp|smtp|...>"): 3.0 has no sieve, 3.2 has.
 */
export function testsslStarttlsProtocols(helpText: string): string[] {
  const m = helpText.match(/protocol is <([a-z0-9|-]+)>/);
  return m ? m[1].split("|") : [];
}

/** testssl.sh's arguments for one target, writing its flat JSON to `jsonFile`. */
export function testsslArgs(t: TlsTarget, jsonFile: string, caFile?: string): string[] {
  return [
    "--quiet",
    "--color",
    "0",
    "--warnings",
    "off",
    "--jsonfile",
    jsonFile,
    ...(t.starttls ? ["--starttls", t.starttls] : []),
    // The name's first address only, where no address is given (Cloudflare answers with two).
    "--ip",
    t.address ?? "one",
    ...(caFile ? ["--add-ca", caFile] : []),
    `${t.host}:${t.port}`,
  ];
}

// ---------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** The port table: one row per port expected or seen open, regressions marked FAIL. */
export function formatPortTable(rows: PortRow[]): string {
  return table(
    ["target", "port", "expected", "seen", "verdict", "rule"],
    rows.map((r) => [
      r.target,
      String(r.port),
      r.expected,
      r.seen,
      r.problem ? `FAIL: ${r.problem}` : "ok",
      r.rule ?? "(none)",
    ]),
  );
}

/** The TLS table: one row per target, its result and each failing finding after it. */
export function formatTlsTable(
  results: { target: string; regressions: TlsRegression[]; skipped?: string }[],
): string {
  const rows: string[][] = [];
  for (const r of results) {
    if (r.skipped) rows.push([r.target, "skipped", "", r.skipped]);
    else if (r.regressions.length === 0)
      rows.push([r.target, "ok", "", "no HIGH or CRITICAL finding, TLS 1.2+ only"]);
    else
      for (const g of r.regressions)
        rows.push([r.target, `FAIL: ${g.id}`, g.severity, `${g.finding} (${g.why})`]);
  }
  return table(["target", "verdict", "severity", "finding"], rows);
}

/** One line per regression, naming it, for the end of the report. */
export function regressionLines(ports: PortRow[], tls: TlsRegression[]): string[] {
  return [
    ...ports
      .filter((r) => r.problem)
      .map((r) =>
        r.problem === "unexpected open port"
          ? `${r.target}: unexpected open port ${r.port}`
          : `${r.target}: expected port ${r.port} closed (${r.seen}; ${r.rule ?? "no rule"})`,
      ),
    ...tls.map((g) => `${g.target}: TLS finding ${g.id} (${g.severity}): ${g.finding}`),
  ];
}
