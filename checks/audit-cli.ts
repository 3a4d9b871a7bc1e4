// `npm run audit -- --config Pulumi.<stack>.yaml`: the deployed mail host seen from outside by
// the tools an auditor brings. nmap scans every TCP port of each of its addresses and the open
// ones must be exactly those the firewall opens to the scanner (inboundRules, from the stack's
// settings); testssl.sh scans each TLS port and no finding may be HIGH or CRITICAL, nor a
// protocol below TLS 1.2 offered. Prints a table of each, then every regression by name.
// Exit 0: as expected; 1: a regression; 2: bad usage, a tool missing, or no scan result.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { resolve4, resolve6 } from "node:dns/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as ipaddr from "ipaddr.js";
import { parseStackFile } from "../components/config";
import { inboundRules } from "../components/firewall";
import { isIpAddress } from "../components/validate";
import {
  comparePorts,
  expectedOpenPorts,
  formatPortTable,
  formatTlsTable,
  parseTestsslJson,
  regressionLines,
  runTool,
  scanTcp,
  testsslArgs,
  testsslStarttlsProtocols,
  tlsRegressions,
  tlsTargetName,
  tlsTargets,
  type PortRow,
  type TlsRegression,
} from "./audit";
import { STDIO, type Io } from "../scripts/privacy-notice";
export type { Io };

const USAGE = `usage: npm run audit -- --config Pulumi.<stack>.yaml [options]
  --config FILE     the stack's settings: the mail host (hostname.domain) and the firewall's
                    sshAllowedIps and monitoringAllowedIps, which say what must be open
  --address IP      scan this address of the mail host (repeatable); default the mail
                    host's A and AAAA records
  --from IP         the scanner's own public address, as the host sees it (repeatable, one
                    per address family): ports open to an allow-list that holds it are then
                    expected open. Default: an address in no allow-list, so only the mail
                    ports (and SSH or the exporters where they are open to everyone)
  --ipv4-only       scan the IPv4 addresses only (GitHub's hosted runners have no IPv6)
  --no-tls          the port scan only, no testssl.sh
  --ca FILE         testssl.sh also trusts the CA certificates in FILE (--add-ca)
  --nmap-arg ARG    a further nmap option (repeatable), e.g. --nmap-arg=--max-retries=2`;

/** testssl.sh takes one to three minutes a port; a few at a time keep the audit short. */
const TESTSSL_PARALLEL = 3;
const TESTSSL_TIMEOUT_MS = 15 * 60_000;

const familyOf = (ip: string): 4 | 6 => (ipaddr.parse(ip).kind() === "ipv6" ? 6 : 4);

