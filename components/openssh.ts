// Ed25519 keys in OpenSSH formats, the way @pulumi/tls emits them. For places that make
// keys without Pulumi's providers: the lab, and the tests' stand-in for the tls provider.
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from "node:crypto";

export interface OpensshKeyPair {
  /** `-----BEGIN OPENSSH PRIVATE KEY-----` block (openssh-key-v1, unencrypted). */
  privateOpenssh: string;
  /** `ssh-ed25519 AAAA...` line. */
  publicOpenssh: string;
  /** PKCS#8 PEM of the private key. */
  privatePem: string;
  /** SubjectPublicKeyInfo PEM of the public key. */
  publicPem: string;
}

// DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows (RFC 8410).
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** An Ed25519 key from a 32-byte seed (deterministic), or a random one. */
export function ed25519KeyPair(seed: Buffer = randomBytes(32)): OpensshKeyPair {
  if (seed.length !== 32) throw new Error("an Ed25519 seed is 32 bytes");
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]),
    format: "der",
    type: "pkcs8",
  });
  const publicKey = createPublicKey(privateKey);
  const pub = rawPublic(publicKey);
  const blob = Buffer.concat([sshString("ssh-ed25519"), sshString(pub)]);

  // openssh-key-v1: magic, cipher, kdf, kdf options, key count, public blob, private part.
  const check = seed.subarray(0, 4); // any value, repeated; derived so the output is stable
  let priv = Buffer.concat([
    check,
    check,
    sshString("ssh-ed25519"),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(""),
  ]);
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from([1, 2, 3, 4, 5, 6, 7].slice(0, pad))]);
  const body = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    uint32(1),
    sshString(blob),
    sshString(priv),
  ]);
  const wrapped = body
    .toString("base64")
    .match(/.{1,70}/g)!
    .join("\n");
  return {
    privateOpenssh: `-----BEGIN OPENSSH PRIVATE KEY-----\n${wrapped}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicOpenssh: `ssh-ed25519 ${blob.toString("base64")}\n`,
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

function rawPublic(publicKey: KeyObject): Buffer {
  const der = publicKey.export({ type: "spki", format: "der" });
  return der.subarray(der.length - 32);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function sshString(data: string | Buffer): Buffer {
  const buf = typeof data === "string" ? Buffer.from(data, "latin1") : data;
  return Buffer.concat([uint32(buf.length), buf]);
}
