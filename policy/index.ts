// The mailstack policy pack: `pulumi preview --policy-pack policy`.
// Staging stacks: `--policy-pack-config policy/staging.json` relaxes the production-only rules.
import { PolicyPack } from "@pulumi/policy";
import { policies, stackPolicies } from "./policies";

new PolicyPack("mailstack", { policies: [...policies, ...stackPolicies] });
