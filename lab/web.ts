// The lab's stand-in for Cloudflare's Workers: the very script the stack uploads (the output
// of workerScript(), loaded as an ES module), run by a small Node adapter over HTTPS with a
// certificate from the lab CA, on the services address. The lab DNS points each host's
// mta-sts., autoconfig., autodiscover. and openpgpkey. names here, as Cloudflare's custom
// domains do; the adapter hands each request to the script with the Site binding of the
// domain it was asked for, as Cloudflare hands it the stack's.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:https";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  discoveryHostnames,
  discoverySite,
  workerScript,
  type Site,
} from "../components/discovery";
import { readOpenPgpKeys } from "../components/openpgp";
import { labServerCertificate } from "./acme";
import { daemon, waitForPort } from "./run";
import { NETNS, SERVICES_IP4, SERVICES_IP6, STATE_DIR, type LabHost } from "./settings";

export const WEB_DIR = join(STATE_DIR, "web");
export const webPidFile = join(WEB_DIR, "web.pid");

/** Writes the script and each domain's binding, then starts the adapter in the lab. */
export async function startWeb(hosts: LabHost[]): Promise<void> {
  mkdirSync(WEB_DIR, { recursive: true });
  labServerCertificate(
    WEB_DIR,
    "web",
    ...hosts.flatMap((h) => discoveryHostnames(h.config.domain)),
  );
  writeFileSync(join(WEB_DIR, "worker.mjs"), workerScript());
  const sites: Record<string, Site> = {};
  for (const h of hosts) {
    sites[h.config.domain] = discoverySite(h.config, await readOpenPgpKeys(h.config.users));
  }
  writeFileSync(join(WEB_DIR, "sites.json"), JSON.stringify(sites));
  const log = join(WEB_DIR, "web.log");
  daemon(
    "ip",
    ["netns", "exec", NETNS, process.execPath, "--import", "tsx", __filename, "serve", WEB_DIR],
    log,
    webPidFile,
  );
  await waitForPort("the lab's Worker runtime (HTTPS)", SERVICES_IP4, 443, log);
}

/** A Worker module's shape: `export default { fetch }`. */
export interface WorkerModule {
  default: { fetch(request: Request, env: { SITE: Site }): Promise<Response> };
}

/**
 * The adapter: a Node request in, the Worker's fetch(request, env) out, with the SITE of the
 * domain the request was made to (none: 404, as Cloudflare has no route for it).
 */
export function workerListener(
  worker: WorkerModule,
  siteOf: (host: string) => Site | undefined,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    try {
      const host = String(req.headers.host ?? "")
        .replace(/:\d+$/, "")
        .toLowerCase();
      const site = siteOf(host);
      if (!site) {
        res.writeHead(404).end(`no Worker for ${host}\n`);
        return;
      }
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) {
        if (typeof v === "string") headers.set(k, v);
        else if (Array.isArray(v)) for (const x of v) headers.append(k, x);
      }
      const body =
        req.method === "GET" || req.method === "HEAD" ? undefined : Buffer.concat(chunks);
      const response = await worker.default.fetch(
        new Request(`https://${String(req.headers.host)}${req.url}`, {
          method: req.method,
          headers,
          body,
        }),
        { SITE: site },
      );
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    } catch (e) {
      console.error(e);
      res.writeHead(500).end();
    }
  };
}

async function serve(dir: string): Promise<void> {
  const worker = (await import(pathToFileURL(join(dir, "worker.mjs")).href)) as WorkerModule;
  const sites = JSON.parse(readFileSync(join(dir, "sites.json"), "utf8")) as Record<string, Site>;
  const listener = workerListener(
    worker,
    (host) => Object.entries(sites).find(([domain]) => host.endsWith(`.${domain}`))?.[1],
  );
  const options = {
    key: readFileSync(join(dir, "web.key")),
    cert: readFileSync(join(dir, "web.crt")),
  };
  const logged: typeof listener = async (req, res) => {
    await listener(req, res);
    console.log(`${req.method} https://${req.headers.host}${req.url} ${res.statusCode}`);
  };
  // One server per address family: the names have A and AAAA records.
  createServer(options, logged).listen(443, SERVICES_IP4);
  createServer(options, logged).listen(443, SERVICES_IP6);
}

if (require.main === module && process.argv[2] === "serve") {
  const dir = process.argv[3];
  if (!dir || !existsSync(dir)) throw new Error("usage: web.ts serve <dir>");
  serve(dir).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
