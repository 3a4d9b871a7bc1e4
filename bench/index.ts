// `npm run bench` — the project's benchmarks; each prints its figures and writes them, with
// the machine they came from, under bench/results/.
//   npm run bench                   the program under mocks; `npm test` cold, warm, one line edited
//   npm run bench -- program        the program under mocks only
//   npm run bench -- lab [options]  the mail host on the lab (bench/lab.ts)
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchLab } from "./lab";
import { describeMachine, machine, resultsFile } from "./machine";
import { benchProgram } from "./program";

const ROOT = join(__dirname, "..");

function writeResults(kind: string, figures: object): string {
  const file = resultsFile(kind);
  writeFileSync(file, `${JSON.stringify({ machine: machine(), ...figures }, null, 2)}\n`);
  return file;
}

interface NpmTestRun {
  seconds: number;
  status: number;
}

/** One run of the test command the README gives. */
function timeNpmTest(label: string): NpmTestRun {
  const start = Date.now();
  const res = spawnSync("npm", ["test", "--silent"], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  });
  const seconds = Math.round((Date.now() - start) / 100) / 10;
  console.log(`npm test, ${label}: ${seconds} s, exit ${res.status} (target ≤ 60 s)`);
  return { seconds, status: res.status ?? 1 };
}

/** The file the "one line edited" run changes, as a developer would, and puts back after. */
const EDITED = join(ROOT, "components", "config.ts");

/**
 * The wall time of `npm test` cold, as on a fresh checkout (CI): prettier's cache and the
 * type check's mark under node_modules/.cache and jest's transform cache emptied first; then
 * warm, run again with nothing changed; then with one line added to a module every step
 * reads (the type check with eslint is whole, so it runs again in full).
 */
function benchNpmTest(): { cold: NpmTestRun; warm: NpmTestRun; edited: NpmTestRun } {
  rmSync(join(ROOT, "node_modules", ".cache"), { recursive: true, force: true });
  spawnSync("npx", ["jest", "--clearCache"], { cwd: ROOT, stdio: "ignore" });
  const cold = timeNpmTest("cold");
  const warm = timeNpmTest("warm");
  const original = readFileSync(EDITED);
  try {
    writeFileSync(EDITED, `${original}// one line edited by npm run bench\n`);
    return { cold, warm, edited: timeNpmTest("warm, one line edited") };
  } finally {
    writeFileSync(EDITED, original);
  }
}

async function main(argv: string[]): Promise<number> {
  const [what = "all", ...rest] = argv;
  if (what === "lab") return benchLab(rest.filter((a) => a !== "--inside"));
  if (what !== "all" && what !== "program") {
    console.error(
      `bench: unknown benchmark '${what}' (program, lab, or nothing for program and npm test)`,
    );
    return 2;
  }
  console.log(describeMachine(machine()));
  const program = benchProgram();
  const npmTest = what === "all" ? benchNpmTest() : undefined;
  console.log(`figures: ${writeResults(what, { program, npmTest })}`);
  return npmTest && Object.values(npmTest).some((run) => run.status !== 0) ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(`bench: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
