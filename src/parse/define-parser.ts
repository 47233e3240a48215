import type { Notification, VendorParser } from '../types';

/** Identity function that gives a vendor file its type checking and one obvious shape. */
export function defineParser(parser: VendorParser): VendorParser {
  return Object.freeze(parser);
}

/**
 * A `matches` for mail sent from any of the domains or their subdomains (paypal.com and
 * service.paypal.com, not paypal.com.evil.example). Sender only: authentication comes later.
 */
export function sentFrom(...domains: string[]): (n: Notification) => boolean {
  const suffixes = domains.map((d) => d.toLowerCase());
  return (n) => {
    const at = n.fromAddress.lastIndexOf('@');
    if (at < 0) return false;
    const domain = n.fromAddress.slice(at + 1);
    return suffixes.some((d) => domain === d || domain.endsWith(`.${d}`));
  };
}
