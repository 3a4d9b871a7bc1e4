// Fixed test keys, so renders and snapshots are stable. Test use only: none of them guards
// anything real.
import { createECDH, createPrivateKey, createPublicKey, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ed25519KeyPair, type OpensshKeyPair } from "../../components/openssh";

export interface PemKeyPair {
  privatePem: string;
  publicPem: string;
}

const seed = (label: string) => createHash("sha256").update(`mailstack test key ${label}`).digest();

/** Ed25519 keys for the SSH host and the deployment. */
export const SSH_HOST_KEY: OpensshKeyPair = ed25519KeyPair(seed("ssh-host"));
export const DEPLOY_KEY: OpensshKeyPair = ed25519KeyPair(seed("deploy"));
/** A bastion's host key, and the key of the account provisioning uses on it. */
export const BASTION_HOST_KEY: OpensshKeyPair = ed25519KeyPair(seed("bastion-host"));
export const JUMP_KEY: OpensshKeyPair = ed25519KeyPair(seed("jump"));

/** The DKIM key: RSA 2048 from a fixture file (RSA keys cannot be derived from a seed). */
export const DKIM_KEY: PemKeyPair = (() => {
  const privatePem = readFileSync(join(__dirname, "..", "fixtures", "dkim-test-only.pem"), "utf8");
  const publicPem = createPublicKey(privatePem).export({ type: "spki", format: "pem" }).toString();
  return { privatePem, publicPem };
})();

/** An ECDSA P-256 key from a fixed scalar, the private half in SEC1 or PKCS#8 PEM. */
function p256Key(label: string, privateType: "sec1" | "pkcs8"): PemKeyPair {
  const ecdh = createECDH("prime256v1");
  ecdh.setPrivateKey(seed(label));
  const point = ecdh.getPublicKey(); // 0x04 || x || y
  const b64url = (b: Buffer) => b.toString("base64url");
  const key = createPrivateKey({
    key: {
      kty: "EC",
      crv: "P-256",
      d: b64url(ecdh.getPrivateKey()),
      x: b64url(point.subarray(1, 33)),
      y: b64url(point.subarray(33, 65)),
    },
    format: "jwk",
  });
  return {
    privatePem: key.export({ type: privateType, format: "pem" }).toString(),
    publicPem: createPublicKey(key).export({ type: "spki", format: "pem" }).toString(),
  };
}

/** The TLS key: ECDSA P-256, SEC1 as @pulumi/tls privateKeyPem. */
export const TLS_KEY: PemKeyPair = p256Key("tls", "sec1");

/**
 * The mail_crypt key: ECDSA P-256. `privatePem` is PKCS#8 (@pulumi/tls privateKeyPemPkcs8),
 * `sec1Pem` the same key as privateKeyPem, which Dovecot refuses.
 */
export const MAIL_CRYPT_KEY: PemKeyPair & { sec1Pem: string } = {
  ...p256Key("mail-crypt", "pkcs8"),
  sec1Pem: p256Key("mail-crypt", "sec1").privatePem,
};
