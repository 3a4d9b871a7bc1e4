// The discovery Worker: what mail clients and sending servers fetch over HTTPS for one mail
// domain. MTA-STS policy (RFC 8461), Thunderbird autoconfig, Outlook autodiscover (POX and
// the JSON form), an Apple configuration profile, and the OpenPGP Web Key Directory
// (draft-koch-openpgp-webkey-service, advanced method).
//
// Uploaded to Cloudflare as one file after ts.transpileModule (components/discovery.ts
// workerScript), so nothing here may be imported at run time: `import type` only. The
// script is generic; everything that depends on the stack comes in the SITE binding, so a
// config change updates the binding and never the script.
import type { ClientSettings } from "../components/client-settings";

/** What the Worker serves, as the JSON binding SITE (components/discovery.ts discoverySite). */
export interface Site {
  /** The mail domain, lower case: example.eu. */
  domain: string;
  /** The MX host, lower case: mail.example.eu. */
  mailHost: string;
  /** The MTA-STS policy text, exactly as keymath.mtaStsPolicy renders it. */
  mtaStsPolicy: string;
  /** The server settings a mail client needs (components/client-settings.ts). */
  clients: ClientSettings;
  /** Web Key Directory: z-base-32 hash of the local part -> base64 of the binary key. */
  wkd: Record<string, string>;
}

/** The Worker's bindings. */
export interface DiscoveryEnv {
  /** A JSON binding (parsed by the runtime); a JSON text is accepted too. */
  SITE: Site | string;
}

/** The POX response schema Outlook asks for (MS-OXDSCLI). */
const OUTLOOK_SCHEMA =
  "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
const AUTODISCOVER_SCHEMA =
  "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";

const TEXT = "text/plain; charset=utf-8";
const XML = "application/xml; charset=utf-8";
const JSON_TYPE = "application/json; charset=utf-8";

/** A route's answer to a request whose method it accepts. */
type Handler = (request: Request, url: URL, site: Site) => Promise<Response> | Response;

interface Route {
  methods: string[];
  handler: Handler;
}

export default {
  async fetch(request: Request, env: DiscoveryEnv): Promise<Response> {
    const site: Site = typeof env.SITE === "string" ? JSON.parse(env.SITE) : env.SITE;
    const url = new URL(request.url);
    const route = findRoute(url, site);
    if (!route) return text(404, "Not found\n");
    const method = request.method.toUpperCase();
    // HEAD is GET without the body (RFC 9110 9.3.2), wherever GET is allowed.
    if (!route.methods.includes(method === "HEAD" ? "GET" : method)) {
      const allow = route.methods.flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m]));
      return text(405, "Method not allowed\n", { Allow: allow.join(", ") });
    }
    const response = await route.handler(request, url, site);
    if (method !== "HEAD") return response;
    return new Response(null, { status: response.status, headers: response.headers });
  },
};

/** The route for a host and path, or undefined (404). Host names compare case-insensitively. */
function findRoute(url: URL, site: Site): Route | undefined {
  // URL lower-cases the host and drops the port; a trailing dot is the same name.
  const host = url.hostname.replace(/\.$/, "");
  const path = url.pathname;
  const get = (handler: Handler): Route => ({ methods: ["GET"], handler });
  switch (host) {
    case `mta-sts.${site.domain}`:
      if (path === "/.well-known/mta-sts.txt") return get(mtaSts);
      return undefined;
    case `autoconfig.${site.domain}`:
      if (path === "/mail/config-v1.1.xml") return get(autoconfig);
      if (path === "/.well-known/autoconfig/mail/config-v1.1.xml") return get(autoconfig);
      if (path === "/mail/mailstack.mobileconfig") return get(mobileconfig);
      return undefined;
    case `autodiscover.${site.domain}`: {
      // Outlook writes /Autodiscover/Autodiscover.xml; IIS, which it expects, ignores case.
      const lower = path.toLowerCase();
      if (lower === "/autodiscover/autodiscover.xml") {
        return { methods: ["GET", "POST"], handler: autodiscoverXml };
      }
      if (
        lower === "/autodiscover/autodiscover.json" ||
        lower.startsWith("/autodiscover/autodiscover.json/")
      ) {
        return get(autodiscoverJson);
      }
      return undefined;
    }
    case `openpgpkey.${site.domain}`:
      return wkdRoute(path, site);
    default:
      return undefined;
  }
}

// --- MTA-STS -------------------------------------------------------------------------