/** Runs `fn` over `items`, at most `limit` at a time; results in the items' order. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export async function main(argv: string[], io: Io = STDIO): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: "string" },
        address: { type: "string", multiple: true },
        from: { type: "string", multiple: true },
        "ipv4-only": { type: "boolean" },
        "no-tls": { type: "boolean" },
        ca: { type: "string" },
        "nmap-arg": { type: "string", multiple: true },
        help: { type: "boolean" },
      },
    }));
  } catch (e) {
    io.err(`audit: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    io.out(`${USAGE}\n`);
    return 0;
  }
  if (values.config === undefined) {
    io.err(`audit: --config is required: the stack file, e.g. Pulumi.prod.yaml\n${USAGE}\n`);
    return 2;
  }
  for (const [flag, list] of [
    ["--address", values.address ?? []],
    ["--from", values.from ?? []],
  ] as const) {
    const bad = list.find((ip) => !isIpAddress(ip));
    if (bad !== undefined) {
      io.err(`audit: ${flag}: an IPv4 or IPv6 address; got ${bad}\n`);
      return 2;
    }
  }
  const from = new Map<4 | 6, string>();
  for (const ip of values.from ?? []) {
    if (from.has(familyOf(ip))) {
      io.err(`audit: --from: one address per family; got ${from.get(familyOf(ip))} and ${ip}\n`);
      return 2;
    }
    from.set(familyOf(ip), ip);
  }

  let cfg;
  try {
    cfg = parseStackFile(readFileSync(values.config, "utf8"));
  } catch (e) {
    io.err(`audit: --config ${values.config}: ${(e as Error).message}\n`);
    return 2;
  }
  const rules = inboundRules(cfg);

  let addresses = values.address ?? [];
  if (addresses.length === 0) {
    const found = await Promise.all(
      [resolve4, resolve6].map((f) => f(cfg.mailHost).catch(() => [] as string[])),
    );
    addresses = found.flat();
    if (addresses.length === 0) {
      io.err(`audit: ${cfg.mailHost} has no A or AAAA record: give --address\n`);
      return 2;
    }
  }
  const left = values["ipv4-only"] ? addresses.filter((a) => familyOf(a) === 6) : [];
  addresses = addresses.filter((a) => !left.includes(a));
  if (addresses.length === 0) {
    io.err(`audit: no IPv4 address of ${cfg.mailHost} to scan\n`);
    return 2;
  }

  io.out(`audit of ${cfg.mailHost} (${addresses.join(", ")}), settings from ${values.config}\n`);
  for (const ip of left) io.out(`warning: ${ip} not scanned (--ipv4-only)\n`);
  for (const family of [4, 6] as const) {
    if (!addresses.some((a) => familyOf(a) === family)) continue;
    const scanner = from.get(family);
    io.out(
      `IPv${family} scanner: ${scanner ?? "an address in no allow-list"}; expected open: ${expectedOpenPorts(rules, family, scanner).join(", ")}\n`,
    );
  }

  // Ports: one full scan per address, one address at a time (--min-rate is per scan).
  const portRows: PortRow[] = [];
  for (const address of addresses) {
    const family = familyOf(address);
    let host;
    try {
      host = await scanTcp(address, { extraArgs: values["nmap-arg"] });
    } catch (e) {
      io.err(`audit: ${(e as Error).message}\n`);
      return 2;
    }
    portRows.push(
      ...comparePorts(address, host, expectedOpenPorts(rules, family, from.get(family)), rules),
    );
  }
  io.out(`\nopen TCP ports (nmap, all 65535):\n${formatPortTable(portRows)}\n`);

  // TLS: testssl.sh on every TLS port of every address scanned, and the MTA-STS host.
  const tlsFound: TlsRegression[] = [];
  if (!values["no-tls"]) {
    let help;
    try {
      help = await runTool("testssl", ["--help"], 60_000, "testssl.sh");
    } catch (e) {
      io.err(`audit: ${(e as Error).message}\n`);
      return 2;
    }
    const starttls = testsslStarttlsProtocols(`${help.stdout}${help.stderr}`);
    const targets = tlsTargets(cfg.mailHost, cfg.domain, addresses);
    const dir = mkdtempSync(join(tmpdir(), "mailstack-audit-"));
    try {
      const results = await pool(targets, TESTSSL_PARALLEL, async (t) => {
        const target = tlsTargetName(t);
        if (t.starttls && !starttls.includes(t.starttls)) {
          return {
            target,
            regressions: [],
            skipped: `this testssl.sh has no --starttls ${t.starttls} (3.2 has)`,
          };
        }
        const file = join(dir, `${target.replace(/[^A-Za-z0-9.-]+/g, "_")}.json`);
        const res = await runTool(
          "testssl",
          testsslArgs(t, file, values.ca),
          TESTSSL_TIMEOUT_MS,
          "testssl.sh",
        );
        let regressions: TlsRegression[];
        try {
          regressions = tlsRegressions(target, parseTestsslJson(readFileSync(file, "utf8")));
        } catch (e) {
          const tail = `${res.stdout}${res.stderr}`.trim().split("\n").slice(-5).join("\n");
          regressions = [
            {
              target,
              id: "testssl",
              severity: "FATAL",
              finding: `no result (exit ${res.status}): ${(e as Error).message}`,
              why: tail,
            },
          ];
        }
        return { target, regressions };
      });
      for (const r of results) tlsFound.push(...r.regressions);
      io.out(`\nTLS (testssl.sh):\n${formatTlsTable(results)}\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const lines = regressionLines(portRows, tlsFound);
  if (lines.length === 0) {
    io.out("\nno regression\n");
    return 0;
  }
  io.out(`\n${lines.length} regression${lines.length === 1 ? "" : "s"}:\n`);
  for (const l of lines) io.out(`  ${l}\n`);
  return 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (e) => {
      console.error(e);
      process.exitCode = 2;
    },
  );
}
