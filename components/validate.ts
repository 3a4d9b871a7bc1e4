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

/**
 * What is wrong with a mail address, or undefined when it is good. The domain must be a DNS
 * name; the local part (compared in lower case) may hold only `a-z 0-9 . _ + -`, with dots
 * only between other characters. That is what the big providers allow, and it keeps out what
 * RFC 5322 would let through but the host cannot carry: Postfix expands `$` in map results,
 * `/` would split a Maildir path, `:` splits Dovecot's passwd-file, `;` and `,` end a
 * `mailto:` in the DMARC and TLS-RPT records, and quotes, `|`, `{}` and backticks have no
 * business near a shell.
 *
 * `mailbox` is for an address the host itself receives (a user, a user's alias, a group
 * alias): there `+` is refused too. It is Postfix's `recipient_delimiter` (and Dovecot's
 * default one), so `a+b@` is read as `a@` with the extension `b`: a mailbox named `a+b`
 * would never receive mail (Dovecot's LMTP looks up `a`), and an alias so named would
 * shadow an extension of `a`. Report and ACME addresses may hold `+`: outside the domain
 * another provider's delimiter is no concern of ours, and inside it the mail reaches the
 * mailbox or alias before the `+` (config.ts checks that that one exists).
 */
export function emailProblem(value: string, opts: { mailbox?: boolean } = {}): string | undefined {
  const at = value.lastIndexOf("@");
  const local = value.slice(0, at).toLowerCase();
  const domain = value.slice(at + 1).toLowerCase();
  if (at < 1 || local.length > 64 || /\s/.test(local) || !isDomainName(domain)) {
    return "must be an email address (local@domain)";
  }
  if (!/^[a-z0-9._+-]+$/.test(local)) {
    return "the part before @ may hold only a-z, 0-9 and . _ + - (Postfix expands $, and / would split a Maildir path)";
  }
  if (local.startsWith(".") || local.endsWith(".") || local.includes("..")) {
    return "the part before @ must not start or end with a dot, nor hold two dots in a row";
  }
  if (opts.mailbox && local.includes("+")) {
    return "the part before @ must not hold + in a mailbox or alias: + is the recipient delimiter (alice+news@ is read as alice@ with the extension news)";
  }
  return undefined;
}

/** A mail address that `emailProblem` accepts, `+` allowed. */
export function isEmail(value: string): boolean {
  return emailProblem(value) === undefined;
}

const CIDR_RULE = "must be a CIDR such as 203.0.113.7/32 or 2001:db8::/48";

/**
 * What is wrong with a CIDR, or undefined when it is good. Only the canonical text passes:
 * the network address with no host bits set (`198.51.100.7/24` would silently open the whole
 * /24), an IPv4 address as four decimal numbers (ipaddr.js also reads `198.51.100` as
 * 198.51.0.100, and hex and octal, which nftables does not), an IPv6 address in RFC 5952 form
 * (lower case, `::` for the longest run of zeros, no zone) and a prefix length without leading
 * zeros. One spelling per network also keeps checks that compare text honest, such as the
 * policy pack's "open to the world". A bare address is refused, as it always was, rather
 * than read as one host; the message offers its /32 or /128.
 */
export function cidrProblem(value: string): string | undefined {
  if (!value.includes("/")) {
    const bits = ipaddr.IPv4.isValidFourPartDecimal(value)
      ? 32
      : ipaddr.IPv6.isValid(value)
        ? 128
        : undefined;
    if (bits === undefined) return CIDR_RULE;
    const host = canonicalCidr(`${value}/${bits}`);
    return `must be a CIDR with a prefix length: a bare address is not taken as /32 or /128 (did you mean ${host}?)`;
  }
  let address: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    [address] = ipaddr.parseCIDR(value);
  } catch {
    return CIDR_RULE;
  }
  const written = value.slice(0, value.lastIndexOf("/"));
  if (address.kind() === "ipv4" && !ipaddr.IPv4.isValidFourPartDecimal(written)) {
    return `${CIDR_RULE}, with all four numbers of the IPv4 address in decimal`;
  }
  const canonical = canonicalCidr(value);
  if (value === canonical) return undefined;
  const network = ipaddr.parseCIDR(canonical)[0];
  return network.toByteArray().join() !== address.toByteArray().join()
    ? `must be a network address with no host bits set (did you mean ${canonical}?)`
    : `must be written in canonical form (did you mean ${canonical}?)`;
}

