/**
 * The domains each vendor sends its notifications from, the seller's authentication settings
 * (`vendors.<id>.auth|domains|trustedForwarders`, `trustAuthResults`) and the domain arithmetic the
 * sender check uses (authenticate/sender.ts).
 *
 * Every domain listed here is trusted to vouch for a sale: a DKIM signature by it, aligned with the
 * From address, lets a message through to fulfilment. So a domain belongs here only when the
 * vendor owns it; listing one it does not own hands serials to whoever registers it. A seller who
 * needs another domain sets `vendors.<id>.domains` (which replaces this list for that vendor).
 */
import { z } from 'zod';
import { ConfigError } from '../errors';

/** Built-in `vendors.<id>.domains`, keyed by parser id. Each entry is a registrable domain. */
export const DEFAULT_VENDOR_DOMAINS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  kagi: Object.freeze(['kagi.com']),
  fastspring: Object.freeze(['fastspring.com']),
  // PayPal signs each country's notifications with that country's domain (service@paypal.de, ...).
  paypal: Object.freeze([
    'paypal.com',
    'paypal.de',
    'paypal.es',
    'paypal.fr',
    'paypal.it',
    'paypal.co.uk',
    'paypal.com.au',
    'paypal.ca',
    'paypal.nl',
    'paypal.at',
    'paypal.ch',
    'paypal.be',
    'paypal.pl',
    'paypal.jp',
  ]),
  gumroad: Object.freeze(['gumroad.com']),
  bmtmicro: Object.freeze(['bmtmicro.com']),
  '2checkout': Object.freeze(['2checkout.com', 'avangate.com', 'verifone.com']),
  lemonsqueezy: Object.freeze(['lemonsqueezy.com']),
  paddle: Object.freeze(['paddle.com']),
});

/** Lower-cased, trimmed, without a trailing root dot: the form every comparison here uses. */
export function normalizeDomain(domain: string): string {
  return domain.trim().toLowerCase().replace(/\.$/, '');
}

/** True when `domain` is `base` or a subdomain of it (`mail.kagi.com` is under `kagi.com`). */
export function isUnder(domain: string, base: string): boolean {
  const d = normalizeDomain(domain);
  const b = normalizeDomain(base);
  return d !== '' && b !== '' && (d === b || d.endsWith(`.${b}`));
}

/** True when `domain` is one of `domains` or a subdomain of one. */
export function isUnderAny(domain: string, domains: readonly string[]): boolean {
  return domains.some((base) => isUnder(domain, base));
}

/**
 * Relaxed alignment (DMARC's: the same organisational domain) between two domains, decided within a
 * list of registrable domains: both must fall under the same entry. `intl.paypal.com` and
 * `paypal.com` align; `paypal.de` and `paypal.com` do not, although both are PayPal's.
 *
 * This equals the public-suffix definition as long as every entry is a registrable domain (which
 * the config schema cannot prove for `co.uk`-like entries, hence the note in DEFAULT_VENDOR_DOMAINS).
 */
export function alignedWithin(a: string, b: string, domains: readonly string[]): boolean {
  return domains.some((base) => isUnder(a, base) && isUnder(b, base));
}

/** The domain part of an address (`admin@kagi.com` → `kagi.com`), normalised; '' when there is none. */
export function domainOfAddress(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : normalizeDomain(address.slice(at + 1));
}

// ---------------------------------------------------------------------------------------------
// Settings

/** One vendor's settings, defaults merged in. */
export interface VendorAuthSettings {
  /** 'dkim' (the default) checks every message; 'none' accepts any (an explicit, logged choice). */
  readonly auth: 'dkim' | 'none';
  /** Registrable domains the vendor sends from; subdomains count as the domain. */
  readonly domains: readonly string[];
  /** Addresses (`me@seller.example`, that one address) or domains (`seller.example`, any address at it or under it). */
  readonly trustedForwarders: readonly string[];
  /** The vendor's name for reasons: "From not a Kagi domain". */
  readonly label: string;
}

