// `npm run staging -- up|down|list|janitor`: throw-away staging mail servers, one per pull
// request or branch, on the Pulumi Automation API (it drives the Pulumi CLI, which must be
// installed). The logic it decides with lives in plan.ts, tested without it; `up` ends with
// the outside-in checker (checks/), as the deploy workflow does for prod.
import { LocalWorkspace, type Stack } from "@pulumi/pulumi/automation";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import {
  DEFAULT_TTL_HOURS,
  STACK_PREFIXES,
  expiresAt,
  isExpired,
  stagingConfig,
  stagingTarget,
} from "./plan";
import { formatReport, runChecks } from "../checks/check";
import { resolverDns, systemResolvers } from "../checks/dns";

const WORK_DIR = join(__dirname, "..");

/** The ACME staging CA's roots, which staging certificates chain to (published by the CA). */
const STAGING_ROOTS = [
  "https://letsencrypt.org/certs/staging/letsencrypt-stg-root-x1.pem",
  "https://letsencrypt.org/certs/staging/letsencrypt-stg-root-x2.pem",
];

async function stagingRoots(): Promise<string[]> {
  return Promise.all(
    STAGING_ROOTS.map(async (url) => {
      const res = await fetch(url);
      if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
      return res.text();
    }),
  );
}

interface Options {
  pr?: number;
  branch?: string;
  ttlHours: number;
}

function options(argv: string[]): Options {
  const get = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const pr = get("--pr") ?? process.env.PR_NUMBER;
  return {
    pr: pr ? Number(pr) : undefined,
    branch: get("--branch") ?? process.env.GITHUB_HEAD_REF,
    ttlHours: Number(get("--ttl-hours") ?? DEFAULT_TTL_HOURS),
  };
}

/** The base staging settings: Pulumi.staging.yaml's `mailstack:` keys. */
function baseSettings(): Record<string, unknown> {
  const file = parse(readFileSync(join(WORK_DIR, "Pulumi.staging.yaml"), "utf8"));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries((file.config ?? {}) as Record<string, unknown>)) {
    if (k.startsWith("mailstack:")) out[k.slice("mailstack:".length)] = v;
  }
  return out;
}

function requireEnv(name: string, why: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: ${why}`);
  return v;
}

async function up(o: Options): Promise<void> {
  const base = baseSettings();
  const target = stagingTarget({ ...o, baseDomain: String(base.domain) });
  const expires = expiresAt(new Date(), o.ttlHours);
  const { config, values } = stagingConfig(base, target, expires);
  const acmeDnsToken = requireEnv(
    "ACME_DNS_TOKEN",
    "the Cloudflare token the host uses for DNS-01",
  );
  const stack = await LocalWorkspace.createOrSelectStack({
    stackName: target.stack,
    workDir: WORK_DIR,
  });
  const configMap: Record<string, { value: string; secret?: boolean }> = {};
  for (const [k, v] of Object.entries(values)) {
    configMap[`mailstack:${k}`] = { value: typeof v === "string" ? v : JSON.stringify(v) };
  }
  configMap["mailstack:acmeDnsToken"] = { value: acmeDnsToken, secret: true };
  await stack.setAllConfig(configMap);
  console.log(`staging ${target.stack}: ${target.domain}, expires ${expires}`);
  const result = await stack.up({
    onOutput: (o) => process.stdout.write(o),
    policyPacks: [join(WORK_DIR, "policy")],
    policyPackConfigs: [join(WORK_DIR, "policy", "staging.json")],
  });
  // The new domain from outside. A staging stack has no DNSSEC of its own and runs MTA-STS in
  // testing mode: those only warn. Its certificates come from the ACME staging CA.
  const results = await runChecks({
    domain: config.domain,
    dkimSelector: config.dkimSelector,
    dns: resolverDns(systemResolvers()),
    ca: await stagingRoots(),
    staging: true,
  });
  console.log(`\noutside-in check of ${config.domain} (${String(result.outputs.ipv4?.value)}):`);
  console.log(formatReport(results));
  if (results.some((r) => r.status === "fail")) process.exitCode = 1;
}

async function destroy(stack: Stack): Promise<void> {
  await stack.destroy({ onOutput: (o) => process.stdout.write(o) });
  await stack.workspace.removeStack(stack.name);
  console.log(`staging ${stack.name}: every resource and record removed`);
}

async function ownStacks(): Promise<{ name: string; expires?: string }[]> {
  const ws = await LocalWorkspace.create({ workDir: WORK_DIR });
  const stacks = await ws.listStacks();
  const own = stacks.filter((s) =>
    STACK_PREFIXES.some((p) => s.name.split("/").pop()!.startsWith(p)),
  );
  return Promise.all(
    own.map(async (s) => {
      const cfg = await ws.getAllConfig(s.name);
      return { name: s.name, expires: cfg["mailstack:expiresAt"]?.value };
    }),
  );
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  const o = options(rest);
  if (cmd === "up") return up(o);
  if (cmd === "down") {
    const target = stagingTarget({ ...o, baseDomain: String(baseSettings().domain) });
    return destroy(
      await LocalWorkspace.selectStack({ stackName: target.stack, workDir: WORK_DIR }),
    );
  }
  if (cmd === "list" || cmd === "janitor") {
    const now = new Date();
    for (const s of await ownStacks()) {
      const expired = isExpired(s.expires, now);
      console.log(`${s.name}\texpires ${s.expires ?? "never"}${expired ? "\tEXPIRED" : ""}`);
      if (cmd === "janitor" && expired) {
        await destroy(await LocalWorkspace.selectStack({ stackName: s.name, workDir: WORK_DIR }));
      }
    }
    return;
  }
  throw new Error(
    "usage: npm run staging -- up|down|list|janitor [--pr N | --branch NAME] [--ttl-hours H]",
  );
}

main().catch((e) => {
  console.error(`staging: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
