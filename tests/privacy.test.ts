import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EU_LOCATIONS, parseConfig, parseStackFile } from "../components/config";
import { DISCOVERY_HOSTS } from "../components/discovery";
import { inboundRules } from "../components/firewall";
import { HOST_TREE } from "../components/host-config";
import { dovecotPasswordHash } from "../components/passwords";
import {
  type Doc,
  HETZNER_LOCATIONS,
  HOST_FACTS,
  POSTSCREEN_LISTS,
  htmlEscape,
  privacyDocuments,
  privacyNotice,
  recordOfProcessing,
  toHtml,
  toMarkdown,
} from "../components/privacy";
import { main } from "../scripts/privacy-notice";
import { MINIMAL_RAW, PROD_RAW } from "./support/config";

const ROOT = join(__dirname, "..");
const PROD_FILE = join(ROOT, "Pulumi.prod.yaml");

/** The notice and the record, as Markdown, for raw settings on top of MINIMAL_RAW. */
function docs(extra: Record<string, unknown> = {}) {
  const cfg = parseConfig({ ...MINIMAL_RAW, ...extra });
  return {
    notice: toMarkdown(privacyNotice(cfg)),
    record: toMarkdown(recordOfProcessing(cfg)),
  };
}
const backup = (b: Record<string, unknown>) => ({ backup: JSON.stringify(b) });
/** Hetzner Object Storage needs its credential (secrets, never shown in the texts). */
const HETZNER_KEYS = { backupAccessKeyId: "access", backupSecretAccessKey: "secret" };
/** A key with the armor parseConfig checks; readOpenPgpKeys, which parses it, is not called. */
const ARMORED = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nmDMEZ\n-----END PGP PUBLIC KEY BLOCK-----";

