// The first boot as on Hetzner: a stock image applies pending updates and loads the SSH-only
// firewall; the first provisioning installs the mail packages from the lab mirror (signed,
// like Debian's archive), and nothing answers with Debian's defaults before provisioning has
// configured it. `npm run lab` recorded the window between the two.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { provisionLog, type FirstBootState } from "../../lab/lab";
import { STATE_DIR } from "../../lab/settings";
import { HOSTS, onHost } from "./support";

const record = JSON.parse(readFileSync(join(STATE_DIR, "first-boot.json"), "utf8")) as {
  baked: boolean;
  firstBoot: Record<string, FirstBootState>;
};
// The fast mode boots an image with the packages baked in: not the path a real host takes.
const real = record.baked ? describe.skip : describe;

real.each(HOSTS.map((h) => [h.name, h] as const))("%s", (name, h) => {
  const first = record.firstBoot[name];

  test("the first provisioning installed the mail packages, from the signed lab mirror", () => {
    expect(first.packageSeconds).toBeGreaterThan(0);
    const log = readFileSync(provisionLog(h), "utf8");
    const installing = log.match(/installing \d+ packages: (.*)/)?.[1].split(" ") ?? [];
    expect(installing).toEqual(expect.arrayContaining(["postfix", "dovecot-core", "rspamd"]));
    expect(log).toMatch(/installed \d+ packages in \d+ s/);
    // apt verified the mirror's signature: the source names the lab key, and nothing else.
    const sources = onHost(
      h,
      "cat /etc/apt/sources.list.d/*.list; grep -v '^#' /etc/apt/sources.list || true",
    );
    expect(sources).toMatch(/^deb \[signed-by=\S+\] http:\/\/198\.51\.100\.1:8081\/ trixie main$/m);
    expect(onHost(h, "apt-get -q update 2>&1")).not.toMatch(/NO_PUBKEY|not signed|insecure/i);
  });

  test("the first boot applied pending updates and installed no mail package", () => {
    const log = onHost(h, "grep -E '^mailstack-bootstrap: ' /var/log/cloud-init-output.log")
      .trim()
      .split("\n");
    expect(
      log.filter((l) => /^mailstack-bootstrap: applied \d+ pending updates$/.test(l)),
    ).toHaveLength(1);
    expect(log.filter((l) => /packages/.test(l) && !/pending updates/.test(l))).toEqual([]);
  });
});

// Both images: the baked one holds the packages, and still starts none of their services
// before provisioning (the build defers their links to the first boot, which puts them back).
describe.each(HOSTS.map((h) => [h.name, h] as const))("%s, either image", (name, h) => {
  test("between the first boot and provisioning only SSH answered, and no mail service ran", () => {
    expect(record.firstBoot[name].openPorts).toEqual([22]);
    expect(record.firstBoot[name].running).toEqual([]);
  });

  test("the mail services are enabled, as installing their packages leaves them", () => {
    expect(onHost(h, "systemctl is-enabled postfix dovecot rspamd redis-server unbound")).toBe(
      "enabled\n".repeat(5),
    );
    expect(onHost(h, "test -e /etc/mailstack-lab/deferred-units && echo left || echo none")).toBe(
      "none\n",
    );
  });

  test("provisioning enabled what the host runs before its one reload: no start warned", () => {
    // A unit enabled without a reload leaves systemd's view of the unit files stale: every
    // later start then warns that a daemon-reload is due, and the units say they need one.
    const log = readFileSync(provisionLog(h), "utf8");
    expect(log).toMatch(/^mailstack-provision: postfix (re)?started \(at \d+ s\)$/m);
    expect(log).not.toMatch(/changed on disk|daemon-reload/);
    const units = ["postfix", "dovecot", "rspamd", "fail2ban", "mailstack-cert.timer"];
    expect(
      onHost(h, `for u in ${units.join(" ")}; do systemctl show -P NeedDaemonReload "$u"; done`),
    ).toBe("no\n".repeat(units.length));
  });
});

test("the first-boot window was recorded for every host", () => {
  expect(Object.keys(record.firstBoot).sort()).toEqual(HOSTS.map((h) => h.name).sort());
});
