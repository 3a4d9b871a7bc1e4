// Rules for the GitHub workflows, as a pure function of a workflow's file name and text, so
// the test runs the same rules on the real files and on bad samples. A violation names the
// file, the job and step, the rule and the value seen.
import { parse } from "yaml";

/** What one job may read from `secrets`, and where. */
export interface JobAllowance {
  /** The GitHub environment the job must declare: its protection rules guard these secrets. */
  environment: string;
  /** Step name -> the secrets that step's `env:` and `with:` may read. Nothing else may. */
  steps: Record<string, string[]>;
}

export interface WorkflowPolicy {
  /** Workflow file -> job id -> what that job may read. Every other use of a secret fails. */
  secrets: Record<string, Record<string, JobAllowance>>;
  /** Workflow file -> job id -> step names whose `npm ci` may run install scripts. */
  npmInstallScripts?: Record<string, Record<string, string[]>>;
}

/** The environment whose secrets can change production. */
export const PRODUCTION = "production";

/** GitHub's own per-run token; its rights are the workflow's `permissions:`. */
const GITHUB_TOKEN = "GITHUB_TOKEN";

/** Triggers that run a pull request's code with the repository's secrets in reach. */
const FORBIDDEN_TRIGGERS = ["pull_request_target", "workflow_run"];

/** Triggers that run code nobody with write access has merged to main. */
const UNREVIEWED_TRIGGERS = ["pull_request", ...FORBIDDEN_TRIGGERS];

/** The step that reads `pulumi preview --json` and stops a replacement nobody allowed. */
const REPLACEMENT_CHECK = /\bnpm run check-replacements\b/;

const SHA_PINNED = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+(\/[^@\s]+)?@[0-9a-f]{40}$/;
const DIGEST_PINNED = /^docker:\/\/[^@\s]+@sha256:[0-9a-f]{64}$/;
const NPM_INSTALL = /\bnpm\s+(ci|install|i|add)\b/;

type Node = Record<string, unknown>;

const isObject = (v: unknown): v is Node =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The secrets an expression reads; `*` when it reads all of them (`toJSON(secrets)`). */
export function secretsIn(expression: string): string[] {
  const out: string[] = [];
  const re = /\bsecrets\b\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_-]*)|\[\s*['"]([^'"]+)['"]\s*\])?/g;
  for (const m of expression.matchAll(re)) out.push(m[1] ?? m[2] ?? "*");
  return out;
}

/** The expressions in a value: each `${{ … }}`, or the whole of an `if:`. */
function expressions(value: string, isIf: boolean): string[] {
  const out = [...value.matchAll(/\$\{\{([\s\S]*?)\}\}/g)].map((m) => m[1]);
  if (isIf && out.length === 0) out.push(value);
  return out;
}

interface SecretUse {
  /** Keys from the walked node down to the string that reads the secret. */
  path: string[];
  name: string;
}

/** Every secret read anywhere under a node, with where. */
function secretUses(node: unknown, path: string[] = []): SecretUse[] {
  if (typeof node === "string") {
    const isIf = path[path.length - 1] === "if";
    return expressions(node, isIf).flatMap((e) => secretsIn(e).map((name) => ({ path, name })));
  }
  if (Array.isArray(node)) return node.flatMap((v, i) => secretUses(v, [...path, String(i)]));
  if (isObject(node)) return Object.entries(node).flatMap(([k, v]) => secretUses(v, [...path, k]));
  return [];
}

function triggers(on: unknown): string[] {
  if (typeof on === "string") return [on];
  if (Array.isArray(on)) return on.map(String);
  if (isObject(on)) return Object.keys(on);
  return [];
}

function environmentOf(job: Node): string | undefined {
  const env = job.environment;
  if (typeof env === "string") return env;
  if (isObject(env) && typeof env.name === "string") return env.name;
  return undefined;
}

function checkUses(where: string, uses: unknown): string[] {
  if (typeof uses !== "string") return [];
  if (uses.startsWith("./")) return [];
  if (uses.startsWith("docker://")) {
    return DIGEST_PINNED.test(uses)
      ? []
      : [`${where}: image not pinned to a sha256 digest (rule: pinned actions): ${uses}`];
  }
  return SHA_PINNED.test(uses)
    ? []
    : [`${where}: action not pinned to a full commit SHA (rule: pinned actions): ${uses}`];
}

/** A step that runs `pulumi up`: the Pulumi action with `command: up`, or the CLI. */
function runsPulumiUp(step: Node): boolean {
  if (typeof step.uses === "string" && step.uses.startsWith("pulumi/actions@")) {
    return isObject(step.with) && step.with.command === "up";
  }
  return typeof step.run === "string" && /\bpulumi\s+up\b/.test(step.run);
}

