// `npm run privacy-notice -- --config Pulumi.<stack>.yaml [--out DIR]`: the privacy notice
// (Markdown and HTML) and the record of processing activities (Markdown), generated from a
// stack's settings (components/privacy.ts). With --out the three files are written there;
// without, one document goes to standard output (--format). No secret is read.
// Exit 0: written; 1: the stack file is missing or a setting is bad; 2: bad usage.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseStackFile } from "../components/config";
import { privacyDocuments } from "../components/privacy";

const USAGE = `usage: npm run privacy-notice -- --config Pulumi.<stack>.yaml [--out DIR | --format md|html|record]
  --config FILE    the stack file whose mailstack: settings the documents describe
  --out DIR        write privacy-notice.md, privacy-notice.html and record-of-processing.md
                   into DIR (made if missing)
  --format F       without --out: print one document, md (the notice, the default), html
                   (the notice) or record (the record of processing activities)`;

/** The file each --format prints. */
const FORMATS: Record<string, string> = {
  md: "privacy-notice.md",
  html: "privacy-notice.html",
  record: "record-of-processing.md",
};

/** Where the program writes: standard output and error, replaceable in tests. */
export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

export const STDIO: Io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

/** Runs the program; returns the exit code. */
export function main(argv: string[], io: Io = STDIO): number {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: "string" },
        out: { type: "string" },
        format: { type: "string" },
        help: { type: "boolean" },
      },
    }));
  } catch (e) {
    io.err(`privacy-notice: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    io.out(`${USAGE}\n`);
    return 0;
  }
  if (values.config === undefined) {
    io.err(
      `privacy-notice: --config is required: the stack file, e.g. Pulumi.prod.yaml\n${USAGE}\n`,
    );
    return 2;
  }
  if (values.format !== undefined && !(values.format in FORMATS)) {
    io.err(`privacy-notice: --format must be md, html or record; got ${values.format}\n`);
    return 2;
  }
  if (values.format !== undefined && values.out !== undefined) {
    io.err("privacy-notice: --format prints one document; --out writes all three: not both\n");
    return 2;
  }

  let text: string;
  try {
    text = readFileSync(values.config, "utf8");
  } catch (e) {
    io.err(`privacy-notice: --config ${values.config}: cannot be read: ${(e as Error).message}\n`);
    return 1;
  }
  let docs: Record<string, string>;
  try {
    docs = privacyDocuments(parseStackFile(text));
  } catch (e) {
    // A ConfigError names every bad setting, one per line; anything else is about the file
    // as a whole (not YAML, no config: section).
    if (!(e instanceof Error)) throw e;
    io.err(`privacy-notice: --config ${values.config}: ${e.message}\n`);
    return 1;
  }

  const gaps = (docs["privacy-notice.md"] + docs["record-of-processing.md"]).split(
    "FILL IN:",
  ).length;
  const todo = `${gaps - 1} places marked [FILL IN: ...] are yours to complete (docs/privacy.md)`;
  if (values.out === undefined) {
    io.out(docs[FORMATS[values.format ?? "md"]]);
    io.err(`privacy-notice: ${todo}\n`);
    return 0;
  }
  try {
    mkdirSync(values.out, { recursive: true });
    for (const [name, text] of Object.entries(docs)) writeFileSync(join(values.out, name), text);
  } catch (e) {
    io.err(`privacy-notice: --out ${values.out}: ${(e as Error).message}\n`);
    return 1;
  }
  io.err(
    `privacy-notice: wrote ${Object.keys(docs)
      .map((name) => join(values.out!, name))
      .join(", ")}\n` + `privacy-notice: ${todo}\n`,
  );
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
