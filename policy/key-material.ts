// Finds key material in a property value, whatever the encoding: PEM and OpenSSH private
// keys as text, base64 (also base64url, wrapped or nested) or hex of them, bare DER private
// keys, and values shaped like the API tokens this project handles. Pure, so jest tests each
// rule on a bad sample and on the legitimate value next to it.
import { UnknownValueError } from "@pulumi/policy";
import { createPrivateKey } from "node:crypto";

/** What was found, for the violation message; never the value itself. */
export type Finding = string;

/** How deep encodings are unwrapped (base64 of base64 of a PEM is depth 2). */
const MAX_DEPTH = 2;

/** Armour of every private key format: PEM (PKCS#1, PKCS#8, SEC1, OpenSSH, encrypted), PGP. */
const PRIVATE_ARMOUR = /PRIVATE KEY(?: BLOCK)?-----/;
/** The magic at the start of an OpenSSH private key's binary body (PROTOCOL.key). */
const OPENSSH_MAGIC = "openssh-key-v1\0";
const PUTTY = /PuTTY-User-Key-File-\d+:[\s\S]*Private-Lines:/;

/**
 * API tokens by shape. Each shape needs a boundary on both sides that is not a base64
 * character, so a slice of a longer base64 value (a DKIM key) is never a token. Random
 * tokens of this length hold upper case, lower case and digits with near certainty; names,
 * labels and hex digests (zone ids, TLSA, DS, commit ids) do not, so they pass.
 */
const TOKENS: { what: string; pattern: RegExp; mixedCase: boolean }[] = [
  {
    // Cloudflare API tokens: 40 characters of [A-Za-z0-9_-].
    what: "a Cloudflare API token",
    pattern: /(?<![A-Za-z0-9+/_-])[A-Za-z0-9_-]{40}(?![A-Za-z0-9+/_-])/g,
    mixedCase: true,
  },
  {
    // Hetzner Cloud API tokens: 64 characters of [A-Za-z0-9].
    what: "a Hetzner API token",
    pattern: /(?<![A-Za-z0-9+/_-])[A-Za-z0-9]{64}(?![A-Za-z0-9+/_-])/g,
    mixedCase: true,
  },
  {
    // Cloudflare's Global API Key: 37 lower-case hex digits (no digest has that length).
    what: "a Cloudflare Global API Key",
    pattern: /(?<![A-Za-z0-9+/_-])[0-9a-f]{37}(?![A-Za-z0-9+/_-])/g,
    mixedCase: false,
  },
  {
    // Pulumi access tokens, which the pipelines hold.
    what: "a Pulumi access token",
    pattern: /(?<![A-Za-z0-9+/_-])pul-[0-9a-f]{40}(?![A-Za-z0-9+/_-])/g,
    mixedCase: false,
  },
];

const isMixed = (s: string) => /[A-Z]/.test(s) && /[a-z]/.test(s) && /[0-9]/.test(s);

/** Key material anywhere in a value (strings, arrays, objects), or undefined. */
export function findKeyMaterial(value: unknown): Finding | undefined {
  if (typeof value === "string") return scanText(value, []);
  if (value === null || typeof value !== "object") return undefined;
  for (const [, v] of knownEntries(value)) {
    const found = findKeyMaterial(v);
    if (found) return found;
  }
  return undefined;
}

/**
 * The entries of an object or array whose values are known. In a preview a policy's inputs
 * throw on reading a value that is not known yet (a new firewall's id, a record's content);
 * those are judged at the update, and the known ones now.
 */
export function knownEntries(value: object): [string, unknown][] {
  const entries: [string, unknown][] = [];
  for (const key of Object.keys(value)) {
    try {
      entries.push([key, (value as Record<string, unknown>)[key]]);
    } catch (e) {
      if (!(e instanceof UnknownValueError)) throw e;
    }
  }
  return entries;
}

/** `a PEM private key (base64 in hex)`: the innermost encoding first. */
const label = (what: string, via: string[]) =>
  via.length ? `${what} (${[...via].reverse().join(" in ")})` : what;

