// The users' OpenPGP keys as the Web Key Directory publishes them. The config module checks
// the armor of `users[].openpgpKey` synchronously; here each key is read and judged as a
// sender's client would judge it, because a key that fails there silently breaks the
// encryption the user asked for.
import * as openpgp from "openpgp";
import { ConfigError } from "./config";

/**
 * The binary key to publish for each user with `openpgpKey`, by address (sorted). Pass the
 * config's `users` list: problems name `mailstack:users[i].openpgpKey` by index in it.
 *
 * Each key must be one PUBLIC key (a private key is refused: it would be published to
 * anyone who asks), with a valid user ID whose email is the address (compared without
 * case), neither revoked nor expired now, and able to encrypt. The published key is that
 * key cut down to that one user ID, without third-party certifications or photo IDs (as
 * `gpg --export-options export-minimal --export-filter keep-uid=mbox=<address>` would):
 * other user IDs would tell the world the user's other addresses.
 *
 * Throws a ConfigError listing every problem; a problem names a key by its fingerprint
 * alone, never by its material.
 */
export async function readOpenPgpKeys(
  users: { address: string; openpgpKey?: string }[],
  now: Date = new Date(),
): Promise<Record<string, Uint8Array>> {
  const problems: string[] = [];
  const keys: Record<string, Uint8Array> = {};
  for (const [i, user] of users.entries()) {
    if (user.openpgpKey === undefined) continue;
    const fail = (rule: string, got: string) =>
      problems.push(`mailstack:users[${i}].openpgpKey: ${rule}; got ${got}`);
    const key = await publishable(user.address.toLowerCase(), user.openpgpKey, now, fail);
    if (key) keys[user.address.toLowerCase()] = key;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.fromEntries(
    Object.keys(keys)
      .sort()
      .map((a) => [a, keys[a]]),
  );
}

type Fail = (rule: string, got: string) => void;

/** The minimized binary key for `address`, or undefined after reporting what is wrong. */
async function publishable(
  address: string,
  armored: string,
  now: Date,
  fail: Fail,
): Promise<Uint8Array | undefined> {
  let read: openpgp.Key[];
  try {
    read = await openpgp.readKeys({ armoredKeys: armored });
  } catch (e) {
    // OpenPGP.js's messages describe the structure ("Misformed armored text"), not content.
    fail("must be an ASCII-armored OpenPGP public key", `one that cannot be read (${message(e)})`);
    return undefined;
  }
  if (read.length !== 1) {
    fail(
      `must hold exactly one key, the one for ${address}`,
      `${read.length} keys (${read.map(fpr).join(", ")})`,
    );
    return undefined;
  }
  const key = read[0];
  const id = `key ${fpr(key)}`;
  if (key.isPrivate()) {
    fail(
      "must be a PUBLIC key: a private key would be published to anyone who asks " +
        "(export the public key with gpg --export --armor <address>)",
      `the private ${id} (not shown)`,
    );
    return undefined;
  }
  if (await key.isRevoked(undefined, undefined, now)) {
    fail("must not be revoked", `the revoked ${id}`);
    return undefined;
  }
  try {
    await key.verifyPrimaryKey(now);
  } catch (e) {
    const expires = await key.getExpirationTime().catch(() => null);
    if (expires instanceof Date && expires <= now) {
      fail(
        "must not be expired (extend it: gpg --quick-set-expire)",
        `${id}, expired ${expires.toISOString()}`,
      );
    } else fail("must have a valid self-signature", `${id} (${message(e)})`);
    return undefined;
  }

  const emails = key.users.flatMap((u) => (u.userID?.email ? [u.userID.email] : []));
  const matching = key.users.filter((u) => u.userID?.email.toLowerCase() === address);
  if (matching.length === 0) {
    fail(`must have a user ID with the address ${address}`, `${id} with ${describeEmails(emails)}`);
    return undefined;
  }
  let kept: number | undefined;
  for (const user of matching) {
    try {
      await user.verify(now);
      kept = key.users.indexOf(user);
      break;
    } catch {
      // revoked or badly signed: another user ID with the address may still serve
    }
  }
  if (kept === undefined) {
    fail(`must have a valid, unrevoked user ID with the address ${address}`, `${id}: none is`);
    return undefined;
  }
  const uid = key.users[kept].userID!;
  try {
    await key.getEncryptionKey(undefined, now, {
      name: uid.name,
      email: uid.email,
      comment: uid.comment,
    });
  } catch {
    fail(
      "must be able to encrypt (an encryption subkey that is neither revoked nor expired)",
      `${id}, which has no usable encryption key`,
    );
    return undefined;
  }

  // A fresh copy, so the caller's key object is left as it was.
  const copy = await openpgp.readKey({ binaryKey: key.write() });
  const user = copy.users[kept];
  user.otherCertifications = [];
  copy.users = [user];
  return copy.write();
}

/** A key's fingerprint, upper case as gpg shows it. */
function fpr(key: openpgp.Key): string {
  return key.getFingerprint().toUpperCase();
}

function describeEmails(emails: string[]): string {
  return emails.length === 0 ? "no email in its user IDs" : `user IDs for ${emails.join(", ")}`;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
