// Where the host's restic backups go, and the key to them: a bucket, credentials that reach
// that bucket alone (R2) or the Hetzner keys given as secrets, and the repository password,
// which the stack generates and keeps so the backups can be read with the host gone.
import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import {
  R2_BUCKET_ITEM_READ_PERMISSION,
  R2_BUCKET_ITEM_WRITE_PERMISSION,
  R2_JURISDICTION,
  hetznerEndpoint,
  r2BucketResource,
  r2Endpoint,
  r2SecretAccessKey,
  resticRepository,
} from "./backup-storage";
import type { BackupProvider, Location } from "./config";

export interface MailBackupArgs {
  /** `r2`: a Cloudflare R2 bucket the component makes; `hetzner`: Hetzner Object Storage. */
  provider: BackupProvider;
  /** The bucket's name (`backup.bucket`, or the one derived from the mail host). */
  bucket: string;
  /** The mail host: the path of its repository inside the bucket. */
  mailHost: string;
  /** The stack's name, in the token's name (tokens of several stacks live side by side). */
  stack: string;
  /** r2: the Cloudflare account the bucket is made in (`cloudflareAccountId`). */
  cloudflareAccountId?: string;
  /** r2: the host's IPv4 address; the token works from it and `ipv6Network` only. */
  ipv4?: pulumi.Input<string>;
  /** r2: the host's IPv6 network (Hetzner routes a /64 to each server). */
  ipv6Network?: pulumi.Input<string>;
  /** hetzner: the Object Storage location (`backup.location`, default the stack's). */
  location?: Location;
  /** hetzner: the access key made in the Hetzner Console (`backupAccessKeyId`, secret). */
  accessKeyId?: pulumi.Input<string>;
  /** hetzner: its secret key (`backupSecretAccessKey`, secret). */
  secretAccessKey?: pulumi.Input<string>;
  /** Protect the bucket and the password: neither is deleted by Pulumi (`protect`). */
  protect: boolean;
}

/**
 * The backup storage of one mail host. With R2: the bucket in the EU jurisdiction and an API
 * token whose one policy names that bucket alone, from the host's addresses only. With
 * Hetzner: the endpoint of the location and the keys given; restic makes the bucket on its
 * first `init` (Hetzner's keys reach every bucket of their project, and no provider here
 * makes Hetzner buckets: docs/backup.md says why). Either way, the restic password.
 */
export class MailBackup extends pulumi.ComponentResource {
  /** The R2 bucket (r2 only). */
  readonly r2Bucket?: cloudflare.R2Bucket;
  /** The token restic reaches the bucket with (r2 only). */
  readonly token?: cloudflare.ApiToken;
  readonly passwordResource: random.RandomPassword;

  /** The bucket's name; with R2 known once the bucket exists. */
  readonly bucket: pulumi.Output<string>;
  /** The S3 endpoint. */
  readonly endpoint: string;
  /** restic's repository, `s3:<endpoint>/<bucket>/<mail host>`. */
  readonly repository: string;
  /** S3 access key ID, secret. */
  readonly accessKeyId: pulumi.Output<string>;
  /** S3 secret access key, secret. */
  readonly secretAccessKey: pulumi.Output<string>;
  /** restic's repository password, secret. */
  readonly password: pulumi.Output<string>;

  constructor(name: string, args: MailBackupArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailstack:index:MailBackup", name, {}, opts);
    const keep = { parent: this, protect: args.protect };

    // The one key to every snapshot: lose it and the backups are noise. It lives in the
    // stack's state (a secret) and is exported, so it outlives the host. 32 letters and
    // digits, ~190 bits. Protected with the bucket; see dependsOn below for the order.
    this.passwordResource = new random.RandomPassword(
      `${name}-password`,
      { length: 32, special: false },
      keep,
    );
    this.password = pulumi.secret(this.passwordResource.result);

    if (args.provider === "r2") {
      const accountId = args.cloudflareAccountId;
      if (!accountId) {
        throw new pulumi.ResourceError(
          "mailstack:cloudflareAccountId: is required when backup is enabled with " +
            "backup.provider r2: the account the R2 bucket is made in",
          this,
        );
      }
      if (args.ipv4 === undefined || args.ipv6Network === undefined) {
        throw new pulumi.ResourceError(
          "MailBackup: r2 needs the host's ipv4 and ipv6Network",
          this,
        );
      }
      this.r2Bucket = new cloudflare.R2Bucket(
        `${name}-bucket`,
        { accountId, name: args.bucket, jurisdiction: R2_JURISDICTION },
        {
          ...keep,
          // Protected, the bucket stays in the account even once unprotected and destroyed,
          // or renamed: it holds the backups, which exist for the day the rest is gone.
          retainOnDelete: args.protect,
          // Deleted before the password: a bucket that cannot go (R2 refuses a bucket that
          // still holds objects) stops the run while its password is still in the state.
          dependsOn: [this.passwordResource],
        },
      );
      this.token = new cloudflare.ApiToken(
        `${name}-token`,
        {
          name: `mailstack ${args.stack}: restic backups to R2 bucket ${args.bucket}`,
          policies: [
            {
              effect: "allow",
              permissionGroups: [
                { id: R2_BUCKET_ITEM_WRITE_PERMISSION },
                { id: R2_BUCKET_ITEM_READ_PERMISSION },
              ],
              // Through the bucket's name, so the token is made once the bucket exists.
              resources: this.r2Bucket.name.apply((bucket) =>
                JSON.stringify({ [r2BucketResource(accountId, bucket)]: "*" }),
              ),
            },
          ],
          // A copy of the credentials that leaves the host is useless elsewhere. The Primary
          // IPs outlive the server, so a replacement host backs up and restores with them.
          condition: {
            requestIp: {
              ins: pulumi.all([args.ipv4, args.ipv6Network]).apply(([v4, v6]) => [`${v4}/32`, v6]),
            },
          },
        },
        { parent: this, additionalSecretOutputs: ["value"] },
      );
      this.bucket = this.r2Bucket.name;
      this.endpoint = r2Endpoint(accountId);
      this.accessKeyId = pulumi.secret(this.token.id);
      this.secretAccessKey = pulumi.secret(this.token.value.apply(r2SecretAccessKey));
    } else {
      if (!args.location) {
        throw new pulumi.ResourceError("MailBackup: hetzner needs the location", this);
      }
      if (args.accessKeyId === undefined || args.secretAccessKey === undefined) {
        throw new pulumi.ResourceError(
          "mailstack:backupAccessKeyId, mailstack:backupSecretAccessKey: are required when " +
            "backup.provider is hetzner: an Object Storage credential made in the Hetzner Console",
          this,
        );
      }
      this.bucket = pulumi.output(args.bucket);
      this.endpoint = hetznerEndpoint(args.location);
      this.accessKeyId = pulumi.secret(args.accessKeyId);
      this.secretAccessKey = pulumi.secret(args.secretAccessKey);
    }
    this.repository = resticRepository(this.endpoint, args.bucket, args.mailHost);

    this.registerOutputs({
      bucket: this.bucket,
      repository: this.repository,
      password: this.password,
    });
  }
}