describe("the notice follows the stack's settings", () => {
  test("every EU location the config accepts has a place, and no other", () => {
    expect(Object.keys(HETZNER_LOCATIONS).sort()).toEqual([...EU_LOCATIONS].sort());
  });

  test.each([
    ["fsn1", "Falkenstein, Germany"],
    ["nbg1", "Nuremberg, Germany"],
    ["hel1", "Helsinki, Finland"],
  ])("location %s: the server is in %s", (location, place) => {
    const { notice, record } = docs({ location });
    expect(notice).toContain(
      `- The mail server runs at Hetzner in ${place} (Hetzner location \`${location}\`), in the EU.`,
    );
    expect(notice).toContain(
      `| Hetzner Online GmbH, Germany | Runs the mail server and its storage volume | ${place} (${location}) |`,
    );
    expect(record).toContain(`| location | \`${location}\` (${place}) |`);
    // No other place is named for the server.
    for (const [other, { city }] of Object.entries(HETZNER_LOCATIONS)) {
      if (other !== location) expect(notice).not.toContain(city);
    }
  });

  test("moving the server from fsn1 to hel1 changes exactly the place", () => {
    const before = docs({ location: "fsn1" }).notice;
    const after = docs({ location: "hel1" }).notice;
    expect(after).not.toBe(before);
    expect(
      after.replace(/Helsinki, Finland/g, "Falkenstein, Germany").replace(/hel1/g, "fsn1"),
    ).toBe(before);
  });

  test("log retention: 14 days by default, 30 when set, in the notice and the record", () => {
    const row = (days: number) =>
      `| Logs (IP addresses, mail addresses, logins) | ${days} days. Logs are cleared daily, so an ` +
      "entry is gone at most a day after that. |";
    const fourteen = docs();
    expect(fourteen.notice).toContain(row(14));
    expect(fourteen.record).toContain("| Erasure | 14 days (logRetentionDays): journald");
    const thirty = docs({ logRetentionDays: "30" });
    expect(thirty.notice).toContain(row(30));
    expect(thirty.notice).not.toContain(row(14));
    expect(thirty.record).toContain("| Erasure | 30 days (logRetentionDays): journald");
    expect(docs({ logRetentionDays: "1" }).notice).toContain(
      "| Logs (IP addresses, mail addresses, logins) | 1 day. Logs are cleared daily",
    );
  });

  test.each([
    [{}, "7 daily, 4 weekly and 12 monthly snapshots", "12 months"],
    [{ keepDaily: 14, keepWeekly: 0, keepMonthly: 0 }, "14 daily snapshots", "14 days"],
    [{ keepDaily: 3, keepWeekly: 2, keepMonthly: 0 }, "3 daily and 2 weekly snapshots", "2 weeks"],
    [
      { keepDaily: 30, keepWeekly: 2, keepMonthly: 0 },
      "30 daily and 2 weekly snapshots",
      "30 days",
    ],
    [{ keepDaily: 0, keepWeekly: 0, keepMonthly: 1 }, "1 monthly snapshot", "1 month"],
  ])("backup retention %j: %s, kept up to about %s", (keep, kept, horizon) => {
    const { notice, record } = docs(backup(keep));
    expect(notice).toContain(
      `| Backups | ${kept} are kept. What you delete stays in the backups until the last ` +
        `snapshot that holds it is dropped: up to about ${horizon}. |`,
    );
    expect(record).toContain(
      `| Erasure | ${kept}, on the schedule \`daily\`: deleted data stays in the backups for ` +
        `up to about ${horizon}. |`,
    );
  });

  test("the record names the retention settings as set", () => {
    const { record } = docs(backup({ keepDaily: 5, keepWeekly: 3, keepMonthly: 6 }));
    expect(record).toContain("| backup.keepDaily / keepWeekly / keepMonthly | `5 / 3 / 6` |");
  });

  test("backups off: no backup store among the processors, and the notice says none are made", () => {
    const BACKUP_ROW = "| Cloudflare, Inc., USA | Stores the backups (Cloudflare R2) |";
    // The control: backups on (the default) name their store.
    const on = docs();
    expect(on.notice).toContain(BACKUP_ROW);
    expect(on.record).toContain("### 5. Backups");
    const off = docs(backup({ enabled: false }));
    expect(off.notice).not.toContain(BACKUP_ROW);
    expect(off.notice).not.toMatch(/Stores the backups/);
    expect(off.notice).toContain("- No backups are made: the mail exists on the mail server only.");
    expect(off.notice).toContain("| Backups | None are made. |");
    expect(off.notice).not.toContain("Backups are encrypted");
    expect(off.record).not.toMatch(/### \d+\. Backups/);
    expect(off.record).toContain("| backup.enabled | `false` |");
    expect(off.record).toContain(
      "| Cloudflare, Inc., USA | DNS, the Worker | Worldwide | **\\[FILL IN: DPA concluded on\\]** |",
    );
  });

  test("backups on R2: Cloudflare R2 and its EU jurisdiction are named", () => {
    const { notice, record } = docs();
    expect(notice).toContain(
      "- Backups are kept in Cloudflare R2, bucket `mail-example-eu-backup` in R2's EU " +
        "jurisdiction (`eu`): the objects are stored in the EU.",
    );
    expect(notice).toContain(
      "| Cloudflare, Inc., USA | Stores the backups (Cloudflare R2) | EU (R2 jurisdiction `eu`) |",
    );
    expect(record).toContain(
      "| Cloudflare, Inc., USA | DNS, the Worker, R2 (backups) | Worldwide; R2 in the EU " +
        "jurisdiction |",
    );
    expect(notice).not.toContain("Hetzner Object Storage");
  });

  test("backups on Hetzner Object Storage: its location, the stack's unless set", () => {
    const own = docs({ ...backup({ provider: "hetzner" }), ...HETZNER_KEYS, location: "hel1" });
    expect(own.notice).toContain(
      "- Backups are kept in Hetzner Object Storage in Helsinki, Finland (location `hel1`), " +
        "bucket `mail-example-eu-backup`.",
    );
    const elsewhere = docs({
      ...backup({ provider: "hetzner", location: "nbg1" }),
      ...HETZNER_KEYS,
      location: "hel1",
    });
    expect(elsewhere.notice).toContain(
      "| Hetzner Online GmbH, Germany | Stores the backups (Hetzner Object Storage) | " +
        "Nuremberg, Germany (nbg1) |",
    );
    expect(elsewhere.record).toContain(
      "| Hetzner Online GmbH, Germany | Cloud server, volume, IP addresses, Object Storage " +
        "(backups) | Helsinki, Finland (hel1); backups Nuremberg, Germany (nbg1) |",
    );
    expect(elsewhere.notice).not.toContain("Cloudflare R2");
  });

  test("the contact is postmaster of the domain", () => {
    const { notice, record } = docs();
    expect(notice).toContain(
      "For anything about your data, write to [postmaster@example.eu](mailto:postmaster@example.eu).",
    );
    expect(record).toContain(
      "| Contact for data subjects | [postmaster@example.eu](mailto:postmaster@example.eu) |",
    );
    const other = docs({
      domain: "example.org",
      users: JSON.stringify([{ address: "alice@example.org" }]),
      acmeEmail: "hostmaster@example.org",
    }).notice;
    expect(other).toContain("write to [postmaster@example.org](mailto:postmaster@example.org).");
    expect(other).not.toContain("example.eu");
  });

  test("a relay is a processor only when relayHost is set", () => {
    const RELAY = "| **\\[FILL IN: company that runs the relay\\]** | Relays all outgoing mail";
    expect(docs().notice).not.toContain(RELAY);
    const relayed = docs({
      relayHost: "[smtp.relay.example]:587",
      relayUser: "mailer",
      relayPassword: "secret",
    });
    expect(relayed.notice).toContain(
      `${RELAY} (\`[smtp.relay.example]:587\`) | **\\[FILL IN: where\\]** | Every message you send |`,
    );
    expect(relayed.record).toContain("| relayHost | `[smtp.relay.example]:587` |");
  });

  test("monitoring appears only with monitoringAllowedIps", () => {
    expect(docs().notice).not.toContain("**Monitoring**");
    expect(docs().record).toContain("| monitoringAllowedIps | none |");
    const watched = docs({ monitoringAllowedIps: JSON.stringify(["198.51.100.50/32"]) });
    expect(watched.notice).toContain("- **Monitoring**: figures about the server");
    expect(watched.record).toContain("| Recipients | The monitoring system at `198.51.100.50/32`");
  });

  test("OpenPGP keys: published ones are named, and only when a user has one", () => {
    const none = docs();
    expect(none.notice).not.toContain("Your OpenPGP key");
    expect(none.record).toContain("no OpenPGP key is published at present");
    const one = docs({
      users: JSON.stringify([
        { address: "alice@example.eu", openpgpKey: ARMORED },
        { address: "bob@example.eu" },
      ]),
    });
    expect(one.notice).toContain(
      "- **Your OpenPGP key**, if you gave one: your public key is published in the Web Key " +
        "Directory at `openpgpkey.example.eu`",
    );
    expect(one.notice).toContain(
      "| Your published OpenPGP key | Until you ask for it to be removed. |",
    );
    expect(one.record).toContain("the OpenPGP public keys of 1 user (WKD), public.");
    expect(one.record).toContain("| users | 2 mailboxes, 1 with an OpenPGP key |");
    // The notice is public: it names no user.
    expect(one.notice).not.toContain("alice@");
  });

  test("virus scanning and the blocklists follow clamav and dnsbl", () => {
    const on = docs().notice;
    expect(on).toContain("checked on the server by Rspamd and scanned for viruses by ClamAV.");
    expect(on).toContain("(`zen.spamhaus.org`, `bl.mailspike.net` and `list.dnswl.org`)");
    const off = docs({ clamav: "false", dnsbl: "false" }).notice;
    expect(off).toContain("checked on the server by Rspamd. Rspamd keeps");
    expect(off).not.toContain("ClamAV");
    expect(off).not.toContain("zen.spamhaus.org");
  });

  test("the set-up hosts are the Worker's", () => {
    expect(docs().notice).toContain(
      "ask `mta-sts.example.eu`, `autoconfig.example.eu`, `autodiscover.example.eu` and " +
        "`openpgpkey.example.eu`.",
    );
    expect(DISCOVERY_HOSTS).toEqual(["mta-sts", "autoconfig", "autodiscover", "openpgpkey"]);
  });

  test("the texts are the same on every run: no date, nothing random", () => {
    const cfg = parseConfig(PROD_RAW);
    expect(privacyDocuments(cfg)).toEqual(privacyDocuments(parseConfig(PROD_RAW)));
    expect(privacyDocuments(cfg)["privacy-notice.md"]).toContain(
      "Last updated: **\\[FILL IN: date\\]**",
    );
  });

  test("the HTML is the same notice as the Markdown", () => {
    const cfg = parseConfig(PROD_RAW);
    const html = privacyDocuments(cfg)["privacy-notice.html"];
    expect(html).toBe(toHtml(privacyNotice(cfg)));
    expect(html).toContain(
      "<li>The mail server runs at Hetzner in Nuremberg, Germany (Hetzner location " +
        "<code>nbg1</code>), in the EU.",
    );
    expect(html).toContain("<title>Privacy notice: the mail service of example.eu</title>");
  });
});

describe("the renderers escape every text", () => {
  const EVIL = `<script>alert("x")</script> & 'q'`;
  const evilDoc: Doc = {
    title: EVIL,
    blocks: [
      { kind: "heading", level: 2, text: EVIL },
      { kind: "paragraph", text: [EVIL, { code: EVIL }, { strong: EVIL }, { fill: EVIL }] },
      { kind: "list", items: [EVIL, [{ link: "mailto:a@example.eu", text: EVIL }]] },
      { kind: "table", header: [EVIL, "b"], rows: [[EVIL, { code: "a|b" }]] },
    ],
  };

  test("HTML: no tag but the renderer's own, every text as entities", () => {
    const html = toHtml(evilDoc);
    const escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;";
    expect(html).not.toContain("<script");
    expect(html).toContain(`<title>${escaped}</title>`);
    expect(html).toContain(`<h2>${escaped}</h2>`);
    expect(html).toContain(
      `<p>${escaped}<code>${escaped}</code><strong>${escaped}</strong>` +
        `<mark>[FILL IN: ${escaped}]</mark></p>`,
    );
    expect(html).toContain(`<li><a href="mailto:a@example.eu">${escaped}</a></li>`);
    const tags = new Set([...html.matchAll(/<\/?([a-zA-Z0-9!]+)/g)].map((m) => m[1].toLowerCase()));
    expect([...tags].sort()).toEqual(
      [
        "!doctype",
        "a",
        "body",
        "code",
        "h1",
        "h2",
        "head",
        "html",
        "li",
        "main",
        "mark",
        "meta",
        "p",
        "strong",
        "style",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "title",
        "tr",
        "ul",
      ].sort(),
    );
    // The control: text without markup passes unchanged.
    expect(htmlEscape("Falkenstein, Germany (fsn1)")).toBe("Falkenstein, Germany (fsn1)");
  });

  test("a link goes to mail or HTTPS only, and cannot leave its attribute", () => {
    const linkDoc = (link: string): Doc => ({
      title: "t",
      blocks: [{ kind: "paragraph", text: [{ link, text: "x" }] }],
    });
    for (const bad of [
      "javascript:alert(1)",
      'mailto:a@example.eu" onclick="x',
      "http://a.example",
    ]) {
      expect(() => toHtml(linkDoc(bad))).toThrow("a link must be mailto: or https://");
      expect(() => toMarkdown(linkDoc(bad))).toThrow("a link must be mailto: or https://");
    }
    expect(toHtml(linkDoc("https://example.eu/privacy"))).toContain(
      '<a href="https://example.eu/privacy">x</a>',
    );
  });

  test("Markdown: markup characters are escaped, a table row keeps its cells", () => {
    const md = toMarkdown(evilDoc);
    expect(md).toContain("# \\<script\\>alert(\"x\")\\</script\\> \\& 'q'\n");
    // Outside code spans (whose text Markdown shows as it is), no < is left unescaped.
    expect(md.replace(/`[^`]*`/g, "")).not.toMatch(/(^|[^\\])</m);
    expect(md).toContain("`<script>alert(\"x\")</script> & 'q'`");
    // "a|b" in a code span inside a table: GFM would split the cell at an unescaped |.
    expect(md).toContain("| \\<script\\>alert(\"x\")\\</script\\> \\& 'q' | `a\\|b` |");
  });

  test("Markdown: a text cannot start another block, a line break cannot end one", () => {
    const md = (text: string) =>
      toMarkdown({ title: "t", blocks: [{ kind: "paragraph", text }] }).split("\n\n")[1];
    expect(md("# not a heading\n")).toBe("\\# not a heading\n");
    expect(md("- not a list")).toBe("\\- not a list\n");
    expect(md("1. not a list")).toBe("1\\. not a list\n");
    expect(md("one\ntwo")).toBe("one two\n");
    expect(md("**not bold** [not](a link)")).toBe("\\*\\*not bold\\*\\* \\[not\\](a link)\n");
    // The control: prose passes unchanged.
    expect(md("Falkenstein, Germany (fsn1), in the EU.")).toBe(
      "Falkenstein, Germany (fsn1), in the EU.\n",
    );
  });

  test("Markdown: a code span holds backticks", () => {
    const md = toMarkdown({ title: "t", blocks: [{ kind: "paragraph", text: { code: "a`b" } }] });
    expect(md).toContain("``a`b``");
    const edge = toMarkdown({ title: "t", blocks: [{ kind: "paragraph", text: { code: "`x" } }] });
    expect(edge).toContain("`` `x ``");
  });
});

describe("what the texts say about the host is what the host files do", () => {
  const host = (path: string) => readFileSync(join(HOST_TREE, path), "utf8");
  /** Settings of a file, comments and blank lines dropped. */
  const settings = (text: string) =>
    text.split("\n").filter((l) => l.trim() !== "" && !/^\s*#/.test(l));

  test("Fail2Ban bans for an hour, a week when again and again; an account throttle lasts 15 minutes", () => {
    const jail = host("etc/fail2ban/jail.d/mailstack.local");
    const section = (name: string) =>
      new RegExp(`^\\[${name}\\]\\n([^[]*)`, "m").exec(jail)?.[1] ?? "";
    expect(section("DEFAULT")).toMatch(/^bantime = 1h$/m);
    expect(section("recidive")).toMatch(/^bantime = 1w$/m);
    expect(section("mailstack-account")).toMatch(/^bantime = 15m$/m);
    expect([HOST_FACTS.banHours, HOST_FACTS.recidiveBanDays, HOST_FACTS.throttleMinutes]).toEqual([
      1, 7, 15,
    ]);
    // No jail sets a ban of its own but recidive and the account throttle.
    expect(jail.match(/^bantime = /gm)).toHaveLength(3);
  });

  test("Rspamd: greylisting expires after a day; the sending limit; stock history and hashes", () => {
    expect(settings(host("etc/rspamd/local.d/greylist.conf"))).toContain("expire = 1d;");
    expect(HOST_FACTS.greylistExpireDays).toBe(1);
    expect(host("etc/rspamd/local.d/ratelimit.conf")).toContain(
      `rate = "${HOST_FACTS.sendPerHour} / 1h";`,
    );
    // The history size (200) and the fuzzy-hash service of rspamd.com are Rspamd's stock
    // settings: the texts hold only while no local file changes them.
    const local = readdirSync(join(HOST_TREE, "etc/rspamd/local.d"));
    for (const file of ["history_redis.conf", "fuzzy_check.conf", "rbl.conf"]) {
      expect(local).not.toContain(file);
    }
    expect(HOST_FACTS.historyRows).toBe(200);
  });

  test("Postfix keeps its stock queue lifetime of 5 days", () => {
    const main = host("etc/postfix/main.cf");
    expect(main).not.toMatch(/^(maximal|bounce)_queue_lifetime/m);
    expect(HOST_FACTS.queueDays).toBe(5);
  });

  test("Dovecot deletes no mail on its own, and encrypts what it stores", () => {
    const conf = host("etc/dovecot/dovecot.conf");
    expect(settings(conf).join("\n")).not.toMatch(/autoexpunge|expire/i);
    expect(conf).toMatch(/^\s*mail_crypt = yes$/m);
    expect(conf).toMatch(/^mail_home = \/srv\/mail\/%\{user \| domain\}\/%\{user \| username\}$/m);
  });

  test("logs: journald and the syslog files keep logRetentionDays, cleared daily", () => {
    const journald = settings(host("etc/systemd/journald.conf.d/mailstack.conf"));
    expect(journald).toContain("MaxRetentionSec={{logRetentionDays}}day");
    expect(journald).toContain("MaxFileSec=1day");
    const logrotate = settings(host("etc/logrotate.d/rsyslog")).map((l) => l.trim());
    expect(logrotate).toEqual(
      expect.arrayContaining([
        "daily",
        "rotate {{logRetentionDays}}",
        "maxage {{logRetentionDays}}",
      ]),
    );
    expect(logrotate).toContain("/var/log/mail.log");
  });

  test("the daily report the notice names is mailed to postmaster each morning", () => {
    const files = join(ROOT, "cloud-init", "files");
    expect(readFileSync(join(files, "mailstack-report.timer"), "utf8")).toMatch(
      /^OnCalendar=\*-\*-\* 06:00:00$/m,
    );
    expect(readFileSync(join(files, "mailstack-report"), "utf8")).toContain(
      "To: postmaster@$MAIL_DOMAIN",
    );
    expect(docs().notice).toContain("**The daily report**: each morning the server mails");
  });

  test("a backup holds what the record lists, and no logs", () => {
    const script = readFileSync(join(ROOT, "cloud-init/files/mailstack-backup"), "utf8");
    const sources = /^SOURCES=\(([^)]*)\)$/m.exec(script)?.[1].split(" ");
    expect(sources).toEqual(HOST_FACTS.backupSources);
    expect(sources!.some((s) => s.startsWith("/var"))).toBe(false);
  });

  test("passwords are stored as Argon2id hashes", async () => {
    expect(await dovecotPasswordHash("alice@example.eu", "pw")).toMatch(
      /^\{ARGON2ID\}\$argon2id\$/,
    );
  });

  test("the Worker writes no log, and the stack turns on no request log for it", () => {
    expect(readFileSync(join(ROOT, "worker/discovery.ts"), "utf8")).not.toMatch(/console\./);
    expect(readFileSync(join(ROOT, "components/discovery-worker.ts"), "utf8")).not.toMatch(
      /observability|logpush|tailConsumers/i,
    );
  });

  test("the exporters are reachable from monitoringAllowedIps only", () => {
    const ports = (monitoringAllowedIps: string[]) =>
      inboundRules({ sshAllowedIps: ["198.51.100.7/32"], monitoringAllowedIps }).map((r) => r.port);
    expect(ports([])).not.toContain(9100);
    expect(ports(["198.51.100.50/32"])).toEqual(expect.arrayContaining([9100, 9154]));
  });

  test("the blocklists named are postscreen's", () => {
    expect(POSTSCREEN_LISTS).toEqual(["zen.spamhaus.org", "bl.mailspike.net", "list.dnswl.org"]);
  });
});

describe("npm run privacy-notice", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "privacy-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs main, collecting what it prints. */
  function run(...argv: string[]) {
    const io = { out: "", err: "" };
    const code = main(argv, { out: (t) => (io.out += t), err: (t) => (io.err += t) });
    return { code, ...io };
  }
  /** Pulumi.prod.yaml with one line changed. */
  function prodWith(from: string, to: string): string {
    const text = readFileSync(PROD_FILE, "utf8");
    expect(text).toContain(from);
    const file = join(dir, "Pulumi.test.yaml");
    writeFileSync(file, text.replace(from, to));
    return file;
  }

  test("--out writes the three documents of Pulumi.prod.yaml", () => {
    const out = join(dir, "out");
    const r = run("--config", PROD_FILE, "--out", out);
    expect(r.code).toBe(0);
    expect(r.out).toBe("");
    expect(r.err).toContain(`wrote ${join(out, "privacy-notice.md")}`);
    expect(r.err).toMatch(/\d+ places marked \[FILL IN: \.\.\.\] are yours to complete/);
    const expected = privacyDocuments(parseStackFile(readFileSync(PROD_FILE, "utf8")));
    expect(readdirSync(out).sort()).toEqual(Object.keys(expected).sort());
    for (const [name, text] of Object.entries(expected)) {
      expect(readFileSync(join(out, name), "utf8")).toBe(text);
    }
    expect(expected["privacy-notice.md"]).toContain(
      "Falkenstein, Germany (Hetzner location `fsn1`)",
    );
  });

  test("without --out one document goes to standard output", () => {
    const expected = privacyDocuments(parseStackFile(readFileSync(PROD_FILE, "utf8")));
    expect(run("--config", PROD_FILE).out).toBe(expected["privacy-notice.md"]);
    expect(run("--config", PROD_FILE, "--format", "html").out).toBe(
      expected["privacy-notice.html"],
    );
    expect(run("--config", PROD_FILE, "--format", "record").out).toBe(
      expected["record-of-processing.md"],
    );
  });

  test("a bad setting stops it, naming the setting and the file; the same file set right passes", () => {
    const bad = run("--config", prodWith("mailstack:location: fsn1", "mailstack:location: ams1"));
    expect(bad.code).toBe(1);
    expect(bad.out).toBe("");
    expect(bad.err).toContain(`--config ${join(dir, "Pulumi.test.yaml")}: mailstack configuration`);
    expect(bad.err).toContain('mailstack:location: must be one of fsn1, nbg1, hel1; got "ams1"');
    const good = run("--config", prodWith("mailstack:location: fsn1", "mailstack:location: hel1"));
    expect(good.code).toBe(0);
    expect(good.out).toContain("Helsinki, Finland (Hetzner location `hel1`)");
  });

  test("a bad retention stops it; a good one changes the text", () => {
    const bad = run("--config", prodWith("logRetentionDays: 14", "logRetentionDays: 365"));
    expect(bad.code).toBe(1);
    expect(bad.err).toContain(
      "mailstack:logRetentionDays: must be a whole number from 1 to 90; got 365",
    );
    const good = run("--config", prodWith("logRetentionDays: 14", "logRetentionDays: 30"));
    expect(good.code).toBe(0);
    expect(good.out).toContain("| Logs (IP addresses, mail addresses, logins) | 30 days.");
  });

  test("a file that is missing or no stack file is named; the prod file passes", () => {
    const missing = run("--config", join(dir, "Pulumi.nope.yaml"));
    expect(missing.code).toBe(1);
    expect(missing.err).toContain(
      `--config ${join(dir, "Pulumi.nope.yaml")}: cannot be read: ENOENT`,
    );
    const file = join(dir, "Pulumi.yaml");
    writeFileSync(file, "name: mailstack\nruntime: nodejs\n");
    const notStack = run("--config", file);
    expect(notStack.code).toBe(1);
    expect(notStack.err).toContain(`--config ${file}: has no config: section`);
    expect(run("--config", PROD_FILE).code).toBe(0);
  });

  test("bad usage exits 2 with the usage", () => {
    expect(run()).toMatchObject({ code: 2, err: expect.stringContaining("--config is required") });
    expect(run("--config", PROD_FILE, "--format", "pdf")).toMatchObject({
      code: 2,
      err: expect.stringContaining("--format must be md, html or record; got pdf"),
    });
    expect(run("--config", PROD_FILE, "--out", dir, "--format", "md").code).toBe(2);
    expect(run("--config", PROD_FILE, "--bogus").code).toBe(2);
  });

  test("the npm script runs the program: prod passes, a bad file fails naming the setting", () => {
    const npm = (...args: string[]) =>
      spawnSync("npm", ["run", "-s", "privacy-notice", "--", ...args], {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 60_000,
      });
    const ok = npm("--config", "Pulumi.prod.yaml", "--out", join(dir, "out"));
    expect(ok.stderr).toContain("privacy-notice: wrote");
    expect(ok.status).toBe(0);
    expect(readdirSync(join(dir, "out")).sort()).toEqual([
      "privacy-notice.html",
      "privacy-notice.md",
      "record-of-processing.md",
    ]);
    const bad = npm("--config", prodWith("mailstack:location: fsn1", "mailstack:location: ams1"));
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('mailstack:location: must be one of fsn1, nbg1, hel1; got "ams1"');
  });
});
