// The daemons' configuration tree and the tables made from the stack's users.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseConfig, type AppPasswordSpec } from "../components/config";
import {
  configFiles,
  dovecotPasswords,
  dovecotUsers,
  fillSlots,
  HOST_TREE,
  MANIFEST_EXCEPTIONS,
  postfixTables,
  relayTables,
  treePaths,
  type HostSlots,
} from "../components/host-config";
import { MAIL_CRYPT_PRIVATE_KEY_PATH, MAIL_CRYPT_PUBLIC_KEY_PATH } from "../components/host-files";
import { MINIMAL_RAW } from "./support/config";
import { blocklistQueries } from "../components/blocklists";

const SLOTS: HostSlots = {
  mailHost: "mail.example.eu",
  domain: "example.eu",
  ipv4: "203.0.113.25",
  ipv6: "2001:db8::1",
  dkimSelector: "mail",
  logRetentionDays: 14,
  postscreenDnsblSites: "zen.spamhaus.org*3",
  relayHost: "",
  relayAuth: "no",
  clamav: true,
  monitoring: "yes",
  dovecotMetricsPort: 9900,
  blocklistQueries: blocklistQueries("203.0.113.25", "2001:db8::1"),
};

describe("configuration tree", () => {
  test("mirrors the host's paths for every daemon", () => {
    expect(treePaths()).toEqual(
      expect.arrayContaining([
        "/etc/postfix/main.cf",
        "/etc/postfix/master.cf",
        "/etc/dovecot/dovecot.conf",
        "/etc/rspamd/local.d/dkim_signing.conf",
        "/etc/unbound/unbound.conf.d/mailstack.conf",
        "/etc/fail2ban/jail.d/mailstack.local",
        "/etc/systemd/journald.conf.d/mailstack.conf",
      ]),
    );
  });

  test("every file with its own owner or mode is in the tree", () => {
    expect(treePaths()).toEqual(expect.arrayContaining(Object.keys(MANIFEST_EXCEPTIONS)));
  });

  test("every slot a file names exists, and every slot is used somewhere", () => {
    const used = new Set<string>();
    for (const path of treePaths()) {
      const text = readFileSync(join(HOST_TREE, path), "utf8");
      for (const m of text.matchAll(/\{\{([A-Za-z0-9]+)\}\}/g)) used.add(m[1]);
    }
    expect([...used].sort()).toEqual(Object.keys(SLOTS).sort());
  });

  test("an unknown slot is an error naming the file, not an empty string", () => {
    expect(() => fillSlots("/etc/x.conf", "a = {{nope}}\n", SLOTS)).toThrow(
      "/etc/x.conf: unknown slot {{nope}}",
    );
    expect(fillSlots("/etc/x.conf", "a = {{domain}}\n", SLOTS)).toBe("a = example.eu\n");
  });

  test("rendered files carry the settings and no placeholder", () => {
    const files = Object.fromEntries(configFiles(SLOTS).map((f) => [f.path, f]));
    for (const f of Object.values(files)) expect(f.content).not.toMatch(/\{\{/);
    const main = files["/etc/postfix/main.cf"].content;
    expect(main).toContain("myhostname = mail.example.eu\n");
    expect(main).toContain("smtp_bind_address = 203.0.113.25\n");
    expect(main).toContain("smtp_bind_address6 = 2001:db8::1\n");
    expect(main).toContain("postscreen_dnsbl_sites = zen.spamhaus.org*3\n");
    expect(main).toContain("smtpd_tls_protocols = >=TLSv1.2\n");
    expect(main).toContain("relayhost = \n");
    const journald = files["/etc/systemd/journald.conf.d/mailstack.conf"].content;
    expect(journald).toContain("MaxRetentionSec=14day\n");
    // Retention removes archived files only: the file journald writes is archived daily.
    expect(journald).toContain("MaxFileSec=1day\n");
    expect(files["/etc/rspamd/local.d/dkim_signing.conf"].content).toContain(
      'path = "/etc/mailstack/dkim/mail.key";',
    );
    expect(files["/etc/rspamd/local.d/antivirus.conf"].content).toContain("enabled = true;");
    expect(
      configFiles({ ...SLOTS, clamav: false }).find(
        (f) => f.path === "/etc/rspamd/local.d/antivirus.conf",
      )!.content,
    ).toContain("enabled = false;");
    expect(files["/etc/dovecot/dovecot.conf"]).toMatchObject({ owner: "root", mode: "0644" });
  });

  test("metrics: Dovecot's OpenMetrics listener and the exporters run only with monitoring", () => {
    const file = (slots: HostSlots, path: string) =>
      configFiles(slots).find((f) => f.path === path)!.content;
    const stats = (conf: string) =>
      /service stats \{\s*inet_listener http \{\s*port = (\d+)/.exec(conf)?.[1];
    expect(stats(file(SLOTS, "/etc/dovecot/dovecot.conf"))).toBe("9900");
    expect(file(SLOTS, "/etc/mailstack/host.conf")).toContain("\nMONITORING=yes\n");
    const off = { ...SLOTS, monitoring: "no" as const, dovecotMetricsPort: 0 };
    expect(stats(file(off, "/etc/dovecot/dovecot.conf"))).toBe("0");
    expect(file(off, "/etc/mailstack/host.conf")).toContain("\nMONITORING=no\n");
    // The node exporter reads the textfile collector, where mailstack-metrics writes.
    expect(file(SLOTS, "/etc/default/prometheus-node-exporter")).toContain(
      "--collector.textfile.directory=/var/lib/prometheus/node-exporter",
    );
  });

  test("host.conf gives mailstack-metrics the blocklist names of the host's addresses", () => {
    const conf = configFiles(SLOTS).find((f) => f.path === "/etc/mailstack/host.conf")!.content;
    const read = spawnSync("bash", ["-c", 'eval "$(cat)"; printf "%s\\n" "$BLOCKLIST_QUERIES"'], {
      input: conf,
      encoding: "utf8",
    });
    const nibbles = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2";
    expect(read.stdout.trim().split("\n")).toEqual([
      "zen.spamhaus.org 203.0.113.25 25.113.0.203.zen.spamhaus.org",
      `zen.spamhaus.org 2001:db8::1 ${nibbles}.zen.spamhaus.org`,
      "bl.spamcop.net 203.0.113.25 25.113.0.203.bl.spamcop.net",
      "b.barracudacentral.org 203.0.113.25 25.113.0.203.b.barracudacentral.org",
      "psbl.surriel.com 203.0.113.25 25.113.0.203.psbl.surriel.com",
      "bl.mailspike.net 203.0.113.25 25.113.0.203.bl.mailspike.net",
    ]);
  });

  test("Dovecot encrypts mail at rest with the key files provisioning installs", () => {
    const conf = configFiles(SLOTS).find((f) => f.path === "/etc/dovecot/dovecot.conf")!.content;
    const settings = conf.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
    // Loaded for every mail process: LMTP delivery, IMAP APPEND, doveadm.
    const plugins = /^mail_plugins \{\n([^}]*)\}/m.exec(conf)?.[1] ?? "";
    expect(plugins.split("\n").map((l) => l.trim())).toContain("mail_crypt = yes");
    // The 2.4 names (2.3's plugin { mail_crypt_global_* } are gone), checked with doveconf -n
    // on Debian 13's 2.4.1.
    for (const line of [
      `crypt_global_public_key_file = ${MAIL_CRYPT_PUBLIC_KEY_PATH}`,
      "crypt_global_private_key main {",
      `  crypt_private_key_file = ${MAIL_CRYPT_PRIVATE_KEY_PATH}`,
      "crypt_write_algorithm = aes-256-gcm-sha256",
      "mail_never_cache_fields = body.snippet",
    ]) {
      expect(settings).toContain(line);
    }
    // Global keys only: a user key curve would switch to folder keys.
    expect(conf).not.toMatch(/^\s*crypt_user_key_curve/m);
  });
});

describe("tables from the stack's users", () => {
  const cfg = parseConfig({
    ...MINIMAL_RAW,
    users: JSON.stringify([
      { address: "alice@example.eu", aliases: ["sales@example.eu"] },
      { address: "bob@example.eu", quotaMb: 50 },
    ]),
    aliases: JSON.stringify({
      "team@example.eu": ["alice@example.eu", "bob@example.eu"],
      "all@example.eu": ["team@example.eu"],
    }),
  });

  test("mailboxes, aliases and who may send as which address", () => {
    const t = postfixTables(cfg.users, cfg.aliases);
    const body = (text: string) => text.split("\n").filter((l) => l && !l.startsWith("#"));
    expect(body(t.vmailbox)).toEqual(["alice@example.eu OK", "bob@example.eu OK"]);
    expect(body(t.virtual)).toEqual([
      "sales@example.eu alice@example.eu",
      "abuse@example.eu alice@example.eu",
      "all@example.eu team@example.eu",
      "postmaster@example.eu alice@example.eu",
      "team@example.eu alice@example.eu,bob@example.eu",
    ]);
    expect(body(t.senderLogin)).toEqual([
      "abuse@example.eu alice@example.eu",
      "alice@example.eu alice@example.eu",
      "all@example.eu alice@example.eu,bob@example.eu",
      "bob@example.eu bob@example.eu",
      "postmaster@example.eu alice@example.eu",
      "sales@example.eu alice@example.eu",
      "team@example.eu alice@example.eu,bob@example.eu",
    ]);
  });

  test("the users file: no password, and the quota only where one is set", () => {
    const text = dovecotUsers(cfg.users);
    expect(text.split("\n").filter((l) => l && !l.startsWith("#"))).toEqual([
      "alice@example.eu:::::::",
      "bob@example.eu:::::::userdb_quota_storage_size=50M",
    ]);
  });

  test("the passwords file: the main password for every protocol, each device for its own", () => {
    const users = [
      { address: "alice@example.eu", appPasswordsOnly: false, devices: [] },
      {
        address: "bob@example.eu",
        appPasswordsOnly: false,
        devices: [
          { name: "phone", protocols: ["imap", "smtp"] },
          { name: "scanner", protocols: ["smtp"] },
        ],
      },
      {
        address: "carol@example.eu",
        appPasswordsOnly: true,
        devices: [{ name: "laptop", protocols: ["imap", "smtp", "sieve"] }],
      },
    ].map(({ address, appPasswordsOnly, devices }) => ({
      address,
      aliases: [],
      appPasswords: devices as AppPasswordSpec[],
      appPasswordsOnly,
      passwordHash: `{ARGON2ID}$h-${address}`,
      appPasswordHashes: (devices as AppPasswordSpec[]).map((d) => ({
        ...d,
        hash: `{SSHA512}${d.name}`,
      })),
    }));
    expect(
      dovecotPasswords(users)
        .split("\n")
        .filter((l) => l && !l.startsWith("#")),
    ).toEqual([
      "alice@example.eu - imap,smtp,sieve {ARGON2ID}$h-alice@example.eu",
      "bob@example.eu - imap,smtp,sieve {ARGON2ID}$h-bob@example.eu",
      "bob@example.eu phone imap,smtp {SSHA512}phone",
      "bob@example.eu scanner smtp {SSHA512}scanner",
      // appPasswordsOnly: no main password line.
      "carol@example.eu laptop imap,smtp,sieve {SSHA512}laptop",
    ]);
  });

  test("relay tables: a login and a verified-TLS policy for the relay, nothing without one", () => {
    const r = relayTables({ host: "[smtp.relay.example]:587", user: "u", password: "p:w" });
    expect(r.password).toContain("\n[smtp.relay.example]:587 u:p:w\n");
    expect(r.tlsPolicy).toContain("\n[smtp.relay.example]:587 secure\n");
    const none = relayTables(undefined);
    expect(none.password.split("\n").filter((l) => l && !l.startsWith("#"))).toEqual([]);
    expect(none.tlsPolicy.split("\n").filter((l) => l && !l.startsWith("#"))).toEqual([]);
  });
});
