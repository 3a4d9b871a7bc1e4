import * as command from "@pulumi/command";
import type * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { DEPLOY_USER } from "../cloud-init/render";
import type { SshProxySpec } from "./config";
import {
  PROVISION_REQUEST,
  VOLUME_ATTACH_REQUEST,
  VOLUME_DETACH_REQUEST,
  provisionInput,
  type HostFile,
} from "./host-files";

/** A bastion to connect through: its settings and its account's private key. */
export interface ProvisioningProxy extends SshProxySpec {
  /** The private key of `user` on the bastion, OpenSSH or PEM format. */
  privateKey: pulumi.Input<string>;
}

// A new server takes a minute or two to accept SSH: retry for about ten. Through a bastion
// the same limits apply to reaching the bastion, which is retried as the host is.
const DIAL_ERROR_LIMIT = 40;
const PER_DIAL_TIMEOUT = 15;

export interface ProvisioningArgs {
  /** Address to reach the host on (its IPv4). */
  host: pulumi.Input<string>;
  /** The pinned SSH host key, OpenSSH public format; any other key is refused. */
  hostPublicKey: pulumi.Input<string>;
  /** The deployment key's private half, OpenSSH format. */
  deployPrivateKey: pulumi.Input<string>;
  /** The files to install: day-2 settings and the secrets userData must not carry. */
  files: pulumi.Input<HostFile[]>;
  /** The mail volume's attachment to the server. */
  volumeAttachment: hcloud.VolumeAttachment;
  /** Values whose change re-runs provisioning although no file changed (the server id). */
  triggers?: pulumi.Input<unknown[]>;
  /**
   * The bastion to reach the host through (`mailstack:sshProxy`), for a deployment outside
   * `sshAllowedIps`; unset, the host is dialled directly.
   */
  proxy?: ProvisioningProxy;
}

/**
 * Installs secrets and day-2 settings on the host over SSH, as the deployment account, whose
 * key runs `mailstack-deploy` and nothing else, against the pinned host key, directly or
 * through a bastion (`mailstack:sshProxy`) whose own host key is pinned too. It first waits
 * for cloud-init and fails with its log when the first boot failed. The provisioning program
 * and the files travel on standard input, never in the command line or userData; a change of
 * any of them re-runs it, and nothing here can replace the server.
 *
 * The mail volume has a command of its own between its attachment and provisioning: created
 * after the attachment, it mounts the volume; deleted before it (Pulumi deletes dependents
 * first, on a replacement as on a destroy), it stops the mail services and unmounts the
 * volume, so the provider never detaches a file system in use.
 */
export class Provisioning extends pulumi.ComponentResource {
  readonly volume: command.remote.Command;
  readonly command: command.remote.Command;

  constructor(name: string, args: ProvisioningArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailstack:index:Provisioning", name, {}, opts);
    const connection = {
      host: args.host,
      user: DEPLOY_USER,
      privateKey: args.deployPrivateKey,
      hostKey: pulumi.output(args.hostPublicKey).apply((k) => k.trim()),
      dialErrorLimit: DIAL_ERROR_LIMIT,
      perDialTimeout: PER_DIAL_TIMEOUT,
      ...(args.proxy ? { proxy: proxyConnection(args.proxy) } : {}),
    };
    this.volume = new command.remote.Command(
      `${name}-volume`,
      {
        connection,
        create: VOLUME_ATTACH_REQUEST,
        delete: VOLUME_DETACH_REQUEST,
        // One per attachment: a new server or volume attaches (and later detaches) anew.
        triggers: [args.volumeAttachment.id],
        logging: "stdoutAndStderr",
      },
      { parent: this, dependsOn: [args.volumeAttachment], deleteBeforeReplace: true },
    );
    this.command = new command.remote.Command(
      `${name}-install`,
      {
        connection,
        create: PROVISION_REQUEST,
        stdin: pulumi.secret(pulumi.output(args.files).apply(provisionInput)),
        triggers: args.triggers,
        logging: "stdoutAndStderr",
      },
      { parent: this, dependsOn: [this.volume], additionalSecretOutputs: ["stdin"] },
    );
    this.registerOutputs({ stderr: this.command.stderr });
  }
}

/** The bastion's side of the connection: pinned like the host, retried like the host. */
function proxyConnection(proxy: ProvisioningProxy): command.types.input.remote.ProxyConnectionArgs {
  return {
    host: proxy.host,
    port: proxy.port,
    user: proxy.user,
    privateKey: proxy.privateKey,
    hostKey: proxy.hostPublicKey.trim(),
    dialErrorLimit: DIAL_ERROR_LIMIT,
    perDialTimeout: PER_DIAL_TIMEOUT,
  };
}
