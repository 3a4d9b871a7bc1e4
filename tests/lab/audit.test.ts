// The outside audit's port scan (checks/audit.ts, as `npm run audit` runs it) against the lab's
// hosts: nmap on every TCP port of alpha and beta, over IPv4 and IPv6, compared with what the
// firewall's rule list (inboundRules) opens to the scan's source address. From the control
// address (SERVICES_IP4/6: inside sshAllowedIps, the lab's segment, and the only address in
// monitoringAllowedIps) SSH and the exporters answer besides the mail ports; from another
// address of the segment (LAB_CLIENT_IP4) the exporters do not, and the comparison expects
// exactly that. testssl.sh is not run here: it takes about two minutes a port even against a
// local server, so its parsing is tested on its real output in tests/audit.test.ts.
import { inboundRules } from "../../components/firewall";
import {
  comparePorts,
  expectedOpenPorts,
  formatPortTable,
  openTcpPorts,
  scanTcp,
  type NmapHost,
} from "../../checks/audit";
import { BRIDGE, LAB_CLIENT_IP4, SERVICES_IP4, SERVICES_IP6 } from "../../lab/settings";
import { HOSTS, local, type LabHost } from "./support";

const MAIL = [25, 465, 587, 993, 4190];
const EXPORTERS = [9100, 9154, 9900];
/**
 * One retry of a port that did not answer. Each scan sends some 130,000 probes in half a
 * minute at two TCG VMs on two cores, and a VM busy for a moment can drop a SYN and its retry
 * both (once, on 2001:db8:1::b port 4190): a scan whose open ports differ from the rule list's
 * is run once more, and the second one counts. A firewall that is wrong is wrong both times.
 */
const LAB_NMAP_ARGS = ["--max-retries", "1"];

interface Scan {
  host: LabHost;
  address: string;
  family: 4 | 6;
  /** The scan's source address, an address of this machine on the lab bridge. */
  source: string;
}

const [alpha, beta] = HOSTS;
const CONTROL: Scan[] = HOSTS.flatMap((host) => [
  { host, address: host.ipv4, family: 4 as const, source: SERVICES_IP4 },
  { host, address: host.ipv6, family: 6 as const, source: SERVICES_IP6 },
]);
/** beta, not alpha: the bans suite bans this address on alpha, and its jail must not see us. */
const OUTSIDER: Scan = { host: beta, address: beta.ipv4, family: 4, source: LAB_CLIENT_IP4 };

const label = (s: Scan) => `${s.host.name} ${s.address} from ${s.source}`;
const results = new Map<Scan, NmapHost | Error>();

async function scan(s: Scan): Promise<void> {
  const expected = expectedOpenPorts(inboundRules(s.host.config), s.family, s.source);
  for (let attempt = 1; attempt <= 2; attempt++) {
    const started = Date.now();
    try {
      const host = await scanTcp(s.address, {
        source: s.source,
        device: BRIDGE,
        extraArgs: LAB_NMAP_ARGS,
        timeoutMs: 5 * 60_000,
      });
      results.set(s, host);
      const open = openTcpPorts(host);
      process.stdout.write(
        `nmap -p- ${label(s)}: ${((Date.now() - started) / 1000).toFixed(1)} s, open ${open.join(" ")}\n`,
      );
      if (open.join() === expected.join()) return;
    } catch (e) {
      results.set(s, e as Error);
      return;
    }
  }
}

/** The host as nmap saw it; the scan's own error, if it failed. */
function seen(s: Scan): NmapHost {
  const r = results.get(s);
  if (r === undefined) throw new Error(`${label(s)}: not scanned`);
  if (r instanceof Error) throw r;
  return r;
}

beforeAll(async () => {
  // A second address on the lab segment, outside monitoringAllowedIps (as monitoring.test.ts).
  local("ip", ["addr", "replace", `${LAB_CLIENT_IP4}/24`, "dev", BRIDGE]);
  // The two hosts at once, each one scan at a time (--min-rate is per scan).
  const started = Date.now();
  await Promise.all([
    (async () => {
      for (const s of CONTROL.filter((c) => c.host === alpha)) await scan(s);
    })(),
    (async () => {
      for (const s of [...CONTROL.filter((c) => c.host === beta), OUTSIDER]) await scan(s);
    })(),
  ]);
  process.stdout.write(`all scans: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}, 600_000);

describe.each(CONTROL.map((s) => [label(s), s] as const))("%s", (_, s) => {
  test("the rule list expects the mail ports, SSH and the exporters", () => {
    expect(expectedOpenPorts(inboundRules(s.host.config), s.family, s.source)).toEqual([
      22,
      ...MAIL,
      ...EXPORTERS,
    ]);
  });

  test("and exactly those are open among all 65535", () => {
    const host = seen(s);
    const expected = expectedOpenPorts(inboundRules(s.host.config), s.family, s.source);
    const rows = comparePorts(s.address, host, expected, inboundRules(s.host.config));
    process.stdout.write(`${formatPortTable(rows)}\n`);
    expect(openTcpPorts(host)).toEqual([22, ...MAIL, ...EXPORTERS]);
    expect(rows.filter((r) => r.problem)).toEqual([]);
  });
});

describe(`${label(OUTSIDER)}, an address outside monitoringAllowedIps`, () => {
  test("the exporters are closed, and the comparison expects them closed", () => {
    const host = seen(OUTSIDER);
    const rules = inboundRules(beta.config);
    const expected = expectedOpenPorts(rules, 4, LAB_CLIENT_IP4);
    expect(expected).toEqual([22, ...MAIL]);
    expect(openTcpPorts(host)).toEqual([22, ...MAIL]);
    expect(comparePorts(OUTSIDER.address, host, expected, rules).filter((r) => r.problem)).toEqual(
      [],
    );
    // Control: the expectation of the control address, held against this scan, names the
    // exporters as closed: the comparison does tell the two sources apart.
    const asControl = expectedOpenPorts(rules, 4, SERVICES_IP4);
    expect(
      comparePorts(OUTSIDER.address, host, asControl, rules)
        .filter((r) => r.problem)
        .map((r) => [r.port, r.problem]),
    ).toEqual(EXPORTERS.map((p) => [p, "expected port closed"]));
  });
});
