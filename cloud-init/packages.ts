// The Debian packages of the mail host, in one place: cloud-init installs them on a stock
// image, and the lab bakes the very same list into its image.

/** Packages every host gets, grouped by what they are for. */
const BASE_PACKAGES = [
  // Mail transfer: Postfix with PCRE tables.
  "postfix",
  "postfix-pcre",
  // Mail store and access: Dovecot 2.4 with IMAP, LMTP, Sieve and ManageSieve.
  "dovecot-core",
  "dovecot-imapd",
  "dovecot-lmtpd",
  "dovecot-managesieved",
  "dovecot-sieve",
  // The passdb that checks per-device app passwords and per-account throttling (Lua).
  "dovecot-auth-lua",
  // Spam filtering and DKIM signing, with Redis for its state.
  "rspamd",
  "redis-server",
  // The host's own validating resolver: DANE for Postfix, DNS blocklists for Rspamd.
  "unbound",
  // The DNSSEC root trust anchor (only recommended by unbound, and packages are installed
  // without recommendations).
  "dns-root-data",
  // Host protection and upkeep.
  "nftables",
  "fail2ban",
  "unattended-upgrades",
  // The TOTP second factor of people's SSH logins (mailstack:adminMfa totp).
  "libpam-oath",
  // Certificates by DNS-01. certbot's DNS plugins follow no CNAME, so mailstack-acme-hook
  // writes the challenge where it is delegated: with curl through Cloudflare's API in
  // production, with knsupdate (RFC 2136) in the lab.
  "certbot",
  "curl",
  "knot-dnsutils",
  // Encrypted backups.
  "restic",
  // Metrics for Prometheus. The Postfix exporter reads Postfix's log as a file, which
  // Debian's cloud images no longer write (journald only): rsyslog writes /var/log/mail.log
  // (rotated by the stack's logrotate file, kept logRetentionDays).
  "prometheus-node-exporter",
  "prometheus-postfix-exporter",
  "rsyslog",
  // The daily report to postmaster: Postfix's log summarised by Debian's pflogsumm, and
  // the installed packages with known vulnerabilities, from Debian's security tracker by
  // debsecan (whose own daily mail to root /etc/default/debsecan turns off).
  "pflogsumm",
  "debsecan",
  "ca-certificates",
];

const CLAMAV_PACKAGES = ["clamav-daemon", "clamav-freshclam"];

export function hostPackages(opts: { clamav: boolean }): string[] {
  return [...BASE_PACKAGES, ...(opts.clamav ? CLAMAV_PACKAGES : [])].sort();
}
