// The lab's object storage: s3rver (npm), an S3-compatible server, over HTTPS with a
// certificate from the lab CA, on the services address. The hosts' restic reaches it exactly
// as it reaches R2 or Hetzner's Object Storage (the `s3:` backend, the same program, timers
// and files); only the repository URL, and the CA the host trusts for it, differ.
//
// s3rver checks the access key ID but not the signature, and restic must use HTTPS with it
// (over plain HTTP its chunked uploads are stored corrupted). Listings past 1,000 objects
// need Node's legacy OpenSSL provider (s3rver's continuation tokens).
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { BackupSettings } from "../components/host-files";
import { labCaPem, labServerCertificate } from "./acme";
import { daemon, waitForPort } from "./run";
import { NETNS, SERVICES_IP4, STATE_DIR, type LabHost } from "./settings";

export const BUCKET_DIR = join(STATE_DIR, "bucket");
const DATA_DIR = join(BUCKET_DIR, "data");
export const BUCKET_PORT = 9000;
/** s3rver's one account. */
const ACCESS_KEY = "S3RVER";

/** A host's bucket, as the stack names one per host. */
export const bucketOf = (h: LabHost) => `mailstack-${h.name}-backup`;

/** Where a bucket's objects lie on this machine (s3rver keeps one file per object). */
export const bucketFiles = (h: LabHost) => join(DATA_DIR, bucketOf(h));

export const bucketPidFile = join(BUCKET_DIR, "s3rver.pid");

export async function startBucket(hosts: LabHost[]): Promise<void> {
  labServerCertificate(BUCKET_DIR, "s3", "s3.lab.example");
  mkdirSync(DATA_DIR, { recursive: true });
  const log = join(BUCKET_DIR, "s3rver.log");
  daemon(
    "ip",
    [
      "netns",
      "exec",
      NETNS,
      process.execPath,
      require.resolve("s3rver/bin/s3rver.js"),
      "--directory",
      DATA_DIR,
      "--address",
      SERVICES_IP4,
      "--port",
      String(BUCKET_PORT),
      "--key",
      join(BUCKET_DIR, "s3.key"),
      "--cert",
      join(BUCKET_DIR, "s3.crt"),
      "--no-vhost-buckets",
      "--silent",
      ...hosts.flatMap((h) => ["--configure-bucket", bucketOf(h)]),
    ],
    log,
    bucketPidFile,
    { ...process.env, NODE_OPTIONS: "--openssl-legacy-provider" },
  );
  await waitForPort("the lab bucket (s3rver)", SERVICES_IP4, BUCKET_PORT, log);
}

/** A lab host's backup: its own bucket on the lab's S3 server, the stack's defaults otherwise. */
export function labBackup(h: LabHost, password: string): BackupSettings {
  return {
    repository: `s3:https://${SERVICES_IP4}:${BUCKET_PORT}/${bucketOf(h)}/${h.config.mailHost}`,
    accessKeyId: ACCESS_KEY,
    secretAccessKey: "unchecked-by-s3rver",
    password,
    schedule: h.config.backup.schedule,
    keepDaily: h.config.backup.keepDaily,
    keepWeekly: h.config.backup.keepWeekly,
    keepMonthly: h.config.backup.keepMonthly,
    caCertificatePem: labCaPem(),
  };
}

/** Every file of a host's repository, as stored in the bucket. */
export function repositoryFiles(h: LabHost): string[] {
  const walk = (dir: string): string[] =>
    existsSync(dir)
      ? readdirSync(dir).flatMap((name) => {
          const p = join(dir, name);
          return statSync(p).isDirectory() ? walk(p) : [p];
        })
      : [];
  return walk(bucketFiles(h));
}

/** The repository's size in the bucket, in bytes (objects' contents, not s3rver's metadata). */
export function repositoryBytes(h: LabHost): number {
  return repositoryFiles(h)
    .filter((f) => f.endsWith("._S3rver_object"))
    .reduce((sum, f) => sum + readFileSync(f).length, 0);
}
