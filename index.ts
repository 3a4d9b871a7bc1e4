// mailstack: one domain and a handful of settings in, a secure mail server out.
import * as pulumi from "@pulumi/pulumi";
import { readConfig, readSecrets } from "./components/stack-config";
import { MailStack } from "./components/mailstack";
import { readOpenPgpKeys } from "./components/openpgp";

// An async program: the zone is read for SPF and DMARC records the stack would duplicate, and
// the users' OpenPGP keys are checked, before any resource is registered, so a bad config, a
// foreign record or an unusable key stops the run with nothing changed. What it returns are the stack's outputs.
export = async () => {
  const config = readConfig();
  await MailStack.checkZone("mailstack", config);
  const openpgpKeys = await readOpenPgpKeys(config.users);
  const stack = new MailStack("mailstack", { config, ...readSecrets(), openpgpKeys });
  return {
    mailHost: stack.mailHost,
    ipv4: stack.ipv4,
    ipv6: stack.ipv6,
    dnsRecords: stack.dnsRecords,
    dkimSelector: stack.dkimSelector,
    clientSettings: stack.clientSettings,
    userPasswords: pulumi.secret(stack.userPasswords),
    userAppPasswords: pulumi.secret(stack.userAppPasswords),
    rspamdControllerPassword: pulumi.secret(stack.rspamdControllerPassword),
    // With adminMfa totp: the otpauth:// URI of the admin account's second factor.
    adminTotpUri: stack.adminTotpUri && pulumi.secret(stack.adminTotpUri),
    monthlyCostEur: stack.monthlyCostEur,
    dnssecDs: stack.dnssecDs,
    // Unset without backups. The password is the one key to the snapshots: kept in the
    // stack's state and exported, so it outlives the host (docs/backup.md).
    backupBucket: stack.backupBucket,
    backupRepository: stack.backupRepository,
    backupPassword: stack.backupPassword && pulumi.secret(stack.backupPassword),
  };
};
