// A second factor for people (mailstack:adminMfa) on a real host: with totp, the admin
// account wants a code from the authenticator app after the key, and the deployment key keeps
// working alone; with fido2, only FIDO2 security keys that verify their holder open it. No
// FIDO2 device can be emulated here: for fido2 the test proves sshd's settings, and that a
// plain key is refused.
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adminTotp } from "../../components/admin-mfa";
import { deployStatus, labAdminTotpSecret, labHostFilesOf, provisionWith } from "../../lab/lab";
import { keyDir } from "../../lab/keys";
import type { LabHost } from "../../lab/settings";
import { ssh, type SshResult } from "../../lab/ssh";
import { SK_KEY } from "../support/config";
import { HOSTS, keys, onHost } from "./support";

// totp on alpha and fido2 on beta, at the same time: each turn is a provisioning.
const [alpha, beta] = HOSTS;
const dir = mkdtempSync(join(tmpdir(), "mailstack-mfa-"));

/** ssh as admin with the lab's admin key; keyboard-interactive prompts are answered `answer`. */
function adminLogin(h: LabHost, command: string, answer?: string, keyFile?: string): SshResult {
  const askpass = join(dir, "askpass");
  writeFileSync(askpass, `#!/bin/sh\necho '${answer ?? ""}'\n`);
  chmodSync(askpass, 0o700);
  return ssh(h, keys(h), command, {
    ...(keyFile ? { keyFile } : {}),
    // BatchMode would skip keyboard-interactive: the prompt is answered by askpass instead.
    options: answer === undefined ? [] : ["BatchMode=no", "NumberOfPasswordPrompts=1"],
    env: { SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: "" },
  });
}

/** Provisions the host as its stack would with this adminMfa (and these extra people's keys). */
async function provisionAdminMfa(
  h: LabHost,
  adminMfa: "off" | "totp" | "fido2",
  extraKeys: string[] = [],
) {
  const files = await labHostFilesOf(h, {
    adminMfa,
    sshPublicKeys: [keys(h).admin.publicOpenssh.trim(), ...extraKeys],
  });
  const res = await provisionWith(h, files);
  if (res.status !== 0)
    throw new Error(`${h.name}: provisioning failed:\n${res.stdout}${res.stderr}`);
}

// The settings sshd applies to each account, as it would for a login from the lab.
const SSHD_T = (user: string) =>
  `sudo -n sshd -T -C user=${user},host=lab,addr=198.51.100.1 | ` +
  "grep -E '^(authenticationmethods|kbdinteractiveauthentication|pamservicename|pubkeyauthoptions) '";

const since = Math.floor(Date.now() / 1000);

beforeAll(async () => {
  await Promise.all([provisionAdminMfa(alpha, "totp"), provisionAdminMfa(beta, "fido2", [SK_KEY])]);
}, 600_000);

describe("mailstack:adminMfa totp (alpha)", () => {
  const totp = adminTotp(alpha.config.mailHost, labAdminTotpSecret(alpha));
  // A code from the same secret, far outside the window of steps accepted.
  const wrongCode = () => totp.generate({ timestamp: Date.now() + 10 * 60_000 });
  let code = "";

  test("the key alone no longer opens the admin account", () => {
    const res = adminLogin(alpha, "id -un");
    expect(res.status).toBe(255);
    expect(res.stderr).toMatch(/Permission denied \(keyboard-interactive\)/);
  });

  test("the key with a wrong code is refused", () => {
    const res = adminLogin(alpha, "id -un", wrongCode());
    expect(res.status).toBe(255);
    expect(res.stdout).toBe("");
  });

  test("a right code without the key opens nothing: the key comes first", () => {
    const deployKey = join(keyDir(alpha.name), "deploy_key");
    const res = adminLogin(alpha, "id -un", totp.generate(), deployKey);
    expect(res.status).toBe(255);
    expect(res.stderr).toMatch(/Permission denied \(publickey\)/);
  });

  test("the key with the authenticator's code admits, with sudo (the control)", () => {
    code = totp.generate();
    const res = adminLogin(
      alpha,
      [
        "id -un",
        SSHD_T("admin"),
        SSHD_T("deploy"),
        "sudo -n stat -c '%U:%G %a' /etc/mailstack/admin.oath",
      ].join("; echo --; "),
      code,
    );
    expect(res.stderr).toBe("");
    const [who, admin, deploy, secretFile] = res.stdout.split("--\n");
    const sorted = (text: string) => text.trim().split("\n").sort();
    expect(who).toBe("admin\n");
    expect(sorted(admin)).toEqual([
      "authenticationmethods publickey,keyboard-interactive:pam",
      "kbdinteractiveauthentication yes",
      "pamservicename mailstack-admin",
      "pubkeyauthoptions none",
    ]);
    expect(sorted(deploy)).toEqual([
      "authenticationmethods publickey",
      "kbdinteractiveauthentication no",
      "pamservicename sshd",
      "pubkeyauthoptions none",
    ]);
    // pam_oath wrote down the code it accepted; the secret stays root's alone.
    expect(secretFile).toBe("root:root 600\n");
  });

  test("a code works once: the same code again is refused", () => {
    expect(code).not.toBe("");
    expect(adminLogin(alpha, "id -un", code).status).toBe(255);
  });

  test("the deployment's key keeps working alone", async () => {
    const res = await deployStatus(alpha);
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/^status: done$/m);
  });
});

describe("mailstack:adminMfa fido2 (beta; sshd's settings: no FIDO2 device can be emulated here)", () => {
  test("a plain key is refused even though it is listed", () => {
    const res = adminLogin(beta, "id -un");
    expect(res.status).toBe(255);
    expect(res.stderr).toMatch(/Permission denied \(publickey\)/);
  });

  test("the deployment's key keeps working alone (the control)", async () => {
    expect((await deployStatus(beta)).status).toBe(0);
  });
});

describe("turned off again", () => {
  beforeAll(async () => {
    await Promise.all([provisionAdminMfa(alpha, "off"), provisionAdminMfa(beta, "off")]);
  }, 600_000);

  test("the key alone opens the admin account again (the control)", () => {
    expect(adminLogin(alpha, "id -un").stdout).toBe("admin\n");
    expect(adminLogin(beta, "id -un").stdout).toBe("admin\n");
  });

  test("with fido2, sshd refused the plain key for its type, the holder to be verified", () => {
    const log = onHost(beta, `journalctl -q -o cat -u ssh --since @${since}`);
    expect(log).toMatch(/ssh-ed25519 not in PubkeyAcceptedAlgorithms/);
  });
});