function scanText(text: string, via: string[]): Finding | undefined {
  if (PRIVATE_ARMOUR.test(text)) return label("a PEM private key", via);
  if (PUTTY.test(text)) return label("a PuTTY private key", via);
  if (text.includes(OPENSSH_MAGIC)) return label("an OpenSSH private key", via);
  const unwrapped = joinWrappedBase64(text);
  for (const t of TOKENS) {
    for (const m of unwrapped.matchAll(t.pattern)) {
      if (!t.mixedCase || isMixed(m[0])) return label(t.what, via);
    }
  }
  if (via.length >= MAX_DEPTH) return undefined;

  if (/%[0-9A-Fa-f]{2}/.test(text)) {
    try {
      const decoded = decodeURIComponent(text);
      if (decoded !== text) {
        const found = scanText(decoded, [...via, "percent-encoding"]);
        if (found) return found;
      }
    } catch {
      // Not valid percent-encoding: nothing hidden that way.
    }
  }
  for (const [encoding, bytes] of decodings(text)) {
    const found = scanBytes(bytes, [...via, encoding]);
    if (found) return found;
  }
  return undefined;
}

/**
 * Wrapped base64 (a PEM body, `openssl base64`) joined into one run: its 64-character lines
 * are slices of one value, not tokens.
 */
function joinWrappedBase64(text: string): string {
  return text.replace(/^(?:[A-Za-z0-9+/]{40,}\r?\n)+[A-Za-z0-9+/]*={0,2}$/gm, (block) =>
    block.replace(/\s+/g, ""),
  );
}

/** Binary forms: a DER private key, or decoded text to look into again. */
function scanBytes(bytes: Buffer, via: string[]): Finding | undefined {
  if (bytes[0] === 0x30 && isDerPrivateKey(bytes)) return label("a DER private key", via);
  const text = bytes.toString("latin1");
  // Only text is worth another look; markers in binary are still found.
  if (text.includes(OPENSSH_MAGIC)) return label("an OpenSSH private key", via);
  if (PRIVATE_ARMOUR.test(text)) return label("a PEM private key", via);
  if (!/^[\t\n\r\x20-\x7e]+$/.test(text)) return undefined;
  return scanText(text, via);
}

/**
 * Each base64 (or base64url) run of 24 characters or more, decoded at each of the four
 * alignments (a word glued in front shifts it), also with whitespace removed (wrapped
 * base64); and each hex run of 64 digits or more.
 */
function* decodings(text: string): Generator<[string, Buffer]> {
  const runs = new Set<string>();
  for (const source of [text, text.replace(/\s+/g, "")]) {
    for (const m of source.matchAll(/[A-Za-z0-9+/_-]{24,}/g)) runs.add(m[0]);
  }
  for (const run of runs) {
    const standard = run.replace(/-/g, "+").replace(/_/g, "/");
    for (let shift = 0; shift < 4; shift++) {
      // The decoder takes a last group without its padding.
      yield ["base64", Buffer.from(standard.slice(shift), "base64")];
    }
  }
  for (const m of text.matchAll(/[0-9A-Fa-f]{64,}/g)) {
    for (let shift = 0; shift < 2; shift++) {
      const part = m[0].slice(shift);
      yield ["hex", Buffer.from(part.slice(0, part.length - (part.length % 2)), "hex")];
    }
  }
}

/** Whether the bytes parse as a private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC). */
function isDerPrivateKey(der: Buffer): boolean {
  for (const type of ["pkcs8", "pkcs1", "sec1"] as const) {
    try {
      createPrivateKey({ key: der, format: "der", type });
      return true;
    } catch (e) {
      // An encrypted PKCS#8 key parses as far as asking for its passphrase.
      if ((e as { code?: string }).code === "ERR_MISSING_PASSPHRASE") return true;
      // Otherwise not this format: public keys and anything else land here.
    }
  }
  return false;
}
