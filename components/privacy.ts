// Pure: the privacy notice for the people who use a stack's mailboxes, and the record of
// processing activities (GDPR Art. 30) for its operator, both built from the parsed config:
// a change of location, retention or backup store changes the text. Each document is one
// model (headings, paragraphs, lists, tables), rendered to Markdown and to HTML by small
// renderers that escape every text they write. What the texts say about the host (ban times,
// greylisting, what a backup holds) is pinned to the host's files by tests/privacy.test.ts.
// Whatever only the operator can say (who they are, the legal basis, the contracts) is left
// as a marked gap: [FILL IN: ...].
import { MAIL_ROOT } from "../cloud-init/render";
import { R2_JURISDICTION } from "./backup-storage";
import { ANYWHERE, type Location, type MailStackConfig } from "./config";
import { DISCOVERY_HOSTS } from "./discovery";
import { POSTSCREEN_DNSBL_SITES } from "./host-config";

// --- the document model ------------------------------------------------------------------

/** A run of text: plain, code, strong, a gap the operator fills in, or a link. */
export type Span =
  | string
  | { code: string }
  | { strong: string }
  | { fill: string }
  | { link: string; text: string };
/** One span or several in a row. */
export type Text = Span | Span[];

export type Block =
  | { kind: "heading"; level: 1 | 2 | 3; text: Text }
  | { kind: "paragraph"; text: Text }
  | { kind: "list"; items: Text[] }
  | { kind: "table"; header: Text[]; rows: Text[][] };

export interface Doc {
  /** The title: the first heading, and the HTML page's <title>. */
  title: string;
  blocks: Block[];
}

const code = (text: string): Span => ({ code: text });
const strong = (text: string): Span => ({ strong: text });
const fill = (text: string): Span => ({ fill: text });
const mailto = (address: string): Span => ({ link: `mailto:${address}`, text: address });
const h2 = (text: Text): Block => ({ kind: "heading", level: 2, text });
const h3 = (text: Text): Block => ({ kind: "heading", level: 3, text });
const p = (...text: Span[]): Block => ({ kind: "paragraph", text });
const ul = (...items: Text[]): Block => ({ kind: "list", items });
const table = (header: Text[], rows: Text[][]): Block => ({ kind: "table", header, rows });

// --- what the texts state about the host --------------------------------------------------

/** Where each Hetzner location is: every EU location the config accepts has a place. */
export const HETZNER_LOCATIONS: Record<Location, { city: string; country: string }> = {
  fsn1: { city: "Falkenstein", country: "Germany" },
  nbg1: { city: "Nuremberg", country: "Germany" },
  hel1: { city: "Helsinki", country: "Finland" },
};

/**
 * Facts of the host the texts state, each with the file that makes it so; tests/privacy.test.ts
 * reads those files and fails when one no longer says this.
 */
export const HOST_FACTS = {
  /** Fail2Ban's ban after repeated failed logins (jail.d/mailstack.local, bantime = 1h). */
  banHours: 1,
  /** The recidive jail's ban of an address banned again and again (bantime = 1w). */
  recidiveBanDays: 7,
  /**
   * How long repeated wrong passwords for one account from one address refuse that account
   * from that address (the mailstack-account jail, bantime = 15m).
   */
  throttleMinutes: 15,
  /** Rspamd forgets a greylisting record after this (local.d/greylist.conf, expire = 1d). */
  greylistExpireDays: 1,
  /** Messages a logged-in account may send per hour (local.d/ratelimit.conf). */
  sendPerHour: 100,
  /**
   * Rspamd's history of checked messages in Redis: its stock size, which no file in
   * local.d changes (history_redis: nrows = 200, subject kept).
   */
  historyRows: 200,
  /** Postfix's stock maximal_queue_lifetime, which main.cf does not change. */
  queueDays: 5,
  /** What a backup holds (cloud-init/files/mailstack-backup, SOURCES). */
  backupSources: ["/srv/mail", "/etc/mailstack", "/etc/postfix", "/etc/dovecot", "/etc/rspamd"],
};

/** The blocklists postscreen asks, by name: zen.spamhaus.org, ... */
export const POSTSCREEN_LISTS = POSTSCREEN_DNSBL_SITES.split(",").map((s) =>
  s.trim().replace(/=.*$/, ""),
);

/** `Falkenstein, Germany` */
export function placeOf(location: Location): string {
  const { city, country } = HETZNER_LOCATIONS[location];
  return `${city}, ${country}`;
}

/** `1 day`, `7 days`; `units` where adding an s would be wrong. */
const plural = (n: number, unit: string, units = `${unit}s`) => `${n} ${n === 1 ? unit : units}`;

