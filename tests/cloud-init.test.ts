import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { inboundRules } from "../components/firewall";
import { hostFiles, LETS_ENCRYPT } from "../components/host-files";
import { renderCloudInit, renderNftables, type HostSpec } from "../cloud-init/render";
import { DEPLOY_KEY, MAIL_CRYPT_KEY, SSH_HOST_KEY } from "./support/keys";

const PROD: HostSpec = {
  hostname: "mail",
  fqdn: "mail.example.eu",
  deployPublicKey: DEPLOY_KEY.publicOpenssh,
  hostKey: {
    privateOpenssh: SSH_HOST_KEY.privateOpenssh,
    publicOpenssh: SSH_HOST_KEY.publicOpenssh,
  },
  volumeDevice: "/dev/disk/by-id/scsi-0HC_Volume_4242",
};
const STAGING: HostSpec = { ...PROD, fqdn: "mail.staging.example.eu" };

const tmp = mkdtempSync(join(tmpdir(), "mailstack-cloud-init-"));
const writeTmp = (name: string, text: string) => {
  const path = join(tmp, name);
  writeFileSync(path, text);
  return path;
};

describe("userData", () => {
  const text = renderCloudInit(PROD);
  const doc = parse(text);
  const file = (path: string): string => {
    const f = doc.write_files.find((w: { path: string }) => w.path === path);
    expect(f).toBeDefined();
    return f.content;
  };

  test("is byte-identical for identical input, and a #cloud-config document", () => {
    expect(renderCloudInit({ ...PROD })).toBe(text);
    expect(text.startsWith("#cloud-config\n")).toBe(true);
  });

  test("has its keys sorted, so output does not depend on code order", () => {
    const keys = Object.keys(doc);
    expect(keys).toEqual([...keys].sort());
  });

  test("stays under Hetzner's 32 KiB limit", () => {
    expect(Buffer.byteLength(text)).toBeLessThan(32 * 1024);
    expect(Buffer.byteLength(renderCloudInit(STAGING))).toBeLessThan(32 * 1024);
  });

  test("passes cloud-init's own schema validation", () => {
    for (const [name, spec] of [
      ["prod", PROD],
      ["staging", STAGING],
    ] as const) {
      const path = writeTmp(`${name}.yaml`, renderCloudInit(spec));
      const out = execFileSync("cloud-init", ["schema", "--config-file", path], {
        stdio: "pipe",
      }).toString();
      expect(out).toMatch(/Valid (cloud-config|schema)/);
    }
  });

  test("carries no private key but the SSH host key", () => {
    const blocks = text.match(/-----BEGIN [A-Z ]*PRIVATE KEY-----/g);
    expect(blocks).toEqual(["-----BEGIN OPENSSH PRIVATE KEY-----"]);
    expect(doc.ssh_keys.ed25519_private).toBe(SSH_HOST_KEY.privateOpenssh);
    // Past the common header lines, the deployment key's body must not appear anywhere.
    for (const line of DEPLOY_KEY.privateOpenssh.split("\n").slice(2, -2))
      expect(text).not.toContain(line);
    expect(text).not.toMatch(
      /^\s*-?\s*(passwd|hashed_passwd|plain_text_passwd|chpasswd|password):/m,
    );
  });

  test("pins the generated host key and makes no other", () => {
    expect(doc.ssh_keys).toEqual({
      ed25519_private: SSH_HOST_KEY.privateOpenssh,
      ed25519_public: SSH_HOST_KEY.publicOpenssh.trim(),
    });
    expect(doc.ssh_deletekeys).toBe(true);
    expect(doc.ssh_genkeytypes).toEqual(["ed25519"]);
    expect(file("/etc/ssh/sshd_config.d/90-mailstack-first-boot.conf")).toMatch(
      /^HostKey \/etc\/ssh\/ssh_host_ed25519_key$/m,
    );
  });

  test("allows key-only SSH, for the admin and deployment accounts only, never root", () => {
    expect(doc.ssh_pwauth).toBe(false);
    expect(doc.disable_root).toBe(true);
    // No key through cloud-init: each account's keys are in root's file under
    // /etc/ssh/authorized_keys, which the account cannot change.
    expect(doc.users).toEqual([
      {
        name: "admin",
        gecos: "mailstack admin",
        groups: ["adm", "sudo"],
        shell: "/bin/bash",
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        lock_passwd: true,
      },
      { name: "deploy", gecos: "mailstack deployment", shell: "/bin/sh", lock_passwd: true },
    ]);
    // The first boot's SSH settings; provisioning adds the full ones (host-files.test.ts).
    const sshd = file("/etc/ssh/sshd_config.d/90-mailstack-first-boot.conf");
    expect(sshd.split("\n").filter((l) => l && !l.startsWith("#"))).toEqual([
      "HostKey /etc/ssh/ssh_host_ed25519_key",
      "PermitRootLogin no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "AuthenticationMethods publickey",
      "AuthorizedKeysFile /etc/ssh/authorized_keys/%u",
      "AllowUsers admin deploy",
      "AllowTcpForwarding no",
      "X11Forwarding no",
    ]);
  });

  test("binds the deployment key to mailstack-deploy: no shell, no forwarding, no other command", () => {
    const entry = doc.write_files.find(
      (w: { path: string }) => w.path === "/etc/ssh/authorized_keys/deploy",
    );
    expect(entry).toEqual({
      path: "/etc/ssh/authorized_keys/deploy",
      owner: "root:root",
      permissions: "0644",
      content: `restrict,command="sudo -n /usr/local/sbin/mailstack-deploy" ${DEPLOY_KEY.publicOpenssh.trim()}\n`,
    });
    expect(file("/usr/local/sbin/mailstack-deploy")).toBe(
      readFileSync(join(__dirname, "..", "cloud-init", "files", "mailstack-deploy"), "utf8"),
    );
  });

  test("lets the deployment account run mailstack-deploy as root, and nothing else", () => {
    const rule = file("/etc/sudoers.d/mailstack-deploy");
    expect(rule.split("\n").filter((l) => l && !l.startsWith("#"))).toEqual([
      'Defaults:deploy env_keep += "SSH_ORIGINAL_COMMAND"',
      'deploy ALL=(root) NOPASSWD: /usr/local/sbin/mailstack-deploy ""',
    ]);
    expect(
      doc.write_files.find((w: { path: string }) => w.path === "/etc/sudoers.d/mailstack-deploy")
        .permissions,
    ).toBe("0440");
    // sudo's own parser accepts it (a rejected file would lock the deployment out).
    expect(() =>
      execFileSync("visudo", ["-c", "-q", "-f", writeTmp("sudoers", rule)], { stdio: "pipe" }),
    ).not.toThrow();
    expect(() =>
      execFileSync("visudo", ["-c", "-q", "-f", writeTmp("sudoers-bad", `${rule}deploy ALL=(\n`)], {
        stdio: "pipe",
      }),
    ).toThrow();
  });

  test("sets the host name to the MX host", () => {
    expect([doc.hostname, doc.fqdn]).toEqual(["mail", "mail.example.eu"]);
  });

  test("mounts the mail volume without ever formatting it", () => {
    expect(doc.mounts).toEqual([
      [
        PROD.volumeDevice,
        "/srv/mail",
        "ext4",
        "defaults,nofail,discard,x-systemd.device-timeout=60s",
        "0",
        "2",
      ],
    ]);
    expect(doc.fs_setup).toBeUndefined();
    expect(doc.disk_setup).toBeUndefined();
    expect(text).not.toMatch(/mkfs/);
    expect(doc.runcmd).toEqual([["/usr/local/sbin/mailstack-bootstrap"]]);
  });

  // Hetzner replaces the server when userData changes: nothing a running host may change
  // (packages, settings, the full SSH and firewall rules, secrets) is in it.
  test("carries no file that provisioning installs, and no package list", () => {
    const day2 = hostFiles({
      adminMfa: "off",
      clamav: true,
      adminKeys: [DEPLOY_KEY.publicOpenssh],
      firewall: inboundRules({ sshAllowedIps: ["198.51.100.7/32"], monitoringAllowedIps: [] }),
      dkimSelector: "mail",
      dkimPrivateKeyPem: "dkim",
      tlsPrivateKeyPem: "tls",
      mailCrypt: {
        privateKeyPem: MAIL_CRYPT_KEY.privatePem,
        publicKeyPem: MAIL_CRYPT_KEY.publicPem,
      },
      fqdn: PROD.fqdn,
      acme: {
        directory: LETS_ENCRYPT,
        email: "hostmaster@example.eu",
        challenge: { name: "_acme-challenge.mail.example.eu", zone: "example.eu" },
        dns: { kind: "cloudflare", apiToken: "t", zoneId: "z" },
      },
    });
    const written = doc.write_files.map((w: { path: string }) => w.path);
    const carried: string[] = doc.write_files.map((w: { content: string }) => w.content);
    expect(day2.length).toBeGreaterThan(10);
    for (const f of day2) {
      // The one shared path: the first boot's fixed SSH-only firewall, which provisioning
      // replaces with the configured one.
      if (f.path === "/etc/nftables.conf") continue;
      expect([f.path, written.includes(f.path)]).toEqual([f.path, false]);
      if (f.content.length > 200)
        expect([f.path, carried.some((c) => c.includes(f.content))]).toEqual([f.path, false]);
    }
    expect(text).not.toContain("packages.list");
  });

  test("keeps the metadata service to root", () => {
    expect(file("/etc/nftables.conf")).toContain(
      'ip daddr 169.254.169.254 meta skuid != 0 reject comment "metadata service: root only"',
    );
  });

  test("golden render: prod", () => {
    expect(text).toMatchSnapshot();
  });

  test("golden render: staging", () => {
    expect(renderCloudInit(STAGING)).toMatchSnapshot();
  });
});

