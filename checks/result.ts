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