/** `7 daily, 4 weekly and 12 monthly snapshots`, leaving out what is 0. */
export function backupRetention(b: MailStackConfig["backup"]): string {
  const kept: [number, string][] = [
    [b.keepDaily, "daily"],
    [b.keepWeekly, "weekly"],
    [b.keepMonthly, "monthly"],
  ];
  const parts = kept.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}`);
  const last = parts.pop() ?? "";
  const all = parts.length > 0 ? `${parts.join(", ")} and ${last}` : last;
  return `${all} snapshot${b.keepDaily + b.keepWeekly + b.keepMonthly === 1 ? "" : "s"}`;
}

/**
 * How long something deleted on the server stays in the backups, with backups at least daily:
 * the oldest snapshot restic keeps (`12 months`).
 */
export function backupHorizon(b: MailStackConfig["backup"]): string {
  if (b.keepMonthly > 0) return plural(b.keepMonthly, "month");
  if (b.keepWeekly * 7 >= b.keepDaily) return plural(b.keepWeekly, "week");
  return plural(b.keepDaily, "day");
}

/** Where the backups are, as a phrase: `Cloudflare R2, bucket ... in R2's EU jurisdiction ...`. */
function backupPlace(cfg: MailStackConfig): Span[] {
  const b = cfg.backup;
  if (b.provider === "r2") {
    return [
      "Cloudflare R2, bucket ",
      code(b.bucket),
      " in R2's EU jurisdiction (",
      code(R2_JURISDICTION),
      "): the objects are stored in the EU",
    ];
  }
  const location = b.location ?? cfg.location;
  return [
    `Hetzner Object Storage in ${placeOf(location)} (location `,
    code(location),
    "), bucket ",
    code(b.bucket),
  ];
}

/** The stack's settings the documents depend on, in a few derived facts. */
function facts(cfg: MailStackConfig) {
  const keys = cfg.users.filter((u) => u.openpgpKey !== undefined).length;
  return {
    place: placeOf(cfg.location),
    postmaster: `postmaster@${cfg.domain}`,
    keys,
    monitoring: cfg.monitoringAllowedIps.length > 0,
    relay: cfg.relayHost !== undefined,
    discoveryHosts: DISCOVERY_HOSTS.map((label) => `${label}.${cfg.domain}`),
    sshAnywhere: ANYWHERE.every((cidr) => cfg.sshAllowedIps.includes(cidr)),
  };
}

/** A comma list with "and": `a, b and c`. */
function andList(items: Text[]): Span[] {
  const out: Span[] = [];
  items.forEach((item, i) => {
    if (i > 0) out.push(i === items.length - 1 ? " and " : ", ");
    out.push(...spans(item));
  });
  return out;
}

// --- the privacy notice ------------------------------------------------------------------