/** RFC 8461 3.2: the policy, as text/plain; its digest is the `_mta-sts` TXT id. */
function mtaSts(_request: Request, _url: URL, site: Site): Response {
  return text(200, site.mtaStsPolicy);
}

// --- Thunderbird autoconfig ----------------------------------------------------------

/** Autoconfig's socketType for a security setting of ClientSettings. */
function socketType(security: string): string {
  return security === "STARTTLS" ? "STARTTLS" : "SSL";
}

/**
 * Thunderbird's clientConfig 1.1. The user name is the placeholder %EMAILADDRESS%, which
 * Thunderbird fills in, so `?emailaddress=` changes nothing.
 */
function autoconfig(_request: Request, _url: URL, site: Site): Response {
  const c = site.clients;
  const server = (
    tag: string,
    type: string,
    s: { host: string; port: number; security: string },
  ) => [
    `    <${tag} type="${type}">`,
    `      <hostname>${xml(s.host)}</hostname>`,
    `      <port>${s.port}</port>`,
    `      <socketType>${socketType(s.security)}</socketType>`,
    "      <username>%EMAILADDRESS%</username>",
    "      <authentication>password-cleartext</authentication>",
    `    </${tag}>`,
  ];
  const body = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<clientConfig version="1.1">',
    `  <emailProvider id="${xml(site.domain)}">`,
    `    <domain>${xml(site.domain)}</domain>`,
    `    <displayName>${xml(site.domain)}</displayName>`,
    `    <displayShortName>${xml(site.domain)}</displayShortName>`,
    ...server("incomingServer", "imap", c.incoming),
    ...server("outgoingServer", "smtp", c.outgoing),
    ...server("outgoingServer", "smtp", c.outgoingAlternative),
    "  </emailProvider>",
    "</clientConfig>",
  ];
  return respond(200, lines(body), XML);
}

// --- Outlook autodiscover ------------------------------------------------------------

/**
 * The POX answer (MS-OXDSCLI), for POST with a Request body naming <EMailAddress>, and for
 * GET. An address outside the domain (or none) still gets the server settings, only
 * without <LoginName>: Outlook then asks the user, and nothing a stranger sent is echoed.
 */
async function autodiscoverXml(request: Request, _url: URL, site: Site): Promise<Response> {
  let address: string | undefined;
  if (request.method.toUpperCase() === "POST") {
    // Outlook's request is a few hundred bytes; a longer body is not scanned past 64 KiB.
    const body = (await request.text()).slice(0, 65536);
    const found = /<(?:\w+:)?EMailAddress\s*>([^<]*)<\/(?:\w+:)?EMailAddress\s*>/i.exec(body);
    if (found) address = addressIn(site, unescapeXml(found[1]));
  }
  const c = site.clients;
  const login = address === undefined ? [] : [`<LoginName>${xml(address)}</LoginName>`];
  const protocol = (type: string, s: { host: string; port: number }, extra: string[]) => [
    "<Protocol>",
    `  <Type>${type}</Type>`,
    `  <Server>${xml(s.host)}</Server>`,
    `  <Port>${s.port}</Port>`,
    "  <DomainRequired>off</DomainRequired>",
    ...login.map((l) => `  ${l}`),
    "  <SPA>off</SPA>",
    "  <SSL>on</SSL>",
    "  <AuthRequired>on</AuthRequired>",
    ...extra.map((l) => `  ${l}`),
    "</Protocol>",
  ];
  const body = [
    '<?xml version="1.0" encoding="utf-8"?>',
    `<Autodiscover xmlns="${AUTODISCOVER_SCHEMA}">`,
    `  <Response xmlns="${OUTLOOK_SCHEMA}">`,
    "    <Account>",
    "      <AccountType>email</AccountType>",
    "      <Action>settings</Action>",
    ...protocol("IMAP", c.incoming, []).map((l) => `      ${l}`),
    // SMTP logs in with the same account; not "POP before SMTP".
    ...protocol("SMTP", c.outgoing, [
      "<UsePOPAuth>off</UsePOPAuth>",
      "<SMTPLast>off</SMTPLast>",
    ]).map((l) => `      ${l}`),
    "    </Account>",
    "  </Response>",
    "</Autodiscover>",
  ];
  return respond(200, lines(body), XML);
}

