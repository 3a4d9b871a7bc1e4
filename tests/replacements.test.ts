// The deploy's replacement check on small previews shaped as `pulumi preview --json` writes
// them: each refusal beside the preview or allowance that passes.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ALLOW_ENV,
  checkReplacements,
  checkReplacementsCli,
  guardedChanges,
} from "../scripts/replacements";

const T = {
  server: "hcloud:index/server:Server",
  volume: "hcloud:index/volume:Volume",
  ip: "hcloud:index/primaryIp:PrimaryIp",
  record: "cloudflare:index/dnsRecord:DnsRecord",
  command: "command:remote:Command",
  key: "tls:index/privateKey:PrivateKey",
};
const PARENTS = "mailstack:index:MailStack$mailstack:index:MailServer";
const urn = (type: string, name: string) =>
  `urn:pulumi:prod::mailstack::${PARENTS}$${type}::${name}`;
const SERVER = urn(T.server, "mailstack-host-server");
const VOLUME = urn(T.volume, "mailstack-host-mail");
const IPV4 = urn(T.ip, "mailstack-host-ipv4");

/** One step as the preview writes it: op, URN, and the states that carry the type. */
function step(op: string, type: string, name: string, replaceReasons?: string[]) {
  const state = { urn: urn(type, name), type, custom: true };
  return {
    op,
    urn: urn(type, name),
    ...(op === "create" || op === "create-replacement" ? {} : { oldState: state }),
    ...(op === "delete" || op === "delete-replaced" ? {} : { newState: state }),
    ...(replaceReasons ? { replaceReasons } : {}),
  };
}

/** What a preview shows for a replacement with deleteBeforeReplace, as the server has. */
const replaced = (type: string, name: string, reasons: string[]) =>
  ["delete-replaced", "replace", "create-replacement"].map((op) => step(op, type, name, reasons));

const preview = (...steps: unknown[]) => ({
  config: {},
  steps,
  changeSummary: { update: 1, same: 40 },
});

const UPDATE = preview(
  step("update", T.record, "mailstack-dns-mx"),
  step("update", T.command, "mailstack-provision-install"),
);
const SERVER_REPLACED = preview(
  step("update", T.command, "mailstack-provision-install"),
  ...replaced(T.server, "mailstack-host-server", ["userData"]),
);

const SERVER_LINE = `  replace the mail server: ${SERVER} (userData)`;

describe("the deploy goes on", () => {
  test("for a plain update, with or without the allowance", () => {
    for (const allow of [undefined, "", "server"]) {
      expect(checkReplacements(UPDATE, allow)).toEqual({
        ok: true,
        lines: [
          "no replacement of the server, the volume, the Primary IPs or the mail encryption key",
        ],
      });
    }
  });

  test("when something else is replaced: a record, the provisioning command", () => {
    const other = preview(
      ...replaced(T.record, "mailstack-dns-dkim", ["name"]),
      ...replaced(T.command, "mailstack-provision-install", ["triggers"]),
    );
    expect(checkReplacements(other, undefined).ok).toBe(true);
  });

  test("when nothing changes at all (a preview with no steps)", () => {
    expect(checkReplacements({ config: {}, changeSummary: { same: 41 } }, undefined).ok).toBe(true);
  });
});

