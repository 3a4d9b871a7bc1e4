import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import { hostPackages } from "../cloud-init/packages";
import { FIRST_BOOT_SSHD_CONF } from "../cloud-init/render";
import { inboundRules } from "../components/firewall";
import {
  backupFiles,
  checkMailCryptKey,
  BACKUP_PASSWORD_PATH,
  type BackupSettings,
  type HostFile,
  hostFiles,
  LETS_ENCRYPT,
  type HostFileSettings,
  renderBundle,
  shellQuote,
  provisionInput,
  PROVISION_SCRIPT,
  ADMIN_TOTP_PATH,
} from "../components/host-files";
import { MAIL_CRYPT_KEY, TLS_KEY } from "./support/keys";

describe("host files: what may change on a running host", () => {
  const SETTINGS: HostFileSettings = {
    clamav: true,
    adminKeys: [],
    adminMfa: "off",
    firewall: inboundRules({ sshAllowedIps: ["198.51.100.7/32"], monitoringAllowedIps: [] }),
    dkimSelector: "mail",
    dkimPrivateKeyPem: "dkim",
    tlsPrivateKeyPem: "tls",
    mailCrypt: { privateKeyPem: MAIL_CRYPT_KEY.privatePem, publicKeyPem: MAIL_CRYPT_KEY.publicPem },
    fqdn: "mail.example.eu",
    acme: {
      directory: LETS_ENCRYPT,
      email: "hostmaster@example.eu",
      challenge: { name: "_acme-challenge.mail.example.eu", zone: "example.eu" },
      dns: { kind: "cloudflare", apiToken: "t", zoneId: "z" },
    },
  };
  const content = (s: HostFileSettings, path: string) =>
    hostFiles(s).find((f) => f.path === path)?.content;

  test("the package list provisioning installs from: the mail packages, ClamAV only when enabled", () => {
    const list = content(SETTINGS, "/etc/mailstack/packages.list") ?? "";
    expect(list).toBe(hostPackages({ clamav: true }).join("\n") + "\n");
    for (const p of ["postfix", "dovecot-imapd", "dovecot-lmtpd", "rspamd", "redis-server"]) {
      expect(list.split("\n")).toContain(p);
    }
    // The daily report's tools: Postfix's log summary, the known vulnerabilities.
    for (const p of ["pflogsumm", "debsecan"]) expect(list.split("\n")).toContain(p);
    expect(list).toContain("clamav-daemon");
    expect(content({ ...SETTINGS, clamav: false }, "/etc/mailstack/packages.list")).not.toContain(
      "clamav",
    );
  });

  test("the full SSH settings sort before the first boot's, so they win, and name modern algorithms only", () => {
    const path = "/etc/ssh/sshd_config.d/10-mailstack.conf";
    expect([path, FIRST_BOOT_SSHD_CONF].sort()[0]).toBe(path);
    const sshd = content(SETTINGS, path) ?? "";
    for (const line of [
      "PermitRootLogin no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "AuthenticationMethods publickey",
      "AuthorizedKeysFile /etc/ssh/authorized_keys/%u",
      "LogLevel VERBOSE",
      "KexAlgorithms sntrup761x25519-sha512@openssh.com,mlkem768x25519-sha256,curve25519-sha256,curve25519-sha256@libssh.org",
      "Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com",
      "MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
    ]) {
      expect(sshd).toMatch(new RegExp(`^${line.replace(/[.+]/g, "\\$&")}$`, "m"));
    }
    // sshd adds these lines up: the first boot's file alone names the accounts and the key.
    expect(sshd).not.toMatch(/^(AllowUsers|HostKey)/m);
  });

  describe("mailstack:adminMfa: a second factor for the admin account, never the deployment", () => {
    const SSHD = "/etc/ssh/sshd_config.d/10-mailstack.conf";
    const PAM = "/etc/pam.d/mailstack-admin";
    const SECRET = "0123456789abcdef0123456789abcdef01234567";
    const matchBlock = (s: HostFileSettings) => (content(s, SSHD) ?? "").split(/^(?=Match )/m)[1];

    test("off: the key alone, and neither a PAM service nor a secret on the host", () => {
      expect(content(SETTINGS, SSHD)).not.toMatch(/^Match/m);
      expect(content(SETTINGS, ADMIN_TOTP_PATH)).toBeUndefined();
      expect(content(SETTINGS, PAM)).toBeUndefined();
    });

    test("totp: after the key, the code pam_oath checks, for the admin account alone", () => {
      const s: HostFileSettings = { ...SETTINGS, adminMfa: "totp", adminTotpSecretHex: SECRET };
      expect(matchBlock(s)).toBe(
        [
          "Match User admin",
          "  AuthenticationMethods publickey,keyboard-interactive:pam",
          "  KbdInteractiveAuthentication yes",
          "  PAMServiceName mailstack-admin",
          "",
        ].join("\n"),
      );
      // The Match block comes last: everything before it holds for both accounts.
      expect(content(s, SSHD)).toMatch(/^AuthenticationMethods publickey$/m);
      expect(hostFiles(s).find((f) => f.path === ADMIN_TOTP_PATH)).toEqual({
        path: "/etc/mailstack/admin.oath",
        mode: "0600",
        owner: "root",
        group: "root",
        content: `HOTP/T30/6 admin - ${SECRET}\n`,
      });
      const pam = (content(s, PAM) ?? "").split("\n").filter((l) => l && !l.startsWith("#"));
      expect(pam).toEqual([
        "auth     required pam_oath.so usersfile=/etc/mailstack/admin.oath window=1 digits=6",
        "account  include  sshd",
        "session  include  sshd",
        "password include  sshd",
      ]);
    });

    test("totp without a secret of 20 bytes or more is refused", () => {
      for (const adminTotpSecretHex of [undefined, "abcd", SECRET.toUpperCase()]) {
        expect(() => hostFiles({ ...SETTINGS, adminMfa: "totp", adminTotpSecretHex })).toThrow(
          "adminMfa totp needs adminTotpSecretHex: at least 20 bytes as lower-case hex",
        );
      }
    });

    test("fido2: security keys only, with their holder verified", () => {
      const s: HostFileSettings = { ...SETTINGS, adminMfa: "fido2" };
      expect(matchBlock(s)).toBe(
        [
          "Match User admin",
          "  PubkeyAcceptedAlgorithms sk-ssh-ed25519@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com",
          "  PubkeyAuthOptions touch-required verify-required",
          "",
        ].join("\n"),
      );
      expect(content(s, ADMIN_TOTP_PATH)).toBeUndefined();
    });
  });

  test("the mail_crypt key pair: the private half root's alone, both under /etc/dovecot, off the volume", () => {
    const files = hostFiles(SETTINGS).filter((f) => f.path.startsWith("/etc/dovecot/mail-crypt/"));
    expect(files).toEqual([
      {
        path: "/etc/dovecot/mail-crypt/private.pem",
        mode: "0600",
        owner: "root",
        group: "root",
        content: MAIL_CRYPT_KEY.privatePem,
      },
      {
        path: "/etc/dovecot/mail-crypt/public.pem",
        mode: "0644",
        owner: "root",
        group: "root",
        content: MAIL_CRYPT_KEY.publicPem,
      },
    ]);
    expect(MAIL_CRYPT_KEY.privatePem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  });

  test("a mail_crypt key Dovecot could not read mail back with stops the run, naming why", () => {
    const pair = {
      privateKeyPem: MAIL_CRYPT_KEY.privatePem,
      publicKeyPem: MAIL_CRYPT_KEY.publicPem,
    };
    // The control: the PKCS#8 pair passes.
    expect(() => checkMailCryptKey(pair)).not.toThrow();
    // The same key in SEC1, @pulumi/tls privateKeyPem: Dovecot 2.4.1 cannot parse it.
    expect(() =>
      hostFiles({ ...SETTINGS, mailCrypt: { ...pair, privateKeyPem: MAIL_CRYPT_KEY.sec1Pem } }),
    ).toThrow(
      'the mail_crypt key: the private key must be PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----", ' +
        '@pulumi/tls privateKeyPemPkcs8); got "-----BEGIN EC PRIVATE KEY-----"',
    );
    // Another pair's public key: mail would be written to a key nobody holds.
    expect(() =>
      hostFiles({ ...SETTINGS, mailCrypt: { ...pair, publicKeyPem: TLS_KEY.publicPem } }),
    ).toThrow("the mail_crypt key: the public key is not the private key's own");
  });
});

describe("provisioning bundle", () => {
  const file = {
    path: "/etc/mailstack/x.key",
    mode: "0640",
    owner: "root",
    group: "_rspamd",
    content: "a\nb 'c'\n",
  };

  test("one line per file, content in base64", () => {
    expect(renderBundle([file, { ...file, path: "/etc/y" }])).toBe(
      `/etc/mailstack/x.key 0640 root _rspamd ${Buffer.from(file.content).toString("base64")}\n` +
        `/etc/y 0640 root _rspamd ${Buffer.from(file.content).toString("base64")}\n`,
    );
  });

  test.each([
    [
      "a path with a space",
      { ...file, path: "/etc/my file" },
      "host file path '/etc/my file' has unsafe characters",
    ],
    [
      "an owner with a shell character",
      { ...file, owner: "root;reboot" },
      "host file owner 'root;reboot' has unsafe characters",
    ],
    [
      "a mode that is not octal",
      { ...file, mode: "0844" },
      "host file /etc/mailstack/x.key: mode '0844' is not octal",
    ],
  ])("refuses %s", (_, bad, message) => {
    expect(() => renderBundle([bad])).toThrow(message);
  });
});

describe("provisioning input", () => {
  test.each(["plain", "it's", "'", "a\nb", '$(reboot) `x` "y" \\z'])(
    "shellQuote keeps %j intact",
    (text) => {
      expect(execFileSync("bash", ["-c", `printf %s ${shellQuote(text)}`]).toString()).toBe(text);
    },
  );

  test("sends the provisioning program first, byte for byte, then the bundle", () => {
    const files = [{ path: "/etc/x", mode: "0644", owner: "root", group: "root", content: "x" }];
    const [first, ...rest] = provisionInput(files).split("\n");
    const [name, program] = first.split(" ");
    expect(name).toBe("mailstack-provision");
    expect(Buffer.from(program, "base64").toString("utf8")).toBe(PROVISION_SCRIPT);
    expect(rest.join("\n")).toBe(renderBundle(files));
  });
});

// The program the deployment key is bound to, run here as sshd would run it (as root, the
// client's request in SSH_ORIGINAL_COMMAND).
describe("mailstack-deploy", () => {
  const deploy = (request: string | undefined, input = "") => {
    const env = { ...process.env };
    delete env.SSH_ORIGINAL_COMMAND;
    if (request !== undefined) env.SSH_ORIGINAL_COMMAND = request;
    const res = spawnSync(
      "bash",
      [join(__dirname, "..", "cloud-init", "files", "mailstack-deploy")],
      {
        env,
        input,
        encoding: "utf8",
      },
    );
    return { status: res.status, stdout: res.stdout, stderr: res.stderr };
  };
  const program = (text: string) => `mailstack-provision ${Buffer.from(text).toString("base64")}\n`;

  test.each([
    undefined,
    "",
    "id",
    "bash",
    "sudo -i",
    "provision; id",
    "status && id",
    "detach id",
    "attach;id",
  ])("refuses the request %j", (request) => {
    const res = deploy(request, program("echo ran"));
    expect(res.status).toBe(2);
    expect(res.stdout).toBe("");
    expect(res.stderr).toMatch(
      /is not a deployment request \(provision, status, attach or detach\)/,
    );
  });

  test("runs the program it is given, with the rest of standard input (the control)", () => {
    const res = deploy("provision", `${program("echo ran; cat")}/etc/x 0644 root root eA==\n`);
    expect(res).toEqual({ status: 0, stdout: "ran\n/etc/x 0644 root root eA==\n", stderr: "" });
  });

  test("refuses standard input that does not start with the provisioning program", () => {
    expect(deploy("provision", "/etc/x 0644 root root eA==\n")).toMatchObject({
      status: 2,
      stdout: "",
      stderr: expect.stringMatching(/does not start with the provisioning program/),
    });
    expect(deploy("provision", "")).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/no provisioning program on standard input/),
    });
  });
});

