// mailstack: one domain and a handful of settings in, a secure mail server out.
import * as pulumi from "@pulumi/pulumi";
import { readConfig, readSecrets } from "./components/config";
import { MailStack } from "./components/mailstack";

const config = readConfig();
const stack = new MailStack("mailstack", { config, ...readSecrets() });

export const mailHost = stack.mailHost;
export const ipv4 = stack.ipv4;
export const ipv6 = stack.ipv6;
export const dnsRecords = stack.dnsRecords;
export const dkimSelector = stack.dkimSelector;
export const clientSettings = stack.clientSettings;
export const userPasswords = pulumi.secret(stack.userPasswords);
export const rspamdControllerPassword = pulumi.secret(stack.rspamdControllerPassword);
export const monthlyCostEur = stack.monthlyCostEur;
export const dnssecDs = stack.dnssecDs;
