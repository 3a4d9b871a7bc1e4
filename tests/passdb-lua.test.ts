// The Dovecot passdb (cloud-init/host/etc/dovecot/mailstack-passdb.lua) run by a real Lua 5.4
// with a stand-in for Dovecot's side: its result constants and an auth request whose
// password_verify knows {PLAIN} (Dovecot's own schemes, SSHA512 and ARGON2ID, are the lab's
// part: tests/lab/app-passwords.test.ts). Which line opens which login, the throttle list, and
// the answers for an unknown user and a wrong password.
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HOST_TREE } from "../components/host-config";

const SCRIPT = join(HOST_TREE, "etc", "dovecot", "mailstack-passdb.lua");

/** Loads the script with its two paths moved into `dir`, then answers one login per line. */
const HARNESS = String.raw`
local script, dir = arg[1], arg[2]
dovecot = { auth = {
  PASSDB_RESULT_INTERNAL_FAILURE = -1, PASSDB_RESULT_SCHEME_NOT_AVAILABLE = -2,
  PASSDB_RESULT_USER_UNKNOWN = -3, PASSDB_RESULT_USER_DISABLED = -4,
  PASSDB_RESULT_PASS_EXPIRED = -5, PASSDB_RESULT_NEXT = -6,
  PASSDB_RESULT_PASSWORD_MISMATCH = 0, PASSDB_RESULT_OK = 1 } }
local names = {}
for k, v in pairs(dovecot.auth) do names[v] = k:gsub("^PASSDB_RESULT_", "") end
local f = assert(io.open(script)); local src = f:read("a"); f:close()
src = src:gsub('"/etc/dovecot/passwords"', string.format("%q", dir .. "/passwords"))
src = src:gsub('"/var/lib/mailstack/throttled%-logins"', string.format("%q", dir .. "/throttled"))
assert(load(src, "mailstack-passdb.lua"))()
for line in io.lines(dir .. "/logins") do
  local user, ip, protocol, password = line:match("^(%S+) (%S+) (%S+) (.*)$")
  local logs = {}
  local req = { user = user, remote_ip = ip, protocol = protocol }
  function req:log_info(m) logs[#logs + 1] = m end
  function req:password_verify(hash, plain)
    local p = hash:match("^{PLAIN}(.*)$")
    if p == nil then return -1, "unknown scheme" end
    return p == plain and 1 or 0, nil
  end
  local result = auth_password_verify(req, password)
  print(names[result] .. (#logs > 0 and (" " .. table.concat(logs, "; ")) or ""))
end
`;

const PASSWORDS = [
  "# address device protocols hash",
  "alice@example.eu - imap,smtp,sieve {PLAIN}main-alice",
  "alice@example.eu phone imap,smtp {PLAIN}phone-alice",
  "alice@example.eu scanner smtp {PLAIN}scanner-alice",
  "dave@example.eu laptop imap,smtp {PLAIN}laptop-dave",
  "",
].join("\n");

function answers(logins: string[], throttled?: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), "passdb-"));
  writeFileSync(join(dir, "harness.lua"), HARNESS);
  writeFileSync(join(dir, "passwords"), PASSWORDS);
  writeFileSync(join(dir, "logins"), logins.map((l) => `${l}\n`).join(""));
  if (throttled !== undefined) writeFileSync(join(dir, "throttled"), throttled);
  return execFileSync("lua5.4", [join(dir, "harness.lua"), SCRIPT, dir], { encoding: "utf8" })
    .trimEnd()
    .split("\n");
}

test("each password opens the protocols its line lists, and no other", () => {
  expect(
    answers([
      "alice@example.eu 192.0.2.1 imap main-alice",
      "alice@example.eu 192.0.2.1 sieve main-alice",
      "alice@example.eu 192.0.2.1 imap phone-alice",
      "alice@example.eu 192.0.2.1 smtp phone-alice",
      "alice@example.eu 192.0.2.1 sieve phone-alice",
      "alice@example.eu 192.0.2.1 smtp scanner-alice",
      "alice@example.eu 192.0.2.1 imap scanner-alice",
    ]),
  ).toEqual([
    "OK",
    "OK",
    "OK app password phone",
    "OK app password phone",
    "PASSWORD_MISMATCH",
    "OK app password scanner",
    "PASSWORD_MISMATCH",
  ]);
});

test("a password opens its own account only; unknown users and wrong passwords", () => {
  expect(
    answers([
      "dave@example.eu 192.0.2.1 imap laptop-dave",
      // dave has no main-password line (appPasswordsOnly): another user's password fails.
      "dave@example.eu 192.0.2.1 imap main-alice",
      "alice@example.eu 192.0.2.1 imap laptop-dave",
      "alice@example.eu 192.0.2.1 imap wrong",
      "alice@example.eu 192.0.2.1 imap ",
      "mallory@example.eu 192.0.2.1 imap main-alice",
    ]),
  ).toEqual([
    "OK app password laptop",
    "PASSWORD_MISMATCH",
    "PASSWORD_MISMATCH",
    "PASSWORD_MISMATCH",
    "PASSWORD_MISMATCH",
    // Logged for Fail2Ban: Dovecot logs a wrong password itself, not an unknown user.
    "USER_UNKNOWN unknown user",
  ]);
});

test("a throttled account is refused from that address only, before its password is checked", () => {
  const throttled = "alice@example.eu,192.0.2.1\nbob@example.eu,192.0.2.9\n";
  expect(
    answers(
      [
        "alice@example.eu 192.0.2.1 imap phone-alice",
        "alice@example.eu 192.0.2.1 imap wrong",
        // The same account from another address, another account from the same address.
        "alice@example.eu 192.0.2.2 imap phone-alice",
        "dave@example.eu 192.0.2.1 imap laptop-dave",
      ],
      throttled,
    ),
  ).toEqual([
    "USER_DISABLED throttled: too many wrong passwords for this account from 192.0.2.1",
    "USER_DISABLED throttled: too many wrong passwords for this account from 192.0.2.1",
    "OK app password phone",
    "OK app password laptop",
  ]);
  // The control: with the list empty, the same login is let in.
  expect(answers(["alice@example.eu 192.0.2.1 imap phone-alice"], "")).toEqual([
    "OK app password phone",
  ]);
});
