// The lab's ACME CA: pebble, validating DNS-01 challenges through the lab resolver, behind
// a TLS certificate from a lab CA that the hosts are told to trust.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AcmeSettings } from "../components/host-files";
import { acmeChallengeName } from "../components/records";
import { TSIG_ALGORITHM, tsigKeyName, tsigSecret } from "./dns";
import { daemon, run, waitForPort } from "./run";
import { ACME_DIRECTORY, NETNS, NS_IP4, SERVICES_IP4, STATE_DIR, type LabHost } from "./settings";

export const ACME_DIR = join(STATE_DIR, "acme");
const caCert = join(ACME_DIR, "lab-ca.crt");

/** The lab CA that signs pebble's own HTTPS certificate. */
export function labCaPem(): string {
  return readFileSync(caCert, "utf8");
}

const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** The lab CA, made once per lab. */
function makeCa(): void {
  if (existsSync(caCert)) return;
  mkdirSync(ACME_DIR, { recursive: true });
  run(
    "openssl",
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      join(ACME_DIR, "lab-ca.key"),
      "-out",
      caCert,
      "-days",
      "30",
      "-subj",
      "/CN=mailstack lab CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    { stdio: "pipe" },
  );
}

/**
 * A server certificate from the lab CA for a lab service at SERVICES_IP4 and `dnsNames`
 * (the first is its CN): `<dir>/<name>.key` and `<dir>/<name>.crt`, made once.
 */
export function labServerCertificate(dir: string, name: string, ...dnsNames: string[]): void {
  makeCa();
  const f = (ext: string) => join(dir, `${name}.${ext}`);
  if (existsSync(f("crt"))) return;
  mkdirSync(dir, { recursive: true });
  run(
    "openssl",
    ["req", ...ec, "-keyout", f("key"), "-out", f("csr"), "-subj", `/CN=${dnsNames[0]}`],
    {
      stdio: "pipe",
    },
  );
  writeFileSync(
    f("ext"),
    `subjectAltName=IP:${SERVICES_IP4},${dnsNames.map((n) => `DNS:${n}`).join(",")}\nextendedKeyUsage=serverAuth\n`,
  );
  run(
    "openssl",
    [
      "x509",
      "-req",
      "-in",
      f("csr"),
      "-CA",
      caCert,
      "-CAkey",
      join(ACME_DIR, "lab-ca.key"),
      "-CAcreateserial",
      "-days",
      "30",
      "-extfile",
      f("ext"),
      "-out",
      f("crt"),
    ],
    { stdio: "pipe" },
  );
}

export async function startAcme(): Promise<void> {
  labServerCertificate(ACME_DIR, "pebble", "acme.lab.example");
  const config = {
    pebble: {
      listenAddress: `${SERVICES_IP4}:14000`,
      managementListenAddress: `${SERVICES_IP4}:15000`,
      certificate: join(ACME_DIR, "pebble.crt"),
      privateKey: join(ACME_DIR, "pebble.key"),
      // Only DNS-01 is used; these ports just need to be free.
      httpPort: 5002,
      tlsPort: 5001,
      ocspResponderURL: "",
      externalAccountBindingRequired: false,
    },
  };
  writeFileSync(join(ACME_DIR, "pebble.json"), JSON.stringify(config, null, 2));
  const log = join(ACME_DIR, "pebble.log");
  daemon(
    "ip",
    [
      "netns",
      "exec",
      NETNS,
      "pebble",
      "-config",
      join(ACME_DIR, "pebble.json"),
      "-dnsserver",
      `${SERVICES_IP4}:53`,
    ],
    log,
    join(ACME_DIR, "pebble.pid"),
    // No artificial delays and no injected nonce errors: the lab tests the stack, not certbot's
    // retries. No reuse of valid authorizations (pebble reuses half of them by default): every
    // issuance writes its challenge, so each one exercises the DNS path.
    { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" },
  );
  await waitForPort("pebble", SERVICES_IP4, 14000, log);
}

/**
 * What a lab host uses for ACME: pebble, with challenges written by RFC 2136 to knot, into
 * the host's challenge zone, where pebble finds them through the CNAME the mail zone holds.
 */
export function labAcme(h: LabHost): AcmeSettings {
  return {
    directory: ACME_DIRECTORY,
    email: h.config.acmeEmail,
    challenge: acmeChallengeName(h.config),
    dns: {
      kind: "rfc2136",
      server: NS_IP4,
      keyName: tsigKeyName(h),
      keySecret: tsigSecret(tsigKeyName(h)),
      algorithm: TSIG_ALGORITHM,
    },
    caCertificatePem: labCaPem(),
  };
}
