// mailstack-backup's decisions, run here with the real script, bash, systemd-analyze and
// python3, and restic replaced by a stub that records its calls and answers as told (the lab
// runs the real restic against a real S3 server: tests/lab/recovery.test.ts).
import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostPath } from "./support/host-path";

const SCRIPT = join(__dirname, "..", "cloud-init", "files", "mailstack-backup");
const REPO = "s3:https://s3.example/mailstack-b/mail.b.example";

/** A host's files, and a restic that answers `cat config` with `configExit`. */
function host(configExit: number) {
  const dir = mkdtempSync(join(tmpdir(), "mailstack-backup-"));
  const etc = join(dir, "etc");
  const state = join(dir, "state");
  const bin = join(dir, "bin");
  for (const d of [etc, state, bin]) mkdirSync(d);
  writeFileSync(join(etc, "host.conf"), "MAIL_DOMAIN=b.example\nMAIL_HOST=mail.b.example\n");
  writeFileSync(
    join(etc, "backup.conf"),
    `BACKUP_ENABLED=yes\nRESTIC_REPOSITORY='${REPO}'\nBACKUP_SCHEDULE='daily'\n` +
      "BACKUP_KEEP_DAILY=7\nBACKUP_KEEP_WEEKLY=4\nBACKUP_KEEP_MONTHLY=0\n",
  );
  writeFileSync(join(etc, "backup.env"), "AWS_ACCESS_KEY_ID='k'\nAWS_SECRET_ACCESS_KEY='s'\n");
  writeFileSync(join(etc, "backup.password"), "pw\n");
  writeFileSync(
    join(bin, "restic"),
    `#!/bin/bash
printf '%s\\n' "$*" >>"${dir}/calls"
while [ "$1" = --retry-lock ]; do shift 2; done
case "$1" in
  cat) exit ${configExit} ;;
  backup) echo '{"message_type":"summary","snapshot_id":"${"ab".repeat(32)}","total_files_processed":3,"total_bytes_processed":300,"data_added":100}' ;;
  stats) echo '{"total_size":120}' ;;
  snapshots) echo '[]' ;;
  check) echo 'no errors were found' ;;
esac
`,
  );
  chmodSync(join(bin, "restic"), 0o755);
  const env = {
    PATH: hostPath(bin),
    MAILSTACK_ETC: etc,
    MAILSTACK_BACKUP_STATE: state,
    MAILSTACK_BACKUP_METRICS: join(dir, "metrics", "mailstack_backup.prom"),
    RESTIC_CACHE_DIR: join(dir, "cache"),
  };
  mkdirSync(join(dir, "metrics"));
  const run = (cmd: string) =>
    new Promise<{ status: number; stderr: string }>((resolve) =>
      execFile("bash", [SCRIPT, cmd], { env: { ...process.env, ...env } }, (err, _out, stderr) =>
        resolve({ status: err ? Number(err.code ?? 1) : 0, stderr }),
      ),
    );
  const calls = () => readFileSync(join(dir, "calls"), "utf8");
  const succeeded = (secondsAgo: number, url = REPO) =>
    writeFileSync(
      join(state, "success"),
      `time=${Math.floor(Date.now() / 1000) - secondsAgo}\nsnapshot=${"cd".repeat(32)}\nurl=${url}\n`,
    );
  return { dir, state, run, calls, succeeded };
}

describe("mailstack-backup", () => {
  test("an empty bucket gets a repository on the first backup, which records its figures", async () => {
    const h = host(10);
    const r = await h.run("run");
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(`no repository at ${REPO} yet: creating it`);
    expect(h.calls()).toMatch(/^--retry-lock 1h init$/m);
    expect(h.calls()).toMatch(
      /^--retry-lock 1h forget --quiet --host mail\.b\.example --tag mailstack --keep-daily 7 --keep-weekly 4 --prune$/m,
    );
    const metrics = readFileSync(join(h.dir, "metrics", "mailstack_backup.prom"), "utf8");
    expect(metrics).toMatch(/^mailstack_backup_last_size_bytes 300$/m);
    expect(metrics).toMatch(/^mailstack_backup_repository_bytes 120$/m);
    expect(readFileSync(join(h.state, "success"), "utf8")).toContain(`url=${REPO}\n`);
  });

  test("a repository this host backed up to that is gone is reported, never made again", async () => {
    const h = host(10);
    h.succeeded(3600);
    const r = await h.run("run");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      `mailstack-backup: the repository at ${REPO} is gone, yet this host backed up there (last: snapshot ${"cd".repeat(32)})`,
    );
    expect(h.calls()).not.toMatch(/ init$/m);
    // The control: after a change of bucket, the same path makes the new repository.
    const moved = host(10);
    moved.succeeded(3600, "s3:https://s3.example/another-bucket/mail.b.example");
    expect((await moved.run("run")).status).toBe(0);
    expect(moved.calls()).toMatch(/ init$/m);
  });

  test("the daily check: a last good backup three days old fails; one an hour old passes", async () => {
    const old = host(0);
    old.succeeded(3 * 86400);
    const r = await old.run("check");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /mailstack-backup: the last good backup is 72 h old \(.* UTC\); the schedule 'daily' allows 37 h/,
    );
    const fresh = host(0);
    fresh.succeeded(3600);
    const ok = await fresh.run("check");
    expect([ok.status, ok.stderr]).toEqual([0, expect.stringContaining("repository checked")]);
    expect(fresh.calls()).toMatch(/^--retry-lock 1h check --read-data-subset [1-7]\/7$/m);
  });

  test("before the first backup the check finds no repository, says so and passes; it never makes one", async () => {
    const h = host(10);
    const r = await h.run("check");
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(`no repository at ${REPO} yet: the first backup makes it`);
    expect(h.calls()).not.toMatch(/ (init|check)/m);
  });
});
