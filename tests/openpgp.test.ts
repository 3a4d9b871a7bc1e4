import * as openpgp from "openpgp";
import { ConfigError, parseConfig } from "../components/config";
import { discoverySite, wkdHash } from "../components/discovery";
import { readOpenPgpKeys } from "../components/openpgp";
import worker from "../worker/discovery";
import { PROD_RAW } from "./support/config";

const DAY = 86400;

/** A curve25519 key pair (fast to make), armored. */
async function generate(
  emails: string[],
  options: Partial<{ date: Date; keyExpirationTime: number; signOnly: boolean }> = {},
) {
  const { publicKey, privateKey } = await openpgp.generateKey({
    type: "ecc",
    curve: "curve25519Legacy", // Ed25519/Cv25519 as GnuPG makes them
    userIDs: emails.map((email) => ({ name: "Test User", email })),
    ...(options.date ? { date: options.date } : {}),
    ...(options.keyExpirationTime ? { keyExpirationTime: options.keyExpirationTime } : {}),
    ...(options.signOnly ? { subkeys: [] } : {}),
    format: "armored",
  });
  const fingerprint = (await openpgp.readKey({ armoredKey: publicKey }))
    .getFingerprint()
    .toUpperCase();
  return { publicKey, privateKey, fingerprint };
}

/** The problems readOpenPgpKeys reports, or [] when it passes. */
async function problems(users: { address: string; openpgpKey?: string }[]): Promise<string[]> {
  try {
    await readOpenPgpKeys(users);
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
}

let alice: Awaited<ReturnType<typeof generate>>;

beforeAll(async () => {
  // Two user IDs: the second is an address the published key must not reveal.
  alice = await generate(["Alice@Example.EU", "alice@private.example"]);
});

test("a public key for the address: published with that user ID alone, and it still encrypts", async () => {
  const keys = await readOpenPgpKeys([
    { address: "bob@example.eu" },
    { address: "alice@example.eu", openpgpKey: alice.publicKey },
  ]);
  expect(Object.keys(keys)).toEqual(["alice@example.eu"]);
  const published = await openpgp.readKey({ binaryKey: keys["alice@example.eu"] });
  expect(published.isPrivate()).toBe(false);
  expect(published.getFingerprint().toUpperCase()).toBe(alice.fingerprint);
  expect(published.getUserIDs()).toEqual(["Test User <Alice@Example.EU>"]);
  expect(published.subkeys).toHaveLength(1);

  // A sender encrypting to the published key reaches alice's private key.
  const encrypted = await openpgp.encrypt({
    message: await openpgp.createMessage({ text: "hello" }),
    encryptionKeys: published,
  });
  const { data } = await openpgp.decrypt({
    message: await openpgp.readMessage({ armoredMessage: encrypted as string }),
    decryptionKeys: await openpgp.readPrivateKey({ armoredKey: alice.privateKey }),
  });
  expect(data).toBe("hello");

  // The Worker serves those bytes under alice's hash.
  const site = discoverySite(parseConfig(PROD_RAW), keys);
  const res = await worker.fetch(
    new Request(
      `https://openpgpkey.example.eu/.well-known/openpgpkey/example.eu/hu/${wkdHash("alice")}`,
    ),
    { SITE: site },
  );
  expect(new Uint8Array(await res.arrayBuffer())).toEqual(keys["alice@example.eu"]);
});

test("each refusal names the user's setting and the key by fingerprint, all at once", async () => {
  const revoked = await generate(["dave@example.eu"]);
  const { publicKey: revokedKey } = await openpgp.revokeKey({
    key: await openpgp.readPrivateKey({ armoredKey: revoked.privateKey }),
    format: "armored",
  });
  const expired = await generate(["erin@example.eu"], {
    date: new Date(Date.now() - 2 * DAY * 1000),
    keyExpirationTime: DAY,
  });
  const signOnly = await generate(["frank@example.eu"], { signOnly: true });

  const found = await problems([
    { address: "alice@example.eu", openpgpKey: alice.publicKey },
    { address: "bob@example.eu", openpgpKey: alice.publicKey },
    { address: "carol@example.eu", openpgpKey: alice.privateKey },
    { address: "dave@example.eu", openpgpKey: revokedKey },
    { address: "erin@example.eu", openpgpKey: expired.publicKey },
    { address: "frank@example.eu", openpgpKey: signOnly.publicKey },
    { address: "grace@example.eu", openpgpKey: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n" },
  ]);
  const expiredAt = new Date(Date.now() - DAY * 1000);
  expect(found).toHaveLength(6);
  expect(found.slice(0, 4)).toEqual([
    "mailstack:users[1].openpgpKey: must have a user ID with the address bob@example.eu; " +
      `got key ${alice.fingerprint} with user IDs for Alice@Example.EU, alice@private.example`,
    "mailstack:users[2].openpgpKey: must be a PUBLIC key: a private key would be published to " +
      "anyone who asks (export the public key with gpg --export --armor <address>); " +
      `got the private key ${alice.fingerprint} (not shown)`,
    `mailstack:users[3].openpgpKey: must not be revoked; got the revoked key ${revoked.fingerprint}`,
    expect.stringMatching(
      new RegExp(
        `^mailstack:users\\[4\\]\\.openpgpKey: must not be expired \\(extend it: gpg --quick-set-expire\\); ` +
          `got key ${expired.fingerprint}, expired ${expiredAt.toISOString().slice(0, 13)}`,
      ),
    ),
  ]);
  expect(found[4]).toBe(
    "mailstack:users[5].openpgpKey: must be able to encrypt (an encryption subkey that is " +
      `neither revoked nor expired); got key ${signOnly.fingerprint}, which has no usable encryption key`,
  );
  expect(found[5]).toMatch(
    /^mailstack:users\[6\]\.openpgpKey: must be an ASCII-armored OpenPGP public key; got one that cannot be read \(/,
  );
  // Nothing of any key's material, armored, in the report.
  const report = found.join("\n");
  for (const armored of [alice.publicKey, alice.privateKey, expired.publicKey]) {
    const body = armored.split("\n").filter((l) => l.length > 40)[0];
    expect(report).not.toContain(body);
  }
});
