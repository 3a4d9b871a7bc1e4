import { argon2Verify } from "hash-wasm";
import { dovecotPasswordHash } from "../components/passwords";

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
