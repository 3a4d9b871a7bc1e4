// A crafted zone for the checker's DNS checks: names to records by type; a name absent is
// NXDOMAIN; `ad` says whether the "resolver" validated it.
import type { Dns, QueryType } from "../../checks/dns";

export type Zone = Record<string, Partial<Record<QueryType, unknown[]>>>;

export const txt = (...values: string[]) => values.map((v) => [Buffer.from(v)]);

export function zoneDns(zone: Zone, opts: { ad?: boolean; unsigned?: string[] } = {}): Dns {
  return {
    describe: "a test zone",
    async query(name, type) {
      const n = name.replace(/\.$/, "").toLowerCase();
      const node = zone[n];
      const ad = (opts.ad ?? true) && !(opts.unsigned ?? []).includes(n);
      if (!node) return { rcode: "NXDOMAIN", ad, answers: [] };
      return {
        rcode: "NOERROR",
        ad,
        answers: (node[type] ?? []).map((data) => ({ name: n, type, ttl: 300, data })),
      };
    },
  };
}
