// The GitHub workflows keep production out of a pull request's reach: secrets only in the
// steps and environments listed below, actions pinned to commit SHAs, no persisted token, no
// install scripts. Each rule is run on the real files and, as a control, on a bad sample.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { lintWorkflow, staleAllowances, type WorkflowPolicy } from "./support/workflow-lint";

const GITHUB_DIR = join(__dirname, "..", ".github");
const WORKFLOW_DIR = join(GITHUB_DIR, "workflows");

/** Read-only tokens: Pulumi (Stack Read on prod), Hetzner (Read), Cloudflare (Read). */
const PREVIEW_TOKENS = [
  "PREVIEW_PULUMI_ACCESS_TOKEN",
  "PREVIEW_HCLOUD_TOKEN",
  "PREVIEW_CLOUDFLARE_API_TOKEN",
];
/** Staging's own Pulumi organization, Hetzner project and Cloudflare zone. */
const STAGING_TOKENS = [
  "STAGING_PULUMI_ACCESS_TOKEN",
  "STAGING_HCLOUD_TOKEN",
  "STAGING_CLOUDFLARE_API_TOKEN",
];

/** Production's tokens: Pulumi (Stack Write on prod), Hetzner and Cloudflare (write). */
const PRODUCTION_TOKENS = ["PULUMI_ACCESS_TOKEN", "HCLOUD_TOKEN", "CLOUDFLARE_API_TOKEN"];

/** Every place a workflow may read a secret (GITHUB_TOKEN aside). Nothing else may. */
const POLICY: WorkflowPolicy = {
  secrets: {
    "preview.yml": {
      preview: { environment: "preview", steps: { "pulumi preview of prod": PREVIEW_TOKENS } },
    },
    "deploy.yml": {
      deploy: {
        environment: "production",
        steps: {
          // The preview reads the state and the clouds as pulumi up does, right before it.
          "pulumi preview of prod, as JSON": PRODUCTION_TOKENS,
          "pulumi up of prod": PRODUCTION_TOKENS,
        },
      },
    },
    "drift.yml": {
      drift: {
        environment: "drift",
        steps: { "pulumi preview of prod, refreshed": PREVIEW_TOKENS },
      },
    },
    "staging.yml": {
      up: {
        environment: "staging",
        steps: { "staging server up": [...STAGING_TOKENS, "STAGING_ACME_DNS_TOKEN"] },
      },
      down: { environment: "staging", steps: { "staging server down": STAGING_TOKENS } },
    },
    "janitor.yml": {
      janitor: {
        environment: "staging",
        steps: { "destroy expired staging stacks": STAGING_TOKENS },
      },
    },
  },
  // No step needs install scripts: see docs/gitops.md.
  npmInstallScripts: {},
};

const workflows: Record<string, string> = Object.fromEntries(
  readdirSync(WORKFLOW_DIR)
    .filter((f) => f.endsWith(".yml") || f.endsWith(".yaml"))
    .sort()
    .map((f) => [f, readFileSync(join(WORKFLOW_DIR, f), "utf8")]),
);