/**
 * The JSON form newer Outlook asks first (/autodiscover/autodiscover.json/v1.0/<address>
 * ?Protocol=...). Only AutodiscoverV1 is offered: it points at the POX endpoint. Any other
 * protocol (ActiveSync, EWS, REST) gets Exchange's InvalidProtocol error, so the client
 * moves on instead of trying a service that is not there.
 */
function autodiscoverJson(_request: Request, url: URL, site: Site): Response {
  let protocol: string | null = null;
  for (const [k, v] of url.searchParams) if (k.toLowerCase() === "protocol") protocol = v;
  if (protocol !== null && protocol.toLowerCase() === "autodiscoverv1") {
    const target = `https://autodiscover.${site.domain}/autodiscover/autodiscover.xml`;
    return json(200, { Protocol: "AutodiscoverV1", Url: target });
  }
  const message =
    protocol === null
      ? "A valid value must be provided for the query parameter 'Protocol'."
      : `The given protocol value '${protocol}' is invalid. Supported values are 'AutodiscoverV1'.`;
  return json(404, { ErrorCode: "InvalidProtocol", ErrorMessage: message });
}

// --- Apple configuration profile -----------------------------------------------------

/**
 * A configuration profile with one com.apple.mail.managed payload, unsigned. With
 * `?email=<address>` (inside the domain) the address and user names are filled in;
 * without it the device asks for them. UUIDs are derived from the domain and address, so
 * installing the profile again replaces the account instead of adding a second one.
 */
async function mobileconfig(_request: Request, url: URL, site: Site): Promise<Response> {
  const given = url.searchParams.get("email");
  const email = given === null || given.trim() === "" ? undefined : addressIn(site, given);
  if (given !== null && given.trim() !== "" && email === undefined) {
    return text(400, `email must be an address @${site.domain}\n`);
  }
  const c = site.clients;
  const name = `https://autoconfig.${site.domain}/mail/mailstack.mobileconfig?email=${email ?? ""}`;
  const profileUuid = await nameUuid(`${name}#profile`);
  const mailUuid = await nameUuid(`${name}#mail`);
  const reverse = site.domain.split(".").reverse().join(".");
  const str = (key: string, value: string) => [
    `<key>${key}</key>`,
    `<string>${xml(value)}</string>`,
  ];
  const int = (key: string, value: number) => [`<key>${key}</key>`, `<integer>${value}</integer>`];
  const bool = (key: string, value: boolean) => [
    `<key>${key}</key>`,
    value ? "<true/>" : "<false/>",
  ];
  const who = email === undefined ? [] : [email];
  // Keys in plist order (sorted), as Apple's tools write them.
  const mail = [
    ...str("EmailAccountDescription", email ?? site.domain),
    ...str("EmailAccountType", "EmailTypeIMAP"),
    ...who.flatMap((e) => str("EmailAddress", e)),
    ...str("IncomingMailServerAuthentication", "EmailAuthPassword"),
    ...str("IncomingMailServerHostName", c.incoming.host),
    ...int("IncomingMailServerPortNumber", c.incoming.port),
    ...bool("IncomingMailServerUseSSL", true),
    ...who.flatMap((e) => str("IncomingMailServerUsername", e)),
    ...str("OutgoingMailServerAuthentication", "EmailAuthPassword"),
    ...str("OutgoingMailServerHostName", c.outgoing.host),
    ...int("OutgoingMailServerPortNumber", c.outgoing.port),
    ...bool("OutgoingMailServerUseSSL", true),
    ...who.flatMap((e) => str("OutgoingMailServerUsername", e)),
    ...bool("OutgoingPasswordSameAsIncomingPassword", true),
    ...str("PayloadDescription", `IMAP and SMTP settings for ${site.domain}`),
    ...str("PayloadDisplayName", `Mail (${email ?? site.domain})`),
    ...str("PayloadIdentifier", `${reverse}.mailstack.mail.${mailUuid}`),
    ...str("PayloadType", "com.apple.mail.managed"),
    ...str("PayloadUUID", mailUuid),
    ...int("PayloadVersion", 1),
  ];
  const profile = [
    "<key>PayloadContent</key>",
    "<array>",
    "  <dict>",
    ...mail.map((l) => `    ${l}`),
    "  </dict>",
    "</array>",
    ...str("PayloadDescription", `Sets up the mail account ${email ?? `@${site.domain}`}.`),
    ...str("PayloadDisplayName", `${site.domain} mail`),
    ...str("PayloadIdentifier", `${reverse}.mailstack.${profileUuid}`),
    ...str("PayloadOrganization", site.domain),
    ...bool("PayloadRemovalDisallowed", false),
    ...str("PayloadType", "Configuration"),
    ...str("PayloadUUID", profileUuid),
    ...int("PayloadVersion", 1),
  ];
  const body = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    "<dict>",
    ...profile.map((l) => `  ${l}`),
    "</dict>",
    "</plist>",
  ];
  return respond(200, lines(body), "application/x-apple-aspen-config", {
    "Content-Disposition": `attachment; filename="${site.domain}.mobileconfig"`,
  });
}

