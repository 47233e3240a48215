/**
 * Every vendor parser, in the order they are asked. Listed explicitly (no directory scanning), so
 * what runs is what is reviewed; a test fails when a file in parsers/ is missing here.
 */
import bmtmicro from '../../parsers/bmtmicro';
import fastspring from '../../parsers/fastspring';
import gumroad from '../../parsers/gumroad';
import kagi from '../../parsers/kagi';
import lemonsqueezy from '../../parsers/lemonsqueezy';
import paddle from '../../parsers/paddle';
import paypal from '../../parsers/paypal';
import twocheckout from '../../parsers/2checkout';
import { ConfigError } from '../errors';
import type { Notification, VendorParser } from '../types';
import { configurableVendorSchema, createConfigurableParser, isConfigurableVendor } from './configurable';

export const PARSERS: readonly VendorParser[] = [
  kagi,
  fastspring,
  paypal,
  gumroad,
  bmtmicro,
  twocheckout,
  lemonsqueezy,
  paddle,
];

/**
 * The parsers for a config's `vendors:` section: the vendors the seller describes come first (a
 * seller's own template for FastSpring must win over the built-in FastSpring layout, whose id it
 * then takes over), then the built-in ones. Throws ConfigError naming the key that is wrong.
 */
export function buildParsers(
  vendors: Readonly<Record<string, Readonly<Record<string, unknown>>>>,
  builtIn: readonly VendorParser[] = PARSERS,
): VendorParser[] {
  const configured: VendorParser[] = [];
  for (const [id, settings] of Object.entries(vendors)) {
    if (!isConfigurableVendor(settings)) continue;
    const result = configurableVendorSchema.safeParse(settings);
    if (!result.success) {
      const issue = result.error.issues[0];
      const key = ['vendors', id, ...(issue?.path.map(String) ?? [])].join('.');
      throw new ConfigError(`${key}: ${issue?.message ?? 'invalid'}`);
    }
    configured.push(createConfigurableParser(id, result.data));
  }
  const taken = new Set(configured.map((p) => p.id));
  return [...configured, ...builtIn.filter((p) => !taken.has(p.id))];
}

/**
 * The parser that claims a notification. A forwarded notification is claimed by the vendor of the
 * original it carries: whether the forward can be trusted is decide()'s question (authentication).
 */
export function findParser(notification: Notification, parsers: readonly VendorParser[] = PARSERS): VendorParser | null {
  for (const parser of parsers) {
    try {
      if (parser.matches(notification)) return parser;
    } catch {
      // matches() must not throw; one that does simply does not claim the message.
    }
  }
  return null;
}
