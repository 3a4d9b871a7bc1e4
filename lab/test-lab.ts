// `npm run test:lab`: brings the lab up, runs the end-to-end suite inside the lab's network
// namespace, tears the lab down (MAILSTACK_LAB_KEEP=1 keeps it), and prints the timings.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { down, up } from "./lab";
import { info } from "./log";
import { NETNS, STATE_DIR } from "./settings";

async function main(): Promise<number> {
  const started = Date.now();
  let status = 1;
  try {
    await up();
    const jest = spawnSync(
      "ip",
      [
        "netns",
        "exec",
        NETNS,
        process.execPath,
        require.resolve("jest/bin/jest"),
        "-c",
        "jest.lab.config.js",
        ...process.argv.slice(2),
      ],
      { stdio: "inherit", cwd: join(__dirname, "..") },
    );
    status = jest.status ?? 1;
  } finally {
    const timingsFile = join(STATE_DIR, "timings.json");
    const t = existsSync(timingsFile) ? JSON.parse(readFileSync(timingsFile, "utf8")) : {};
    if (process.env.MAILSTACK_LAB_KEEP === "1") info("MAILSTACK_LAB_KEEP=1: the lab stays up");
    else down();
    const total = (Date.now() - started) / 1000;
    const lines = ["", "lab timings:"];
    if (t.imageSeconds !== undefined)
      lines.push(
        `  image:         ${t.imageSeconds.toFixed(1)} s ${t.imageSeconds > 30 ? "(built)" : "(cached)"}`,
      );
    for (const [name, s] of Object.entries((t.bootSeconds ?? {}) as Record<string, number>)) {
      lines.push(`  ${name} boot to cloud-init done: ${s.toFixed(1)} s`);
      const pkg = (t.packageSeconds ?? {})[name];
      lines.push(
        `  ${name} package step (first provisioning): ${pkg === undefined || pkg === null ? "none (baked image)" : `${pkg} s`}`,
      );
    }
    if (t.upSeconds !== undefined) lines.push(`  lab up:        ${t.upSeconds.toFixed(1)} s`);
    lines.push(`  test:lab:      ${total.toFixed(1)} s`, "");
    process.stdout.write(lines.join("\n"));
  }
  return status;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`\ntest:lab: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
