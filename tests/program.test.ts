// index.ts as Pulumi runs it: config read from the stack, one MailStack, the contract's
// outputs. Under mocks, with the config set the way `pulumi config set` stores it.
import * as pulumi from "@pulumi/pulumi";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../components/config";
import main from "../index";
import { PROD_RAW } from "./support/config";
import { BASTION_HOST_KEY, JUMP_KEY } from "./support/keys";
import { created, installMocks, secretInput, settle, value } from "./support/mocks";

function setStackConfig(raw: Record<string, unknown>): void {
  pulumi.runtime.setAllConfig(
    Object.fromEntries(Object.entries(raw).map(([k, v]) => [`mailstack:${k}`, String(v)])),
    ["mailstack:acmeDnsToken"],
  );
}

/** Runs index.ts as Pulumi does: awaits the function it exports. */
async function loadProgram(): Promise<Record<string, any>> {
  return main();
}

beforeAll(() => installMocks("prod"));

test("a bad setting stops the program before any resource is created", async () => {
  setStackConfig({ ...PROD_RAW, location: "us-east", volumeSizeGb: "5" });
  const before = created.length;
  let error: unknown;
  try {
    await loadProgram();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as ConfigError).problems).toEqual([
    'mailstack:location: must be one of fsn1, nbg1, hel1; got "us-east"',
    "mailstack:volumeSizeGb: must be at least 10 (Hetzner's minimum); got 5",
  ]);
  expect(created.length).toBe(before);
});

test("an OpenPGP key that does not belong to its user stops the program before any resource", async () => {
  // A real public key, whose user IDs are alice@alpha.example and alice@beta.example.
  const key = readFileSync(join(__dirname, "..", "lab", "openpgp", "alice.asc"), "utf8");
  setStackConfig({
    ...PROD_RAW,
    users: JSON.stringify([
      { address: "alice@example.eu", openpgpKey: key },
      { address: "bob@example.eu" },
    ]),
  });
  const before = created.length;
  await expect(loadProgram()).rejects.toThrow(
    /mailstack:users\[0\]\.openpgpKey: must have a user ID with the address alice@example\.eu/,
  );
  expect(created.length).toBe(before);
});

test("a misspelt key is refused instead of silently ignored", async () => {
  pulumi.runtime.setAllConfig({ "mailstack:dmarcPolicyy": "none" });
  await expect(loadProgram()).rejects.toThrow(/mailstack:dmarcPolicyy: is not a known setting/);
});

describe("a valid stack", () => {
  let program: Record<string, any>;

  beforeAll(async () => {
    // The misspelt key from the previous test stays in the runtime's config: drop it.
    const all = pulumi.runtime.allConfig();
    delete all["mailstack:dmarcPolicyy"];
    jest.spyOn(pulumi.runtime, "allConfig").mockReturnValue(all);
    setStackConfig({ ...PROD_RAW, location: "nbg1", volumeSizeGb: "20" });
    program = await loadProgram();
    await settle();
  });

  test("exports every output of the contract", () => {
    for (const key of [
      "mailHost",
      "ipv4",
      "ipv6",
      "dnsRecords",
      "dkimSelector",
      "clientSettings",
      "userPasswords",
      "userAppPasswords",
      "adminTotpUri",
      "monthlyCostEur",
      "backupBucket",
      "backupRepository",
      "backupPassword",
    ]) {
      expect([key, program[key] !== undefined]).toEqual([key, true]);
    }
    expect(program.mailHost).toBe("mail.example.eu");
  });

  test("adminTotpUri (prod has adminMfa totp) is a secret output", async () => {
    expect(await pulumi.isSecret(program.adminTotpUri)).toBe(true);
    expect(await value(program.adminTotpUri)).toMatch(
      /^otpauth:\/\/totp\/mailstack:admin%40mail\.example\.eu\?issuer=mailstack&secret=[A-Z2-7]{32}&/,
    );
  });

  test("userPasswords is a secret output", async () => {
    expect(await pulumi.isSecret(program.userPasswords)).toBe(true);
    expect(Object.keys(await value(program.userPasswords))).toEqual([
      "alice@example.eu",
      "bob@example.eu",
    ]);
  });

  test("the backup's password is a secret output; its bucket and repository are not", async () => {
    expect(await pulumi.isSecret(program.backupPassword)).toBe(true);
    expect(await value<string>(program.backupPassword)).toHaveLength(32);
    expect(await pulumi.isSecret(program.backupBucket)).toBe(false);
    expect(await value(program.backupBucket)).toBe("mail-example-eu-backup");
    expect(program.backupRepository).toBe(
      "s3:https://fedcba9876543210fedcba9876543210.eu.r2.cloudflarestorage.com/" +
        "mail-example-eu-backup/mail.example.eu",
    );
  });

  test("dnsRecords lists name, type, content and priority only", async () => {
    const records = await value<any[]>(program.dnsRecords);
    for (const r of records)
      expect(Object.keys(r).sort()).toEqual(expect.arrayContaining(["content", "name", "type"]));
    expect(records.find((r) => r.type === "MX")).toEqual({
      name: "example.eu",
      type: "MX",
      content: "mail.example.eu",
      priority: 10,
    });
  });

  test("a second evaluation sends a byte-identical provisioning bundle (no diff, no re-run)", async () => {
    const bundles = () =>
      created
        .filter((r) => r.type === "command:remote:Command" && r.name.endsWith("-install"))
        .map((r) => secretInput(r.inputs.stdin));
    const first = bundles();
    await loadProgram();
    await settle();
    const all = bundles();
    expect(all).toHaveLength(first.length * 2);
    const second = all.slice(first.length);
    // The password hashes are salted from the password and address, not from randomness.
    expect(first[0]).toMatch(/^\/etc\/dovecot\/users /m);
    expect(second).toEqual(first);
  });
});

