// Which resources a `pulumi preview --json` would replace or delete among those that carry
// the mail or its reputation, and whether the deploy may go on. Pure but for the command's
// reading of its file: the deploy workflow runs it through check-replacements.ts,
// tests/replacements.test.ts on crafted previews.
import { readFileSync } from "node:fs";

/** The allowance the deploy workflow sets when the merged pull request carries LABEL. */
export const ALLOW_ENV = "MAILSTACK_ALLOW_REPLACE";
/** The pull request label that allows a server replacement. */
export const LABEL = "replace-server";

const SERVER = "hcloud:index/server:Server";

/**
 * What each guarded type holds. The server can be replaced with a label: the volume and the
 * Primary IPs outlive it. They never can through the pipeline: the volume holds every
 * mailbox, the Primary IPs the addresses' reputation and reverse DNS.
 */
const GUARDED: Record<string, string> = {
  [SERVER]: "the mail server",
  "hcloud:index/volume:Volume": "the mail volume",
  "hcloud:index/primaryIp:PrimaryIp": "a Primary IP",
};

/**
 * The mail encryption key (MailKeys.mailCrypt): mail stored since mail_crypt was turned on is
 * readable with it alone. One resource of a type other keys share, so it is known by its name.
 */
const KEY = "tls:index/privateKey:PrivateKey";
const MAIL_CRYPT_KEY = "the mail encryption key";
const isMailCryptKey = (type: string, urn: string) =>
  type === KEY && /-keys-mail-crypt$/.test(urn.split("::").pop() ?? "");

/** What a guarded resource holds, as the verdict names it; undefined when it is not guarded. */
function guarded(type: string, urn: string): string | undefined {
  return GUARDED[type] ?? (isMailCryptKey(type, urn) ? MAIL_CRYPT_KEY : undefined);
}

/**
 * Steps that take a resource away. A replacement shows as `replace`, `create-replacement`
 * and `delete-replaced` (the server is replaced delete-first); a renamed resource shows as
 * `create` of the new name and `delete` of the old, which takes the server away as surely.
 */
const REPLACING = ["replace", "create-replacement", "delete-replaced"];
const DELETING = ["delete"];

export interface Finding {
  urn: string;
  type: string;
  op: "replace" | "delete";
  /** The properties that force the replacement, as the preview names them. */
  reasons: string[];
}

export interface Verdict {
  ok: boolean;
  lines: string[];
}

type Node = Record<string, unknown>;
const isObject = (v: unknown): v is Node =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The type a URN names: the last of its `$`-joined parent types (`urn:pulumi:s::p::T::name`). */
function typeOfUrn(urn: string): string {
  return (urn.split("::")[2] ?? "").split("$").pop() ?? "";
}

function typeOf(step: Node): string {
  for (const state of [step.newState, step.oldState]) {
    if (isObject(state) && typeof state.type === "string") return state.type;
  }
  return typeof step.urn === "string" ? typeOfUrn(step.urn) : "";
}

/**
 * The guarded resources the preview replaces or deletes, one finding per URN, in the order
 * the preview lists them. Throws when the document is not the JSON of `pulumi preview
 * --json` (it has `steps` or, with nothing to change, at least `changeSummary`), so a broken
 * preview never passes for a clean one.
 */
export function guardedChanges(preview: unknown): Finding[] {
  if (!isObject(preview) || !(Array.isArray(preview.steps) || isObject(preview.changeSummary))) {
    throw new Error("not the JSON of pulumi preview --json (no steps, no changeSummary)");
  }
  const found = new Map<string, Finding>();
  for (const step of Array.isArray(preview.steps) ? preview.steps : []) {
    if (!isObject(step) || typeof step.op !== "string" || typeof step.urn !== "string") continue;
    const op = REPLACING.includes(step.op) ? "replace" : DELETING.includes(step.op) ? "delete" : "";
    const type = typeOf(step);
    if (!op || guarded(type, step.urn) === undefined) continue;
    const reasons = Array.isArray(step.replaceReasons) ? step.replaceReasons.map(String) : [];
    const seen = found.get(step.urn);
    if (seen) {
      if (op === "replace") seen.op = "replace";
      seen.reasons = [...new Set([...seen.reasons, ...reasons])];
    } else found.set(step.urn, { urn: step.urn, type, op, reasons });
  }
  return [...found.values()];
}

