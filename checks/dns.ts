// DNS as the checker sees it: queries with the DNSSEC OK bit to a recursive resolver, so each
// answer says whether the resolver validated it (the AD bit, RFC 4035 3.2.3, RFC 6840 5.7).
// Node's own resolver hides that bit, hence dns-packet over UDP, with TCP when truncated.
import { randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { connect, isIP } from "node:net";
import * as packet from "dns-packet";

export type QueryType = "A" | "AAAA" | "MX" | "TXT" | "PTR" | "CAA" | "TLSA" | "SOA" | "CNAME";

export interface Answer {
  /** Owner name of the record, without the trailing dot. */
  name: string;
  type: string;
  ttl: number;
  /** dns-packet's decoded rdata: string for A/AAAA/PTR/CNAME, Buffer[] for TXT, objects else. */
  data: unknown;
}

export interface DnsReply {
  /** NOERROR, NXDOMAIN, SERVFAIL, REFUSED... */
  rcode: string;
  /** The resolver validated the answer (or the denial) with DNSSEC. */
  ad: boolean;
  /** Records of the asked type at the asked name, after any CNAME chain. */
  answers: Answer[];
}

/** What the checks need of DNS: tests give a zone of their own, the CLI a real resolver. */
export interface Dns {
  query(name: string, type: QueryType): Promise<DnsReply>;
  /** Who answers, for the report. */
  describe: string;
}

/** The name servers of /etc/resolv.conf. */
export function systemResolvers(file = "/etc/resolv.conf"): string[] {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((a): a is string => !!a && isIP(a.replace(/%.*$/, "")) !== 0);
}

function encodeQuery(id: number, name: string, type: QueryType): Buffer {
  return packet.encode({
    type: "query",
    id,
    // AD in a query asks the resolver to report validation even for a plain query (RFC 6840).
    flags: packet.RECURSION_DESIRED | packet.AUTHENTIC_DATA,
    questions: [{ type, name }],
    additionals: [
      { type: "OPT", name: ".", udpPayloadSize: 4096, flags: packet.DNSSEC_OK } as packet.Answer,
    ],
  });
}

function udpExchange(server: string, query: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIP(server) === 6 ? "udp6" : "udp4");
    const id = query.readUInt16BE(0);
    const timer = setTimeout(
      () => done(new Error(`no answer from ${server} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const done = (err?: Error, msg?: Buffer) => {
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(msg!);
    };
    sock.on("message", (msg) => {
      if (msg.length >= 2 && msg.readUInt16BE(0) === id) done(undefined, msg);
    });
    sock.on("error", (e) => done(e));
    sock.send(query, 53, server);
  });
}

function tcpExchange(server: string, query: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: server, port: 53, timeout: timeoutMs });
    let data = Buffer.alloc(0);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(query.length);
    sock.on("connect", () => sock.write(Buffer.concat([len, query])));
    sock.on("data", (d) => {
      data = Buffer.concat([data, d]);
      if (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) {
        sock.destroy();
        resolve(data.subarray(2, 2 + data.readUInt16BE(0)));
      }
    });
    sock.on("timeout", () =>
      sock.destroy(new Error(`no answer from ${server} within ${timeoutMs} ms`)),
    );
    sock.on("error", reject);
    sock.on("close", () => reject(new Error(`${server} closed the connection`)));
  });
}

const bare = (name: string) => name.replace(/\.$/, "").toLowerCase();

/** A resolver client: each query goes to the servers in turn until one answers. */
export function resolverDns(servers: string[], timeoutMs = 5000): Dns {
  if (servers.length === 0)
    throw new Error("no DNS resolver: give --resolver or fill /etc/resolv.conf");
  return {
    describe: servers.join(", "),
    async query(name, type) {
      let lastError: Error | undefined;
      for (const server of servers) {
        try {
          const id = randomInt(0, 65536);
          const q = encodeQuery(id, name, type);
          let raw = await udpExchange(server, q, timeoutMs);
          let res = packet.decode(raw);
          if (res.flag_tc) {
            raw = await tcpExchange(server, q, timeoutMs);
            res = packet.decode(raw);
          }
          // Follow the CNAME chain the resolver put in the answer section.
          let owner = bare(name);
          const all = res.answers ?? [];
          for (let hops = 0; hops < 8; hops++) {
            const cname = all.find((a) => a.type === "CNAME" && bare(a.name) === owner);
            if (!cname || cname.type !== "CNAME" || type === "CNAME") break;
            owner = bare(cname.data);
          }
          return {
            rcode: (res as unknown as { rcode: string }).rcode,
            ad: res.flag_ad,
            answers: all
              .filter((a) => a.type === type && bare(a.name) === owner)
              .map((a) => ({
                name: bare(a.name),
                type: a.type,
                ttl: (a as { ttl?: number }).ttl ?? 0,
                data: (a as { data?: unknown }).data,
              })),
          };
        } catch (e) {
          lastError = e as Error;
        }
      }
      throw lastError ?? new Error("no resolver answered");
    },
  };
}

/** TXT rdata as strings, each record's character-strings joined (RFC 7208 3.3). */
export function txtStrings(reply: DnsReply): string[] {
  return reply.answers.map((a) =>
    (Array.isArray(a.data) ? a.data : [a.data])
      .map((p) => Buffer.from(p as Buffer).toString("utf8"))
      .join(""),
  );
}

/**
 * The resolver function mailauth takes (the shape of node:dns `resolve`): records, or an error
 * with ENOTFOUND / ENODATA, which its SPF and DMARC code treat as "no record".
 */
export function mailauthResolver(dns: Dns) {
  return async (name: string, type: string): Promise<unknown[]> => {
    const reply = await dns.query(name, type as QueryType);
    const fail = (code: string) => Object.assign(new Error(`${code} ${name} ${type}`), { code });
    if (reply.rcode === "NXDOMAIN") throw fail("ENOTFOUND");
    if (reply.rcode !== "NOERROR") throw fail(reply.rcode === "REFUSED" ? "EREFUSED" : "ESERVFAIL");
    if (reply.answers.length === 0) throw fail("ENODATA");
    switch (type) {
      case "TXT":
        return reply.answers.map((a) =>
          (a.data as Buffer[]).map((p) => Buffer.from(p).toString("utf8")),
        );
      case "MX":
        return reply.answers.map((a) => {
          const d = a.data as { preference: number; exchange: string };
          return { priority: d.preference, exchange: bare(d.exchange) };
        });
      default:
        return reply.answers.map((a) => (typeof a.data === "string" ? bare(a.data) : a.data));
    }
  };
}
