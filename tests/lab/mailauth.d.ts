// The part of mailauth's API the suite uses (the package ships no types).
declare module "mailauth" {
  interface Status {
    status: { result: string };
  }
  export function authenticate(
    message: string,
    opts: { ip: string; helo: string; mta: string; sender: string; resolver: never },
  ): Promise<{ dkim: { results: Status[] }; spf: Status | false; dmarc: Status | false }>;
}
