// Fail2Ban on nftables: repeated failed logins ban the client's address, and the ban ends.
// The client uses an address of its own on the lab segment, so the ban touches no other test.
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { BRIDGE, LAB_CLIENT_IP4 } from "../../lab/settings";
import { HOSTS, acmeRoot, local, onHost, passwordOf } from "./support";
import { SmtpSession } from "./smtp";

const alpha = HOSTS[0];
const alice = `alice@${alpha.config.domain}`;
const CLIENT = LAB_CLIENT_IP4;
const BAN_SECONDS = 60;

/** AUTH PLAIN on 465 from an address; the reply line. */
async function smtpLogin(password: string, localAddress: string): Promise<string> {
  const s = await SmtpSession.open({
    host: alpha.ipv4,
    port: 465,
    tls: { ca: await acmeRoot(), servername: alpha.config.mailHost },
    localAddress,
  });
  try {
    await s.ehlo();
    return (await s.authPlain(alice, password)).text;
  } finally {
    s.close();
  }
}

/** LOGIN on IMAPS from an address; the tagged reply line. */
async function imapLogin(password: string, localAddress: string): Promise<string> {
  const ca = await acmeRoot();
  const plain = await new Promise<ReturnType<typeof netConnect>>((resolve, reject) => {
    const s = netConnect({ host: alpha.ipv4, port: 993, localAddress }, () => {
      s.setTimeout(0);
      resolve(s);
    });
    // A connection that hangs is an answer of its own, not a wait that eats the ban.
    s.setTimeout(10_000, () =>
      s.destroy(Object.assign(new Error("IMAPS connection timed out"), { code: "ETIMEDOUT" })),
    );
    s.once("error", reject);
  });
  const tls = await new Promise<ReturnType<typeof tlsConnect>>((resolve, reject) => {
    const s = tlsConnect({ socket: plain, ca, servername: alpha.config.mailHost }, () =>
      resolve(s),
    );
    s.once("error", reject);
  });
  tls.setEncoding("utf8");
  let text = "";
  const until = (re: RegExp) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`IMAP: no ${re} in ${text}`)), 20_000);
      const check = () => {
        const m = text.match(re);
        if (m) {
          clearTimeout(timer);
          tls.off("data", onData);
          resolve(m[0]);
        }
      };
      const onData = (d: string) => {
        text += d;
        check();
      };
      tls.on("data", onData);
      check();
    });
  try {
    await until(/^\* OK.*\r\n/m);
    tls.write(`a1 LOGIN "${alice}" "${password}"\r\n`);
    return (await until(/^a1 .*\r\n/m)).trim();
  } finally {
    tls.destroy();
  }
}

type Login = (password: string, localAddress: string) => Promise<string>;

/** What a connection from the address meets: an answer, or the ban's refusal. */
const reach = (login: Login, localAddress: string) =>
  login(passwordOf(alpha, alice), localAddress).then(
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

describe.each([
  ["postfix-sasl", "submission (465)", smtpLogin, /^235 /, /^535 /],
  ["dovecot", "IMAPS (993)", imapLogin, /^a1 OK/, /^a1 NO /],
] as [string, string, Login, RegExp, RegExp][])("jail %s", (jail, what, login, ok, refused) => {
  beforeAll(() => {
    // The production ban lasts an hour; the test shortens it at run time to see it end.
    onHost(alpha, `fail2ban-client set ${jail} bantime ${BAN_SECONDS}`);
  });
  afterAll(() => {
    onHost(alpha, `fail2ban-client set ${jail} bantime 3600`);
  });

  test(`repeated failed ${what} logins get the address banned, and the ban expires`, async () => {
    // Control: the right password from this address works.
    expect(await login(passwordOf(alpha, alice), CLIENT)).toMatch(ok);
    for (let i = 0; i < 6; i++) {
      const r = await login("wrong-password", CLIENT).catch((e: Error) => e.message);
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
    expect(await login(passwordOf(alpha, alice), "198.51.100.1")).toMatch(ok);
    // The ban ends by itself.
    expect(await until(() => reach(login, CLIENT), "answered", (BAN_SECONDS + 60) * 1000)).toBe(
      "answered",
    );
  }, 300_000);
});
