import { argon2Verify } from "hash-wasm";
import { createHash } from "node:crypto";
import { dovecotAppPasswordHash, dovecotPasswordHash } from "../components/passwords";

/** Dovecot's {ARGON2ID} scheme around libsodium's encoded form: 16-byte salt, 32-byte hash. */
const FORMAT =
  /^\{ARGON2ID\}\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/;

/** The libsodium string, without Dovecot's scheme prefix. */
const encoded = (field: string) => field.replace(/^\{ARGON2ID\}/, "");
/** Salt and hash, the last two `$` fields. */
const saltAndHash = (field: string) => field.split("$").slice(-2);

const ALICE = "alice@example.eu";
const PASSWORD = "correct horse battery staple";
/** dovecotPasswordHash(ALICE, PASSWORD) as recorded; the salt checked against Python's hmac. */
const PINNED =
  "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$IjjQX7Jn2dApA6WEZrgJWA$KDq2ihqPqpcBURjFnuF8qq9OsT5l7nwtGKL2sdO191M";

test("the field is Dovecot's ARGON2ID scheme with OWASP's minimum parameters", async () => {
  expect(await dovecotPasswordHash(ALICE, PASSWORD)).toMatch(FORMAT);
});

test("the same address and password give the same string", async () => {
  const first = await dovecotPasswordHash(ALICE, PASSWORD);
  expect(await dovecotPasswordHash(ALICE, PASSWORD)).toBe(first);
});

test("the output is pinned, so a changed derivation shows up as a diff here first", async () => {
  // A change here rewrites every mailbox's password hash on the next `pulumi up`.
  expect(await dovecotPasswordHash(ALICE, PASSWORD)).toBe(PINNED);
});

test("another address gets another salt and hash for the same password", async () => {
  const [salt, hash] = saltAndHash(await dovecotPasswordHash(ALICE, PASSWORD));
  const [bobSalt, bobHash] = saltAndHash(await dovecotPasswordHash("bob@example.eu", PASSWORD));
  expect(bobSalt).not.toBe(salt);
  expect(bobHash).not.toBe(hash);
});

test("another password gets another salt and hash for the same address", async () => {
  const [salt, hash] = saltAndHash(await dovecotPasswordHash(ALICE, PASSWORD));
  const [otherSalt, otherHash] = saltAndHash(await dovecotPasswordHash(ALICE, `${PASSWORD}!`));
  expect(otherSalt).not.toBe(salt);
  expect(otherHash).not.toBe(hash);
});

test("an Argon2 verifier accepts the password and refuses a wrong one", async () => {
  const hash = encoded(await dovecotPasswordHash(ALICE, PASSWORD));
  expect(await argon2Verify({ password: PASSWORD, hash })).toBe(true);
  expect(await argon2Verify({ password: `${PASSWORD} `, hash })).toBe(false);
});

test("an empty password is refused", async () => {
  await expect(dovecotPasswordHash(ALICE, "")).rejects.toThrow(/empty password/);
});

describe("app passwords: Dovecot's {SSHA512}", () => {
  const field = dovecotAppPasswordHash(ALICE, "phone", PASSWORD);
  const raw = Buffer.from(field.replace(/^\{SSHA512\}/, ""), "base64");

  test("base64 of SHA-512(password + salt) and the 16-byte salt", () => {
    expect(field).toMatch(/^\{SSHA512\}[A-Za-z0-9+/]{107}=$/);
    expect(raw).toHaveLength(64 + 16);
    const salt = raw.subarray(64);
    const digest = createHash("sha512").update(PASSWORD).update(salt).digest();
    expect(raw.subarray(0, 64).equals(digest)).toBe(true);
    const wrong = createHash("sha512").update(`${PASSWORD}x`).update(salt).digest();
    expect(raw.subarray(0, 64).equals(wrong)).toBe(false);
  });

  test("the same inputs give the same field; another device or address another salt", () => {
    expect(dovecotAppPasswordHash(ALICE, "phone", PASSWORD)).toBe(field);
    const salts = [
      field,
      dovecotAppPasswordHash(ALICE, "laptop", PASSWORD),
      dovecotAppPasswordHash("bob@example.eu", "phone", PASSWORD),
    ].map((f) => Buffer.from(f.slice("{SSHA512}".length), "base64").subarray(64).toString("hex"));
    expect(new Set(salts).size).toBe(3);
  });

  test("an empty password is refused", () => {
    expect(() => dovecotAppPasswordHash(ALICE, "phone", "")).toThrow(/empty password/);
  });
});
