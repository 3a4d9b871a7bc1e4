import { execFileSync } from "node:child_process";
import {
  renderBundle,
  shellQuote,
  provisionCommand,
  PROVISION_SCRIPT,
} from "../components/host-files";

describe("provisioning bundle", () => {
  const file = {
    path: "/etc/mailstack/x.key",
    mode: "0640",
    owner: "root",
    group: "_rspamd",
    content: "a\nb 'c'\n",
  };

  test("one line per file, content in base64", () => {
    expect(renderBundle([file, { ...file, path: "/etc/y" }])).toBe(
      `/etc/mailstack/x.key 0640 root _rspamd ${Buffer.from(file.content).toString("base64")}\n` +
        `/etc/y 0640 root _rspamd ${Buffer.from(file.content).toString("base64")}\n`,
    );
  });

  test.each([
    [
      "a path with a space",
      { ...file, path: "/etc/my file" },
      "host file path '/etc/my file' has unsafe characters",
    ],
    [
      "an owner with a shell character",
      { ...file, owner: "root;reboot" },
      "host file owner 'root;reboot' has unsafe characters",
    ],
    [
      "a mode that is not octal",
      { ...file, mode: "0844" },
      "host file /etc/mailstack/x.key: mode '0844' is not octal",
    ],
  ])("refuses %s", (_, bad, message) => {
    expect(() => renderBundle([bad])).toThrow(message);
  });
});

describe("provisioning command", () => {
  test.each(["plain", "it's", "'", "a\nb", '$(reboot) `x` "y" \\z'])(
    "shellQuote keeps %j intact",
    (text) => {
      expect(execFileSync("bash", ["-c", `printf %s ${shellQuote(text)}`]).toString()).toBe(text);
    },
  );

  test("runs the provisioning script, byte for byte, as root through sudo", () => {
    const cmd = provisionCommand();
    expect(cmd.startsWith("sudo -n /bin/bash -c ")).toBe(true);
    // What bash receives as the script is exactly the file.
    const script = execFileSync("bash", [
      "-c",
      `printf %s ${cmd.slice("sudo -n /bin/bash -c ".length, cmd.lastIndexOf(" "))}`,
    ]);
    expect(script.toString()).toBe(PROVISION_SCRIPT);
  });
});