describe("backup files", () => {
  const BACKUP: BackupSettings = {
    repository: "s3:https://0123.eu.r2.cloudflarestorage.com/mailstack-prod/mail.example.eu",
    accessKeyId: "key-id",
    secretAccessKey: "it's $(secret)",
    password: "restic-password",
    schedule: "*-*-* 03:15",
    keepDaily: 7,
    keepWeekly: 4,
    keepMonthly: 12,
  };
  const byPath = (files: HostFile[]) => Object.fromEntries(files.map((f) => [f.path, f]));

  test("with backups on: the settings, the bucket's keys and the password, root's alone", () => {
    const f = byPath(backupFiles(BACKUP));
    expect(f["/etc/mailstack/backup.conf"]).toEqual({
      path: "/etc/mailstack/backup.conf",
      mode: "0644",
      owner: "root",
      group: "root",
      content:
        "# Managed by mailstack: mailstack:backup (shell syntax).\nBACKUP_ENABLED=yes\n" +
        "RESTIC_REPOSITORY='s3:https://0123.eu.r2.cloudflarestorage.com/mailstack-prod/mail.example.eu'\n" +
        "BACKUP_SCHEDULE='*-*-* 03:15'\nBACKUP_KEEP_DAILY=7\nBACKUP_KEEP_WEEKLY=4\nBACKUP_KEEP_MONTHLY=12\n",
    });
    for (const path of ["/etc/mailstack/backup.env", BACKUP_PASSWORD_PATH]) {
      expect([f[path].mode, f[path].owner, f[path].group]).toEqual(["0600", "root", "root"]);
    }
    expect(f[BACKUP_PASSWORD_PATH].content).toBe("restic-password\n");
    // The files are read by bash: what it reads back is what the stack sent, quotes and all.
    const env = spawnSync(
      "bash",
      ["-c", 'set -a; eval "$(cat)"; printf "%s\\n" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"'],
      { input: f["/etc/mailstack/backup.env"].content, encoding: "utf8" },
    );
    expect(env.stdout).toBe("key-id\nit's $(secret)\n");
    expect(f["/etc/systemd/system/mailstack-backup.timer"].content).toMatch(
      /^OnCalendar=\*-\*-\* 03:15$/m,
    );
    for (const name of ["mailstack-backup", "mailstack-restore", "mailstack-alert"]) {
      expect(f[`/usr/local/sbin/${name}`].mode).toBe("0755");
    }
    // A failed backup or check mails postmaster.
    for (const unit of ["mailstack-backup.service", "mailstack-backup-check.service"]) {
      expect(f[`/etc/systemd/system/${unit}`].content).toMatch(
        /^OnFailure=mailstack-alert@%N\.service$/m,
      );
    }
  });

  test("with backups off: no keys, no password; the restore tool stays", () => {
    const f = byPath(backupFiles(undefined));
    expect(f["/etc/mailstack/backup.conf"].content).toMatch(/^BACKUP_ENABLED=no$/m);
    expect(f["/etc/mailstack/backup.env"]).toBeUndefined();
    expect(f[BACKUP_PASSWORD_PATH]).toBeUndefined();
    expect(f["/usr/local/sbin/mailstack-restore"]).toBeDefined();
  });

  test("a schedule of more than one line is refused (it would add lines to the timer)", () => {
    expect(() => backupFiles({ ...BACKUP, schedule: "daily\nOnBootSec=1" })).toThrow(
      "backup schedule 'daily\nOnBootSec=1' is not one line",
    );
  });
});
