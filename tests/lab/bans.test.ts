// Fail2Ban on nftables: repeated failed logins ban the client's address, and the ban ends.
// The client uses an address of its own on the lab segment, so the ban touches no other test.
// It guesses user names, as a scanner does: wrong passwords for one real account throttle that
// account instead (tests/lab/app-passwords.test.ts).
import { BRIDGE, LAB_CLIENT_IP4 } from "../../lab/settings";
import { HOSTS, imapLoginAs, local, onHost, passwordOf, smtpLoginAs } from "./support";

const alpha = HOSTS[0];
const alice = `alice@${alpha.config.domain}`;
const CLIENT = LAB_CLIENT_IP4;
// Long enough to outlast the guessing: Dovecot delays each failed login from an address a
// little more (up to 15 s), and the emulated host answers slowly.
const BAN_SECONDS = 180;

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

// One jail for both: Dovecot checks the passwords of IMAP and of Postfix's submission alike,
// and a ban closes both. The guessing is over IMAP: Dovecot delays each failed login from an
// address a little more (2, 4, 8, then 15 s), and from the fourth on, Postfix, which waits
// 10 s for Dovecot's answer, gives up and answers 454 before any password is checked; such a
// login is not logged as a failure, so submission alone makes the jail count three.
describe("jail dovecot", () => {
  const jail = "dovecot";
  beforeAll(() => {
    // The production ban lasts an hour; the test shortens it at run time to see it end.
    onHost(alpha, `fail2ban-client set ${jail} bantime ${BAN_SECONDS}`);
  });
  afterAll(() => {
    onHost(alpha, `fail2ban-client set ${jail} bantime 3600`);
  });

  test("repeated failed logins get the address banned from IMAPS and submission, and the ban expires", async () => {
    // Controls: the right password from this address works on both.
    expect(await imapLogin(alice, passwordOf(alpha, alice), CLIENT)).toMatch(/^a1 OK/);
    expect(await smtpLogin(alice, passwordOf(alpha, alice), CLIENT)).toMatch(/^235 /);
    // The jail counts ten failures; guessed names, each an unknown user. Every answer is a
    // refusal; a connection that fails is the ban.
    for (let i = 0; i < 12; i++) {
      const r = await imapLogin(`guess${i}@${alpha.config.domain}`, "wrong-password", CLIENT).catch(
        () => undefined,
      );
      if (r === undefined) break; // banned already
      expect(r).toMatch(/^a1 NO /);
    }
    // Fail2Ban has banned the address; then a new connection from it is refused, on both
    // ports. What the firewall holds is shown if it is not.
    const banned = () => onHost(alpha, `fail2ban-client status ${jail}`).includes(CLIENT);
    const end = Date.now() + 60_000;
    while (!banned() && Date.now() < end) await new Promise((r) => setTimeout(r, 2000));
    expect(onHost(alpha, `fail2ban-client status ${jail}`)).toContain(CLIENT);
    const met = {
      imaps: await until(() => reach(imapLogin, CLIENT), "ECONNREFUSED", 30_000),
      submission: await until(() => reach(smtpLogin, CLIENT), "ECONNREFUSED", 30_000),
    };
    expect({
      met,
      firewall:
        met.imaps === "ECONNREFUSED" && met.submission === "ECONNREFUSED"
          ? ""
          : onHost(alpha, "nft list table inet f2b-table"),
    }).toEqual({ met: { imaps: "ECONNREFUSED", submission: "ECONNREFUSED" }, firewall: "" });
    // Other clients are not affected.
    expect(await imapLogin(alice, passwordOf(alpha, alice), "198.51.100.1")).toMatch(/^a1 OK/);
    expect(await smtpLogin(alice, passwordOf(alpha, alice), "198.51.100.1")).toMatch(/^235 /);
    // The ban ends by itself.
    const wait = (BAN_SECONDS + 60) * 1000;
    expect(await until(() => reach(imapLogin, CLIENT), "answered", wait)).toBe("answered");
    expect(await until(() => reach(smtpLogin, CLIENT), "answered", 30_000)).toBe("answered");
  }, 900_000);
});
