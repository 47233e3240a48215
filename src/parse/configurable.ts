/**
 * A parser built from settings, for a vendor keymailer has no file for (or a seller's own
 * notification template): `vendors.<id>` in the config, read with the same machinery as the
 * built-in parsers. Example (a FastSpring custom template):
 *
 *   vendors:
 *     fastspring:
 *       senders: [fastspring.com]
 *       subject: "New Order"
 *       labels:
 *         orderId: Order Reference
 *         buyerName: Customer
 *         buyerEmail: Email
 *         licenseName: License Name
 *         product: Product
 *         productCode: Product Path
 *         quantity: Quantity
 *         price: Unit Price
 *       itemStart: Product
 *       test: { label: Test Order }
 *       refund: { subject: "Refund" }
 */
import { z } from 'zod';
import { ParseError } from '../errors';
import type { Notification, ParseResult, ParsedOrder, VendorParser } from '../types';
import { defineParser } from './define-parser';
import {
  emailIn,
  firstValue,
  fullName,
  labelLines,
  parseMoney,
  quantityOf,
  splitBlocks,
  yesNo,
  type LabelLine,
} from './labels';
import { bodyText } from './notification';

const nonEmpty = z.string().trim().min(1, 'must not be empty');

/** One label or several spellings of it; the first one present wins. */
const labelNames = z
  .union([nonEmpty, z.array(nonEmpty).min(1, 'must list at least one label')], {
    error: 'must be a label, or a list of labels',
  })
  .transform((v) => (Array.isArray(v) ? v : [v]));

const pattern = nonEmpty.superRefine((text, ctx) => {
  try {
    new RegExp(text, 'i');
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `is not a valid regular expression: ${(err as Error).message}` });
  }
});

/** What marks a test order, a refund or a chargeback; any one of the given signs is enough. */
const marker = z
  .object({
    /** A regular expression (case-insensitive) the subject matches. */
    subject: pattern.optional(),
    /** A phrase the body contains (case-insensitive). */
    text: nonEmpty.optional(),
    /** A label whose value is yes, true or 1. */
    label: nonEmpty.optional(),
  })
  .strict()
  .refine((m) => m.subject !== undefined || m.text !== undefined || m.label !== undefined, {
    message: 'must give at least one of subject, text or label',
  });

/** An address (`orders@vendor.com`) or a domain (`vendor.com`, any address at it or its subdomains). */
const sender = nonEmpty
  .transform((s) => s.toLowerCase().replace(/^@/, ''))
  .refine((s) => /^[^\s@]+@[^\s@]+\.[^\s@]+$|^[^\s@]+\.[^\s@]+$/.test(s), {
    message: 'must be an address (orders@vendor.com) or a domain (vendor.com)',
  });

// Not strict at the top: `vendors.<id>` also holds other features' keys (auth, domains,
// trustedForwarders), which are theirs to check. Nested objects are strict, so a typo there is named.
export const configurableVendorSchema = z
  .object({
    /** The name in review reasons; the id by default. */
    label: nonEmpty.optional(),
    senders: z.array(sender).min(1, 'must list at least one sender address or domain'),
    /** A regular expression (case-insensitive) a sale's subject matches; other mail from the senders is ignored. */
    subject: pattern.optional(),
    labels: z
      .object({
        orderId: labelNames.optional(),
        buyerName: labelNames.optional(),
        buyerFirstName: labelNames.optional(),
        buyerLastName: labelNames.optional(),
        buyerEmail: labelNames,
        licenseName: labelNames.optional(),
        product: labelNames,
        productCode: labelNames.optional(),
        quantity: labelNames.optional(),
        price: labelNames.optional(),
        currency: labelNames.optional(),
      })
      .strict()
      .refine((l) => l.buyerName !== undefined || (l.buyerFirstName !== undefined && l.buyerLastName !== undefined), {
        message: 'must give buyerName, or both buyerFirstName and buyerLastName',
      }),
    /** The label that starts each item of a multi-item order; without it a mail is one item. */
    itemStart: nonEmpty.optional(),
    test: marker.optional(),
    refund: marker.optional(),
    chargeback: marker.optional(),
  });

export type ConfigurableVendor = z.output<typeof configurableVendorSchema>;
type Marker = NonNullable<ConfigurableVendor['test']>;

