// What the discovery Worker (worker/discovery.ts) is given: its script text, and the SITE
// binding that holds everything the stack decides. Pure functions; the component that
// uploads the Worker and points the four host names at it uses them.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as ts from "typescript";
import type { Site } from "../worker/discovery";
import { clientSettings } from "./client-settings";
import type { MtaStsMode } from "./config";
import { mtaStsPolicy } from "./keymath";

export type { Site } from "../worker/discovery";

/**
 * The labels under the mail domain that the Worker answers for: MTA-STS (RFC 8461),
 * Thunderbird autoconfig and the Apple profile, Outlook autodiscover, and the OpenPGP Web
 * Key Directory (advanced method).
 */
export const DISCOVERY_HOSTS = ["mta-sts", "autoconfig", "autodiscover", "openpgpkey"] as const;

/** The four host names of DISCOVERY_HOSTS under `domain`: mta-sts.example.eu, ... */
export function discoveryHostnames(domain: string): string[] {
  return DISCOVERY_HOSTS.map((label) => `${label}.${domain}`);
}

const ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769";

/** z-base-32 (the encoding the Web Key Directory names keys with), most significant bit first. */
export function zBase32(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ZBASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ZBASE32[(value << (5 - bits)) & 31];
  return out;
}

/**
 * The Web Key Directory name of a local part (draft-koch-openpgp-webkey-service 3.1):
 * z-base-32 of the SHA-1 of the local part with ASCII upper case mapped to lower case
 * (the draft maps nothing else). `Joe.Doe` -> `iy9q119eutrkn8s1mk4r39qejnbu3n5q`.
 */
export function wkdHash(localPart: string): string {
  const lower = localPart.replace(/[A-Z]/g, (c) => c.toLowerCase());
  return zBase32(createHash("sha1").update(lower, "utf8").digest());
}

/**
 * The SITE binding for a stack: the MTA-STS policy (the same text whose digest is the
 * `_mta-sts` TXT id, components/records.ts), the client settings (the same as the stack
 * output `clientSettings`) and the Web Key Directory. `wkdKeys` maps an address inside
 * `domain` to its binary public key (readOpenPgpKeys). Keys are sorted, so the binding's
 * JSON changes only when the content does.
 */
export function discoverySite(
  settings: { domain: string; mailHost: string; mtaStsMode: MtaStsMode },
  wkdKeys: Record<string, Uint8Array>,
): Site {
  const { domain, mailHost } = settings;
  const wkd: Record<string, string> = {};
  const owner: Record<string, string> = {};
  for (const address of Object.keys(wkdKeys).sort()) {
    const at = address.lastIndexOf("@");
    if (at < 1 || address.slice(at + 1).toLowerCase() !== domain) {
      // The directory under openpgpkey.<domain> holds that domain's addresses alone.
      throw new Error(`discoverySite: ${address} is not an address @${domain}`);
    }
    const hash = wkdHash(address.slice(0, at));
    if (owner[hash] !== undefined) {
      throw new Error(`discoverySite: ${address} and ${owner[hash]} have the same local part`);
    }
    owner[hash] = address;
    wkd[hash] = Buffer.from(wkdKeys[address]).toString("base64");
  }
  return {
    domain,
    mailHost,
    mtaStsPolicy: mtaStsPolicy(settings.mtaStsMode, [mailHost]),
    clients: clientSettings(mailHost),
    wkd: Object.fromEntries(
      Object.keys(wkd)
        .sort()
        .map((h) => [h, wkd[h]]),
    ),
  };
}

/** Where the Worker's source lives in the repository. */
export const WORKER_SOURCE = join(__dirname, "..", "worker", "discovery.ts");

/**
 * The Worker as uploaded to Cloudflare: worker/discovery.ts transpiled to one ES module
 * (ESNext modules, ES2022). Type-only imports vanish; a runtime import would leave the
 * upload unable to load, so one is refused here. Deterministic: the same source gives the
 * same text, so the Worker is updated only when its source changes.
 */
export function workerScript(): string {
  const source = readFileSync(WORKER_SOURCE, "utf8");
  if (transpiled?.source !== source) transpiled = { source, text: transpile(source) };
  return transpiled.text;
}

/** The last source transpiled, and its text: each stack in a process uploads the same one. */
let transpiled: { source: string; text: string } | undefined;

function transpile(source: string): string {
  const out = ts.transpileModule(source, {
    fileName: "discovery.ts",
    reportDiagnostics: true,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      isolatedModules: true,
      sourceMap: false,
      inlineSourceMap: false,
    },
  });
  const errors = (out.diagnostics ?? []).map((d) =>
    ts.flattenDiagnosticMessageText(d.messageText, "\n"),
  );
  if (errors.length > 0) throw new Error(`worker/discovery.ts: ${errors.join("; ")}`);
  if (/^\s*(import\s|export\s+\*|export\s*\{[^}]*\}\s*from)/m.test(out.outputText)) {
    throw new Error("worker/discovery.ts: has a runtime import; only `import type` is uploaded");
  }
  return out.outputText;
}
