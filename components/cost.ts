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

/**
 * Memory of Hetzner server types in GB, as listed by Hetzner. Types missing here are not
 * checked against the memory the host's services need.
 */
export const HETZNER_RAM_GB: Record<string, number> = {
  cx23: 4,
  cx33: 8,
  cx43: 16,
  cx53: 32,
  cpx11: 2,
  cpx21: 4,
  cpx31: 8,
  cpx41: 16,
  cpx51: 32,
  cax11: 4,
  cax21: 8,
  cax31: 16,
  cax41: 32,
  ccx13: 8,
  ccx23: 16,
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