/** The privacy notice for the people who use the mailboxes (GDPR Art. 13 and 14). */
export function privacyNotice(cfg: MailStackConfig): Doc {
  const f = facts(cfg);
  const b = cfg.backup;
  const title = `Privacy notice: the mail service of ${cfg.domain}`;
  const blocks: Block[] = [];

  blocks.push(
    p("Last updated: ", fill("date")),
    p(
      `This notice explains which personal data the mail service of ${cfg.domain} processes, ` +
        `why, where, for how long, and who else is involved. It covers the mailboxes at ` +
        `${cfg.domain} and the mail server ${cfg.mailHost}.`,
    ),
  );

  blocks.push(
    h2("Who is responsible"),
    p(
      "The controller is ",
      fill("name and postal address of the person or organisation that runs this mail service"),
      ". For anything about your data, write to ",
      mailto(f.postmaster),
      ".",
    ),
    p(fill("contact of the data protection officer, if one is designated; otherwise remove")),
  );

  // What is processed, and why.
  const what: Text[] = [
    [
      strong("Your mailbox"),
      ": the messages you receive, send and keep, your folders, and the filters you set up " +
        "(Sieve). Purpose: to receive, store and send your mail.",
    ],
    [
      strong("Your account"),
      ": your address, its aliases, the group addresses that deliver to you, and your storage " +
        "quota. Your password is generated when your account is created and handed to you by " +
        "the operator; the mail server keeps only an Argon2id hash of it.",
    ],
    [
      strong("The people you correspond with"),
      ": their addresses and what they write, as part of the messages in your mailbox.",
    ],
    [
      strong("Connection records"),
      ": the server's logs record the IP addresses of the mail programs and mail servers that " +
        "connect to it, the sender and recipient addresses of each message, and logins and " +
        "failed logins, each with its time. Purpose: running the service, finding faults, and " +
        "protecting it against abuse.",
    ],
    [
      strong("Blocked addresses"),
      `: after repeated failed logins, the IP address they came from is blocked for ` +
        `${plural(HOST_FACTS.banHours, "hour")} (Fail2Ban), and for ` +
        `${plural(HOST_FACTS.recidiveBanDays, "day")} when it is blocked again and again. ` +
        "After repeated wrong passwords for one account, that account is refused from that " +
        `address for ${plural(HOST_FACTS.throttleMinutes, "minute")} (the account and the ` +
        "address are kept on a list for that time).",
    ],
    [
      strong("Spam and virus filtering"),
      ": every message is checked on the server by Rspamd" +
        (cfg.clamav ? " and scanned for viruses by ClamAV" : "") +
        ". Rspamd keeps, on the server: greylisting records of sender, recipient and sending " +
        `server, ${plural(HOST_FACTS.greylistExpireDays, "day")}; the number of messages each ` +
        `account sent in the last hour (at most ${HOST_FACTS.sendPerHour} an hour are accepted); ` +
        `the history of the last ${HOST_FACTS.historyRows} messages checked (sender, recipients, ` +
        "subject, the sending address and the verdict); and a spam model learnt from its own " +
        "verdicts, which holds no message text. Purpose: keeping spam" +
        (cfg.clamav ? ", viruses" : "") +
        " and forged mail out, and stopping a stolen password from sending spam.",
    ],
    [
      strong("Mail you send"),
      " is delivered to the recipients' mail servers" +
        (f.relay ? " through a relay (below)" : "") +
        ". Like mail in general, it carries a header (Received) with the IP address of the " +
        "device you sent it from, which the recipients can see.",
    ],
    [
      strong("Set-up requests"),
      `: mail programs that set themselves up, and mail servers that check this domain's ` +
        `security policy (MTA-STS), ask `,
      ...andList(f.discoveryHosts.map(code)),
      ". These requests carry the IP address they come from and, to set up an account or look " +
        "up a key, the address in question.",
    ],
  ];
  if (f.keys > 0) {
    what.push([
      strong("Your OpenPGP key"),
      ", if you gave one: your public key is published in the Web Key Directory at ",
      code(`openpgpkey.${cfg.domain}`),
      ", so that anyone who knows your address can fetch it and write to you encrypted. It " +
        "names your address, and your name if the key does.",
    ]);
  }
  what.push([
    strong("The daily report"),
    ": each morning the server mails its postmaster a summary of the day before, drawn from " +
      "the logs: the busiest senders and recipients, rejected mail with the sending server, " +
      "and the IP addresses blocked most. Purpose: running the service and noticing abuse.",
  ]);
  if (b.enabled) {
    what.push([
      strong("Backups"),
      ": copies of the mailboxes, the account data and the server's mail configuration, " +
        "encrypted on the server before they leave it. Purpose: restoring mail that is lost.",
    ]);
  }
  if (f.monitoring) {
    what.push([
      strong("Monitoring"),
      ": figures about the server (load, memory, disk, the mail queue, numbers of messages and " +
        `connections${b.enabled ? ", the last backup" : ""}) are read by the operator's ` +
        "monitoring system. Purpose: noticing faults early.",
    ]);
  }
  blocks.push(h2("What we process, and why"), ul(...what));

  const bases: Text[][] = [
    ["Your mailbox, your account, delivering your mail", fill("legal basis")],
    ["Connection records, blocked addresses, spam and virus filtering", fill("legal basis")],
  ];
  if (f.keys > 0) bases.push(["Publishing your OpenPGP key", fill("legal basis")]);
  if (b.enabled) bases.push(["Backups", fill("legal basis")]);
  if (f.monitoring) bases.push(["Monitoring", fill("legal basis")]);
  blocks.push(h3("Legal basis"), table(["Purpose", "Legal basis"], bases));

  // Where.
  const where: Text[] = [
    [
      `The mail server runs at Hetzner in ${f.place} (Hetzner location `,
      code(cfg.location),
      "), in the EU. Your mailbox is on a storage volume attached to it, in the same place. " +
        "Messages are stored encrypted there; header fields (such as sender and subject) in " +
        "the mailbox indexes that make listing fast are not.",
    ],
    b.enabled
      ? ["Backups are kept in ", ...backupPlace(cfg), "."]
      : "No backups are made: the mail exists on the mail server only.",
    "Cloudflare answers DNS queries for the domain and the set-up requests above, at the data " +
      "centre of its network nearest to whoever asks, which may be outside the EU.",
  ];
  blocks.push(h2("Where your data is stored"), ul(...where));

  // How long.
  const kept: Text[][] = [
    [
      "Messages in your mailbox",
      "Until you delete them. The service deletes no mail on its own, in no folder: not in " +
        "Junk, not in Trash.",
    ],
    [
      "Your account and mailbox",
      ["As long as your account exists. When it is closed, ", fill("when its mail is deleted")],
    ],
    [
      "Mail waiting for delivery",
      `At most ${plural(HOST_FACTS.queueDays, "day")}; mail that cannot be delivered by then is ` +
        "returned to its sender.",
    ],
    [
      "Logs (IP addresses, mail addresses, logins)",
      `${plural(cfg.logRetentionDays, "day")}. Logs are cleared daily, so an entry is gone at ` +
        "most a day after that.",
    ],
    [
      "The daily report to postmaster",
      "In the postmaster's mailbox, until deleted there, like any other mail.",
    ],
    [
      "Blocked IP addresses",
      `${plural(HOST_FACTS.banHours, "hour")}, or ${plural(HOST_FACTS.recidiveBanDays, "day")} ` +
        "for an address blocked again and again; an account throttled from an address: " +
        `${plural(HOST_FACTS.throttleMinutes, "minute")}.`,
    ],
    [
      "Spam-filter records",
      `Greylisting records ${plural(HOST_FACTS.greylistExpireDays, "day")}; the history, the ` +
        `last ${HOST_FACTS.historyRows} messages checked.`,
    ],
    b.enabled
      ? [
          "Backups",
          `${backupRetention(b)} are kept. What you delete stays in the backups until the ` +
            `last snapshot that holds it is dropped: up to about ${backupHorizon(b)}.`,
        ]
      : ["Backups", "None are made."],
  ];
  if (f.keys > 0) {
    kept.push(["Your published OpenPGP key", "Until you ask for it to be removed."]);
  }
  blocks.push(h2("How long we keep it"), table(["Data", "Kept"], kept));

  // Who else.
  const processors: Text[][] = [
    [
      "Hetzner Online GmbH, Germany",
      "Runs the mail server and its storage volume",
      `${f.place} (${cfg.location})`,
      "Everything on the mail server",
    ],
    [
      "Cloudflare, Inc., USA",
      [
        "DNS for ",
        code(cfg.domain),
        "; answers the set-up requests (a Cloudflare Worker, which keeps no log of its own)",
      ],
      "Cloudflare's network, worldwide",
      "The IP addresses and content of those requests" +
        (f.keys > 0 ? "; the published OpenPGP keys" : ""),
    ],
  ];
  if (b.enabled) {
    processors.push(
      b.provider === "r2"
        ? [
            "Cloudflare, Inc., USA",
            "Stores the backups (Cloudflare R2)",
            ["EU (R2 jurisdiction ", code(R2_JURISDICTION), ")"],
            "The backups, encrypted: without the key, which stays with the operator, they " +
              "cannot be read",
          ]
        : [
            "Hetzner Online GmbH, Germany",
            "Stores the backups (Hetzner Object Storage)",
            `${placeOf(b.location ?? cfg.location)} (${b.location ?? cfg.location})`,
            "The backups, encrypted: without the key, which stays with the operator, they " +
              "cannot be read",
          ],
    );
  }
  if (f.relay) {
    processors.push([
      fill("company that runs the relay"),
      ["Relays all outgoing mail (", code(cfg.relayHost ?? ""), ")"],
      fill("where"),
      "Every message you send",
    ]);
  }
  processors.push([
    fill("where the deployment's state is kept: Pulumi Cloud, or the operator's own storage"),
    "Keeps the configuration the service is deployed from",
    fill("where"),
    "Mailbox addresses; the passwords, encrypted",
  ]);
  if (f.monitoring) {
    processors.push([
      fill("who runs the monitoring system"),
      "Reads the server's figures",
      fill("where"),
      "Figures about the server; no message content",
    ]);
  }
  blocks.push(
    h2("Who else processes your data"),
    p("These service providers process data on our behalf:"),
    table(["Who", "What for", "Where", "What they hold or see"], processors),
    p(
      "Cloudflare, Inc. is based in the USA, outside the EU. ",
      fill("the safeguard for transfers to Cloudflare, e.g. the EU-US Data Privacy Framework"),
    ),
  );

  const others: Text[] = [
    "The mail servers of the people you write to receive your messages.",
    [
      "To turn spam away, the server asks DNS blocklists about the IP address of mail servers " +
        "that connect to it" +
        (cfg.dnsbl ? " (" : ""),
      ...(cfg.dnsbl ? [...andList(POSTSCREEN_LISTS.map(code)), ")"] : []),
      ", and Rspamd asks further lists about the sending server and about domains named in " +
        "messages. The server asks them through its own resolver: no public DNS resolver sees " +
        "these queries.",
    ],
    "Rspamd compares one-way hashes of message parts with the public hash service of its " +
      "makers (rspamd.com) to recognise mass mailings; the text cannot be recovered from them.",
  ];
  if (f.keys > 0) {
    others.push("Anyone who knows your address can fetch the OpenPGP key you chose to publish.");
  }
  blocks.push(h2("Who else receives data"), ul(...others));

  const security: Text[] = [
    "Your mail programs always connect encrypted (TLS 1.2 or newer), and your password is " +
      "accepted only inside an encrypted connection. Mail servers that deliver to this one " +
      "are offered the same encryption, and mail to other servers is sent encrypted whenever " +
      "they support it.",
    "Messages are stored encrypted on the mail volume; passwords only as Argon2id hashes.",
    ...(b.enabled ? ["Backups are encrypted on the server before they leave it."] : []),
    "Administrators log in with keys only, never with a password" +
      (f.sshAnywhere ? "." : ", and only from the addresses the operator allows."),
  ];
  blocks.push(h2("How it is protected"), ul(...security));

  blocks.push(
    h2("Your rights"),
    p(
      "You may ask for a copy of your data and how it is used (GDPR Art. 15), have it " +
        "corrected (Art. 16) or erased (Art. 17), have its processing restricted (Art. 18), " +
        "receive it in a portable form (Art. 20), and object to processing based on legitimate " +
        "interests (Art. 21). Where processing rests on your consent, you may withdraw it at " +
        "any time. Write to ",
      mailto(f.postmaster),
      ".",
    ),
    p(
      "You may also complain to a data protection supervisory authority, in particular ",
      fill("the competent supervisory authority"),
      ".",
    ),
  );
  return { title, blocks };
}

