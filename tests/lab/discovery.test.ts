// What the stack's Worker serves, and the outside-in checker, against a real host: the
// checker passes every check on alpha (a fail is a defect of the stack or the checker), the
// policy served is the one the `_mta-sts` record names, and gpg finds Alice's key in the Web
// Key Directory (and finds none for Bob, who published none).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatReport } from "../../checks/check";
import type { CheckResult } from "../../checks/result";
import { fetchHttps } from "../../checks/tls";
import { mtaStsId, txtValue } from "../../components/keymath";
import { labCaPem } from "../../lab/acme";
import { challengeZone } from "../../lab/dns";
import { ALICE_OPENPGP_FINGERPRINT, SERVICES_IP4 } from "../../lab/settings";
import { HOSTS, acmeRoot, answers } from "./support";

const tmp = mkdtempSync(join(tmpdir(), "mailstack-lab-discovery-"));
const alpha = HOSTS[0];
const domain = alpha.config.domain;

/** The lab CA (the Worker's certificate) and pebble's root (the mail host's). */
async function trustFile(): Promise<string> {
  const file = join(tmp, "ca.pem");
  writeFileSync(file, labCaPem() + (await acmeRoot()));
  return file;
}

test("npm run check passes every check on alpha; its figures are printed", async () => {
  const ca = await trustFile();
  const started = Date.now();
  const run = spawnSync(
    process.execPath,
    [
      require.resolve("tsx/cli"),
      "checks/cli.ts",
      domain,
      "--resolver",
      SERVICES_IP4,
      "--ca",
      ca,
      "--json",
    ],
    { cwd: join(__dirname, "..", ".."), encoding: "utf8", timeout: 240_000 },
  );
  const seconds = (Date.now() - started) / 1000;
  expect(run.stderr).toBe("");
  const report = JSON.parse(run.stdout) as { results: CheckResult[]; seconds: number };
  console.log(
    `npm run check -- ${domain} (wall ${seconds.toFixed(1)} s, checks ${report.seconds.toFixed(1)} s):\n` +
      formatReport(report.results),
  );
  expect(report.results.filter((r) => r.status !== "pass")).toEqual([]);
  expect(run.status).toBe(0);
  // Every family of checks ran, on both addresses where the check is per address.
  const names = report.results.map((r) => r.name);
  for (const a of [alpha.ipv4, alpha.ipv6]) {
    for (const n of ["PTR", "Blocklists"]) expect(names).toContain(`${n} ${a}`);
    for (const n of ["Banner 25", "STARTTLS 25", "Old TLS 25", "ECDHE 25", "Relay 25"])
      expect(names).toContain(`${n} (${a})`);
  }
  for (const n of ["MX", "SPF", "DKIM", "DMARC", "MTA-STS record", "TLS-RPT", "DNSSEC", "CAA"])
    expect(names).toContain(n);
  for (const n of ["MTA-STS policy", "Autoconfig", "Autodiscover", "WKD"])
    expect(names).toContain(n);
  expect(names).toContain(`DANE ${alpha.config.mailHost}`);
});

test("control: the same command fails a lab domain that takes no mail", () => {
  // alpha's challenge zone: signed and served by the same resolver, with no MX.
  const zone = challengeZone(alpha);
  const run = spawnSync(
    process.execPath,
    [require.resolve("tsx/cli"), "checks/cli.ts", zone, "--resolver", SERVICES_IP4],
    { cwd: join(__dirname, "..", ".."), encoding: "utf8", timeout: 60_000 },
  );
  expect(run.status).toBe(1);
  expect(run.stdout).toContain(`FAIL  MX  no MX record for ${zone} (NOERROR)`);
});

test("the MTA-STS policy served is the one whose digest is the _mta-sts id", async () => {
  const record = answers(SERVICES_IP4, `_mta-sts.${domain}`, "TXT").map(txtValue);
  const r = await fetchHttps(`https://mta-sts.${domain}/.well-known/mta-sts.txt`, {
    ca: [labCaPem()],
    // The lab's names resolve in the lab's DNS only, which points this one here.
    address: SERVICES_IP4,
  });
  if (!r.ok) throw new Error(r.result.saw);
  const policy = r.body.toString("utf8");
  expect(policy).toBe(
    `version: STSv1\r\nmode: enforce\r\nmx: ${alpha.config.mailHost}\r\nmax_age: 604800\r\n`,
  );
  expect(record).toEqual([`v=STSv1; id=${mtaStsId(policy)}`]);
});

describe("the Web Key Directory, as gpg uses it", () => {
  /**
   * `gpg --locate-keys` in a mount namespace of its own, where the system's CA bundle also
   * holds the lab CA and /etc/resolv.conf names the lab resolver: dirmngr reads both.
   */
  function locate(address: string): { status: number | null; out: string; fingerprints: string[] } {
    const home = mkdtempSync(join(tmp, "gnupg-"));
    const bundle = join(tmp, "ca-bundle.crt");
    const system = "/etc/ssl/certs/ca-certificates.crt";
    writeFileSync(bundle, (existsSync(system) ? readFileSync(system, "utf8") : "") + labCaPem());
    const resolv = join(tmp, "resolv.conf");
    writeFileSync(resolv, `nameserver ${SERVICES_IP4}\n`);
    const script = [
      `[ -e ${system} ] || { mkdir -p /etc/ssl/certs && touch ${system}; }`,
      `mount --bind ${bundle} ${system}`,
      `mount --bind ${resolv} /etc/resolv.conf`,
      `gpg --batch --auto-key-locate clear,wkd,nodefault --locate-keys ${address}`,
      "s=$?",
      "gpg --batch --with-colons --list-keys 2>/dev/null | grep '^fpr' || true",
      "gpgconf --kill all",
      "exit $s",
    ].join("\n");
    const run = spawnSync("unshare", ["-m", "sh", "-c", script], {
      encoding: "utf8",
      env: { ...process.env, GNUPGHOME: home },
      timeout: 60_000,
    });
    const out = `${run.stdout}${run.stderr}`;
    return {
      status: run.status,
      out,
      fingerprints: [...out.matchAll(/^fpr:+([0-9A-F]{40}):/gm)].map((m) => m[1]),
    };
  }

  test("Alice's key is found by her address, the key published in users[].openpgpKey", () => {
    const r = locate(`alice@${domain}`);
    expect([r.status, r.fingerprints[0]]).toEqual([0, ALICE_OPENPGP_FINGERPRINT]);
    expect(r.out).toContain(`alice@${domain}`);
    // Minimized to the user ID of this domain: the directory of alpha says nothing of beta.
    expect(r.out).not.toContain(`alice@${HOSTS[1].config.domain}`);
  });

  test("control: Bob published no key, and gpg finds none", () => {
    const r = locate(`bob@${domain}`);
    // gpg exits 0 either way; what it says and what it stored tell.
    expect(r.out).toContain(`error retrieving 'bob@${domain}' via WKD: No data`);
    expect(r.fingerprints).toEqual([]);
  });
});