/** The canonical text of a CIDR that ipaddr.js parses: its network address and prefix. */
function canonicalCidr(value: string): string {
  const [address, prefix] = ipaddr.parseCIDR(value);
  const network =
    address.kind() === "ipv4"
      ? ipaddr.IPv4.networkAddressFromCIDR(value)
      : ipaddr.IPv6.networkAddressFromCIDR(value);
  return `${network.toString()}/${prefix}`;
}

/** A canonical IPv4 or IPv6 network in CIDR notation, e.g. `203.0.113.0/24` or `2001:db8::/32`. */
export function isCidr(value: string): boolean {
  return cidrProblem(value) === undefined;
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

/**
 * An IP address literal: IPv4 as four decimal numbers (ipaddr.js would also read
 * `198.51.100` and hex or octal, which ssh and Go do not), or IPv6 without a zone and
 * without brackets (the port is a setting of its own).
 */
export function isIpAddress(value: string): boolean {
  return (
    ipaddr.IPv4.isValidFourPartDecimal(value) ||
    (ipaddr.IPv6.isValid(value) && !value.includes("%"))
  );
}

/** A login name as Debian's adduser takes it by default (NAME_REGEX), at most 32 characters. */
export function isLoginName(value: string): boolean {
  return /^[a-z_][a-z0-9_-]{0,31}$/.test(value);
}

/** PEM labels of the private keys the command provider reads (Go's ssh.ParsePrivateKey). */
const PRIVATE_KEY_LABELS = [
  "OPENSSH PRIVATE KEY",
  "RSA PRIVATE KEY",
  "EC PRIVATE KEY",
  "PRIVATE KEY",
];

/**
 * Checks an SSH private key as the command provider reads it: one `-----BEGIN ...-----`
 * block in OpenSSH, PKCS#1, SEC1 or PKCS#8 format, without a passphrase. Returns a reason
 * when it is not, undefined when it is good. A deployment has nobody to type a passphrase,
 * and the provider would find that out only when it dials, after every retry.
 */
export function sshPrivateKeyProblem(text: string): string | undefined {
  const encrypted =
    "is protected by a passphrase, which a deployment cannot type: use a key of its own without one (ssh-keygen -t ed25519 -N '')";
  const m = /^-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)\r?\n-----END \1-----$/.exec(text.trim());
  if (m?.[1] === "ENCRYPTED PRIVATE KEY") return encrypted;
  if (!m || !PRIVATE_KEY_LABELS.includes(m[1])) {
    return "must be an SSH private key in OpenSSH or PEM format (-----BEGIN OPENSSH PRIVATE KEY----- ...)";
  }
  const [, label, body] = m;
  // PKCS#1 and SEC1 say so in a header; OpenSSH names its cipher inside the key.
  if (/^Proc-Type:\s*4,ENCRYPTED/m.test(body)) return encrypted;
  if (label === "OPENSSH PRIVATE KEY") {
    const blob = Buffer.from(body.replace(/\s+/g, ""), "base64");
    const magic = "openssh-key-v1\0";
    if (blob.subarray(0, magic.length).toString("latin1") !== magic) {
      return "the OpenSSH private key's data is not an openssh-key-v1 key";
    }
    // The cipher's name is the first string after the magic; "none" when unencrypted.
    const rest = blob.subarray(magic.length);
    const length = rest.length >= 4 ? rest.readUInt32BE(0) : -1;
    if (rest.subarray(4, 4 + length).toString("latin1") !== "none") return encrypted;
  }
  return undefined;
}
