// Times the Pulumi program under mocks: config read and validated, every resource
// registered, every output resolved. Each run is a fresh process, so module loading counts.
//   npm run bench -- program
import { execFileSync } from "node:child_process";
import { performance } from "node:perf_hooks";
import { join } from "node:path";

const RUNS = 5;

async function once(): Promise<void> {
  const start = performance.now();
  const pulumi = await import("@pulumi/pulumi");
  const { installMocks, settle, created } = await import("../tests/support/mocks");
  const { PROD_RAW } = await import("../tests/support/config");
  await installMocks("prod");
  pulumi.runtime.setAllConfig(
    Object.fromEntries(Object.entries(PROD_RAW).map(([k, v]) => [`mailstack:${k}`, String(v)])),
  );
  // index.ts exports the program as an async function, which Pulumi calls and awaits.
  const program = (await import("../index")).default;
  await program();
  await settle();
  const ms = performance.now() - start;
  process.stdout.write(JSON.stringify({ ms, resources: created.length }));
}

export interface ProgramFigures {
  resources: number;
  runs: number;
  minSeconds: number;
  medianSeconds: number;
  maxSeconds: number;
}

export function benchProgram(): ProgramFigures {
  const results: { ms: number; resources: number }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const out = execFileSync(process.execPath, [...process.execArgv, __filename, "--once"], {
      cwd: join(__dirname, ".."),
      encoding: "utf8",
    });
    results.push(JSON.parse(out));
  }
  const times = results.map((r) => r.ms).sort((a, b) => a - b);
  const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  console.log(
    `program evaluation under mocks (${results[0].resources} resources, ${RUNS} fresh processes):`,
  );
  console.log(
    `  min ${fmt(times[0])}  median ${fmt(times[Math.floor(RUNS / 2)])}  max ${fmt(times[RUNS - 1])}  (target ≤ 5 s)`,
  );
  const s = (ms: number) => Math.round(ms) / 1000;
  return {
    resources: results[0].resources,
    runs: RUNS,
    minSeconds: s(times[0]),
    medianSeconds: s(times[Math.floor(RUNS / 2)]),
    maxSeconds: s(times[RUNS - 1]),
  };
}

if (require.main === module && process.argv.includes("--once")) void once();