// --- the record of processing activities ---------------------------------------------------

/** One activity of the record, its fields in the order of Art. 30(1). */
interface Activity {
  name: string;
  purpose: Text;
  subjects: Text;
  data: Text;
  recipients: Text;
  transfers: Text;
  erasure: Text;
}

/** The record of processing activities for the operator (GDPR Art. 30(1)). */
export function recordOfProcessing(cfg: MailStackConfig): Doc {
  const f = facts(cfg);
  const b = cfg.backup;
  const title = `Record of processing activities: the mail service of ${cfg.domain}`;
  const server = `Hetzner Online GmbH (server and volume, ${f.place})`;
  const noTransfer = "None: the data stays in the EU.";
  const cloudflareTransfer: Span[] = [
    "Cloudflare, Inc. (USA); its network answers worldwide. Safeguard: ",
    fill("e.g. EU-US Data Privacy Framework, or the standard contractual clauses of its DPA"),
  ];

  const activities: Activity[] = [
    {
      name: "Mailboxes and mail delivery",
      purpose: "Receiving, storing and sending the users' mail.",
      subjects: "Users (mailbox holders); the people they correspond with.",
      data:
        "Addresses, aliases and group addresses; messages with their content and attachments, " +
        "folders and Sieve filters; quota; password hashes (Argon2id).",
      recipients: [
        server,
        "; the recipients' mail servers",
        ...(f.relay
          ? ["; the relay ", code(cfg.relayHost ?? ""), ", run by ", fill("company")]
          : []),
        ".",
      ],
      transfers: f.relay
        ? ["Through the relay: ", fill("where the relay runs")]
        : "None by the service; mail goes wherever its recipients' servers are.",
      erasure: [
        "Messages: when the user deletes them; the service deletes none on its own. Mail " +
          `waiting for delivery: after ${plural(HOST_FACTS.queueDays, "day")}. A closed ` +
          "account: ",
        fill("when its mail is deleted"),
        " (by hand, see below).",
      ],
    },
    {
      name: "Logs and protection against abuse",
      purpose:
        "Operating the service, finding faults, detecting and blocking attacks (Fail2Ban), " +
        "holding administrators' actions to account.",
      subjects: "Users; senders and recipients of mail; anyone who connects; administrators.",
      data:
        "IP addresses, mail addresses, login names, times, delivery status, failed logins; " +
        "administrators' SSH keys and commands run with sudo.",
      recipients: `${server}.`,
      transfers: noTransfer,
      erasure:
        `${plural(cfg.logRetentionDays, "day")} (logRetentionDays): journald and the syslog ` +
        "files, if any, are cleared daily. Bans: " +
        `${plural(HOST_FACTS.banHours, "hour")}, ${plural(HOST_FACTS.recidiveBanDays, "day")} ` +
        "for repeat offenders.",
    },
    {
      name: "Spam and virus filtering",
      purpose:
        `Keeping spam${cfg.clamav ? ", viruses" : ""} and forged mail out; limiting what a ` +
        "stolen account sends.",
      subjects: "Senders and recipients of mail; users.",
      data: [
        "Messages (checked, not kept by the filter); in Redis on the server: greylisting " +
          `records (${plural(HOST_FACTS.greylistExpireDays, "day")}), sending counters per ` +
          `account (one hour), the history of the last ${HOST_FACTS.historyRows} messages ` +
          "(sender, recipients, subject, client address, score), the learnt spam model" +
          (cfg.clamav ? "; ClamAV scans on the server." : "."),
      ],
      recipients: [
        server,
        "; DNS blocklists (",
        ...(cfg.dnsbl ? [...andList(POSTSCREEN_LISTS.map(code)), ", and "] : []),
        "Rspamd's stock lists): IP addresses of connecting servers and domains named in " +
          "messages; rspamd.com's fuzzy-hash service: one-way hashes of message parts.",
      ],
      transfers: ["Blocklists and the hash service: ", fill("where their operators are")],
      erasure: "As stated under data; nothing here goes into the backups.",
    },
    {
      name: "Client set-up, MTA-STS and key discovery",
      purpose:
        "Letting mail programs set themselves up and mail servers find the domain's TLS policy" +
        (f.keys > 0 ? "; publishing users' OpenPGP public keys." : "."),
      subjects: "Users; anyone who asks.",
      data: [
        "IP addresses and content of HTTPS requests to ",
        ...andList(f.discoveryHosts.map(code)),
        ", which can name an address" +
          (f.keys > 0
            ? `; the OpenPGP public keys of ${plural(f.keys, "user")} (WKD), public.`
            : "; no OpenPGP key is published at present."),
      ],
      recipients:
        "Cloudflare, Inc. (DNS, and the Worker; the stack turns on none of Cloudflare's " +
        "request logs for it: no Workers Logs, no Logpush)." +
        (f.keys > 0 ? " The published keys: anyone." : ""),
      transfers: cloudflareTransfer,
      erasure: [
        "The Worker keeps nothing. Cloudflare's own logs: ",
        fill("per Cloudflare's terms"),
        f.keys > 0 ? ". A key: when the user asks or the account is closed." : ".",
      ],
    },
  ];
  if (b.enabled) {
    activities.push({
      name: "Backups",
      purpose: "Restoring mail and the server after a loss.",
      subjects: "Users; the people they correspond with.",
      data: [
        "Everything under ",
        ...andList(HOST_FACTS.backupSources.map(code)),
        ": mailboxes, the account tables and password hashes, keys, the mail configuration. " +
          "No logs, no spam-filter data. Encrypted by restic on the server; the key is the " +
          "stack output ",
        code("backupPassword"),
        ".",
      ],
      recipients: [...backupPlace(cfg), "."],
      transfers:
        b.provider === "r2"
          ? [
              "The objects stay in the EU (R2 jurisdiction ",
              code(R2_JURISDICTION),
              "); Cloudflare, Inc. is a US company. Safeguard: ",
              fill("as for Cloudflare above"),
            ]
          : noTransfer,
      erasure: [
        `${backupRetention(b)}, on the schedule `,
        code(b.schedule),
        `: deleted data stays in the backups for up to about ${backupHorizon(b)}.`,
      ],
    });
  }
  if (f.monitoring) {
    activities.push({
      name: "Monitoring",
      purpose: `Noticing faults${b.enabled ? " and a missed backup" : ""} early.`,
      subjects: "Users and correspondents, only as counted.",
      data: "Figures from the node and Postfix exporters (counts, sizes, times); no message content.",
      recipients: [
        "The monitoring system at ",
        ...andList(cfg.monitoringAllowedIps.map(code)),
        ", run by ",
        fill("who"),
        ".",
      ],
      transfers: fill("where the monitoring system runs"),
      erasure: fill("retention of the monitoring system"),
    });
  }
  activities.push({
    name: "Administration and deployment",
    purpose: "Deploying and changing the service; handing users their passwords.",
    subjects: "Users; administrators.",
    data:
      "Mailbox addresses, aliases, OpenPGP public keys and the generated passwords (as " +
      "encrypted secrets) in the deployment's state; administrators' SSH public keys.",
    recipients: [fill("where the deployment's state is kept: Pulumi Cloud, or your own storage")],
    transfers: fill("none, or the safeguard (Pulumi Corporation is in the USA)"),
    erasure: ["While the stack exists; its state history: ", fill("how long the backend keeps it")],
  });

  const blocks: Block[] = [
    p(
      "GDPR Art. 30(1). Kept by the controller, for the supervisory authority on request. " +
        "Generated from the stack's settings (listed at the end): generate it again after " +
        "every change of them, and fill in what is marked.",
    ),
    h2("Controller"),
    table(
      ["", "Entry"],
      [
        ["Controller", fill("name, postal address")],
        ["Representative in the EU (Art. 27)", fill("if the controller is outside the EU")],
        ["Data protection officer", fill("if one is designated")],
        ["Contact for data subjects", mailto(f.postmaster)],
      ],
    ),
    h2("Processing activities"),
  ];
  activities.forEach((a, i) => {
    blocks.push(
      h3(`${i + 1}. ${a.name}`),
      table(
        ["Art. 30(1)", "Entry"],
        [
          ["Purpose", a.purpose],
          ["Legal basis", fill("Art. 6(1) GDPR, point and reason")],
          ["Data subjects", a.subjects],
          ["Personal data", a.data],
          ["Recipients", a.recipients],
          ["Transfers to third countries", a.transfers],
          ["Erasure", a.erasure],
        ],
      ),
    );
  });

  const processors: Text[][] = [
    [
      "Hetzner Online GmbH, Germany",
      "Cloud server, volume, IP addresses" +
        (b.enabled && b.provider === "hetzner" ? ", Object Storage (backups)" : ""),
      `${f.place} (${cfg.location})` +
        (b.enabled && b.provider === "hetzner" && (b.location ?? cfg.location) !== cfg.location
          ? `; backups ${placeOf(b.location ?? cfg.location)} (${b.location})`
          : ""),
      fill("DPA concluded on"),
    ],
    [
      "Cloudflare, Inc., USA",
      "DNS, the Worker" + (b.enabled && b.provider === "r2" ? ", R2 (backups)" : ""),
      "Worldwide" + (b.enabled && b.provider === "r2" ? "; R2 in the EU jurisdiction" : ""),
      fill("DPA concluded on"),
    ],
  ];
  if (f.relay) {
    processors.push([
      fill("relay provider"),
      ["Relay ", code(cfg.relayHost ?? "")],
      fill("where"),
      fill("DPA concluded on"),
    ]);
  }
  processors.push([
    fill("state backend"),
    "Deployment state",
    fill("where"),
    fill("DPA concluded on"),
  ]);
  if (f.monitoring) {
    processors.push([
      fill("monitoring"),
      "Monitoring",
      fill("where"),
      fill("DPA, if it is another party"),
    ]);
  }
  blocks.push(
    h2("Processors (Art. 28)"),
    table(["Processor", "Service", "Where", "Contract"], processors),
  );

  const measures: Text[] = [
    "TLS 1.2 or newer, forward secrecy only, on every mail port: required of mail " +
      "programs, offered to mail servers on port 25; outbound TLS wherever the receiving " +
      "server supports it, authenticated by DANE where published. Login only inside TLS; no " +
      "open relay; a sending limit per account.",
    [
      "Mail encrypted at rest on the volume (Dovecot mail_crypt, key on the server's root " +
        "disk); header fields in the mailbox indexes are not, nor mail stored before it was on.",
    ],
    "Passwords generated by the stack, stored on the server as Argon2id hashes.",
    b.enabled
      ? "Backups encrypted by restic before upload, with a key kept in the stack's state; a " +
        "daily check reads them back and alerts postmaster on failure."
      : "No backups (backup.enabled is false): a lost server or volume loses the mail.",
    [
      "Hetzner firewall and host firewall opening only the mail ports; SSH " +
        (f.sshAnywhere ? "from anywhere" : `from ${plural(cfg.sshAllowedIps.length, "range")}`) +
        ", keys only" +
        (f.monitoring
          ? `; exporters from ${plural(cfg.monitoringAllowedIps.length, "range")}`
          : "") +
        "; Fail2Ban.",
    ],
    `Logs kept ${plural(cfg.logRetentionDays, "day")}; unattended security updates.`,
    `DNSSEC ${cfg.dnssec ? "on" : "off"}; MTA-STS ${cfg.mtaStsMode}; DMARC ${cfg.dmarcPolicy}.`,
    fill("organisational measures: who has administrator access, how access is reviewed"),
  ];
  blocks.push(h2("Technical and organisational measures (Art. 32)"), ul(...measures));

  const open: Text[] = [
    [
      "A mailbox removed from ",
      code("users"),
      " keeps its mail on the volume (",
      code(`${MAIL_ROOT}/${cfg.domain}/<local part>`),
      ")" +
        (b.enabled ? " and in the backups until they age out" : "") +
        ": the stack deletes no mail. Delete it by hand when the account is closed.",
    ],
    "Mail that users send carries their device's IP address in its Received header " +
      "(Postfix's default, which the stack keeps); the notice tells users so.",
    [
      "DMARC and TLS reports from other mail providers name the IP addresses of servers " +
        "that sent mail in the domain's name. They go to ",
      ...andList(
        [...new Set([cfg.dmarcReportEmail, cfg.tlsRptEmail])].map((address) =>
          address.endsWith(`@${cfg.domain}`)
            ? [code(address), " (in this service)"]
            : [code(address), " (outside this service: a recipient to name)"],
        ),
      ),
      ".",
    ],
  ];
  blocks.push(h2("Points to act on"), ul(...open));

  const settings: Text[][] = [
    ["domain", code(cfg.domain)],
    ["mail host", code(cfg.mailHost)],
    ["location", [code(cfg.location), ` (${f.place})`]],
    ["logRetentionDays", code(String(cfg.logRetentionDays))],
    ["users", `${plural(cfg.users.length, "mailbox", "mailboxes")}, ${f.keys} with an OpenPGP key`],
    ["clamav", code(String(cfg.clamav))],
    ["dnsbl", code(String(cfg.dnsbl))],
    ["relayHost", cfg.relayHost === undefined ? "none" : code(cfg.relayHost)],
    ["monitoringAllowedIps", f.monitoring ? andList(cfg.monitoringAllowedIps.map(code)) : "none"],
    ["backup.enabled", code(String(b.enabled))],
  ];
  if (b.enabled) {
    settings.push(["backup.provider", code(b.provider)]);
    if (b.provider === "hetzner") {
      settings.push(["backup.location", code(b.location ?? cfg.location)]);
    }
    settings.push(
      ["backup.bucket", code(b.bucket)],
      ["backup.schedule", code(b.schedule)],
      [
        "backup.keepDaily / keepWeekly / keepMonthly",
        code(`${b.keepDaily} / ${b.keepWeekly} / ${b.keepMonthly}`),
      ],
    );
  }
  blocks.push(h2("Settings this record reflects"), table(["Setting", "Value"], settings));
  return { title, blocks };
}

