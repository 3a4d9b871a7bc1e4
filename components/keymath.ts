// Pure key and record arithmetic: DKIM public key text, TLSA digests, TXT splitting,
// MTA-STS policy and its id.
import { createHash, createPublicKey } from "node:crypto";
import type { MtaStsMode } from "./config";

/** The DER SubjectPublicKeyInfo of a PEM public key (or of the public half of a private key). */
export function spkiDer(pem: string): Buffer {
  return createPublicKey(pem).export({ type: "spki", format: "der" });
}

/** DKIM key record text (RFC 6376 3.6.1): `p=` is the base64 SubjectPublicKeyInfo. */
export function dkimRecordText(publicKeyPem: string): string {
  return `v=DKIM1; k=rsa; p=${spkiDer(publicKeyPem).toString("base64")}`;
}

/** TLSA `3 1 1` (DANE-EE, SPKI, SHA-256) association data, lower-case hex (RFC 6698). */
export function tlsaSpkiSha256(publicKeyPem: string): string {
  return createHash("sha256").update(spkiDer(publicKeyPem)).digest("hex");
}

/**
 * A TXT value in zone-file presentation form: one or more quoted strings of at most 255
 * bytes each (RFC 1035 3.3.14; RFC 7208 3.3 for SPF, RFC 6376 3.6.2.2 for DKIM). Quotes and
 * backslashes are escaped. Splitting never cuts a UTF-8 character.
 */
export function txtPresentation(value: string): string {
  const bytes = Buffer.from(value, "utf8");
  const chunks: string[] = [];
  let start = 0;
  while (start < bytes.length) {
    let end = Math.min(start + 255, bytes.length);
    // Step back over UTF-8 continuation bytes so a character stays whole.
    while (end < bytes.length && (bytes[end] & 0xc0) === 0x80) end--;
    chunks.push(bytes.subarray(start, end).toString("utf8"));
    start = end;
  }
  if (chunks.length === 0) chunks.push("");
  return chunks.map((c) => `"${c.replace(/[\\"]/g, (m) => `\\${m}`)}"`).join(" ");
}

/** Reverses `txtPresentation`: the strings of a TXT record joined into one value. */
export function txtValue(presentation: string): string {
  const parts = [...presentation.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) =>
    m[1].replace(/\\(.)/g, "$1"),
  );
  return parts.join("");
}

/** How long senders may cache the MTA-STS policy: one week (RFC 8461 suggests weeks). */
export const MTA_STS_MAX_AGE = 604800;

/** The MTA-STS policy file served at https://mta-sts.<domain>/.well-known/mta-sts.txt. */
export function mtaStsPolicy(mode: MtaStsMode, mxHosts: string[]): string {
  const lines = ["version: STSv1", `mode: ${mode}`, ...mxHosts.map((mx) => `mx: ${mx}`)];
  lines.push(`max_age: ${MTA_STS_MAX_AGE}`);
  return lines.map((l) => `${l}\r\n`).join("");
}

/**
 * The `_mta-sts` TXT `id`: derived from the policy text, so it changes exactly when the
 * policy does and senders refetch it (RFC 8461 3.1: 1-32 alphanumeric characters).
 */
export function mtaStsId(policy: string): string {
  return createHash("sha256").update(policy).digest("hex").slice(0, 32);
}
