import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { renderCloudInit } from "../cloud-init/render";
import type { Location } from "./config";
import type { InboundRule } from "./firewall";
import { firstIpv6Host } from "./validate";

export interface MailServerArgs {
  /** Hetzner location; EU only (fsn1, nbg1, hel1). */
  location: Location;
  /** Hetzner server type, e.g. `cx23`. */
  serverType: string;
  /** Hetzner image, e.g. `debian-13`. */
  image: string;
  /** Host label, e.g. `mail`. */
  hostname: string;
  /** The MX host name: server name, PTR of both addresses. */
  mailHost: string;
  /** Size of the mail volume in GB (at least 10). */
  volumeSizeGb: number;
  /** Inbound rules for the Hetzner firewall. */
  firewall: InboundRule[];
  /** Protect volume and addresses against deletion (prod). */
  protect: boolean;
  /** The deployment key's public half (OpenSSH). */
  deployPublicKey: pulumi.Input<string>;
  /** The pinned SSH host key (OpenSSH), private and public. */
  hostKey: { privateOpenssh: pulumi.Input<string>; publicOpenssh: pulumi.Input<string> };
  /** Labels put on every Hetzner resource. */
  labels?: Record<string, string>;
}

/**
 * The Hetzner side: two Primary IPs that outlive the server, reverse DNS bound to them, the
 * firewall (attached before first boot), the server booted from the rendered cloud-init,
 * and the mail volume. With `protect` the volume and IPs cannot be deleted by Pulumi or in
 * the console; a replaced server keeps every mailbox and its IP reputation.
 */
export class MailServer extends pulumi.ComponentResource {
  readonly server: hcloud.Server;
  readonly firewall: hcloud.Firewall;
  readonly volume: hcloud.Volume;
  /** The volume on the server: provisioning waits for it, and it is released before it goes. */
  readonly volumeAttachment: hcloud.VolumeAttachment;
  readonly primaryIpv4: hcloud.PrimaryIp;
  readonly primaryIpv6: hcloud.PrimaryIp;
  /** The public IPv4 address. */
  readonly ipv4: pulumi.Output<string>;
  /** The server's IPv6 address: the first host of its /64. */
  readonly ipv6: pulumi.Output<string>;
  /** The rendered cloud-init document (secret: it holds the SSH host key). */
  readonly userData: pulumi.Output<string>;

  constructor(name: string, args: MailServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailstack:index:MailServer", name, {}, opts);
    const labels = { "managed-by": "mailstack", ...args.labels };
    const keep = { parent: this, protect: args.protect };

    const primaryIp = (family: "ipv4" | "ipv6") =>
      new hcloud.PrimaryIp(
        `${name}-${family}`,
        {
          type: family,
          location: args.location,
          assigneeType: "server",
          // The address must survive the server: PTR, SPF and reputation hang on it.
          autoDelete: false,
          deleteProtection: args.protect,
          labels,
        },
        keep,
      );
    this.primaryIpv4 = primaryIp("ipv4");
    this.primaryIpv6 = primaryIp("ipv6");
    this.ipv4 = this.primaryIpv4.ipAddress;
    this.ipv6 = this.primaryIpv6.ipNetwork.apply(firstIpv6Host);

    this.firewall = new hcloud.Firewall(
      `${name}-fw`,
      {
        labels,
        rules: args.firewall.map((r) => ({
          direction: "in",
          protocol: r.protocol,
          ...(r.port === undefined ? {} : { port: String(r.port) }),
          sourceIps: r.sources,
          description: r.description,
        })),
      },
      { parent: this },
    );

    this.volume = new hcloud.Volume(
      `${name}-mail`,
      {
        size: args.volumeSizeGb,
        location: args.location,
        // Formatted once by Hetzner at creation; the host never formats it.
        format: "ext4",
        automount: false,
        deleteProtection: args.protect,
        labels,
      },
      keep,
    );

    // Registered with Hetzner so no root password is ever mailed out; the key is unique to
    // this stack, so two stacks in one Hetzner project never collide on a fingerprint.
    // Sent trimmed: the tls provider's OpenSSH key ends in a newline, Hetzner stores it
    // without, and an untrimmed input would plan a replacement on every later run.
    // A replacement (same fingerprint) must delete the old key first: Hetzner refuses a
    // second key with the fingerprint of one it holds.
    const deployKey = new hcloud.SshKey(
      `${name}-deploy`,
      { publicKey: pulumi.output(args.deployPublicKey).apply((k) => k.trim()), labels },
      { parent: this, deleteBeforeReplace: true },
    );

    this.userData = pulumi
      .all([
        args.hostKey.privateOpenssh,
        args.hostKey.publicOpenssh,
        args.deployPublicKey,
        this.volume.linuxDevice,
      ])
      .apply(([privateOpenssh, publicOpenssh, deployPublicKey, volumeDevice]) =>
        renderCloudInit({
          hostname: args.hostname,
          fqdn: args.mailHost,
          deployPublicKey,
          hostKey: { privateOpenssh, publicOpenssh },
          volumeDevice,
        }),
      );

    this.server = new hcloud.Server(
      `${name}-server`,
      {
        name: args.mailHost,
        serverType: args.serverType,
        image: args.image,
        location: args.location,
        sshKeys: [deployKey.id],
        userData: pulumi.secret(this.userData),
        publicNets: [
          {
            ipv4Enabled: true,
            ipv4: this.primaryIpv4.id.apply(Number),
            ipv6Enabled: true,
            ipv6: this.primaryIpv6.id.apply(Number),
          },
        ],
        // Through firewallIds the rules apply before the first boot.
        firewallIds: [this.firewall.id.apply(Number)],
        // The volume is released (services stopped, unmounted) before the attachment goes:
        // see Provisioning. The shutdown comes after that, for the root disk.
        shutdownBeforeDeletion: true,
        labels,
      },
      // The Primary IPs and the volume belong to one server at a time: the old server must
      // be gone before its replacement can take them. The Hetzner key is read only at
      // creation (it spares a root password); the host authorizes the deployment key from
      // userData, so a changed or re-registered Hetzner key never replaces the server.
      { parent: this, deleteBeforeReplace: true, ignoreChanges: ["sshKeys"] },
    );

    this.volumeAttachment = new hcloud.VolumeAttachment(
      `${name}-mail-attach`,
      {
        serverId: this.server.id.apply(Number),
        volumeId: this.volume.id.apply(Number),
        automount: false,
      },
      { parent: this, deleteBeforeReplace: true },
    );

    const ptr = (suffix: string, ip: hcloud.PrimaryIp, address: pulumi.Input<string>) =>
      new hcloud.Rdns(
        `${name}-ptr-${suffix}`,
        { primaryIpId: ip.id.apply(Number), ipAddress: address, dnsPtr: args.mailHost },
        { parent: this },
      );
    ptr("ipv4", this.primaryIpv4, this.ipv4);
    ptr("ipv6", this.primaryIpv6, this.ipv6);

    this.registerOutputs({ ipv4: this.ipv4, ipv6: this.ipv6, serverId: this.server.id });
  }
}
