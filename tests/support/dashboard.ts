// The Grafana dashboard as the tests read it, and the metric names its queries use.
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource: { type: string; uid: string };
  targets: { refId: string; expr: string; legendFormat?: string }[];
}

export const dashboard = JSON.parse(
  readFileSync(join(__dirname, "..", "..", "monitoring", "dashboard.json"), "utf8"),
) as { uid: string; panels: Panel[]; templating: { list: { name: string }[] } };

/** Every metric name the panels' queries read (PromQL functions and labels left out). */
export function dashboardMetrics(): string[] {
  const names = dashboard.panels.flatMap((p) =>
    p.targets.flatMap((t) =>
      [...t.expr.matchAll(/\b((?:node|postfix|dovecot|rspamd|mailstack)_[a-zA-Z0-9_]+)/g)].map(
        (m) => m[1],
      ),
    ),
  );
  return [...new Set(names)].sort();
}
