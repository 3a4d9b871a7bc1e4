// `npm run check-replacements -- preview.json` (or the JSON on standard input): stops the
// deploy when `pulumi preview --json` replaces or deletes the mail server, its volume or its
// Primary IPs. A server replacement passes with MAILSTACK_ALLOW_REPLACE=server, which the
// deploy workflow sets when the merged pull request carries the label replace-server.
// Exit 0: go on; 1: refused; 2: the preview could not be read.
import { readFileSync } from "node:fs";
import { ALLOW_ENV, checkReplacements } from "./replacements";

function main(): number {
  const file = process.argv[2];
  let preview: unknown;
  try {
    // File descriptor 0 is standard input.
    preview = JSON.parse(readFileSync(file ?? 0, "utf8"));
  } catch (e) {
    console.error(`check-replacements: ${file ?? "stdin"}: ${e instanceof Error ? e.message : e}`);
    return 2;
  }
  try {
    const verdict = checkReplacements(preview, process.env[ALLOW_ENV]);
    (verdict.ok ? console.log : console.error)(verdict.lines.join("\n"));
    return verdict.ok ? 0 : 1;
  } catch (e) {
    console.error(`check-replacements: ${e instanceof Error ? e.message : e}`);
    return 2;
  }
}

process.exitCode = main();