describe("the real workflows", () => {
  test("are the six the docs describe", () => {
    expect(Object.keys(workflows)).toEqual([
      "audit.yml",
      "deploy.yml",
      "drift.yml",
      "janitor.yml",
      "preview.yml",
      "staging.yml",
    ]);
  });

  test.each(Object.keys(workflows))("%s keeps every rule", (file) => {
    expect(lintWorkflow(file, workflows[file], POLICY)).toEqual([]);
  });

  test("the policy names only steps that exist and secrets they read", () => {
    expect(staleAllowances(workflows, POLICY)).toEqual([]);
  });

  test("production's tokens reach two steps of one job: its preview and pulumi up, on main, under the production environment", () => {
    const readers = Object.entries(workflows).flatMap(([file, text]) =>
      Object.entries(parse(text).jobs as Record<string, any>).flatMap(([jobId, job]) =>
        (job.steps as any[])
          .filter((s) =>
            /secrets\.(PULUMI_ACCESS_TOKEN|HCLOUD_TOKEN|CLOUDFLARE_API_TOKEN)\b/.test(
              JSON.stringify(s),
            ),
          )
          .map((s) => ({ file, jobId, step: s.name, environment: job.environment })),
      ),
    );
    expect(readers).toEqual([
      {
        file: "deploy.yml",
        jobId: "deploy",
        step: "pulumi preview of prod, as JSON",
        environment: "production",
      },
      { file: "deploy.yml", jobId: "deploy", step: "pulumi up of prod", environment: "production" },
    ]);
    expect(parse(workflows["deploy.yml"]).on).toEqual({ push: { branches: ["main"] } });
  });

  test("deploy.yml: after pulumi up, the outside-in checker runs over IPv4 (hosted runners have no IPv6)", () => {
    const steps = parse(workflows["deploy.yml"]).jobs.deploy.steps as any[];
    const names = steps.map((s) => s.name);
    const check = steps.find((s) => s.name === "outside-in check of the deployed domain");
    expect(names.indexOf(check.name)).toBeGreaterThan(names.indexOf("pulumi up of prod"));
    expect(check.run).toContain(
      "npm run check -- --config Pulumi.prod.yaml --ipv4-only --resolver 1.1.1.1 --resolver 9.9.9.9",
    );
    expect(check.env).toBeUndefined();
  });

  test("audit.yml: weekly and by hand, with no secret, the port and TLS scan of prod and then the checker, even after a failed scan", () => {
    const audit = parse(workflows["audit.yml"]);
    expect(audit.on).toEqual({ schedule: [{ cron: "41 4 * * 1" }], workflow_dispatch: {} });
    expect(audit.permissions).toEqual({ contents: "read" });
    expect(Object.keys(audit.jobs)).toEqual(["audit"]);
    const job = audit.jobs.audit;
    expect(job.environment).toBeUndefined();
    expect(workflows["audit.yml"]).not.toMatch(/secrets\.|github\.token/);
    const steps = job.steps as any[];
    const runs = steps.map((s) => s.run).filter(Boolean);
    expect(runs).toContain(
      "sudo apt-get update && sudo apt-get install -y --no-install-recommends nmap testssl.sh",
    );
    const scan = steps.find((s) => s.name === "port and TLS scan of the production host");
    expect(scan.run).toBe("npm run audit -- --config Pulumi.prod.yaml --ipv4-only");
    // A failed scan fails the job: nothing lets it pass.
    expect([scan.if, scan["continue-on-error"]]).toEqual([undefined, undefined]);
    const check = steps.find((s) => s.name === "outside-in check of the production domain");
    expect(check.run).toBe(
      "npm run check -- --config Pulumi.prod.yaml --ipv4-only --resolver 1.1.1.1 --resolver 9.9.9.9",
    );
    expect(check.if).toBe("${{ !cancelled() }}");
    expect(steps.indexOf(scan)).toBeLessThan(steps.indexOf(check));
  });

  test("deploy.yml: the replacement allowance comes from the merged pull request's label alone", () => {
    const deploy = parse(workflows["deploy.yml"]).jobs.deploy;
    const steps = deploy.steps as any[];
    // GitHub's token may read pull requests in this job of the workflow only, and reaches
    // the label step only.
    expect(parse(workflows["deploy.yml"]).permissions).toEqual({ contents: "read" });
    expect(deploy.permissions).toEqual({ contents: "read", "pull-requests": "read" });
    expect(parse(workflows["deploy.yml"]).jobs.test.permissions).toBeUndefined();
    expect(
      steps.filter((s) => /GITHUB_TOKEN|github\.token/.test(JSON.stringify(s))).map((s) => s.name),
    ).toEqual(["labels of the merged pull request"]);
    // The allowance is set from that step's output, in the check alone, and the check comes
    // after the preview it reads and before pulumi up.
    const names = steps.map((s) => s.name);
    const check = steps.find((s) => /check-replacements/.test(s.run ?? ""));
    expect(check.env).toEqual({ MAILSTACK_ALLOW_REPLACE: "${{ steps.labels.outputs.allow }}" });
    expect(
      steps.filter((s) => /MAILSTACK_ALLOW_REPLACE/.test(JSON.stringify(s))).map((s) => s.name),
    ).toEqual([check.name]);
    expect(steps.find((s) => s.id === "labels").run).toContain(
      'select(.merged_at != null) | .labels[].name; . == "replace-server"',
    );
    expect(names.indexOf("pulumi preview of prod, as JSON")).toBeLessThan(
      names.indexOf(check.name),
    );
    expect(names.indexOf(check.name)).toBeLessThan(names.indexOf("pulumi up of prod"));
    expect(check.run).toBe("npm run check-replacements -- preview.json");
    expect(steps.find((s) => s.name === "pulumi preview of prod, as JSON").run).toBe(
      "pulumi preview --stack prod --non-interactive --json > preview.json",
    );
  });

  test("Dependabot keeps the pinned actions and the npm packages current", () => {
    const config = parse(readFileSync(join(GITHUB_DIR, "dependabot.yml"), "utf8"));
    const ecosystems = (config.updates as { "package-ecosystem": string; directory: string }[]).map(
      (u) => `${u["package-ecosystem"]} ${u.directory}`,
    );
    expect(ecosystems.sort()).toEqual(["github-actions /", "npm /"]);
  });
});

