// App passwords and the account throttle on a real host (alpha). Alice has a phone (IMAP and
// SMTP) and a scanner (SMTP only) besides her main password; Dave has a laptop and
// appPasswordsOnly. Each refusal sits beside the login that the same path lets in.
import { BRIDGE, LAB_DEVICES_IP4, LAB_OFFICE_IP4 } from "../../lab/settings";
import { labHostFilesOf, passwords, provision, provisionWith } from "../../lab/lab";
import {
  HOSTS,
  appPasswordOf,
  imapLoginAs as imapFrom,
  local,
  onHost,
  sieveLoginAs as sieveFrom,
  smtpLoginAs as smtpFrom,
} from "./support";

const alpha = HOSTS[0];
const domain = alpha.config.domain;
const alice = `alice@${domain}`;
const dave = `dave@${domain}`;
const main = (address: string) => passwords(alpha)[address];
const OFFICE = LAB_OFFICE_IP4;
// Logins come from the devices' own address unless the test names another: the account
// throttle counts wrong passwords per account and address, and other suites log in with
// wrong passwords from the lab's own address.
const DEVICES = LAB_DEVICES_IP4;
type Login = (h: typeof alpha, user: string, password: string, from?: string) => Promise<string>;
const fromDevices =
  (login: Login): Login =>
  (h, user, password, from = DEVICES) =>
    login(h, user, password, from);
const imapLoginAs = fromDevices(imapFrom);
const smtpLoginAs = fromDevices(smtpFrom);
const sieveLoginAs = fromDevices(sieveFrom);

beforeAll(() => {
  local("ip", ["addr", "replace", `${DEVICES}/24`, "dev", BRIDGE]);
});

const IMAP_OK = /^a1 OK /;
const IMAP_NO = /^a1 NO \[AUTHENTICATIONFAILED\]/;
const SMTP_OK = /^235 /;
const SMTP_NO = /^535 5\.7\.8 /;
const SIEVE_OK = /^OK /;
const SIEVE_NO = /^NO /;

describe("app passwords", () => {
  test("each device's password opens its own protocols, and no other", async () => {
    const phone = appPasswordOf(alpha, alice, "phone");
    const scanner = appPasswordOf(alpha, alice, "scanner");
    expect({
      phoneImap: await imapLoginAs(alpha, alice, phone),
      phoneSmtp: await smtpLoginAs(alpha, alice, phone),
      phoneSieve: await sieveLoginAs(alpha, alice, phone),
      scannerSmtp: await smtpLoginAs(alpha, alice, scanner),
      scannerImap: await imapLoginAs(alpha, alice, scanner),
      mainImap: await imapLoginAs(alpha, alice, main(alice)),
      mainSieve: await sieveLoginAs(alpha, alice, main(alice)),
    }).toEqual({
      phoneImap: expect.stringMatching(IMAP_OK),
      phoneSmtp: expect.stringMatching(SMTP_OK),
      phoneSieve: expect.stringMatching(SIEVE_NO),
      scannerSmtp: expect.stringMatching(SMTP_OK),
      scannerImap: expect.stringMatching(IMAP_NO),
      mainImap: expect.stringMatching(IMAP_OK),
      mainSieve: expect.stringMatching(SIEVE_OK),
    });
    // A device's password is its user's alone (Carol's: Dave's wrong passwords are counted by
    // the account throttle, and the next test makes three more).
    expect(await imapLoginAs(alpha, `carol@${domain}`, phone)).toMatch(IMAP_NO);
  });

  test("with appPasswordsOnly the main password opens nothing, the device's password does", async () => {
    const laptop = appPasswordOf(alpha, dave, "laptop");
    // Dovecot delays each failed login from an address a little more (2, 4, 8, 15 s) until
    // one succeeds, and Postfix waits 10 s for its answer: the refusal over SMTP comes right
    // after a good login, before the other refusals.
    const laptopImap = await imapLoginAs(alpha, dave, laptop);
    const mainSmtp = await smtpLoginAs(alpha, dave, main(dave));
    expect({
      mainImap: await imapLoginAs(alpha, dave, main(dave)),
      mainSmtp,
      mainSieve: await sieveLoginAs(alpha, dave, main(dave)),
      laptopImap,
      laptopSmtp: await smtpLoginAs(alpha, dave, laptop),
    }).toEqual({
      mainImap: expect.stringMatching(IMAP_NO),
      mainSmtp: expect.stringMatching(SMTP_NO),
      mainSieve: expect.stringMatching(SIEVE_NO),
      laptopImap: expect.stringMatching(IMAP_OK),
      laptopSmtp: expect.stringMatching(SMTP_OK),
    });
    // On the host: the users file holds no password at all, the passwords file no main
    // password for dave, and both are Dovecot's and root's only.
    expect(onHost(alpha, "stat -c '%a %U %G' /etc/dovecot/users /etc/dovecot/passwords")).toBe(
      "640 root dovecot\n640 root dovecot\n",
    );
    expect(onHost(alpha, `grep -c '^${dave} ' /etc/dovecot/passwords`).trim()).toBe("1");
    expect(onHost(alpha, `grep '^${dave} ' /etc/dovecot/passwords`)).toMatch(
      new RegExp(`^${dave} laptop imap,smtp \\{SSHA512\\}`),
    );
  });

  test("removing a device from the list revokes its password, and only its", async () => {
    const phone = appPasswordOf(alpha, alice, "phone");
    const scanner = appPasswordOf(alpha, alice, "scanner");
    const users = alpha.config.users.map((u) =>
      u.address === alice
        ? { ...u, appPasswords: u.appPasswords.filter((d) => d.name !== "phone") }
        : u,
    );
    const res = await provisionWith(alpha, await labHostFilesOf(alpha, { users }));
    try {
      expect(res.status).toBe(0);
      expect({
        phone: await imapLoginAs(alpha, alice, phone),
        scanner: await smtpLoginAs(alpha, alice, scanner),
        main: await imapLoginAs(alpha, alice, main(alice)),
      }).toEqual({
        phone: expect.stringMatching(IMAP_NO),
        scanner: expect.stringMatching(SMTP_OK),
        main: expect.stringMatching(IMAP_OK),
      });
    } finally {
      await provision(alpha);
    }
    // Back on the list: a new password in production (a new resource); the same in the lab.
    expect(await imapLoginAs(alpha, alice, phone)).toMatch(IMAP_OK);
  }, 900_000);
});