function line(f: Finding): string {
  const why = f.reasons.length > 0 ? ` (${f.reasons.join(", ")})` : "";
  return `  ${f.op} ${guarded(f.type, f.urn)}: ${f.urn}${why}`;
}

/**
 * Whether the deploy may go on. A server replacement needs the allowance (`server`, set by
 * the workflow from the label); the volume and the Primary IPs are refused whatever it says.
 */
export function checkReplacements(preview: unknown, allow: string | undefined): Verdict {
  const findings = guardedChanges(preview);
  const lines: string[] = [];
  if (allow !== undefined && allow !== "" && allow !== "server") {
    return {
      ok: false,
      lines: [`refused: ${ALLOW_ENV} must be "server" or unset; got ${JSON.stringify(allow)}`],
    };
  }
  if (findings.length === 0) {
    return {
      ok: true,
      lines: [
        "no replacement of the server, the volume, the Primary IPs or the mail encryption key",
      ],
    };
  }
  const server = findings.filter((f) => f.type === SERVER);
  const kept = findings.filter((f) => f.type !== SERVER);
  if (kept.length > 0) {
    lines.push(
      "refused, whatever the label: this deploy would take away what holds the mail or its reputation:",
      ...kept.map(line),
      "The volume holds every mailbox, the Primary IPs the addresses' reputation and reverse " +
        "DNS; mailstack:protect should stop this too. Find what changes them (the reasons in " +
        "parentheses) and change it back: moving them is done by hand, never by the pipeline.",
    );
    if (kept.some((f) => isMailCryptKey(f.type, f.urn))) {
      lines.push(
        "The mail encryption key is the only key to the mail stored encrypted on the volume: " +
          "a new one leaves that mail unreadable. No setting changes it; a renamed stack or " +
          "MailKeys component does: keep the old name (an alias) instead.",
      );
    }
  }
  if (server.length > 0 && allow === "server") {
    lines.push(
      `allowed by ${ALLOW_ENV}=server (the merged pull request is labelled ${LABEL}):`,
      ...server.map(line),
    );
  } else if (server.length > 0) {
    lines.push(
      "refused: this deploy would replace the mail server:",
      ...server.map(line),
      "A new server boots from scratch and takes the volume and the addresses once the old " +
        "one is gone: no mail is received in between, and what the host held outside the " +
        `volume is gone. If that is meant, label the merged pull request ${LABEL} and re-run ` +
        "the deploy.",
    );
  }
  return { ok: kept.length === 0 && (server.length === 0 || allow === "server"), lines };
}

/**
 * `npm run check-replacements -- [preview.json]`: reads the preview from `file` (standard
 * input without one), says its verdict and returns the exit status: 0 go on, 1 refused, 2 the
 * preview could not be read.
 */
export function checkReplacementsCli(
  file: string | undefined,
  allow: string | undefined,
  io: { out: (s: string) => void; err: (s: string) => void } = {
    out: console.log,
    err: console.error,
  },
): number {
  let preview: unknown;
  try {
    // File descriptor 0 is standard input.
    preview = JSON.parse(readFileSync(file ?? 0, "utf8"));
  } catch (e) {
    io.err(`check-replacements: ${file ?? "stdin"}: ${e instanceof Error ? e.message : e}`);
    return 2;
  }
  try {
    const verdict = checkReplacements(preview, allow);
    (verdict.ok ? io.out : io.err)(verdict.lines.join("\n"));
    return verdict.ok ? 0 : 1;
  } catch (e) {
    io.err(`check-replacements: ${e instanceof Error ? e.message : e}`);
    return 2;
  }
}
