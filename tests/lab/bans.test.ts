// Fail2Ban on nftables: repeated failed logins ban the client's address, and the ban ends.
// The client uses an address of its own on the lab segment, so the ban touches no other test.
// It guesses user names, as a scanner does: wrong passwords for one real account throttle that
// account instead (tests/lab/app-passwords.test.ts).
import { BRIDGE, LAB_CLIENT_IP4 } from "../../lab/settings";
import { HOSTS, imapLoginAs, local, onHost, passwordOf, smtpLoginAs } from "./support";

const alpha = HOSTS[0];
const alice = `alice@${alpha.config.domain}`;
const CLIENT = LAB_CLIENT_IP4;
const BAN_SECONDS = 60;

type Login = (user: string, password: string, localAddress: string) => Promise<string>;
const smtpLogin: Login = (user, password, from) => smtpLoginAs(alpha, user, password, from);
const imapLogin: Login = (user, password, from) => imapLoginAs(alpha, user, password, from);

/** What a connection from the address meets: an answer, or the ban's refusal. */
const reach = (login: Login, localAddress: string) =>
  login(alice, passwordOf(alpha, alice), localAddress).then(
    () => "answered",
    (e: NodeJS.ErrnoException) => e.code ?? String(e),
  );

async function until(
  what: () => Promise<string>,
  want: string,
  timeoutMs: number,
): Promise<string> {
  const end = Date.now() + timeoutMs;
  let state = "";
  while (Date.now() < end && (state = await what()) !== want) {
    await new Promise((r) => setTimeout(r, 2000));
  }
  return state;
}

beforeAll(() => {
  local("ip", ["addr", "replace", `${CLIENT}/24`, "dev", BRIDGE]);
});

afterAll(() => {
  onHost(alpha, `fail2ban-client unban ${CLIENT} || true`);
});

// One jail for both: Dovecot checks the passwords of IMAP and of Postfix's submission alike.
describe.each([
  ["submission (465)", smtpLogin, /^235 /, /^535 /],
  ["IMAPS (993)", imapLogin, /^a1 OK/, /^a1 NO /],
] as [string, Login, RegExp, RegExp][])("jail dovecot, %s", (what, login, ok, refused) => {
  const jail = "dovecot";
  beforeAll(() => {
    // The production ban lasts an hour; the test shortens it at run time to see it end.
    onHost(alpha, `fail2ban-client set ${jail} bantime ${BAN_SECONDS}`);
  });
  afterAll(() => {
    onHost(alpha, `fail2ban-client set ${jail} bantime 3600`);
  });

  test(`repeated failed ${what} logins get the address banned, and the ban expires`, async () => {
    // Control: the right password from this address works.
    expect(await login(alice, passwordOf(alpha, alice), CLIENT)).toMatch(ok);
    // The jail counts ten failures; guessed names, each an unknown user.
    for (let i = 0; i < 12; i++) {
      const r = await login(`guess${i}@${alpha.config.domain}`, "wrong-password", CLIENT).catch(
        (e: Error) => e.message,
      );
      if (!refused.test(r)) break; // banned already
    }
    // Fail2Ban has banned the address; then a new connection from it is refused. What the
    // firewall holds is shown if it is not.
    const banned = () => onHost(alpha, `fail2ban-client status ${jail}`).includes(CLIENT);
    const end = Date.now() + 60_000;
    while (!banned() && Date.now() < end) await new Promise((r) => setTimeout(r, 2000));
    expect(onHost(alpha, `fail2ban-client status ${jail}`)).toContain(CLIENT);
    const met = await until(() => reach(login, CLIENT), "ECONNREFUSED", 30_000);
    expect({
      met,
      firewall: met === "ECONNREFUSED" ? "" : onHost(alpha, "nft list table inet f2b-table"),
    }).toEqual({ met: "ECONNREFUSED", firewall: "" });
    // Other clients are not affected.
    expect(await login(alice, passwordOf(alpha, alice), "198.51.100.1")).toMatch(ok);
    // The ban ends by itself.
    expect(await until(() => reach(login, CLIENT), "answered", (BAN_SECONDS + 60) * 1000)).toBe(
      "answered",
    );
  }, 300_000);
});