/** A step that runs the replacement check and, failing, stops the job. */
function runsReplacementCheck(step: Node): boolean {
  const tolerated = step["continue-on-error"] === true || step["continue-on-error"] === "true";
  return typeof step.run === "string" && REPLACEMENT_CHECK.test(step.run) && !tolerated;
}

/** A pinned `uses:` line carries the tag its SHA stands for, which Dependabot keeps current. */
function checkPinComments(file: string, text: string): string[] {
  const out: string[] = [];
  text.split("\n").forEach((line, i) => {
    const m = /^\s*(?:-\s+)?uses:\s*["']?([^\s"'#]+@[0-9a-f]{40})["']?\s*(?:#\s*(.*))?$/.exec(line);
    if (m && !/^v\d+(\.\d+)*\b/.test(m[2] ?? "")) {
      out.push(
        `${file}:${i + 1}: pinned SHA without its tag in a comment, e.g. "# v1.2.3" (rule: pinned actions): ${m[1]}`,
      );
    }
  });
  return out;
}

/**
 * The violations in one workflow (empty when it keeps every rule):
 * - every action outside the repository is pinned to a full commit SHA, its tag in a comment;
 * - a secret is read only in the `env:` or `with:` of a step the policy names for it, in a
 *   job that declares the policy's environment (GITHUB_TOKEN excepted); no `secrets: inherit`;
 * - a job reading production's secrets declares `environment: production`, and never runs on
 *   a pull request's code;
 * - a production job that runs `pulumi up` first runs the replacement check, without
 *   `continue-on-error`, so a server replacement nobody labelled stops the job;
 * - no `pull_request_target` or `workflow_run` triggers;
 * - every `actions/checkout` sets `persist-credentials: false`;
 * - every `npm ci` runs with `--ignore-scripts`, unless the policy lists the step;
 * - the workflow declares its `permissions:`, never `write-all`.
 */
export function lintWorkflow(file: string, text: string, policy: WorkflowPolicy): string[] {
  const out: string[] = [];
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    return [`${file}: not YAML: ${e instanceof Error ? e.message : String(e)}`];
  }
  if (!isObject(doc) || !isObject(doc.jobs)) return [`${file}: no jobs`];

  const allowed = policy.secrets[file] ?? {};
  const npmAllowed = policy.npmInstallScripts?.[file] ?? {};
  const productionSecrets = new Set(
    Object.values(policy.secrets)
      .flatMap((jobs) => Object.values(jobs))
      .filter((j) => j.environment === PRODUCTION)
      .flatMap((j) => Object.values(j.steps).flat())
      .filter((s) => s !== GITHUB_TOKEN),
  );
  const on = triggers(doc.on);

  for (const t of on.filter((t) => FORBIDDEN_TRIGGERS.includes(t))) {
    out.push(`${file}: trigger ${t} runs untrusted code with secrets (rule: triggers)`);
  }
  if (doc.permissions === undefined) {
    out.push(`${file}: no top-level permissions: (rule: least privilege)`);
  }
  if (doc.permissions === "write-all") {
    out.push(`${file}: permissions: write-all (rule: least privilege)`);
  }

  // Outside the jobs: the workflow's env, concurrency, name... may read no secret.
  const { jobs, ...rest } = doc;
  for (const u of secretUses(rest).filter((u) => u.name !== GITHUB_TOKEN)) {
    out.push(
      `${file}: secret ${u.name} at workflow level (${u.path.join(".")}); only a step's env: or with: may read one (rule: secrets)`,
    );
  }

  for (const [jobId, jobValue] of Object.entries(jobs as Node)) {
    const job = isObject(jobValue) ? jobValue : {};
    const where = `${file} job ${jobId}`;
    const allowance = allowed[jobId];
    const environment = environmentOf(job);
    out.push(...checkUses(where, job.uses));
    if (job.permissions === "write-all") {
      out.push(`${where}: permissions: write-all (rule: least privilege)`);
    }
    if (job.secrets === "inherit") {
      out.push(`${where}: secrets: inherit hands every secret on (rule: secrets)`);
    }

    const { steps, ...jobRest } = job;
    for (const u of secretUses(jobRest).filter((u) => u.name !== GITHUB_TOKEN)) {
      out.push(
        `${where}: secret ${u.name} at job level (${u.path.join(".")}); only a step's env: or with: may read one (rule: secrets)`,
      );
    }

    const stepList = Array.isArray(steps) ? steps : [];
    let readsSecrets = false;
    let readsProduction = false;
    stepList.forEach((stepValue, i) => {
      const step = isObject(stepValue) ? stepValue : {};
      const name = typeof step.name === "string" ? step.name : undefined;
      const label = `${where} step ${name ? `"${name}"` : String(i + 1)}`;
      out.push(...checkUses(label, step.uses));

      if (typeof step.uses === "string" && step.uses.startsWith("actions/checkout@")) {
        const persist = isObject(step.with) ? step.with["persist-credentials"] : undefined;
        if (persist !== false && persist !== "false") {
          out.push(
            `${label}: actions/checkout without persist-credentials: false leaves the token in .git/config (rule: checkout)`,
          );
        }
      }

      if (typeof step.run === "string") {
        const scriptsAllowed = name !== undefined && (npmAllowed[jobId] ?? []).includes(name);
        for (const line of step.run.split("\n")) {
          if (NPM_INSTALL.test(line) && !line.includes("--ignore-scripts") && !scriptsAllowed) {
            out.push(
              `${label}: npm install without --ignore-scripts runs every package's install scripts (rule: npm): ${line.trim()}`,
            );
          }
        }
      }

      const stepAllowed = name !== undefined ? (allowance?.steps[name] ?? []) : [];
      for (const u of secretUses(step)) {
        const inEnvOrWith = u.path.length === 2 && (u.path[0] === "env" || u.path[0] === "with");
        if (u.name === GITHUB_TOKEN && inEnvOrWith) continue;
        if (productionSecrets.has(u.name)) readsProduction = true;
        if (!inEnvOrWith) {
          out.push(
            `${label}: secret ${u.name} in ${u.path.join(".")}; only env: or with: may read one (rule: secrets)`,
          );
        } else if (!stepAllowed.includes(u.name)) {
          out.push(`${label}: secret ${u.name} is not allowed in this step (rule: secrets)`);
        } else {
          readsSecrets = true;
        }
      }
    });

    if (readsSecrets && allowance && environment !== allowance.environment) {
      out.push(
        `${where}: reads secrets allowed only under environment ${allowance.environment}, declares ${environment ?? "none"} (rule: environments)`,
      );
    }
    if (readsProduction && environment !== PRODUCTION) {
      out.push(
        `${where}: reads production secrets without environment: ${PRODUCTION} (rule: environments)`,
      );
    }
    if (environment === PRODUCTION) {
      for (const t of on.filter((t) => UNREVIEWED_TRIGGERS.includes(t))) {
        out.push(`${where}: production job in a workflow triggered by ${t} (rule: environments)`);
      }
      const steps = stepList.map((s) => (isObject(s) ? s : {}));
      const up = steps.findIndex(runsPulumiUp);
      if (up >= 0 && !steps.slice(0, up).some(runsReplacementCheck)) {
        out.push(
          `${where}: runs pulumi up without the replacement check before it (npm run check-replacements on the preview's JSON, no continue-on-error) (rule: replacements)`,
        );
      }
    }
  }

  return [...out, ...checkPinComments(file, text)];
}