// --- rendering -----------------------------------------------------------------------------

const spans = (text: Text): Span[] => (Array.isArray(text) ? text : [text]);

/** One line: a line break in a value would end a paragraph or a table row. */
const oneLine = (s: string) => s.replace(/[\r\n]+/g, " ");

/** A link target the renderers accept: mail or HTTPS, nothing that can end the target. */
function checkedHref(href: string): string {
  if (!/^(mailto:|https:\/\/)[^\s<>()"'`\\]+$/.test(href)) {
    throw new Error(
      `privacy: a link must be mailto: or https:// without spaces or quotes: ${href}`,
    );
  }
  return href;
}

/** Markdown text with every character that could start markup escaped. */
function mdEscape(s: string): string {
  return oneLine(s).replace(/[\\`*_[\]<>|~&#!]/g, (c) => `\\${c}`);
}

/** A Markdown code span that holds `s` whatever backticks it has. */
function mdCode(s: string, inTable: boolean): string {
  const text = oneLine(s);
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = "`".repeat(longest + 1);
  const pad = text.startsWith("`") || text.endsWith("`") ? " " : "";
  // GFM splits a table row at every unescaped |, code spans included.
  const body = inTable ? text.replace(/\|/g, "\\|") : text;
  return `${fence}${pad}${body}${pad}${fence}`;
}

/**
 * Inline Markdown. `where` says what the text opens: a paragraph or a list item must not start
 * another block (a list item, a heading, a numbered item); in a table cell, | ends the cell.
 */
function mdInline(text: Text, where: "block" | "heading" | "cell"): string {
  const inTable = where === "cell";
  const out = spans(text)
    .map((s) => {
      if (typeof s === "string") return mdEscape(s);
      if ("code" in s) return mdCode(s.code, inTable);
      if ("strong" in s) return `**${mdEscape(s.strong)}**`;
      if ("fill" in s) return `**\\[FILL IN: ${mdEscape(s.fill)}\\]**`;
      return `[${mdEscape(s.text)}](${checkedHref(s.link)})`;
    })
    .join("");
  // Trailing spaces can make a hard line break.
  if (where !== "block") return out.trimEnd();
  // A line may not start a block: a list item, a setext underline or a numbered item.
  return out.trimEnd().replace(/^([-+=]|\d+(?=[.)]))/, (m) => (/\d/.test(m) ? `${m}\\` : `\\${m}`));
}

/** Renders a document as Markdown (CommonMark with GFM tables). */
export function toMarkdown(doc: Doc): string {
  const out: string[] = [`# ${mdInline(doc.title, "heading")}`];
  for (const b of doc.blocks) {
    if (b.kind === "heading") out.push(`${"#".repeat(b.level)} ${mdInline(b.text, "heading")}`);
    else if (b.kind === "paragraph") out.push(mdInline(b.text, "block"));
    else if (b.kind === "list") {
      out.push(b.items.map((i) => `- ${mdInline(i, "block")}`).join("\n"));
    } else {
      const row = (cells: Text[]) => `| ${cells.map((c) => mdInline(c, "cell")).join(" | ")} |`;
      out.push(
        [row(b.header), `| ${b.header.map(() => "---").join(" | ")} |`, ...b.rows.map(row)].join(
          "\n",
        ),
      );
    }
  }
  return `${out.join("\n\n")}\n`;
}

/** HTML text: &, <, >, " and ' as entities. */
export function htmlEscape(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );
}

function htmlInline(text: Text): string {
  return spans(text)
    .map((s) => {
      if (typeof s === "string") return htmlEscape(s);
      if ("code" in s) return `<code>${htmlEscape(s.code)}</code>`;
      if ("strong" in s) return `<strong>${htmlEscape(s.strong)}</strong>`;
      if ("fill" in s) return `<mark>[FILL IN: ${htmlEscape(s.fill)}]</mark>`;
      return `<a href="${htmlEscape(checkedHref(s.link))}">${htmlEscape(s.text)}</a>`;
    })
    .join("");
}

/** Renders a document as one HTML page, every text escaped. */
export function toHtml(doc: Doc): string {
  const body: string[] = [`<h1>${htmlEscape(doc.title)}</h1>`];
  for (const b of doc.blocks) {
    if (b.kind === "heading") body.push(`<h${b.level}>${htmlInline(b.text)}</h${b.level}>`);
    else if (b.kind === "paragraph") body.push(`<p>${htmlInline(b.text)}</p>`);
    else if (b.kind === "list") {
      body.push(["<ul>", ...b.items.map((i) => `<li>${htmlInline(i)}</li>`), "</ul>"].join("\n"));
    } else {
      const row = (tag: "th" | "td", cells: Text[]) =>
        `<tr>${cells.map((c) => `<${tag}>${htmlInline(c)}</${tag}>`).join("")}</tr>`;
      body.push(
        [
          "<table>",
          `<thead>${row("th", b.header)}</thead>`,
          "<tbody>",
          ...b.rows.map((r) => row("td", r)),
          "</tbody>",
          "</table>",
        ].join("\n"),
      );
    }
  }
  return [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${htmlEscape(doc.title)}</title>`,
    "<style>body{font-family:sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;" +
      "line-height:1.5}table{border-collapse:collapse}th,td{border:1px solid #999;" +
      "padding:.3rem .5rem;text-align:left;vertical-align:top}</style>",
    "</head>",
    "<body>",
    "<main>",
    ...body,
    "</main>",
    "</body>",
    "</html>",
    "",
  ].join("\n");
}

/** The three files `npm run privacy-notice` writes, by name. */
export function privacyDocuments(cfg: MailStackConfig): Record<string, string> {
  const notice = privacyNotice(cfg);
  return {
    "privacy-notice.md": toMarkdown(notice),
    "privacy-notice.html": toHtml(notice),
    "record-of-processing.md": toMarkdown(recordOfProcessing(cfg)),
  };
}
