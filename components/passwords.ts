// Password hashes for Dovecot's passwd-file. Dovecot 2.4 verifies the {ARGON2ID} scheme with
// libsodium's crypto_pwhash_str_verify, which reads the PHC encoded form
// `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>` (base64 without padding), the
// same string `doveadm pw -s ARGON2ID` writes.
import { createHash, createHmac } from "node:crypto";
import { argon2id } from "hash-wasm";

// OWASP Password Storage Cheat Sheet, Argon2id minimum configuration: m=19 MiB, t=2, p=1.
/** Memory cost in KiB (19 MiB). */
export const ARGON2_MEMORY_KIB = 19 * 1024;
/** Passes over the memory. */
export const ARGON2_ITERATIONS = 2;
/** Lanes. */
export const ARGON2_PARALLELISM = 1;
/** Hash length in bytes. */
export const ARGON2_HASH_BYTES = 32;
/** Salt length in bytes. */
export const ARGON2_SALT_BYTES = 16;

/** Domain separation for the salt derivation; the NUL ends it before the address. */
const SALT_CONTEXT = "mailstack dovecot salt\0";

/**
 * The Dovecot password field for one mailbox: `{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$...`.
 *
 * The result is deterministic: the salt is derived from the password and the address instead
 * of drawn at random, so the same mailbox and password give the same string on every run and
 * a repeated `pulumi up` sees no change in the host's files. Different addresses get different
 * salts, so two mailboxes with the same password do not share a hash.
 */
export async function dovecotPasswordHash(address: string, password: string): Promise<string> {
  if (password === "") throw new Error(`dovecotPasswordHash: empty password for ${address}`);
  const salt = createHmac("sha256", password)
    .update(SALT_CONTEXT + address)
    .digest()
    .subarray(0, ARGON2_SALT_BYTES);
  const encoded = await argon2id({
    password,
    salt,
    iterations: ARGON2_ITERATIONS,
    parallelism: ARGON2_PARALLELISM,
    memorySize: ARGON2_MEMORY_KIB,
    hashLength: ARGON2_HASH_BYTES,
    outputType: "encoded",
  });
  return `{ARGON2ID}${encoded}`;
}

/** Salt length of an app password's hash, in bytes. */
export const APP_PASSWORD_SALT_BYTES = 16;

/**
 * The Dovecot password field for one device's app password:
 * `{SSHA512}` base64(SHA-512(password + salt) + salt), Dovecot's salted SHA-512.
 *
 * A fast hash, on purpose: an app password is 24 random letters and digits (about 142
 * bits) the stack made, never one a person chose, so no hash speed makes guessing it
 * feasible, while a login tries each of a user's devices in turn and Argon2id would cost
 * 19 MiB and tens of milliseconds for each. The salt is derived like dovecotPasswordHash's
 * (from the password, the address and the device), so a repeated `pulumi up` changes nothing.
 */
export function dovecotAppPasswordHash(address: string, device: string, password: string): string {
  if (password === "") {
    throw new Error(`dovecotAppPasswordHash: empty password for ${address} ${device}`);
  }
  const salt = createHmac("sha256", password)
    .update(`${SALT_CONTEXT}${address}\0${device}`)
    .digest()
    .subarray(0, APP_PASSWORD_SALT_BYTES);
  const digest = createHash("sha512").update(password).update(salt).digest();
  return `{SSHA512}${Buffer.concat([digest, salt]).toString("base64")}`;
}
