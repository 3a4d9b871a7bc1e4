// The inbound rule set, one source of truth for the Hetzner firewall (MailServer) and the
// host's own nftables firewall (cloud-init), so the two layers can never disagree.
import { ANYWHERE } from "./config";

export interface InboundRule {
  description: string;
  protocol: "tcp" | "icmp";
  /** TCP port; absent for ICMP. */
  port?: number;
  /** Source networks in CIDR notation. */
  sources: string[];
}

/** The mail ports, open to the world. Nothing else is, apart from ICMP. */
export const MAIL_PORTS = [
  { port: 25, description: "SMTP (MX, postscreen)" },
  { port: 465, description: "SMTP submission, implicit TLS" },
  { port: 587, description: "SMTP submission, STARTTLS" },
  { port: 993, description: "IMAPS" },
  { port: 4190, description: "ManageSieve" },
] as const;

/** Dovecot's OpenMetrics port. */
export const DOVECOT_METRICS_PORT = 9900;

/**
 * Prometheus exporters: node (with the host's own facts and Rspamd's counters from its
 * textfile collector), Postfix, and Dovecot's built-in OpenMetrics endpoint. Opened only to
 * `monitoringAllowedIps`, and running only when it names someone.
 */
export const EXPORTER_PORTS = [
  { port: 9100, description: "node exporter" },
  { port: 9154, description: "Postfix exporter" },
  { port: DOVECOT_METRICS_PORT, description: "Dovecot metrics" },
] as const;

export interface FirewallSettings {
  sshAllowedIps: string[];
  monitoringAllowedIps: string[];
}

export function inboundRules(s: FirewallSettings): InboundRule[] {
  const rules: InboundRule[] = MAIL_PORTS.map(({ port, description }) => ({
    description,
    protocol: "tcp",
    port,
    sources: [...ANYWHERE],
  }));
  rules.push({ description: "SSH", protocol: "tcp", port: 22, sources: [...s.sshAllowedIps] });
  if (s.monitoringAllowedIps.length > 0) {
    for (const { port, description } of EXPORTER_PORTS) {
      rules.push({ description, protocol: "tcp", port, sources: [...s.monitoringAllowedIps] });
    }
  }
  // Path MTU discovery and IPv6 neighbour discovery need ICMP; ping helps diagnosis.
  rules.push({ description: "ICMP", protocol: "icmp", sources: [...ANYWHERE] });
  return rules;
}