// Controls: a sample that keeps every rule, and one change at a time that breaks one.
const CHECKOUT = "actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # v6.0.2";
const GOOD = `
name: sample
on:
  push:
    branches: [main]
permissions:
  contents: read
jobs:
  deploy:
    runs-on: ubuntu-latest
    environment: production
    steps:
      - uses: ${CHECKOUT}
        with:
          persist-credentials: false
      - run: npm ci --ignore-scripts
      - run: npm run check-replacements -- preview.json
      - name: pulumi up
        uses: pulumi/actions@8e5e406f4007fca908480587cb9893c07090f58d # v7.0.0
        with:
          command: up
          github-token: \${{ secrets.GITHUB_TOKEN }}
        env:
          PULUMI_ACCESS_TOKEN: \${{ secrets.PULUMI_ACCESS_TOKEN }}
`;
const SAMPLE_POLICY: WorkflowPolicy = {
  secrets: {
    "sample.yml": {
      deploy: { environment: "production", steps: { "pulumi up": ["PULUMI_ACCESS_TOKEN"] } },
    },
  },
};

function lint(text: string, policy: WorkflowPolicy = SAMPLE_POLICY): string[] {
  return lintWorkflow("sample.yml", text, policy);
}

/** GOOD with one replacement, which must apply. */
function bad(from: string, to: string): string {
  expect(GOOD).toContain(from);
  return GOOD.replace(from, to);
}