describe("a server replacement", () => {
  test("is refused without the label, saying what to do", () => {
    expect(checkReplacements(SERVER_REPLACED, undefined)).toEqual({
      ok: false,
      lines: [
        "refused: this deploy would replace the mail server:",
        SERVER_LINE,
        "A new server boots from scratch and takes the volume and the addresses once the old " +
          "one is gone: no mail is received in between, and what the host held outside the " +
          "volume is gone. If that is meant, label the merged pull request replace-server and " +
          "re-run the deploy.",
      ],
    });
  });

  test("control: passes with MAILSTACK_ALLOW_REPLACE=server, and says so", () => {
    expect(checkReplacements(SERVER_REPLACED, "server")).toEqual({
      ok: true,
      lines: [
        "allowed by MAILSTACK_ALLOW_REPLACE=server (the merged pull request is labelled replace-server):",
        SERVER_LINE,
      ],
    });
  });

  test("is one finding however many steps show it, with every reason", () => {
    const twice = preview(
      ...replaced(T.server, "mailstack-host-server", ["userData"]),
      step("replace", T.server, "mailstack-host-server", ["image"]),
    );
    expect(guardedChanges(twice)).toEqual([
      { urn: SERVER, type: T.server, op: "replace", reasons: ["userData", "image"] },
    ]);
  });

  test("by another name (a rename deletes the old server) is refused the same way", () => {
    const renamed = preview(
      step("create", T.server, "mailstack-mail-server"),
      step("delete", T.server, "mailstack-host-server"),
    );
    expect(checkReplacements(renamed, undefined)).toMatchObject({
      ok: false,
      lines: [
        "refused: this deploy would replace the mail server:",
        `  delete the mail server: ${SERVER}`,
        expect.stringMatching(/label the merged pull request replace-server/),
      ],
    });
    expect(checkReplacements(renamed, "server").ok).toBe(true);
  });

  test("is found by the URN's type when a step carries no state", () => {
    expect(guardedChanges(preview({ op: "replace", urn: SERVER }))).toEqual([
      { urn: SERVER, type: T.server, op: "replace", reasons: [] },
    ]);
  });
});

describe("the volume and the Primary IPs", () => {
  const VOLUME_REPLACED = preview(...replaced(T.volume, "mailstack-host-mail", ["location"]));

  test("a volume replacement is refused, even with the allowance", () => {
    const refusal = {
      ok: false,
      lines: [
        "refused, whatever the label: this deploy would take away what holds the mail or its reputation:",
        `  replace the mail volume: ${VOLUME} (location)`,
        "The volume holds every mailbox, the Primary IPs the addresses' reputation and reverse " +
          "DNS; mailstack:protect should stop this too. Find what changes them (the reasons in " +
          "parentheses) and change it back: moving them is done by hand, never by the pipeline.",
      ],
    };
    expect(checkReplacements(VOLUME_REPLACED, undefined)).toEqual(refusal);
    expect(checkReplacements(VOLUME_REPLACED, "server")).toEqual(refusal);
  });

  test("a Primary IP replaced or deleted is refused, even with the allowance", () => {
    for (const [p, found] of [
      [
        preview(...replaced(T.ip, "mailstack-host-ipv4", ["location"])),
        `  replace a Primary IP: ${IPV4} (location)`,
      ],
      [preview(step("delete", T.ip, "mailstack-host-ipv4")), `  delete a Primary IP: ${IPV4}`],
    ] as const) {
      const verdict = checkReplacements(p, "server");
      expect([verdict.ok, verdict.lines[1]]).toEqual([false, found]);
    }
  });

  test("beside an allowed server replacement, the deploy is still refused", () => {
    const both = preview(
      ...replaced(T.server, "mailstack-host-server", ["userData"]),
      ...replaced(T.volume, "mailstack-host-mail", ["location"]),
    );
    const verdict = checkReplacements(both, "server");
    expect(verdict.ok).toBe(false);
    expect(verdict.lines[0]).toMatch(/^refused, whatever the label/);
    expect(verdict.lines).toContain(SERVER_LINE);
  });
});

