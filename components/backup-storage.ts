// Pure: where a stack's restic repository lives, and the names and credentials that reach it.
// MailBackup (backup.ts) wires these into resources; config.ts checks bucket names with them.
import { createHash } from "node:crypto";

/** R2's jurisdiction for the bucket: the EU, by design (the policy pack refuses any other). */
export const R2_JURISDICTION = "eu";

/**
 * Cloudflare's permission groups "Workers R2 Storage Bucket Item Write" and "... Item Read"
 * (the IDs are global, the same in every account; R2's docs list them under "Create API tokens
 * via API"). Write lets restic read, write, list and delete the objects of the buckets a policy
 * names, and nothing else: no other bucket, no bucket settings, no bucket made or deleted.
 */
export const R2_BUCKET_ITEM_WRITE_PERMISSION = "2efd5506f9c8494dacb1fa10a3e7d5b6";
export const R2_BUCKET_ITEM_READ_PERMISSION = "6a018a9f2fc74eb6b293b0c548f38b39";

/** A bucket name both R2 and Hetzner accept: 3-63 of [a-z0-9-], alphanumeric at both ends. */
export function isBucketName(name: string): boolean {
  return /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(name);
}

/**
 * The bucket a stack makes when `backup.bucket` is unset: the mail host, dots as hyphens, and
 * `-backup` (`mail.example.eu` -> `mail-example-eu-backup`). Hetzner's bucket names are shared
 * by all its customers, so the name carries the domain rather than the stack's name. A name
 * that would be longer than 63 characters is cut and ends in 8 hex digits of the host's
 * SHA-256, so two long hosts never share a bucket.
 */
export function defaultBackupBucket(mailHost: string): string {
  const slug = mailHost
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  const name = `${slug || "mailstack"}-backup`;
  if (name.length <= 63) return name;
  const hash = createHash("sha256").update(mailHost).digest("hex").slice(0, 8);
  return `${slug.slice(0, 54).replace(/-+$/, "")}-${hash}`;
}

/** The S3 endpoint of an R2 bucket in the EU jurisdiction. */
export function r2Endpoint(accountId: string): string {
  return `https://${accountId}.${R2_JURISDICTION}.r2.cloudflarestorage.com`;
}

/** The S3 endpoint of Hetzner Object Storage at a location (fsn1, nbg1, hel1). */
export function hetznerEndpoint(location: string): string {
  return `https://${location}.your-objectstorage.com`;
}

/**
 * The restic repository: `s3:<endpoint>/<bucket>/<mail host>`. The path names the host whose
 * mail it holds, so a bucket shared by several stacks (a `backup.bucket` given to each, or one
 * Hetzner project's bucket) keeps one repository per host; restic makes the path on `init`.
 */
export function resticRepository(endpoint: string, bucket: string, mailHost: string): string {
  return `s3:${endpoint}/${bucket}/${mailHost}`;
}

/**
 * The resource an R2 bucket is in an API token's policy: `<account>_<jurisdiction>_<bucket>`
 * (R2 docs, "Create API tokens via API": buckets outside a jurisdiction are `default`).
 */
export function r2BucketResource(accountId: string, bucket: string): string {
  return `com.cloudflare.edge.r2.bucket.${accountId}_${R2_JURISDICTION}_${bucket}`;
}

/**
 * R2's S3 credentials are derived from an API token: the access key ID is the token's ID, the
 * secret access key the SHA-256 of the token's value, in hex (R2 docs, "Authentication").
 */
export function r2SecretAccessKey(tokenValue: string): string {
  return createHash("sha256").update(tokenValue).digest("hex");
}
