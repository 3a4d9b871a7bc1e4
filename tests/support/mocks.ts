// Pulumi mocks standing in for the Hetzner, Cloudflare, tls, random and command providers.
// They answer only the resource types the stack is meant to create and throw on anything
// else, and they hand out real keys (tests/support/keys.ts), so key arithmetic is checked
// against real key material.
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { DEPLOY_KEY, DKIM_KEY, MAIL_CRYPT_KEY, SSH_HOST_KEY, TLS_KEY } from "./keys";

export interface MockedResource {
  type: string;
  name: string;
  inputs: Record<string, any>;
  state: Record<string, any>;
  id: string;
}

export const created: MockedResource[] = [];

/** A record a mocked Cloudflare zone holds before the stack runs, as getDnsRecords returns it. */
export interface ZoneRecord {
  zoneId: string;
  id: string;
  name: string;
  type: string;
  content: string;
  comment?: string;
}

/** Records the mocked Cloudflare zones hold; empty unless a test adds some. */
export const zoneRecords: ZoneRecord[] = [];

/** Every provider call (invoke) the stack made: token and arguments. */
export const calls: { token: string; args: Record<string, any> }[] = [];

let nextId = 1000;

/** Addresses the mocked Primary IPs receive. */
export const MOCK_IPV4 = "203.0.113.25";
export const MOCK_IPV6_NETWORK = "2001:db8:4d2::/64";

function tlsKey(name: string, inputs: Record<string, any>): Record<string, any> {
  const want = (algorithm: string, extra: Record<string, unknown>) => {
    if (inputs.algorithm !== algorithm) {
      throw new Error(
        `${name}: expected a ${algorithm} key, the stack asked for ${inputs.algorithm}`,
      );
    }
    for (const [k, v] of Object.entries(extra)) {
      if (inputs[k] !== v) throw new Error(`${name}: expected ${k}=${v}, got ${inputs[k]}`);
    }
  };
  if (name.endsWith("-dkim")) {
    want("RSA", { rsaBits: 2048 });
    return { privateKeyPem: DKIM_KEY.privatePem, publicKeyPem: DKIM_KEY.publicPem };
  }
  if (name.endsWith("-tls")) {
    want("ECDSA", { ecdsaCurve: "P256" });
    return { privateKeyPem: TLS_KEY.privatePem, publicKeyPem: TLS_KEY.publicPem };
  }
  if (name.endsWith("-mail-crypt")) {
    want("ECDSA", { ecdsaCurve: "P256" });
    return {
      privateKeyPem: MAIL_CRYPT_KEY.sec1Pem,
      privateKeyPemPkcs8: MAIL_CRYPT_KEY.privatePem,
      publicKeyPem: MAIL_CRYPT_KEY.publicPem,
    };
  }
  const pair = name.endsWith("-ssh-host")
    ? SSH_HOST_KEY
    : name.endsWith("-deploy")
      ? DEPLOY_KEY
      : undefined;
  if (!pair) throw new Error(`unexpected tls key ${name}`);
  want("ED25519", {});
  return {
    privateKeyPem: pair.privatePem,
    publicKeyPem: pair.publicPem,
    privateKeyOpenssh: pair.privateOpenssh,
    publicKeyOpenssh: pair.publicOpenssh,
  };
}