/** A `vendors.<id>` entry describes a configurable parser when it has labels; other entries are other settings (e.g. avangate's signed POSTs). */
export function isConfigurableVendor(settings: Readonly<Record<string, unknown>>): boolean {
  return 'labels' in settings;
}

/** A currency label's value when it is an ISO code (SEK); "kr" says too little to be one. */
function isoCurrency(value: string | null): string | null {
  const code = value?.trim().toUpperCase() ?? '';
  return /^[A-Z]{3}$/.test(code) ? code : null;
}

function senderMatches(senders: readonly string[], address: string): boolean {
  const domain = address.slice(address.lastIndexOf('@') + 1);
  return senders.some((s) => (s.includes('@') ? s === address : domain === s || domain.endsWith(`.${s}`)));
}

function marked(m: Marker | undefined, n: Notification, lines: readonly LabelLine[]): boolean {
  if (!m) return false;
  if (m.subject !== undefined && new RegExp(m.subject, 'i').test(n.subject)) return true;
  if (m.text !== undefined && n.text.toLowerCase().includes(m.text.toLowerCase())) return true;
  return m.label !== undefined && yesNo(firstValue(lines, m.label)) === true;
}

export function createConfigurableParser(id: string, settings: ConfigurableVendor): VendorParser {
  const label = settings.label ?? id;
  const l = settings.labels;
  // Every label the settings name, so a label line above its value is read in any of them.
  const known = [
    ...Object.values(l).flat(),
    settings.itemStart,
    settings.test?.label,
    settings.refund?.label,
    settings.chargeback?.label,
  ].filter((v): v is string => typeof v === 'string');
  return defineParser({
    id,
    label,
    matches: (n) => senderMatches(settings.senders, n.fromAddress),
    parse(n): ParseResult {
      const text = bodyText(n, ...known);
      const lines = labelLines(text, known);
      const orderId = l.orderId ? firstValue(lines, ...l.orderId) : null;
      const withText = { ...n, text };
      const of = orderId === null ? 'an order it does not name' : `order ${orderId}`;
      if (marked(settings.chargeback, withText, lines)) {
        return { kind: 'refund', vendorOrderId: orderId, chargeback: true, reason: `${label} chargeback of ${of}` };
      }
      if (marked(settings.refund, withText, lines)) {
        return { kind: 'refund', vendorOrderId: orderId, chargeback: false, reason: `${label} refund of ${of}` };
      }
      if (settings.subject !== undefined && !new RegExp(settings.subject, 'i').test(n.subject)) {
        return { kind: 'ignore', reason: `${label} mail that is not a sale: "${n.subject}"` };
      }
      const { header, blocks } = settings.itemStart
        ? splitBlocks(lines, settings.itemStart)
        : { header: [], blocks: [lines] };
      if (blocks.length === 0) throw new ParseError(`no "${settings.itemStart ?? ''}" line starts an item`);
      const test = marked(settings.test, withText, lines);
      const where = orderId === null ? 'sale' : `order ${orderId}`;
      const value = (block: readonly LabelLine[], names: readonly string[] | undefined): string | null =>
        names ? (firstValue(block, ...names) ?? firstValue(header, ...names)) : null;
      const orders = blocks.map((block): ParsedOrder => {
        const buyerEmail = emailIn(value(block, l.buyerEmail));
        if (!buyerEmail) throw new ParseError(`${where}: no buyer email address under "${l.buyerEmail.join('" or "')}"`);
        const product = value(block, l.product);
        if (!product) throw new ParseError(`${where}: no product under "${l.product.join('" or "')}"`);
        const buyerName = value(block, l.buyerName) ?? fullName(value(block, l.buyerFirstName), value(block, l.buyerLastName));
        if (!buyerName) throw new ParseError(`${where}: no buyer name`);
        const money = parseMoney(value(block, l.price) ?? '');
        return {
          vendorOrderId: orderId,
          buyerName,
          buyerEmail,
          licenseName: value(block, l.licenseName),
          product,
          productCode: value(block, l.productCode),
          quantity: quantityOf(value(block, l.quantity), where),
          price: money?.amount ?? null,
          currency: isoCurrency(value(block, l.currency)) ?? money?.currency ?? null,
          test,
        };
      });
      return { kind: 'orders', orders };
    },
  });
}