describe("controls: the lint rejects", () => {
  test("nothing in the good sample", () => {
    expect(lint(GOOD)).toEqual([]);
  });

  test("an action pinned to a tag, a branch or a short SHA", () => {
    for (const ref of ["v6", "main", "de0fac2"]) {
      expect(lint(bad(CHECKOUT, `actions/checkout@${ref}`))).toEqual([
        expect.stringMatching(/step 1: action not pinned to a full commit SHA.*actions\/checkout@/),
      ]);
    }
    expect(lint(bad(CHECKOUT, "docker://alpine:3"))).toEqual([
      expect.stringMatching(/image not pinned to a sha256 digest/),
    ]);
  });

  test("a SHA without the tag it stands for", () => {
    expect(lint(bad(" # v6.0.2", ""))).toEqual([
      expect.stringMatching(/sample.yml:13: pinned SHA without its tag/),
    ]);
  });

  test("a secret in the job's env", () => {
    const text = bad(
      "    environment: production\n",
      "    environment: production\n    env:\n      TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}\n",
    );
    expect(lint(text)).toEqual([
      expect.stringMatching(/job deploy: secret PULUMI_ACCESS_TOKEN at job level \(env.TOKEN\)/),
    ]);
  });

  test("a secret in the workflow's env", () => {
    const text = bad("jobs:\n", "env:\n  TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}\njobs:\n");
    expect(lint(text)).toEqual([
      expect.stringMatching(/secret PULUMI_ACCESS_TOKEN at workflow level \(env.TOKEN\)/),
    ]);
  });

  test("a secret in a script, a condition, or a step the policy does not name", () => {
    expect(
      lint(
        bad(
          "npm ci --ignore-scripts",
          "npm ci --ignore-scripts ${{ secrets.PULUMI_ACCESS_TOKEN }}",
        ),
      ),
    ).toEqual([expect.stringMatching(/step 2: secret PULUMI_ACCESS_TOKEN in run;/)]);
    expect(
      lint(
        bad(
          "      - run: npm ci",
          "      - if: secrets.PULUMI_ACCESS_TOKEN != ''\n        run: npm ci",
        ),
      ),
    ).toEqual([expect.stringMatching(/step 2: secret PULUMI_ACCESS_TOKEN in if;/)]);
    expect(lint(bad("name: pulumi up\n", "name: pulumi up, renamed\n"))).toEqual([
      expect.stringMatching(/step "pulumi up, renamed": secret PULUMI_ACCESS_TOKEN is not allowed/),
    ]);
    expect(lint(bad("secrets.PULUMI_ACCESS_TOKEN", "secrets.HCLOUD_TOKEN"))).toEqual([
      expect.stringMatching(/secret HCLOUD_TOKEN is not allowed in this step/),
    ]);
  });

  test("every secret at once, or every secret handed on", () => {
    expect(lint(bad("secrets.PULUMI_ACCESS_TOKEN", "toJSON(secrets)"))).toEqual([
      expect.stringMatching(/secret \* is not allowed/),
    ]);
    const reusable = `${GOOD}
  call:
    uses: ./.github/workflows/other.yml
    secrets: inherit
`;
    expect(lint(reusable)).toEqual([expect.stringMatching(/job call: secrets: inherit/)]);
  });

  test("production's secrets without environment: production", () => {
    expect(lint(bad("    environment: production\n", ""))).toEqual([
      expect.stringMatching(/only under environment production, declares none/),
      expect.stringMatching(/reads production secrets without environment: production/),
    ]);
    expect(lint(bad("environment: production", "environment: preview"))).toEqual([
      expect.stringMatching(/declares preview/),
      expect.stringMatching(/reads production secrets without environment: production/),
    ]);
  });

  test("a production job that runs on a pull request, and triggers that hand out secrets", () => {
    expect(lint(bad("  push:\n", "  pull_request:\n"))).toEqual([
      expect.stringMatching(/production job in a workflow triggered by pull_request/),
    ]);
    expect(lint(bad("  push:\n", "  pull_request_target:\n"))).toEqual([
      expect.stringMatching(/trigger pull_request_target runs untrusted code/),
      expect.stringMatching(/triggered by pull_request_target/),
    ]);
  });

  test("a checkout that keeps its credentials", () => {
    const rule = /step 1: actions\/checkout without persist-credentials: false/;
    expect(lint(bad("persist-credentials: false", "persist-credentials: true"))).toEqual([
      expect.stringMatching(rule),
    ]);
    expect(lint(bad("        with:\n          persist-credentials: false\n", ""))).toEqual([
      expect.stringMatching(rule),
    ]);
  });

  test("npm ci with install scripts, unless the policy lists the step", () => {
    const text = bad(
      "      - run: npm ci --ignore-scripts",
      "      - name: install\n        run: npm ci",
    );
    expect(lint(text)).toEqual([
      expect.stringMatching(/step "install": npm install without --ignore-scripts.*: npm ci$/),
    ]);
    expect(
      lint(text, {
        ...SAMPLE_POLICY,
        npmInstallScripts: { "sample.yml": { deploy: ["install"] } },
      }),
    ).toEqual([]);
  });

  test("a workflow without its permissions, or with all of them", () => {
    expect(lint(bad("permissions:\n  contents: read\n", ""))).toEqual([
      expect.stringMatching(/no top-level permissions/),
    ]);
    expect(lint(bad("permissions:\n  contents: read\n", "permissions: write-all\n"))).toEqual([
      expect.stringMatching(/permissions: write-all/),
    ]);
  });

  test("a production pulumi up without the replacement check before it, or with one that may fail", () => {
    const rule = /job deploy: runs pulumi up without the replacement check before it/;
    const CHECK = "      - run: npm run check-replacements -- preview.json\n";
    expect(lint(bad(CHECK, ""))).toEqual([expect.stringMatching(rule)]);
    expect(lint(`${bad(CHECK, "")}${CHECK}`)).toEqual([expect.stringMatching(rule)]);
    expect(
      lint(bad(CHECK, CHECK.replace("- run:", "- continue-on-error: true\n        run:"))),
    ).toEqual([expect.stringMatching(rule)]);
    // The CLI's pulumi up counts as well.
    const cli = bad(CHECK, "").replace(
      "      - name: pulumi up\n",
      "      - run: pulumi up --yes --stack prod\n      - name: pulumi up\n",
    );
    expect(lint(cli)).toEqual([expect.stringMatching(rule)]);
    // Controls: the check first passes; a job outside production needs none.
    expect(lint(GOOD)).toEqual([]);
    expect(
      lint(bad(CHECK, "").replace("environment: production", "environment: staging"), {
        secrets: {
          "sample.yml": {
            deploy: { environment: "staging", steps: { "pulumi up": ["PULUMI_ACCESS_TOKEN"] } },
          },
        },
      }),
    ).toEqual([]);
  });

  test("a policy that names a missing step or a secret never read", () => {
    const policy: WorkflowPolicy = {
      secrets: {
        "sample.yml": {
          deploy: {
            environment: "production",
            steps: { "pulumi up": ["PULUMI_ACCESS_TOKEN", "HCLOUD_TOKEN"], gone: ["X"] },
          },
        },
      },
    };
    expect(staleAllowances({ "sample.yml": GOOD }, policy)).toEqual([
      expect.stringMatching(/step "pulumi up": the policy allows HCLOUD_TOKEN, never read/),
      expect.stringMatching(/names step "gone", which does not exist/),
    ]);
    expect(staleAllowances({ "sample.yml": GOOD }, SAMPLE_POLICY)).toEqual([]);
  });
});
