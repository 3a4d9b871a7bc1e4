export type Status = "pass" | "warn" | "fail";
/** One line of the checker's report. */
export interface CheckResult {
  /** Short name, e.g. "STARTTLS 25 (192.0.2.1)". */
  name: string;
  status: Status;
  /** What the check saw. */
  saw: string;
  /** What to change, when not a pass. */
  fix?: string;
}

/** One line; `fix` only where the check did not pass. */
export const result = (name: string, status: Status, saw: string, fix?: string): CheckResult =>
  fix === undefined || status === "pass" ? { name, status, saw } : { name, status, saw, fix };

export const pass = (name: string, saw: string): CheckResult => result(name, "pass", saw);
export const warn = (name: string, saw: string, fix: string): CheckResult =>
  result(name, "warn", saw, fix);
export const fail = (name: string, saw: string, fix: string): CheckResult =>
  result(name, "fail", saw, fix);
