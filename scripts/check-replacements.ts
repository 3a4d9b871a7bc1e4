// `npm run check-replacements -- preview.json` (or the JSON on standard input): stops the
// deploy when `pulumi preview --json` replaces or deletes the mail server, its volume or its
// Primary IPs. A server replacement passes with MAILSTACK_ALLOW_REPLACE=server, which the
// deploy workflow sets when the merged pull request carries the label replace-server.
// Exit 0: go on; 1: refused; 2: the preview could not be read.
import { ALLOW_ENV, checkReplacementsCli } from "./replacements";

process.exitCode = checkReplacementsCli(process.argv[2], process.env[ALLOW_ENV]);
