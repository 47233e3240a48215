/** Finds which of the seller's products a vendor's line item is, through each product's `match` list. */

export interface MatchableProduct {
  readonly id: string;
  readonly match: readonly string[];
}

const canonical = (s: string): string => s.normalize('NFC').trim().replace(/\s+/g, ' ').toLowerCase();

/** Exact match (case and spacing aside) on the vendor's product name or code; never a guess. */
export function matchProduct<P extends MatchableProduct>(
  products: readonly P[],
  vendorProduct: string,
  vendorCode: string | null,
): P | null {
  const wanted = [vendorProduct, vendorCode].filter((v): v is string => !!v).map(canonical);
  return products.find((p) => p.match.some((m) => wanted.includes(canonical(m)))) ?? null;
}
