// The lab's stand-in for MailKeys: the same kinds of keys, in the formats @pulumi/tls
// emits, kept in the lab's state directory so `npm run lab` twice keeps one identity.
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ed25519KeyPair, type OpensshKeyPair } from "../components/openssh";
import { STATE_DIR } from "./settings";

/** Where a lab host's keys live; `admin_key` there is for people. */
export const keyDir = (host: string) => join(STATE_DIR, "keys", host);

export interface LabKeys {
  sshHost: OpensshKeyPair;
  deploy: OpensshKeyPair;
  /** A person's key: the lab's `sshPublicKeys`. */
  admin: OpensshKeyPair;
  dkim: { privatePem: string; publicPem: string };
  tls: { privatePem: string; publicPem: string };
  /** Dovecot's mail_crypt key: EC P-256, the private half PKCS#8 (privateKeyPemPkcs8). */
  mailCrypt: { privatePem: string; publicPem: string };
}

export function labKeys(host: string): LabKeys {
  const dir = keyDir(host);
  const file = join(dir, "keys.json");
  if (existsSync(file)) {
    const kept: LabKeys = JSON.parse(readFileSync(file, "utf8"));
    if (kept.mailCrypt) return kept;
    // A lab from before mail_crypt: the key is added once and kept from then on, as the
    // others are (the mail the lab's volume holds encrypted depends on it).
    const keys = { ...kept, mailCrypt: pem("ec", "pkcs8") };
    writeFileSync(file, JSON.stringify(keys, null, 2), { mode: 0o600 });
    return keys;
  }
  const keys: LabKeys = {
    sshHost: ed25519KeyPair(),
    deploy: ed25519KeyPair(),
    admin: ed25519KeyPair(),
    dkim: pem("rsa", "pkcs1"),
    tls: pem("ec", "sec1"),
    mailCrypt: pem("ec", "pkcs8"),
  };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(file, JSON.stringify(keys, null, 2), { mode: 0o600 });
  // For people: `ssh -i <dir>/admin_key admin@<host>`.
  writeFileSync(join(dir, "admin_key"), keys.admin.privateOpenssh, { mode: 0o600 });
  writeFileSync(join(dir, "deploy_key"), keys.deploy.privateOpenssh, { mode: 0o600 });
  return keys;
}

/** A key pair as @pulumi/tls emits it: RSA 2048 or ECDSA P-256, the private half as asked. */
function pem(type: "rsa" | "ec", privateType: "pkcs1" | "sec1" | "pkcs8") {
  const { privateKey, publicKey } =
    type === "rsa"
      ? generateKeyPairSync("rsa", { modulusLength: 2048 })
      : generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    privatePem: privateKey.export({ type: privateType, format: "pem" }).toString(),
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}