describe("the mail encryption key", () => {
  const keyUrn = (name: string) =>
    `urn:pulumi:prod::mailstack::mailstack:index:MailStack$mailstack:index:MailKeys$${T.key}::${name}`;
  const keyStep = (op: string, name: string, replaceReasons?: string[]) => {
    const state = { urn: keyUrn(name), type: T.key, custom: true };
    return {
      op,
      urn: keyUrn(name),
      ...(op === "create" ? {} : { oldState: state }),
      ...(op === "delete" ? {} : { newState: state }),
      ...(replaceReasons ? { replaceReasons } : {}),
    };
  };

  test("replaced or deleted (a renamed stack) is refused, even with the allowance", () => {
    for (const [p, found] of [
      [
        preview(keyStep("replace", "mailstack-keys-mail-crypt", ["ecdsaCurve"])),
        `  replace the mail encryption key: ${keyUrn("mailstack-keys-mail-crypt")} (ecdsaCurve)`,
      ],
      [
        preview(
          keyStep("create", "mail-keys-mail-crypt"),
          keyStep("delete", "mailstack-keys-mail-crypt"),
        ),
        `  delete the mail encryption key: ${keyUrn("mailstack-keys-mail-crypt")}`,
      ],
    ] as const) {
      const verdict = checkReplacements(p, "server");
      expect(verdict.ok).toBe(false);
      expect(verdict.lines[1]).toBe(found);
      expect(verdict.lines[3]).toMatch(/^The mail encryption key is the only key to the mail/);
    }
  });

  test("control: the other keys (DKIM, TLS, SSH) may be made again", () => {
    const dkim = preview(keyStep("replace", "mailstack-keys-dkim", ["rsaBits"]));
    expect(guardedChanges(dkim)).toEqual([]);
    expect(checkReplacements(dkim, undefined).ok).toBe(true);
  });
});

describe("what the check will not guess about", () => {
  test("an allowance other than server is refused; empty is no allowance", () => {
    expect(checkReplacements(UPDATE, "volume")).toEqual({
      ok: false,
      lines: ['refused: MAILSTACK_ALLOW_REPLACE must be "server" or unset; got "volume"'],
    });
    expect(checkReplacements(UPDATE, "").ok).toBe(true);
  });

  test("a document that is no preview stops it, rather than pass for a clean one", () => {
    for (const doc of [{}, [], null, "steps", { steps: "none" }]) {
      expect(() => checkReplacements(doc, undefined)).toThrow(
        "not the JSON of pulumi preview --json (no steps, no changeSummary)",
      );
    }
  });
});

describe("npm run check-replacements", () => {
  const dir = mkdtempSync(join(tmpdir(), "replacements-"));
  const write = (doc: unknown) => {
    const file = join(dir, "preview.json");
    writeFileSync(file, typeof doc === "string" ? doc : JSON.stringify(doc));
    return file;
  };
  const run = (doc: unknown, allow?: string) => {
    const lines = { out: [] as string[], err: [] as string[] };
    const status = checkReplacementsCli(write(doc), allow, {
      out: (s) => lines.out.push(s),
      err: (s) => lines.err.push(s),
    });
    return { status, stdout: lines.out.join("\n"), stderr: lines.err.join("\n") };
  };

  test("exits 1 on a refusal, 0 with the allowance, 2 on what is no preview", () => {
    const refused = run(SERVER_REPLACED);
    expect([refused.status, refused.stderr]).toEqual([
      1,
      expect.stringContaining(
        `refused: this deploy would replace the mail server:\n${SERVER_LINE}\n`,
      ),
    ]);
    expect(run(SERVER_REPLACED, "server").status).toBe(0);
    expect(run(UPDATE).status).toBe(0);
    expect(run("Error: no stack named prod")).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/^check-replacements: .*preview\.json: Unexpected token/),
    });
  });

  test("the script exits with that status and reads the allowance from the environment", () => {
    const tsx = join(__dirname, "..", "node_modules", ".bin", "tsx");
    const script = join(__dirname, "..", "scripts", "check-replacements.ts");
    const file = write(SERVER_REPLACED);
    const refused = spawnSync(tsx, [script, file], {
      env: { ...process.env, [ALLOW_ENV]: "" },
      encoding: "utf8",
    });
    expect([refused.status, refused.stderr]).toEqual([
      1,
      expect.stringContaining(
        `refused: this deploy would replace the mail server:\n${SERVER_LINE}\n`,
      ),
    ]);
    // The control: the same preview with the allowance goes on.
    const allowed = spawnSync(tsx, [script, file], {
      env: { ...process.env, [ALLOW_ENV]: "server" },
      encoding: "utf8",
    });
    expect(allowed.status).toBe(0);
  });
});
