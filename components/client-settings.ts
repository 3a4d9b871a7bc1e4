// What a person types into a mail client (also published as SRV records, RFC 6186/8314).

export interface ClientSettings {
  username: string;
  incoming: { protocol: "IMAP"; host: string; port: 993; security: "SSL/TLS" };
  outgoing: { protocol: "SMTP"; host: string; port: 465; security: "SSL/TLS" };
  outgoingAlternative: { protocol: "SMTP"; host: string; port: 587; security: "STARTTLS" };
  sieve: { protocol: "ManageSieve"; host: string; port: 4190; security: "STARTTLS" };
}

export function clientSettings(mailHost: string): ClientSettings {
  return {
    username: "the full email address",
    incoming: { protocol: "IMAP", host: mailHost, port: 993, security: "SSL/TLS" },
    outgoing: { protocol: "SMTP", host: mailHost, port: 465, security: "SSL/TLS" },
    outgoingAlternative: { protocol: "SMTP", host: mailHost, port: 587, security: "STARTTLS" },
    sieve: { protocol: "ManageSieve", host: mailHost, port: 4190, security: "STARTTLS" },
  };
}