describe("host firewall (nftables)", () => {
  const rules = inboundRules({
    sshAllowedIps: ["198.51.100.7/32", "2001:db8:7::/48"],
    monitoringAllowedIps: ["198.51.100.50/32"],
  });
  const conf = renderNftables(rules);

  test("drops by default and opens exactly the mail ports to all", () => {
    expect(conf).toContain("type filter hook input priority filter; policy drop;");
    const openToAll = [...conf.matchAll(/^\s+tcp dport (\d+) accept/gm)].map((m) => Number(m[1]));
    expect(openToAll).toEqual([25, 465, 587, 993, 4190]);
  });

  test("opens SSH and the exporters only to their sources", () => {
    expect(conf).toContain('ip saddr { 198.51.100.7/32 } tcp dport 22 accept comment "SSH"');
    expect(conf).toContain('ip6 saddr { 2001:db8:7::/48 } tcp dport 22 accept comment "SSH"');
    expect(conf).toContain("ip saddr { 198.51.100.50/32 } tcp dport 9100 accept");
    expect(conf).toContain("ip saddr { 198.51.100.50/32 } tcp dport 9154 accept");
    expect(conf).not.toMatch(/ip6 saddr \{[^}]*\} tcp dport 91/);
  });

  test("first boot opens SSH to all at the host (the provider firewall limits it), and no mail port", () => {
    const first = parse(renderCloudInit(PROD)).write_files.find(
      (w: { path: string }) => w.path === "/etc/nftables.conf",
    ).content;
    const accepts = first.split("\n").filter((l: string) => / accept( |$)/.test(l));
    expect(accepts.map((l: string) => l.trim())).toEqual([
      "ct state established,related accept",
      'iif "lo" accept',
      "udp sport 67 udp dport 68 accept",
      'tcp dport 22 accept comment "SSH"',
      'meta l4proto { icmp, ipv6-icmp } accept comment "ICMP"',
    ]);
    // The same protections as the configured firewall, from the first second on.
    const configured = conf.split("\n").filter((l) => / drop$|policy drop;|skuid/.test(l));
    for (const line of configured) expect(first).toContain(line);
    execFileSync("nft", ["-c", "-f", writeTmp("first-boot.nft", first)], { stdio: "pipe" });
  });

  test("drops loopback addresses arriving anywhere but lo, before lo is accepted", () => {
    const input = conf.slice(conf.indexOf("chain input"), conf.indexOf("chain forward"));
    const lines = input.split("\n").map((l) => l.trim());
    const drops = [
      'iif != "lo" ip saddr 127.0.0.0/8 drop',
      'iif != "lo" ip daddr 127.0.0.0/8 drop',
      'iif != "lo" ip6 saddr ::1 drop',
      'iif != "lo" ip6 daddr ::1 drop',
    ];
    for (const d of drops) expect(lines.indexOf(d)).toBeGreaterThan(-1);
    const loAccept = lines.indexOf('iif "lo" accept');
    expect(Math.max(...drops.map((d) => lines.indexOf(d)))).toBeLessThan(loAccept);
  });

  test("loads in nft's checker", () => {
    execFileSync("nft", ["-c", "-f", writeTmp("rules.nft", conf)], { stdio: "pipe" });
  });
});