export interface AuthPolicy {
  /** authserv-ids of the seller's own receiving hosts, lower-cased (`mx1.example.net`). */
  readonly trustAuthResults: readonly string[];
  /** Settings for a vendor id; an id never configured gets the built-in defaults. */
  vendor(id: string): VendorAuthSettings;
  /** Time limit of one authenticateSender call in ms (default 10,000); past it the verdict is temporary. */
  readonly timeoutMs?: number;
}

const domainName = z
  .string()
  .trim()
  .toLowerCase()
  .regex(
    /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}\.?$/,
    'must be a domain name such as kagi.com (no @, no wildcard)',
  )
  .transform(normalizeDomain);

const forwarder = z
  .string()
  .trim()
  .toLowerCase()
  .regex(
    /^(?:[^\s@]+@)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}\.?$/,
    'must be an address (me@seller.example) or a domain (seller.example)',
  )
  .transform(normalizeDomain);

/**
 * The authentication keys of `vendors.<id>` (other keys of that object belong to other features and
 * are left alone). Every key is optional; `buildAuthPolicy` fills in the defaults: `auth: dkim`, the
 * built-in domains of the vendor, no trusted forwarders. A `domains` list replaces the built-in one.
 */
export const vendorAuthSchema = z.object({
  auth: z.enum(['dkim', 'none']).optional(),
  domains: z.array(domainName).min(1, 'must list at least one domain').optional(),
  trustedForwarders: z.array(forwarder).optional(),
});

export type VendorAuthConfig = z.output<typeof vendorAuthSchema>;

/**
 * Builds the policy from `vendors:` (raw, per vendor id), `trustAuthResults:` and the parsers'
 * labels. Throws ConfigError naming the key (`vendors.kagi.domains.0: ...`) on a bad value, and for
 * a vendor that would check DKIM against no domain at all (no built-in domains, none configured).
 */
export function buildAuthPolicy(
  vendorsConfig: Record<string, Record<string, unknown>>,
  trustAuthResults: string[],
  labels: Record<string, string>,
): AuthPolicy {
  const trusted = trustAuthResults.map((id, index) => {
    const value = id.trim().toLowerCase();
    if (!/^[^\s;()"]+$/.test(value)) {
      throw new ConfigError(`trustAuthResults.${index}: must be an authserv-id such as mx1.example.net`);
    }
    return value;
  });

  const settings = new Map<string, VendorAuthSettings>();
  const ids = new Set([...Object.keys(labels), ...Object.keys(vendorsConfig)]);
  for (const id of ids) {
    const parsed = vendorAuthSchema.safeParse(vendorsConfig[id] ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const key = ['vendors', id, ...(issue?.path.map(String) ?? [])].join('.');
      throw new ConfigError(`${key}: ${issue?.message ?? 'invalid'}`);
    }
    const vendor = merge(id, parsed.data, labels[id]);
    if (vendor.auth === 'dkim' && vendor.domains.length === 0) {
      throw new ConfigError(
        `vendors.${id}.domains: no built-in domains for ${vendor.label}: ` +
          `list the domains its notifications come from, or set vendors.${id}.auth: none`,
      );
    }
    settings.set(id, vendor);
  }

  return Object.freeze({
    trustAuthResults: Object.freeze(trusted),
    vendor: (id: string): VendorAuthSettings => settings.get(id) ?? merge(id, {}, labels[id]),
  });
}

function merge(id: string, config: VendorAuthConfig, label: string | undefined): VendorAuthSettings {
  return Object.freeze({
    auth: config.auth ?? 'dkim',
    domains: Object.freeze([...(config.domains ?? DEFAULT_VENDOR_DOMAINS[id] ?? [])]),
    trustedForwarders: Object.freeze([...(config.trustedForwarders ?? [])]),
    label: label ?? id,
  });
}
