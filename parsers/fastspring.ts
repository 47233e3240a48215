/**
 * FastSpring: a seller-defined notification template; keymailer reads the layout it documents.
 * Subject "[<Store>] New Order <reference> - <product or N items>". "Label: value" lines (or the
 * HTML alternative's table rows), then either one product (Product, Product Path, Quantity, Unit
 * Price, License Name) or "Items:" followed by numbered blocks ("1) <display name>").
 */
import { ParseError } from '../src/errors';
import { defineParser, sentFrom } from '../src/parse/define-parser';
import {
  emailIn,
  firstValue,
  labelLines,
  parseMoney,
  quantityOf,
  textBlocks,
  yesNo,
  type LabelLine,
} from '../src/parse/labels';
import { bodyText } from '../src/parse/notification';
import type { ParsedOrder } from '../src/types';

const ITEM_HEADING = /^\s*(\d+)\)\s+(\S.*)$/;

export default defineParser({
  id: 'fastspring',
  label: 'FastSpring',
  matches: sentFrom('fastspring.com'),
  parse(n) {
    const text = bodyText(n, 'Order Reference');
    const reference = firstValue(labelLines(text), 'Order Reference') ?? /\bOrder\s+([A-Z0-9]+-\d+-\d+)/i.exec(n.subject)?.[1] ?? null;
    if (/\bchargeback|\bdispute/i.test(n.subject)) {
      return { kind: 'refund', vendorOrderId: reference, chargeback: true, reason: `FastSpring chargeback: "${n.subject}"` };
    }
    if (/\brefund/i.test(n.subject)) {
      return { kind: 'refund', vendorOrderId: reference, chargeback: false, reason: `FastSpring refund: "${n.subject}"` };
    }
    if (!/\bNew Order\b/i.test(n.subject)) {
      return { kind: 'ignore', reason: `FastSpring mail that is not a new order: "${n.subject}"` };
    }
    if (!reference) throw new ParseError('a new order without an "Order Reference" line');
    const where = `order ${reference}`;
    // Numbered items only count after "Items:": a "1) ..." line elsewhere is prose.
    const items = /^[ \t]*Items:[ \t]*$/m.exec(text);
    const headerText = items ? text.slice(0, items.index) : text;
    const itemsText = items ? text.slice(items.index + items[0].length) : undefined;
    const header = labelLines(headerText);
    const blocks = itemsText === undefined ? [] : textBlocks(itemsText, ITEM_HEADING).blocks;
    if (itemsText !== undefined && blocks.length === 0) throw new ParseError(`${where}: "Items:" without numbered items`);
    const buyerName = firstValue(header, 'Customer');
    if (!buyerName) throw new ParseError(`${where}: no "Customer" line`);
    const buyerEmail = emailIn(firstValue(header, 'Email'));
    if (!buyerEmail) throw new ParseError(`${where}: no buyer email address`);
    const testText = firstValue(header, 'Test Order');
    const test = testText === null ? false : yesNo(testText);
    if (test === null) throw new ParseError(`${where}: "Test Order: ${testText}" is neither Yes nor No`);
    const item = (product: string, lines: readonly LabelLine[]): ParsedOrder => {
      const money = parseMoney(firstValue(lines, 'Unit Price') ?? '');
      return {
        vendorOrderId: reference,
        buyerName,
        buyerEmail,
        licenseName: firstValue(lines, 'License Name') ?? firstValue(header, 'License Name'),
        product,
        productCode: firstValue(lines, 'Product Path'),
        quantity: quantityOf(firstValue(lines, 'Quantity'), where),
        price: money?.amount ?? null,
        currency: money?.currency ?? null,
        test,
      };
    };
    if (blocks.length > 0) return { kind: 'orders', orders: blocks.map((b) => item((b.heading[2] ?? '').trim(), labelLines(b.text))) };
    const product = firstValue(header, 'Product');
    if (!product) throw new ParseError(`${where}: neither a "Product" line nor numbered items`);
    return { kind: 'orders', orders: [item(product, header)] };
  },
});
