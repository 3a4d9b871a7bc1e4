import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { DEPLOY_USER } from "../cloud-init/render";
import { PROVISION_REQUEST, provisionInput, type HostFile } from "./host-files";

export interface ProvisioningArgs {
  /** Address to reach the host on (its IPv4). */
  host: pulumi.Input<string>;
  /** The pinned SSH host key, OpenSSH public format; any other key is refused. */
  hostPublicKey: pulumi.Input<string>;
  /** The deployment key's private half, OpenSSH format. */
  deployPrivateKey: pulumi.Input<string>;
  /** The files to install: day-2 settings and the secrets userData must not carry. */
  files: pulumi.Input<HostFile[]>;
  /** Values whose change re-runs provisioning although no file changed (the server id). */
  triggers?: pulumi.Input<unknown[]>;
}

/**
 * Installs secrets and day-2 settings on the host over SSH, as the deployment account, whose
 * key runs `mailstack-deploy` and nothing else, against the pinned host key. It first waits
 * for cloud-init and fails with its log when the first boot failed. The provisioning program
 * and the files travel on standard input, never in the command line or userData; a change of
 * any of them re-runs it, and nothing here can replace the server.
 */
export class Provisioning extends pulumi.ComponentResource {
  readonly command: command.remote.Command;

  constructor(name: string, args: ProvisioningArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailstack:index:Provisioning", name, {}, opts);
    this.command = new command.remote.Command(
      `${name}-install`,
      {
        connection: {
          host: args.host,
          user: DEPLOY_USER,
          privateKey: args.deployPrivateKey,
          hostKey: pulumi.output(args.hostPublicKey).apply((k) => k.trim()),
          // A new server takes a minute or two to accept SSH: retry for about ten.
          dialErrorLimit: 40,
          perDialTimeout: 15,
        },
        create: PROVISION_REQUEST,
        stdin: pulumi.secret(pulumi.output(args.files).apply(provisionInput)),
        triggers: args.triggers,
        logging: "stdoutAndStderr",
      },
      { parent: this, additionalSecretOutputs: ["stdin"] },
    );
    this.registerOutputs({ stderr: this.command.stderr });
  }
}
