/**
 * Gumroad: HTML only. Subject "New sale of <product> for <price>" (also "New download of",
 * "New pre-order of"); the price in an <h1>, then table rows Quantity (only when above 1),
 * Customer, Email, Variant, Referrer and custom fields. No order id: identity falls back to the
 * message. Test sales say so in a sentence; refunds and disputes have their own subjects.
 */
import { ParseError } from '../src/errors';
import { defineParser, sentFrom } from '../src/parse/define-parser';
import { emailIn, firstValue, labelLines, parseMoney, quantityOf, unitPrice } from '../src/parse/labels';
import { bodyText } from '../src/parse/notification';

const SALE = /^New (sale|pre-order|download) of (.+?)(?: for (\S+))?$/i;
const TEST_SALE = /because this was a test sale/i;

export default defineParser({
  id: 'gumroad',
  label: 'Gumroad',
  matches: sentFrom('gumroad.com'),
  parse(n) {
    const subject = n.subject.trim();
    const text = bodyText(n, 'Email', 'Customer');
    const lines = labelLines(text);
    const about = (): string => {
      const product = firstValue(lines, 'Product');
      const email = emailIn(firstValue(lines, 'Email', 'Customer email'));
      return [product && `of "${product}"`, email && `to ${email}`].filter(Boolean).join(' ');
    };
    if (/^A dispute has been won/i.test(subject)) {
      return { kind: 'ignore', reason: `Gumroad dispute won: the sale stands ("${subject}")` };
    }
    if (/disputed|^A dispute has been lost/i.test(subject)) {
      return { kind: 'refund', vendorOrderId: null, chargeback: true, reason: `Gumroad chargeback of a sale ${about()}`.trim() };
    }
    if (/refunded/i.test(subject)) {
      return { kind: 'refund', vendorOrderId: null, chargeback: false, reason: `Gumroad refund of a sale ${about()}`.trim() };
    }
    const sale = SALE.exec(subject);
    if (!sale?.[2]) return { kind: 'ignore', reason: `Gumroad mail that is not a sale: "${subject}"` };
    const product = sale[2];
    const where = `sale of "${product}"`;
    const buyerEmail = emailIn(firstValue(lines, 'Email'));
    if (!buyerEmail) throw new ParseError(`${where}: no "Email" row with the buyer's address`);
    const buyerName = firstValue(lines, 'Customer');
    if (!buyerName) throw new ParseError(`${where}: no "Customer" row, so no name to license`);
    const quantity = quantityOf(firstValue(lines, 'Quantity'), where);
    // The subject's price is what the buyer paid for all units.
    const total = sale[3] === undefined ? null : parseMoney(sale[3]);
    return {
      kind: 'orders',
      orders: [
        {
          vendorOrderId: null,
          buyerName,
          buyerEmail,
          licenseName: null,
          product,
          // Gumroad names no product code; a Variant ("Team") is no product of its own.
          productCode: null,
          quantity,
          price: total ? unitPrice(total.amount, quantity) : null,
          currency: total?.currency ?? null,
          test: TEST_SALE.test(text),
        },
      ],
    };
  },
});