/** The RFC 4122 URL namespace, for name-based (version 5) UUIDs. */
const URL_NAMESPACE = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";

/** A version 5 UUID (RFC 4122 4.3: SHA-1 of namespace and name), upper case as Apple writes. */
async function nameUuid(name: string): Promise<string> {
  const ns = URL_NAMESPACE.replace(/-/g, "")
    .match(/../g)!
    .map((h) => parseInt(h, 16));
  const input = new Uint8Array([...ns, ...new TextEncoder().encode(name)]);
  const b = new Uint8Array(await crypto.subtle.digest("SHA-1", input)).slice(0, 16);
  b[6] = (b[6] & 0x0f) | 0x50; // version 5
  b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)]
    .join("-")
    .toUpperCase();
}

// --- OpenPGP Web Key Directory -------------------------------------------------------

/**
 * The advanced method: https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/...
 * The hu/ hash is z-base-32 of SHA-1 of the lower-cased local part; `?l=` carries the
 * local part itself and is not needed, since every key is looked up by hash.
 */
function wkdRoute(path: string, site: Site): Route | undefined {
  const prefix = `/.well-known/openpgpkey/${site.domain}/`;
  if (!path.toLowerCase().startsWith(prefix)) return undefined;
  const rest = path.slice(prefix.length);
  if (rest === "policy") {
    return { methods: ["GET"], handler: () => wkdResponse(200, new Uint8Array(0), TEXT) };
  }
  const hu = /^hu\/([a-z0-9]{32})$/i.exec(rest);
  if (!hu) return undefined;
  const key = Object.prototype.hasOwnProperty.call(site.wkd, hu[1].toLowerCase())
    ? site.wkd[hu[1].toLowerCase()]
    : undefined;
  if (key === undefined) return undefined;
  return {
    methods: ["GET"],
    handler: () =>
      wkdResponse(
        200,
        Uint8Array.from(atob(key), (ch) => ch.charCodeAt(0)),
        "application/octet-stream",
      ),
  };
}

/** Web clients (Mailvelope, webmail) fetch keys across origins: the draft asks for CORS. */
function wkdResponse(status: number, body: Uint8Array, type: string): Response {
  return respond(status, body, type, { "Access-Control-Allow-Origin": "*" });
}

// --- addresses and text --------------------------------------------------------------

/**
 * The address, lower case, when it is one inside the site's domain; else undefined.
 * Mailbox names on the host are lower case, and logins match them.
 */
function addressIn(site: Site, raw: string): string | undefined {
  const a = raw.trim().toLowerCase();
  const at = a.lastIndexOf("@");
  if (at < 1 || at > 64 || a.length > 254) return undefined;
  // No spaces or control characters: nothing a login could hold.
  if (/[\s\p{Cc}]/u.test(a)) return undefined;
  return a.slice(at + 1) === site.domain ? a : undefined;
}

/** Text for XML content and attributes: the five specials escaped, characters XML 1.0 forbids dropped. */
function xml(value: string): string {
  return value
    .replace(/[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, "")
    .replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The predefined and numeric entities of an XML text node, decoded. */
function unescapeXml(value: string): string {
  const named: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
  return value.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos);/gi, (m, e: string) => {
    const lower = e.toLowerCase();
    if (lower in named) return named[lower];
    const code = lower.startsWith("#x")
      ? parseInt(lower.slice(2), 16)
      : parseInt(lower.slice(1), 10);
    return code <= 0x10ffff ? String.fromCodePoint(code) : m;
  });
}

function lines(list: string[]): string {
  return list.map((l) => `${l}\n`).join("");
}

function respond(
  status: number,
  body: string | Uint8Array,
  type: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(body, {
    status,
    headers: { "Content-Type": type, "X-Content-Type-Options": "nosniff", ...headers },
  });
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return respond(status, body, TEXT, headers);
}

function json(status: number, value: unknown): Response {
  return respond(status, JSON.stringify(value), JSON_TYPE);
}
