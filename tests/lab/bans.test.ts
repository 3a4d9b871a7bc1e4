// Fail2Ban on nftables: repeated failed logins ban the client's address, and the ban ends.
// The client uses an address of its own on the lab segment, so the ban touches no other test.
import { BRIDGE } from "../../lab/settings";
import { HOSTS, acmeRoot, local, onHost, passwordOf } from "./support";
import { SmtpSession } from "./smtp";

const alpha = HOSTS[0];
const alice = `alice@${alpha.config.domain}`;
const CLIENT = "198.51.100.99";
const BAN_SECONDS = 40;

async function login(password: string, localAddress: string): Promise<string> {
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

const refused = (localAddress: string) =>
  login(passwordOf(alpha, alice), localAddress).then(
    () => "answered",
    (e: NodeJS.ErrnoException) => e.code ?? String(e),
  );

beforeAll(() => {
  local("ip", ["addr", "add", `${CLIENT}/24`, "dev", BRIDGE]);
  // The production ban lasts an hour; this test shortens it at run time to see it end.
  onHost(alpha, `fail2ban-client set postfix-sasl bantime ${BAN_SECONDS}`);
});

afterAll(() => {
  onHost(
    alpha,
    `fail2ban-client set postfix-sasl unbanip ${CLIENT} || true; fail2ban-client set postfix-sasl bantime 3600`,
  );
  local("ip", ["addr", "del", `${CLIENT}/24`, "dev", BRIDGE]);
});

test("repeated failed SMTP logins get the address banned (connections refused), then the ban expires", async () => {
  // Control: the right password from this address works.
  expect(await login(passwordOf(alpha, alice), CLIENT)).toMatch(/^235 /);
  for (let i = 0; i < 6; i++) {
    const r = await login("wrong-password", CLIENT).catch((e: Error) => e.message);
    if (!/^535 /.test(r)) break; // banned already
  }
  const deadline = Date.now() + 60_000;
  let state = "";
  while (Date.now() < deadline && (state = await refused(CLIENT)) === "answered") {
    await new Promise((r) => setTimeout(r, 2000));
  }
  expect(state).toBe("ECONNREFUSED");
  expect(onHost(alpha, "fail2ban-client status postfix-sasl")).toContain(CLIENT);
  // Other clients are not affected.
  expect(await login(passwordOf(alpha, alice), "198.51.100.1")).toMatch(/^235 /);

  // The ban ends by itself.
  const end = Date.now() + (BAN_SECONDS + 60) * 1000;
  while (Date.now() < end && (state = await refused(CLIENT)) !== "answered") {
    await new Promise((r) => setTimeout(r, 3000));
  }
  expect(state).toBe("answered");
}, 300_000);