describe("the account throttle: a misconfigured phone behind an office's address", () => {
  const JAIL = "mailstack-account";
  const THROTTLE_SECONDS = 60;
  const throttled = () => onHost(alpha, "cat /var/lib/mailstack/throttled-logins || true");

  beforeAll(() => {
    local("ip", ["addr", "replace", `${OFFICE}/24`, "dev", BRIDGE]);
    // The production throttle lasts 15 minutes; shortened at run time to see it end.
    onHost(alpha, `fail2ban-client set ${JAIL} bantime ${THROTTLE_SECONDS}`);
  });
  afterAll(() => {
    onHost(alpha, `fail2ban-client set ${JAIL} bantime 900`);
    onHost(alpha, `fail2ban-client set ${JAIL} unbanip ${alice},${OFFICE} || true`);
    onHost(alpha, `fail2ban-client set dovecot unbanip ${OFFICE} || true`);
  });

  test("throttles that account from that address, not the address, nor the account elsewhere", async () => {
    const phone = appPasswordOf(alpha, alice, "phone");
    const laptop = appPasswordOf(alpha, dave, "laptop");
    // Controls: from the office, both work.
    expect(await imapLoginAs(alpha, alice, phone, OFFICE)).toMatch(IMAP_OK);
    expect(await imapLoginAs(alpha, dave, laptop, OFFICE)).toMatch(IMAP_OK);
    // The phone keeps an old password and retries, far past the address ban's count (10).
    const replies: string[] = [];
    for (let i = 0; i < 16; i++) {
      replies.push(await imapLoginAs(alpha, alice, "an-old-password", OFFICE));
    }
    // Refused each time: first as a wrong password, then as throttled.
    expect(replies.filter((r) => !/^a1 NO /.test(r))).toEqual([]);
    expect(throttled()).toBe(`${alice},${OFFICE}\n`);
    expect(onHost(alpha, `fail2ban-client status ${JAIL}`)).toContain(`${alice},${OFFICE}`);
    // Alice's right password from the office is refused while she is throttled there...
    expect(await imapLoginAs(alpha, alice, phone, OFFICE)).toMatch(/^a1 NO /);
    expect(onHost(alpha, "journalctl -u dovecot -n 50 --no-pager -o cat")).toContain(
      `throttled: too many wrong passwords for this account from ${OFFICE}`,
    );
    // ...and works from elsewhere; Dave at the same office is not locked out; the office's
    // address is not banned.
    expect(await imapLoginAs(alpha, alice, phone)).toMatch(IMAP_OK);
    expect(await imapLoginAs(alpha, dave, laptop, OFFICE)).toMatch(IMAP_OK);
    expect(await smtpLoginAs(alpha, dave, laptop, OFFICE)).toMatch(SMTP_OK);
    expect(onHost(alpha, "fail2ban-client status dovecot")).not.toContain(OFFICE);
    // The throttle ends by itself.
    const end = Date.now() + (THROTTLE_SECONDS + 90) * 1000;
    let last = "";
    while (
      Date.now() < end &&
      !IMAP_OK.test((last = await imapLoginAs(alpha, alice, phone, OFFICE)))
    ) {
      await new Promise((r) => setTimeout(r, 5000));
    }
    expect(last).toMatch(IMAP_OK);
    expect(throttled()).toBe("");
  }, 600_000);
});
