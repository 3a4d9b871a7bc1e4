// Monthly cost estimate of the Hetzner resources, in EUR excluding VAT.

/**
 * Hetzner list prices per month, EUR excluding VAT, as published after the April 2026
 * price adjustment. An estimate: the invoice is the authority.
 */
export const HETZNER_PRICES_EUR = {
  serverTypes: { cx23: 3.99, cx33: 6.49 } as Record<string, number>,
  primaryIpv4: 0.5,
  primaryIpv6: 0,
  volumePerGb: 0.044,
};

/** Undefined when the server type's price is not in the table. */
export function monthlyCostEur(serverType: string, volumeSizeGb: number): number | undefined {
  const server = HETZNER_PRICES_EUR.serverTypes[serverType];
  if (server === undefined) return undefined;
  const total =
    server +
    HETZNER_PRICES_EUR.primaryIpv4 +
    HETZNER_PRICES_EUR.primaryIpv6 +
    HETZNER_PRICES_EUR.volumePerGb * volumeSizeGb;
  return Math.round(total * 100) / 100;
}
