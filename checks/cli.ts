// `npm run check -- <domain>`: inspects a live mail domain from outside, as a receiving server
// and a test site would. One line per check; exits 1 when any check fails, 2 on bad usage.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parse } from "yaml";
import { formatReport, runChecks } from "./check";
import { resolverDns, systemResolvers } from "./dns";

const USAGE = `usage: npm run check -- <domain> [options]
       npm run check -- --config Pulumi.<stack>.yaml [options]
  --config FILE     take the domain, DKIM selector and staging settings from a stack's config
  --selector NAME   DKIM selector (the stack output dkimSelector); default mail
  --resolver IP     a validating resolver to ask (repeatable); default /etc/resolv.conf's.
                    DNSSEC needs one that validates; blocklists refuse public resolvers
  --ca FILE         also trust the CA certificates in FILE (PEM): a lab or ACME staging CA
  --staging         a staging stack: unsigned zone and MTA-STS testing mode only warn
  --timeout MS      deadline of each network step; default 15000
  --ipv4-only       connect to the IPv4 addresses only (where IPv6 does not reach, such as
                    GitHub's hosted runners); the IPv6 ones' DNS and PTR are still checked
  --json            the results as JSON`;

export interface StackSettings {
  domain?: string;
  dkimSelector?: string;
  staging?: boolean;
}

/**
 * What the checker takes from a stack's config file (Pulumi.<stack>.yaml): the domain, the
 * DKIM selector, and whether it is a staging stack (no DNSSEC of its own, MTA-STS testing,
 * or staging certificates), which turns those checks into warnings.
 */
export function stackSettings(yamlText: string): StackSettings {
  const config = ((parse(yamlText) ?? {}) as { config?: Record<string, unknown> }).config ?? {};
  const get = (key: string) => config[`mailstack:${key}`];
  const domain = get("domain");
  if (typeof domain !== "string") throw new Error("has no mailstack:domain");
  const selector = get("dkimSelector");
  return {
    domain,
    ...(typeof selector === "string" ? { dkimSelector: selector } : {}),
    staging:
      get("dnssec") === false || get("mtaStsMode") === "testing" || get("acmeStaging") === true,
  };
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: "string" },
        selector: { type: "string" },
        resolver: { type: "string", multiple: true },
        ca: { type: "string", multiple: true },
        staging: { type: "boolean" },
        timeout: { type: "string" },
        "ipv4-only": { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean" },
      },
    });
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let stack: StackSettings = {};
  if (values.config) {
    try {
      stack = stackSettings(readFileSync(values.config, "utf8"));
    } catch (e) {
      console.error(`--config ${values.config}: ${(e as Error).message}`);
      return 2;
    }
  }
  const domain = (positionals[0] ?? stack.domain)?.toLowerCase().replace(/\.$/, "");
  if (positionals.length > 1 || !domain || !/^([a-z0-9-]+\.)+[a-z0-9-]+$/.test(domain)) {
    console.error(`give one mail domain, e.g. example.eu, or --config\n${USAGE}`);
    return 2;
  }
  const timeoutMs = values.timeout === undefined ? undefined : Number(values.timeout);
  if (timeoutMs !== undefined && !(timeoutMs > 0)) {
    console.error(`--timeout: a number of milliseconds; got ${values.timeout}`);
    return 2;
  }
  let ca: string[] | undefined;
  try {
    ca = values.ca?.map((f) => readFileSync(f, "utf8"));
  } catch (e) {
    console.error(`--ca: ${(e as Error).message}`);
    return 2;
  }
  const resolvers = values.resolver ?? systemResolvers();
  if (resolvers.length === 0) {
    console.error("no resolver: give --resolver IP (none in /etc/resolv.conf)");
    return 2;
  }
  const started = Date.now();
  const results = await runChecks({
    domain,
    dkimSelector: values.selector ?? stack.dkimSelector,
    dns: resolverDns(resolvers, Math.min(timeoutMs ?? 5000, 5000)),
    ca,
    timeoutMs,
    staging: values.staging ?? stack.staging,
    ipv4Only: values["ipv4-only"],
  });
  const seconds = (Date.now() - started) / 1000;
  const failed = results.filter((r) => r.status === "fail").length;
  if (values.json) {
    console.log(JSON.stringify({ domain, resolvers, seconds, results }, null, 2));
  } else {
    const warned = results.filter((r) => r.status === "warn").length;
    console.log(`${domain}, asking ${resolvers.join(", ")}\n`);
    console.log(formatReport(results));
    console.log(
      `\n${results.length} checks in ${seconds.toFixed(1)} s: ${results.length - failed - warned} pass, ${warned} warn, ${failed} fail`,
    );
  }
  return failed > 0 ? 1 : 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (e) => {
      console.error(e);
      process.exitCode = 2;
    },
  );
}
