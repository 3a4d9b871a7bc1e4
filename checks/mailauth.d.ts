// The parts of mailauth the checker uses (the package ships no types).
type MailauthResolver = (name: string, type: string) => Promise<unknown[]>;

declare module "mailauth/lib/spf" {
  export function spf(opts: {
    sender: string;
    ip: string;
    helo: string;
    mta: string;
    resolver: MailauthResolver;
  }): Promise<{
    status: { result: string; comment?: string | false };
    lookups?: { limit: number; count: number; void: number };
    info?: string;
  }>;
}

declare module "mailauth/lib/dmarc/get-dmarc-record" {
  function getDmarcRecord(
    domain: string,
    resolver: MailauthResolver,
  ): Promise<
    false | (Record<string, string | number | boolean> & { rr: string; isOrgRecord: boolean })
  >;
  export = getDmarcRecord;
}

declare module "mailauth/lib/mta-sts" {
  export interface Policy {
    version?: string;
    mode: "enforce" | "testing" | "none";
    mx?: string[];
    maxAge?: number;
  }
  export function resolvePolicy(
    address: string,
    opts: { resolver: MailauthResolver },
  ): Promise<string | false>;
  export function parsePolicy(text: string): Policy;
  export function validateMx(mx: string, policy: Policy): { valid: boolean; mode: string };
}
