// The lab platform, end to end, on real Debian VMs: first boot, the pinned SSH host key,
// DNS with DNSSEC from the stack's own record builder, and the ACME certificate.
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ed25519KeyPair } from "../../components/openssh";
import { keyDir } from "../../lab/keys";
import { challengeZone, hostRecords, zoneLine } from "../../lab/dns";
import { ACME_DIRECTORY, NS_IP4, SERVICES_IP4 } from "../../lab/settings";
import { provision } from "../../lab/lab";
import { knownHosts, ssh } from "../../lab/ssh";
import {
  HOSTS,
  acmeRoot,
  answers,
  dig,
  keys,
  local,
  onHost,
  servedChain,
  type LabHost,
} from "./support";

const tmp = mkdtempSync(join(tmpdir(), "mailstack-lab-test-"));

describe.each(HOSTS.map((h) => [h.name, h] as [string, LabHost]))("%s", (_, h) => {
  const mx = h.config.mailHost;

  describe("first boot", () => {
    test("cloud-init finished with no error and no warning", () => {
      const status = JSON.parse(onHost(h, "cloud-init status --format json"));
      expect(status.status).toBe("done");
      expect(status.errors).toEqual([]);
      expect(status.recoverable_errors ?? {}).toEqual({});
      expect(
        onHost(
          h,
          "grep -E ' (WARNING|ERROR|CRITICAL)[ :]|Traceback' /var/log/cloud-init.log || true",
        ),
      ).toBe("");
    });

    test("the host name is the MX host", () => {
      expect(onHost(h, "hostname --fqdn").trim()).toBe(mx);
    });

    test("mail lives on the attached volume, mounted on /srv/mail", () => {
      expect(onHost(h, "findmnt -n -o SOURCE,FSTYPE /srv/mail").trim()).toBe("/dev/vdb ext4");
    });

    test("the host firewall is loaded, SSH limited to the configured networks, metadata root-only", () => {
      const rules = onHost(h, "nft list table inet mailstack");
      expect(rules).toMatch(/ip saddr 198\.51\.100\.0\/24 tcp dport 22 accept/);
      expect(rules).toMatch(/ip6 saddr 2001:db8:1::\/64 tcp dport 22 accept/);
      expect(rules).toMatch(/ip daddr 169\.254\.169\.254 meta skuid != 0 reject/);
      expect(rules).toMatch(/policy drop/);
    });
  });

  describe("SSH", () => {
    test("the pinned host key is the only one the host offers", () => {
      const scan = local("ssh-keyscan", ["-T", "10", "-t", "rsa,ecdsa,ed25519", h.ipv4]);
      const offered = scan.out.split("\n").filter((l) => l.startsWith(h.ipv4));
      expect(offered).toEqual([`${h.ipv4} ${keys(h).sshHost.publicOpenssh.trim()}`]);
    });

    test("a connection expecting another host key is refused", () => {
      const wrong = knownHosts(h, ed25519KeyPair().publicOpenssh, "known_hosts_wrong");
      const res = ssh(h, keys(h), "true", { knownHostsFile: wrong });
      expect(res.status).toBe(255);
      expect(res.stderr).toMatch(/Host key verification failed/);
    });

    test("passwords are not accepted, and root cannot log in", () => {
      const pw = local("ssh", [
        "-o",
        "BatchMode=yes",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        `admin@${h.ipv4}`,
        "true",
      ]);
      expect(pw.out).toMatch(/Permission denied \(publickey\)/);
      // A person's key opens the admin account; no key opens root's.
      expect(ssh(h, keys(h), "true").status).toBe(0);
      const asRoot = local("ssh", [
        "-i",
        join(keyDir(h.name), "deploy_key"),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        `root@${h.ipv4}`,
        "true",
      ]);
      expect(asRoot.status).toBe(255);
      expect(asRoot.out).toMatch(/Permission denied/);
    });
  });

  describe("DNS", () => {
    const records = hostRecords(h, keys(h));
    const groups = new Map<string, string[]>();
    for (const r of records) {
      const rdata = zoneLine(r).split(" ").slice(4).join(" ");
      const key = `${r.name} ${r.type}`;
      groups.set(key, [...(groups.get(key) ?? []), rdata]);
    }
    const norm = (lines: string[]) => lines.map((l) => l.trim().toLowerCase()).sort();

    test.each([...groups.keys()])("knot answers %s exactly as the builder made it", (key) => {
      const [name, type] = key.split(" ");
      expect(norm(answers(NS_IP4, `${name}.`, type))).toEqual(norm(groups.get(key)!));
    });

    test("every record validates through the resolver (DNSSEC, AD flag)", () => {
      for (const key of groups.keys()) {
        const [name, type] = key.split(" ");
        const out = dig(SERVICES_IP4, `${name}.`, type, "+dnssec");
        expect([key, /;; Flags: [^;]*\bad\b/.test(out), /status: NOERROR/.test(out)]).toEqual([
          key,
          true,
          true,
        ]);
      }
    });

    test("reverse DNS of both addresses is the MX host, signed", () => {
      for (const ip of [h.ipv4, h.ipv6]) {
        const res = local("kdig", [`@${SERVICES_IP4}`, "-x", ip, "+dnssec", "+timeout=2"]);
        expect(res.out).toMatch(new RegExp(`\\sPTR\\s+${mx.replace(/\./g, "\\.")}\\.`));
        expect(res.out).toMatch(/;; Flags: [^;]*\bad\b/);
      }
    });

    test("the host resolves through the validating lab resolver", () => {
      const peer = HOSTS.find((p) => p !== h)!;
      expect(onHost(h, `getent ahostsv4 ${peer.config.mailHost}`)).toContain(peer.ipv4);
    });
  });

  describe("provisioning again", () => {
    test("changes nothing, keeps the certificate and serves it still", async () => {
      const serial = () =>
        onHost(h, "openssl x509 -in /srv/mail/.mailstack/tls/mail.crt -noout -serial");
      const before = serial();
      const log = await provision(h);
      expect(log).toContain("mailstack-provision: installed ");
      expect(log).toMatch(/installed \d+ files, 0 of them changed/);
      // Nothing changed, so no mail service was restarted.
      expect(log).not.toMatch(/ restarted/);
      expect(log).toContain(`mailstack-cert: certificate for ${mx} valid until`);
      expect(serial()).toBe(before);
    });
  });

  describe("certificate", () => {
    test("issued by ACME DNS-01 for the stable key, served on port 25, chained to the lab CA, matching TLSA", async () => {
      const onDisk = onHost(
        h,
        "openssl x509 -in /srv/mail/.mailstack/tls/mail.crt -noout -ext subjectAltName",
      );
      expect(onDisk).toContain(`DNS:${mx}`);

      const chain = servedChain(h);
      expect(chain.length).toBeGreaterThanOrEqual(2);
      const leafPem = chain[0] ?? "";
      const leaf = new X509Certificate(leafPem);
      expect(leaf.checkHost(mx)).toBe(mx);

      // The CA behind the certificate is the lab's ACME CA.
      const root = await acmeRoot();
      writeFileSync(join(tmp, `${h.name}-root.pem`), root);
      writeFileSync(join(tmp, `${h.name}-chain.pem`), chain.slice(1).join(""));
      writeFileSync(join(tmp, `${h.name}-leaf.pem`), leafPem);
      const verify = local("openssl", [
        "verify",
        "-CAfile",
        join(tmp, `${h.name}-root.pem`),
        "-untrusted",
        join(tmp, `${h.name}-chain.pem`),
        join(tmp, `${h.name}-leaf.pem`),
      ]);
      expect(verify.out.trim()).toBe(`${join(tmp, `${h.name}-leaf.pem`)}: OK`);

      // DANE: the served key is the one the TLSA record names.
      const spki = leaf.publicKey.export({ type: "spki", format: "der" });
      const digest = createHash("sha256").update(spki).digest("hex");
      expect(
        answers(SERVICES_IP4, `_25._tcp.${mx}.`, "TLSA").map((l) =>
          l.toLowerCase().replace(/\s+/g, " "),
        ),
      ).toEqual([`3 1 1 ${digest}`]);
    });

    // The narrowed path: the host's key writes only its challenge zone, and pebble validates
    // through the CNAME the mail zone holds.
    // Each dynamic update raises the zone's SOA serial by one (knot, serial-policy increment).
    const zoneSerial = (zone: string) =>
      Number(answers(NS_IP4, `${zone}.`, "SOA")[0].split(" ")[2]);
    const serial = () =>
      onHost(h, "openssl x509 -in /srv/mail/.mailstack/tls/mail.crt -noout -serial");

    test("renewal writes the challenge at the delegated name in the challenge zone, never in the mail zone", () => {
      expect(answers(SERVICES_IP4, `_acme-challenge.${mx}.`, "CNAME")).toEqual([
        `${mx}.${challengeZone(h)}.`,
      ]);
      const before = {
        challenge: zoneSerial(challengeZone(h)),
        mail: zoneSerial(h.config.domain),
      };
      const old = serial();
      // certbot's log grows by each run: this run's part begins after the lines there now.
      const certbotLog = "/var/log/mailstack-certbot/letsencrypt.log";
      const logLines = Number(onHost(h, `cat ${certbotLog} 2>/dev/null | wc -l`).trim());
      const log = onHost(h, "/usr/local/sbin/mailstack-cert --force 2>&1");
      expect(log).toContain(`challenge at ${mx}.${challengeZone(h)}, rfc2136`);
      expect(serial()).not.toBe(old);
      // Written and removed: two updates of the challenge zone, none of the mail zone. What
      // the hook said in this run stands beside the count, so a failure shows which update
      // went missing or came extra.
      const at = `at ${mx}.${challengeZone(h)} (zone ${challengeZone(h)}, rfc2136)`;
      const hook = onHost(
        h,
        `tail -n +${logLines + 1} ${certbotLog} | grep -E '^ ?mailstack-acme-hook:|knsupdate|exit code'`,
      );
      expect({
        updates: zoneSerial(challengeZone(h)) - before.challenge,
        hook: hook
          .trim()
          .split("\n")
          .map((l) => l.trim()),
      }).toEqual({
        updates: 2,
        hook: [
          `mailstack-acme-hook: wrote the challenge ${at}`,
          `mailstack-acme-hook: removed the challenge ${at}`,
        ],
      });
      expect(zoneSerial(h.config.domain)).toBe(before.mail);
      expect(answers(NS_IP4, `${mx}.${challengeZone(h)}.`, "TXT")).toEqual([]);
    });

    test("control: the host's key is refused when it writes a record in the mail zone", () => {
      const probe = `acme-probe.${h.config.domain}`;
      const script = [
        "set -u",
        'ini() { sed -n "s/^$1 *= *//p" /etc/mailstack/acme-dns.ini; }',
        `printf '%s\\n' "server ${NS_IP4}" "zone ${h.config.domain}." ` +
          `"key $(ini dns_rfc2136_algorithm):$(ini dns_rfc2136_name) $(ini dns_rfc2136_secret)" ` +
          `"update add ${probe}. 60 TXT probe" send | knsupdate -t 5 -r 0 2>&1; echo "exit $?"`,
      ].join("\n");
      const out = onHost(h, script);
      expect(out).toMatch(/status: (NOTAUTH|REFUSED|BADKEY)/);
      expect(out).toMatch(/exit [1-9]/);
      expect(answers(NS_IP4, `${probe}.`, "TXT")).toEqual([]);
    });

    test("a certificate from another ACME directory (acmeStaging switched off) is replaced at once", () => {
      const file = "/srv/mail/.mailstack/tls/mail.acme-server";
      expect(onHost(h, `cat ${file}`).trim()).toBe(ACME_DIRECTORY);
      const old = serial();
      // As if the certificate had come from the staging CA, with plenty of time left.
      onHost(h, `echo https://acme-staging-v02.api.letsencrypt.org/directory > ${file}`);
      const log = onHost(h, "/usr/local/sbin/mailstack-cert 2>&1");
      expect(log).toContain("requesting a new one");
      expect(serial()).not.toBe(old);
      expect(onHost(h, `cat ${file}`).trim()).toBe(ACME_DIRECTORY);
      // The next daily run keeps it.
      expect(onHost(h, "/usr/local/sbin/mailstack-cert 2>&1")).toContain("valid until");
    });
  });
});