test("sshProxy from the stack: provisioning goes through the bastion with the key read as a secret", async () => {
  // The valid stack above pinned the runtime's config with a spy: read this stack's own.
  jest.restoreAllMocks();
  const raw = {
    ...PROD_RAW,
    sshProxy: JSON.stringify({
      host: "bastion.example.eu",
      port: 2222,
      user: "mailstack-jump",
      hostPublicKey: BASTION_HOST_KEY.publicOpenssh.trim(),
    }),
    sshProxyPrivateKey: JUMP_KEY.privateOpenssh,
  };
  pulumi.runtime.setAllConfig(
    Object.fromEntries(Object.entries(raw).map(([k, v]) => [`mailstack:${k}`, String(v)])),
    ["mailstack:acmeDnsToken", "mailstack:sshProxyPrivateKey"],
  );
  const before = created.length;
  await loadProgram();
  await settle();
  const [command] = created.slice(before).filter((r) => r.type === "command:remote:Command");
  expect(secretInput<Record<string, any>>(command.inputs.connection).proxy).toEqual({
    host: "bastion.example.eu",
    port: 2222,
    user: "mailstack-jump",
    privateKey: JUMP_KEY.privateOpenssh,
    hostKey: BASTION_HOST_KEY.publicOpenssh.trim(),
    dialErrorLimit: 40,
    perDialTimeout: 15,
  });
});

describe("backups from the stack", () => {
  const run = async (raw: Record<string, unknown>, secrets: string[]) => {
    jest.restoreAllMocks();
    pulumi.runtime.setAllConfig(
      Object.fromEntries(Object.entries(raw).map(([k, v]) => [`mailstack:${k}`, String(v)])),
      ["mailstack:acmeDnsToken", ...secrets.map((k) => `mailstack:${k}`)],
    );
    const before = created.length;
    const program = await loadProgram();
    await settle();
    return { program, made: created.slice(before) };
  };

  test("backup.provider hetzner: the keys are read as secrets and handed to the stack; no bucket is made", async () => {
    const { program, made } = await run(
      {
        ...PROD_RAW,
        backup: JSON.stringify({ provider: "hetzner", location: "fsn1" }),
        backupAccessKeyId: "HZACCESSKEY000000001",
        backupSecretAccessKey: "hetzner-secret-key-for-tests",
      },
      ["backupAccessKeyId", "backupSecretAccessKey"],
    );
    expect(program.backupRepository).toBe(
      "s3:https://fsn1.your-objectstorage.com/mail-example-eu-backup/mail.example.eu",
    );
    expect(await pulumi.isSecret(program.backupPassword)).toBe(true);
    expect(made.filter((r) => r.type === "cloudflare:index/r2Bucket:R2Bucket")).toEqual([]);
  });

  test("backup.enabled false: no backup output at all", async () => {
    const { program, made } = await run(
      { ...PROD_RAW, backup: JSON.stringify({ enabled: false }) },
      [],
    );
    expect(program.mailHost).toBe("mail.example.eu");
    for (const key of ["backupBucket", "backupRepository", "backupPassword"]) {
      expect([key, program[key]]).toEqual([key, undefined]);
    }
    expect(made.filter((r) => r.type.startsWith("cloudflare:index/r2Bucket"))).toEqual([]);
  });
});
