import { DEPLOY_KEY } from "./keys";

/** A valid admin key for tests (the public half of a test-only key). */
export const ADMIN_KEY = DEPLOY_KEY.publicOpenssh.trim() + " alice@laptop";
/** A FIDO2 security key's public line (ssh-keygen -t ed25519-sk), for adminMfa fido2. */
export const SK_KEY =
  "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAILYkP5nfo8TUoE7azXOCsPuzF0DhCIpd6MPGDlgdmj4KAAAABHNzaDo= bob@yubikey";

/** The smallest valid config, as Pulumi would hand it over (strings). */
export const MINIMAL_RAW: Record<string, unknown> = {
  domain: "example.eu",
  cloudflareZoneId: "0123456789abcdef0123456789abcdef",
  // Backups are on by default, in an R2 bucket of this account.
  cloudflareAccountId: "00112233445566778899aabbccddeeff",
  sshPublicKeys: JSON.stringify([ADMIN_KEY]),
  users: JSON.stringify([{ address: "alice@example.eu" }]),
  acmeEmail: "hostmaster@example.eu",
  acmeDnsToken: "cloudflare-dns-token-for-tests",
};

/** A production stack with most keys set, mirroring Pulumi.prod.yaml. */
export const PROD_RAW: Record<string, unknown> = {
  ...MINIMAL_RAW,
  cloudflareAccountId: "fedcba9876543210fedcba9876543210",
  location: "nbg1",
  sshAllowedIps: JSON.stringify(["198.51.100.7/32", "2001:db8:7::/48"]),
  users: JSON.stringify([
    {
      address: "alice@example.eu",
      aliases: ["a.smith@example.eu"],
      quotaMb: 10240,
      appPasswords: ["phone", "laptop"],
      appPasswordsOnly: true,
    },
    {
      address: "bob@example.eu",
      appPasswords: ["phone", { name: "scanner", protocols: ["smtp"] }],
    },
  ]),
  aliases: JSON.stringify({ "team@example.eu": ["alice@example.eu", "bob@example.eu"] }),
  monitoringAllowedIps: JSON.stringify(["198.51.100.50/32"]),
  adminMfa: "totp",
};

/** A throw-away staging stack, mirroring Pulumi.staging.yaml. */
export const STAGING_RAW: Record<string, unknown> = {
  ...MINIMAL_RAW,
  domain: "staging.example.eu",
  users: JSON.stringify([{ address: "test@staging.example.eu" }]),
  acmeStaging: "true",
  protect: "false",
  dnssec: "false",
  mtaStsMode: "testing",
  dmarcPolicy: "quarantine",
  clamav: "false",
  volumeSizeGb: "10",
  // Throw-away stacks keep no backups (Pulumi.staging.yaml).
  backup: JSON.stringify({ enabled: false }),
};
