// A stack's run reads its `mailstack:` settings here, the contract's keys only (CONFIG_KEYS),
// and hands them to parseConfig; secrets stay Pulumi secrets.
import * as pulumi from "@pulumi/pulumi";
import {
  CONFIG_KEYS,
  parseConfig,
  secretStandIn,
  type MailStackConfig,
  type MailStackSecrets,
} from "./config";

/** Reads the `mailstack:` namespace of the current stack and validates it. */
export function readConfig(): MailStackConfig {
  const config = new pulumi.Config("mailstack");
  const all = pulumi.runtime.allConfig();
  const set = Object.keys(all)
    .filter((k) => k.startsWith("mailstack:"))
    .map((k) => k.slice("mailstack:".length));
  const raw: Record<string, unknown> = {};
  for (const [key, kind] of Object.entries(CONFIG_KEYS)) {
    // A secret is only checked for presence and for being one line (or a key) here; its
    // value is read by readSecrets and never reaches parseConfig.
    if (kind !== "secret") raw[key] = config.get(key);
    else if (set.includes(key)) raw[key] = secretStandIn(key, all[`mailstack:${key}`]);
  }
  return parseConfig(
    raw,
    set.filter((k) => !(k in CONFIG_KEYS)),
  );
}

/** The contract's secrets, as secret Outputs. Call after readConfig has validated them. */
export function readSecrets(): MailStackSecrets {
  const config = new pulumi.Config("mailstack");
  const relayPassword = config.getSecret("relayPassword");
  const acmeDnsToken = config.getSecret("acmeDnsToken");
  const sshProxyPrivateKey = config.getSecret("sshProxyPrivateKey");
  const backupAccessKeyId = config.getSecret("backupAccessKeyId");
  const backupSecretAccessKey = config.getSecret("backupSecretAccessKey");
  return {
    ...(acmeDnsToken !== undefined ? { acmeDnsToken } : {}),
    ...(relayPassword !== undefined ? { relayPassword } : {}),
    ...(sshProxyPrivateKey !== undefined ? { sshProxyPrivateKey } : {}),
    ...(backupAccessKeyId !== undefined ? { backupAccessKeyId } : {}),
    ...(backupSecretAccessKey !== undefined ? { backupSecretAccessKey } : {}),
  };
}