function outputsFor(
  type: string,
  name: string,
  inputs: Record<string, any>,
  id: string,
): Record<string, any> {
  switch (type) {
    case "tls:index/privateKey:PrivateKey":
      return { ...inputs, ...tlsKey(name, inputs) };
    case "random:index/randomBytes:RandomBytes": {
      const bytes = createHash("sha512").update(name).digest().subarray(0, inputs.length);
      return { ...inputs, hex: bytes.toString("hex"), base64: bytes.toString("base64") };
    }
    case "random:index/randomPassword:RandomPassword":
      return {
        ...inputs,
        result: createHash("sha256").update(name).digest("base64url").slice(0, inputs.length),
      };
    case "hcloud:index/primaryIp:PrimaryIp":
      return inputs.type === "ipv4"
        ? { ...inputs, ipAddress: MOCK_IPV4 }
        : { ...inputs, ipAddress: MOCK_IPV6_NETWORK.split("/")[0], ipNetwork: MOCK_IPV6_NETWORK };
    case "hcloud:index/volume:Volume":
      return { ...inputs, linuxDevice: `/dev/disk/by-id/scsi-0HC_Volume_${id}` };
    case "hcloud:index/server:Server":
      return { ...inputs, ipv4Address: MOCK_IPV4, status: "running" };
    case "cloudflare:index/zoneDnssec:ZoneDnssec":
      return { ...inputs, ds: `example. 3600 IN DS 2371 13 2 ${"ab".repeat(32)}` };
    case "cloudflare:index/apiToken:ApiToken":
      return { ...inputs, value: `cf-made-token-${name}`, status: "active" };
    case "command:remote:Command":
      return { ...inputs, stdout: "", stderr: "mailstack-provision: installed 4 files\n" };
    case "mailstack:index:MailStack":
    case "mailstack:index:MailKeys":
    case "mailstack:index:MailServer":
    case "mailstack:index:MailDns":
    case "mailstack:index:Provisioning":
    case "mailstack:index:AcmeToken":
    case "mailstack:index:MailBackup":
    case "mailstack:index:MailDiscovery":
    case "cloudflare:index/workersScript:WorkersScript":
    case "cloudflare:index/workersCustomDomain:WorkersCustomDomain":
    case "cloudflare:index/r2Bucket:R2Bucket":
    case "hcloud:index/firewall:Firewall":
    case "hcloud:index/sshKey:SshKey":
    case "hcloud:index/volumeAttachment:VolumeAttachment":
    case "hcloud:index/rdns:Rdns":
    case "cloudflare:index/dnsRecord:DnsRecord":
    case "cloudflare:index/universalSslSetting:UniversalSslSetting":
      return inputs;
    default:
      throw new Error(`the stack created an unexpected resource type ${type} (${name})`);
  }
}

export async function installMocks(stack = "prod"): Promise<void> {
  await pulumi.runtime.setMocks(
    {
      newResource(args: pulumi.runtime.MockResourceArgs) {
        // A token's ID is the S3 access key the host's restic uses: stable from one evaluation
        // to the next, as the provider's state keeps it.
        const id =
          args.type === "cloudflare:index/apiToken:ApiToken"
            ? `token-${args.name}`
            : String(nextId++);
        const state = outputsFor(args.type, args.name, args.inputs, id);
        created.push({ type: args.type, name: args.name, inputs: args.inputs, state, id });
        return { id, state };
      },
      call(args: pulumi.runtime.MockCallArgs) {
        calls.push({ token: args.token, args: args.inputs });
        if (args.token === "cloudflare:index/getDnsRecords:getDnsRecords") {
          // The filters the stack uses: zone, type and exact name (case-insensitive, as
          // Cloudflare compares names). A record without a comment reads back "".
          const { zoneId, type, name } = args.inputs;
          const results = zoneRecords
            .filter(
              (r) =>
                r.zoneId === zoneId &&
                (type === undefined || r.type === type) &&
                (name?.exact === undefined || r.name.toLowerCase() === name.exact.toLowerCase()),
            )
            .map((r) => ({
              id: r.id,
              name: r.name,
              type: r.type,
              content: r.content,
              comment: r.comment ?? "",
              proxied: false,
              ttl: 1,
            }));
          return { ...args.inputs, results };
        }
        throw new Error(`the stack made an unexpected provider call ${args.token}`);
      },
    },
    "mailstack",
    stack,
    false,
  );
}

/** Resolves an Output in a test. */
export function value<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((v) => resolve(v)));
}

/** The resources of one type whose names start with `prefix`. */
export function resources(type: string, prefix: string): MockedResource[] {
  return created.filter((r) => r.type === type && r.name.startsWith(prefix));
}

/** Exactly one resource of a type under a prefix. */
export function resource(type: string, prefix: string): MockedResource {
  const found = resources(type, prefix);
  if (found.length !== 1)
    throw new Error(`expected one ${type} under ${prefix}, found ${found.length}`);
  return found[0];
}

/** Waits until every resource registration and output the program started has finished. */
export async function settle(): Promise<void> {
  // The SDK's own "wait for outstanding RPCs", which pulumi.runtime.disconnect uses.
  const settings = require("@pulumi/pulumi/runtime/settings") as { waitForRPCs(): Promise<void> };
  await settings.waitForRPCs();
}

/** The signature Pulumi puts on a secret value when it is sent to the engine. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** The value of a resource input that must be secret; throws when it is sent in clear. */
export function secretInput<T = string>(input: unknown): T {
  const wrapped = input as Record<string, unknown> | undefined;
  if (
    !wrapped ||
    typeof wrapped !== "object" ||
    wrapped[SECRET_SIG] !== "1b47061264138c4ac30d75fd1eb44270"
  ) {
    throw new Error(`expected a secret input, got ${JSON.stringify(input)?.slice(0, 80)}`);
  }
  return wrapped.value as T;
}