/**
 * Allowances that match nothing in the workflows given: a step that does not exist, or a
 * secret the step does not read. A policy that says more than is true hides the next change.
 */
export function staleAllowances(
  workflows: Record<string, string>,
  policy: WorkflowPolicy,
): string[] {
  const out: string[] = [];
  const step = (file: string, jobId: string, name: string): Node | undefined => {
    const doc: unknown = workflows[file] === undefined ? undefined : parse(workflows[file]);
    const job = isObject(doc) && isObject(doc.jobs) ? doc.jobs[jobId] : undefined;
    const steps = isObject(job) && Array.isArray(job.steps) ? job.steps : [];
    return steps.find((s): s is Node => isObject(s) && s.name === name);
  };
  for (const [file, jobs] of Object.entries(policy.secrets)) {
    for (const [jobId, allowance] of Object.entries(jobs)) {
      for (const [name, secrets] of Object.entries(allowance.steps)) {
        const found = step(file, jobId, name);
        if (!found) {
          out.push(`${file} job ${jobId}: the policy names step "${name}", which does not exist`);
          continue;
        }
        const read = new Set(secretUses(found).map((u) => u.name));
        for (const s of secrets.filter((s) => !read.has(s))) {
          out.push(`${file} job ${jobId} step "${name}": the policy allows ${s}, never read`);
        }
      }
    }
  }
  for (const [file, jobs] of Object.entries(policy.npmInstallScripts ?? {})) {
    for (const [jobId, names] of Object.entries(jobs)) {
      for (const name of names.filter((n) => !step(file, jobId, n))) {
        out.push(`${file} job ${jobId}: the policy names step "${name}", which does not exist`);
      }
    }
  }
  return out;
}
