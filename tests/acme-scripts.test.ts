// The host's certificate scripts, run here on real tools: mailstack-acme-hook against a
// throw-away knotd (RFC 2136, as in the lab) and a stand-in for Cloudflare's API; and
// mailstack-cert's choice to renew, with certbot replaced by a stub that records its call.
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { hostPath } from "./support/host-path";

const FILES = join(__dirname, "..", "cloud-init", "files");
const HOOK = join(FILES, "mailstack-acme-hook");
const CERT = join(FILES, "mailstack-cert");

/** Runs a script without blocking the event loop (the API stand-in answers meanwhile). */
function run(
  cmd: string,
  args: string[],
  env: Record<string, string>,
  input?: string,
): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { env: { ...process.env, PATH: hostPath(), ...env }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ status: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

function acmeConf(dir: string, api: "cloudflare" | "rfc2136", server = "https://acme.test/dir") {
  mkdirSync(join(dir, "tls"), { recursive: true });
  writeFileSync(
    join(dir, "acme.conf"),
    [
      "MAILSTACK_FQDN='mail.a.example'",
      `ACME_SERVER='${server}'`,
      "ACME_EMAIL='hostmaster@a.example'",
      "ACME_CHALLENGE_NAME='mail.a.example.a-acme.example'",
      "ACME_CHALLENGE_ZONE='a-acme.example'",
      `DNS_API=${api}`,
      "DNS_PROPAGATION_SECONDS=0",
      "",
    ].join("\n"),
  );
}

describe("mailstack-acme-hook, RFC 2136 (the lab's path) against knotd", () => {
  const dir = mkdtempSync(join(tmpdir(), "mailstack-knot-"));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const secret = randomBytes(32).toString("base64");
  let knotd: ChildProcess;
  const kdig = (name: string, type: string) =>
    execFileSync("kdig", ["@127.0.0.1", "-p", String(port), name, type, "+short", "+timeout=1"], {
      stdio: ["ignore", "pipe", "ignore"],
    }).toString();
  const soa = (z: string) =>
    `$TTL 300\n${z}. 300 IN SOA ns.lab.example. hostmaster.lab.example. 1 3600 600 86400 60\n${z}. 300 IN NS ns.lab.example.\n`;

  beforeAll(async () => {
    for (const d of ["zones", "db", "run", "etc"]) mkdirSync(join(dir, d));
    writeFileSync(
      join(dir, "zones", "a.example.zone"),
      soa("a.example") +
        "_acme-challenge.mail.a.example. 300 IN CNAME mail.a.example.a-acme.example.\n",
    );
    writeFileSync(join(dir, "zones", "a-acme.example.zone"), soa("a-acme.example"));
    // As lab/dns.ts: the host's key may update its challenge zone, the mail zone no one.
    writeFileSync(
      join(dir, "knot.conf"),
      `server:\n    rundir: "${dir}/run"\n    listen: [ 127.0.0.1@${port} ]\n` +
        `database:\n    storage: "${dir}/db"\n` +
        `key:\n  - id: acme-a\n    algorithm: hmac-sha256\n    secret: ${secret}\n` +
        `acl:\n  - id: acme-a\n    address: [ 127.0.0.0/8 ]\n    key: acme-a\n    action: update\n` +
        `template:\n  - id: default\n    storage: "${dir}/zones"\n    zonefile-sync: -1\n` +
        `zone:\n  - domain: a.example.\n  - domain: a-acme.example.\n    acl: acme-a\n`,
    );
    knotd = spawn("knotd", ["-c", join(dir, "knot.conf")], { stdio: "ignore" });
    for (let i = 0; i < 50; i++) {
      try {
        if (kdig("a-acme.example.", "SOA").includes("ns.lab.example")) break;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    acmeConf(join(dir, "etc"), "rfc2136");
    writeFileSync(
      join(dir, "etc", "acme-dns.ini"),
      `dns_rfc2136_server = 127.0.0.1\ndns_rfc2136_port = ${port}\ndns_rfc2136_name = acme-a\n` +
        `dns_rfc2136_secret = ${secret}\ndns_rfc2136_algorithm = hmac-sha256\n`,
    );
  });
  afterAll(async () => {
    // knotd writes its database as it stops: the directory goes once it has exited.
    if (knotd && knotd.exitCode === null && knotd.signalCode === null) {
      const exited = new Promise((r) => knotd.once("exit", r));
      knotd.kill();
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const env = (validation: string) => ({
    MAILSTACK_ETC: join(dir, "etc"),
    CERTBOT_VALIDATION: validation,
  });

  test("auth writes the TXT at the delegated name, cleanup removes it", async () => {
    const auth = await run(HOOK, ["auth"], env("tok_EN-1"));
    expect([auth.status, auth.stderr]).toEqual([
      0,
      "mailstack-acme-hook: wrote the challenge at mail.a.example.a-acme.example (zone a-acme.example, rfc2136)\n",
    ]);
    expect(kdig("mail.a.example.a-acme.example.", "TXT").trim()).toBe('"tok_EN-1"');
    // The mail zone keeps only its CNAME.
    expect(kdig("_acme-challenge.mail.a.example.", "TXT").trim()).toBe(
      "mail.a.example.a-acme.example.",
    );
    const cleanup = await run(HOOK, ["cleanup"], env("tok_EN-1"));
    expect(cleanup.status).toBe(0);
    expect(kdig("mail.a.example.a-acme.example.", "TXT").trim()).toBe("");
  });

  test("control: the same key is refused in the mail zone", async () => {
    const res = await run(
      "knsupdate",
      ["-t", "5", "-r", "0"],
      {},
      `server 127.0.0.1 ${port}\nzone a.example.\nkey hmac-sha256:acme-a ${secret}\n` +
        `update add probe.a.example. 60 TXT "x"\nsend\n`,
    );
    expect(res.status).not.toBe(0);
    expect(res.stdout + res.stderr).toMatch(/status: (NOTAUTH|REFUSED|BADKEY)/);
    expect(kdig("probe.a.example.", "TXT").trim()).toBe("");
  });

  test("a challenge value that is not base64url never reaches an update", async () => {
    const res = await run(HOOK, ["auth"], env('x" ; update delete a.example. SOA'));
    expect(res.status).toBe(1);
    expect(res.stderr).toContain("refusing a challenge value that is not base64url");
  });
});

describe("mailstack-acme-hook, Cloudflare's API (a stand-in on 127.0.0.1)", () => {
  const dir = mkdtempSync(join(tmpdir(), "mailstack-cf-"));
  const calls: { method: string; url: string; auth: string; body: string }[] = [];
  let succeed = true;
  let server: Server;
  let base = "";

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        calls.push({
          method: req.method!,
          url: req.url!,
          auth: String(req.headers.authorization),
          body,
        });
        res.setHeader("Content-Type", "application/json");
        res.end(
          JSON.stringify(
            succeed
              ? { success: true, result: { id: "0123456789abcdef0123456789abcdef" } }
              : {
                  success: false,
                  errors: [{ code: 9109, message: "Cannot use the access token from location" }],
                },
          ),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const addr = server.address();
    base = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/client/v4`;
    mkdirSync(join(dir, "etc"));
    acmeConf(join(dir, "etc"), "cloudflare");
    writeFileSync(
      join(dir, "etc", "acme-dns.ini"),
      "dns_cloudflare_api_token = secret-token\ndns_cloudflare_zone_id = 11111111111111111111111111111111\n",
    );
  });
  afterAll(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const env = (extra: Record<string, string> = {}) => ({
    MAILSTACK_ETC: join(dir, "etc"),
    MAILSTACK_CLOUDFLARE_API: base,
    CERTBOT_VALIDATION: "tok_EN-1",
    ...extra,
  });

  test("auth creates the TXT in the challenge zone and prints its ID; cleanup deletes that ID", async () => {
    calls.length = 0;
    const auth = await run(HOOK, ["auth"], env());
    expect([auth.status, auth.stdout]).toEqual([0, "0123456789abcdef0123456789abcdef\n"]);
    const cleanup = await run(HOOK, ["cleanup"], env({ CERTBOT_AUTH_OUTPUT: auth.stdout.trim() }));
    expect(cleanup.status).toBe(0);
    expect(calls.map(({ method, url, auth }) => [method, url, auth])).toEqual([
      [
        "POST",
        "/client/v4/zones/11111111111111111111111111111111/dns_records",
        "Bearer secret-token",
      ],
      [
        "DELETE",
        "/client/v4/zones/11111111111111111111111111111111/dns_records/0123456789abcdef0123456789abcdef",
        "Bearer secret-token",
      ],
    ]);
    expect(JSON.parse(calls[0].body)).toEqual({
      type: "TXT",
      name: "mail.a.example.a-acme.example",
      content: '"tok_EN-1"',
      ttl: 60,
      comment: "ACME challenge of mail.a.example",
    });
  });

  test("control: a refusal by Cloudflare fails the hook, with Cloudflare's reason", async () => {
    succeed = false;
    const auth = await run(HOOK, ["auth"], env());
    succeed = true;
    expect(auth.status).toBe(1);
    expect(auth.stdout).toBe("");
    expect(auth.stderr).toContain("Cannot use the access token from location");
  });
});

describe("mailstack-cert renews when the directory changed (acmeStaging true -> false)", () => {
  const dir = mkdtempSync(join(tmpdir(), "mailstack-cert-"));
  const etc = join(dir, "etc");
  const bin = join(dir, "bin");
  const key = join(etc, "tls", "mail.key");
  const crt = join(etc, "tls", "mail.crt");
  const issuer = join(etc, "tls", "mail.acme-server");
  const calls = join(dir, "certbot.calls");
  const LE = "https://acme-v02.api.letsencrypt.org/directory";
  const STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory";

  const selfSigned = (out: string, withKey = key) =>
    execFileSync("openssl", [
      "req",
      "-x509",
      "-key",
      withKey,
      "-subj",
      "/CN=mail.a.example",
      "-addext",
      "subjectAltName=DNS:mail.a.example",
      "-days",
      "90",
      "-out",
      out,
    ]);
  const serial = () =>
    execFileSync("openssl", ["x509", "-in", crt, "-noout", "-serial"]).toString().trim();

  beforeAll(() => {
    mkdirSync(bin);
    acmeConf(etc, "cloudflare", LE);
    execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
    // certbot as a stub: records its arguments, "issues" a certificate for the same key.
    writeFileSync(
      join(bin, "certbot"),
      `#!/bin/bash\nprintf '%s\\n' "$*" >>${JSON.stringify(calls)}\n` +
        `while [ $# -gt 0 ]; do [ "$1" = --fullchain-path ] && out=$2; shift; done\n` +
        `openssl req -x509 -key ${JSON.stringify(key)} -subj /CN=mail.a.example ` +
        `-addext subjectAltName=DNS:mail.a.example -days 90 -out "$out" 2>/dev/null\n`,
      { mode: 0o755 },
    );
    // No mail service runs here.
    writeFileSync(join(bin, "systemctl"), "#!/bin/sh\nexit 3\n", { mode: 0o755 });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const certEnv = () => ({
    MAILSTACK_ETC: etc,
    MAILSTACK_TLS_DIR: join(etc, "tls"),
    MAILSTACK_CERTBOT_STATE: join(dir, "state"),
    MAILSTACK_CERTBOT_LOGS: join(dir, "logs"),
    PATH: hostPath(bin),
  });
  const certbotCalls = () => {
    try {
      return readFileSync(calls, "utf8").trim().split("\n").filter(Boolean);
    } catch {
      return [];
    }
  };

  test("a valid certificate from the configured directory is kept", async () => {
    selfSigned(crt);
    writeFileSync(issuer, `${LE}\n`);
    const before = serial();
    const res = await run(CERT, [], certEnv());
    expect(res.status).toBe(0);
    expect(res.stderr).toMatch(/^mailstack-cert: certificate for mail\.a\.example valid until /);
    expect(certbotCalls()).toEqual([]);
    expect(serial()).toBe(before);
  });

  test("a valid certificate from the staging CA is replaced at once, through the hook", async () => {
    writeFileSync(issuer, `${STAGING}\n`);
    const before = serial();
    const res = await run(CERT, [], certEnv());
    expect(res.status).toBe(0);
    expect(res.stderr).toContain(
      `the certificate was not issued by ${LE} (recorded: ${STAGING}): requesting a new one`,
    );
    const [call] = certbotCalls();
    expect(call).toContain(`--server ${LE} `);
    expect(call).toContain(
      "--authenticator manual --preferred-challenges dns --manual-auth-hook /usr/local/sbin/mailstack-acme-hook auth --manual-cleanup-hook /usr/local/sbin/mailstack-acme-hook cleanup",
    );
    expect(serial()).not.toBe(before);
    expect(readFileSync(issuer, "utf8")).toBe(`${LE}\n`);
    // And the next run keeps it.
    const again = await run(CERT, [], certEnv());
    expect(again.stderr).toMatch(/valid until/);
    expect(certbotCalls()).toHaveLength(1);
  });

  test("a certificate whose directory is not recorded (an older host) is replaced once", async () => {
    rmSync(issuer);
    const res = await run(CERT, [], certEnv());
    expect(res.status).toBe(0);
    expect(res.stderr).toContain("(recorded: nothing): requesting a new one");
    expect(certbotCalls()).toHaveLength(2);
    expect(readFileSync(issuer, "utf8")).toBe(`${LE}\n`);
  });

  // Postfix and Dovecot run `mailstack-cert --check` before they start.
  test("--check passes the certificate from the configured directory, and changes nothing", async () => {
    const before = serial();
    const res = await run(CERT, ["--check"], certEnv());
    expect([res.status, res.stderr]).toEqual([0, ""]);
    expect(serial()).toBe(before);
    expect(certbotCalls()).toHaveLength(2);
  });

  test("--check refuses a certificate no ACME directory issued (a self-signed one), and asks for none", async () => {
    const real = readFileSync(crt);
    try {
      rmSync(issuer);
      selfSigned(crt);
      const res = await run(CERT, ["--check"], certEnv());
      expect(res.status).toBe(1);
      expect(res.stderr).toBe(
        "mailstack-cert: refusing to serve: the certificate was not issued by " +
          `${LE} (recorded: nothing)\n`,
      );
      expect(certbotCalls()).toHaveLength(2);
    } finally {
      writeFileSync(crt, real);
      writeFileSync(issuer, `${LE}\n`);
    }
  });

  test("--check refuses a missing certificate and one for another key", async () => {
    const real = readFileSync(crt);
    const otherKey = join(dir, "other.key");
    try {
      rmSync(crt);
      expect((await run(CERT, ["--check"], certEnv())).stderr).toBe(
        `mailstack-cert: refusing to serve: there is no certificate at ${crt}\n`,
      );
      execFileSync("openssl", [
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        otherKey,
      ]);
      selfSigned(crt, otherKey);
      const res = await run(CERT, ["--check"], certEnv());
      expect(res.status).toBe(1);
      expect(res.stderr).toBe(
        `mailstack-cert: refusing to serve: the certificate is not for the key ${key}\n`,
      );
    } finally {
      writeFileSync(crt, real);
    }
  });
});
