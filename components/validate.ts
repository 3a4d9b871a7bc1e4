// Pure syntax checks shared by the config validator and the record builders.
import * as ipaddr from "ipaddr.js";

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A host label: letters, digits and hyphens, 1-63 characters, no hyphen at either end. */
export function isDnsLabel(value: string): boolean {
  return LABEL.test(value);
}

/**
 * A fully qualified DNS name of at least two labels, lower case, at most 253 characters,
 * with a top-level label that is not all digits (so an IPv4 address is not a domain).
 */
export function isDomainName(value: string): boolean {
  if (value.length > 253) return false;
  const labels = value.split(".");
  if (labels.length < 2 || !labels.every(isDnsLabel)) return false;
  return !/^[0-9]+$/.test(labels[labels.length - 1]);
}

/** `local@domain` with a dot-atom local part (RFC 5322 without quoted strings). */
export function isEmail(value: string): boolean {
  const at = value.lastIndexOf("@");
  if (at < 1) return false;
  const local = value.slice(0, at);
  const domain = value.slice(at + 1);
  return (
    local.length <= 64 &&
    /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/.test(local) &&
    isDomainName(domain.toLowerCase())
  );
}

/** An IPv4 or IPv6 network in CIDR notation, e.g. `203.0.113.0/24` or `2001:db8::/32`. */
export function isCidr(value: string): boolean {
  if (!value.includes("/")) return false;
  try {
    ipaddr.parseCIDR(value);
    return true;
  } catch {
    return false;
  }
}

/** Whether a CIDR is IPv6. Call only with a value that passed `isCidr`. */
export function isIpv6Cidr(value: string): boolean {
  return ipaddr.parseCIDR(value)[0].kind() === "ipv6";
}

/** The first host address of an IPv6 network, `2001:db8::/64` -> `2001:db8::1`. */
export function firstIpv6Host(network: string): string {
  const [addr] = ipaddr.IPv6.parseCIDR(network);
  const parts = addr.toByteArray();
  parts[15] |= 1;
  return ipaddr.fromByteArray(parts).toString();
}

const SSH_KEY_TYPES = new Set([
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
]);

/**
 * Checks an OpenSSH public key line (`type base64 [comment]`). Returns a reason when it is
 * malformed, undefined when it is good. The base64 blob must name the same key type, and
 * RSA keys must have at least 2048 bits.
 */
export function sshPublicKeyProblem(line: string): string | undefined {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2) return "must be an OpenSSH public key line: '<type> <base64> [comment]'";
  const [type, b64] = parts;
  if (!SSH_KEY_TYPES.has(type)) {
    return `key type '${type}' is not one of ${[...SSH_KEY_TYPES].join(", ")}`;
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return "the key data is not base64";
  const blob = Buffer.from(b64, "base64");
  const fields = readSshStrings(blob);
  if (!fields || fields[0].toString("latin1") !== type) {
    return `the key data does not hold a '${type}' key`;
  }
  if (type === "ssh-rsa") {
    // fields: type, e, n; n is an mpint that may carry a leading zero byte.
    const n = fields[2];
    const bits = (n.length - (n[0] === 0 ? 1 : 0)) * 8;
    if (bits < 2048) return `RSA keys need at least 2048 bits; this one has ${bits}`;
  }
  return undefined;
}

/** Splits an SSH wire-format blob into its length-prefixed strings; undefined if truncated. */
function readSshStrings(blob: Buffer): Buffer[] | undefined {
  const out: Buffer[] = [];
  let offset = 0;
  while (offset < blob.length) {
    if (offset + 4 > blob.length) return undefined;
    const len = blob.readUInt32BE(offset);
    offset += 4;
    if (offset + len > blob.length) return undefined;
    out.push(blob.subarray(offset, offset + len));
    offset += len;
  }
  return out.length > 0 ? out : undefined;
}
