/**
 * Lemon Squeezy: subject "New order #<number> from <name>". The text part is a stub; the HTML part
 * has rows Order (#<number>), Customer, Email, Product, Quantity, Total.
 */
import { ParseError } from '../src/errors';
import { defineParser, sentFrom } from '../src/parse/define-parser';
import { emailIn, firstValue, labelLines, parseMoney, quantityOf, unitPrice } from '../src/parse/labels';
import { bodyText } from '../src/parse/notification';

const SALE = /^New order #(\d+) from (.+)$/i;

export default defineParser({
  id: 'lemonsqueezy',
  label: 'Lemon Squeezy',
  matches: sentFrom('lemonsqueezy.com'),
  parse(n) {
    const lines = labelLines(bodyText(n, 'Order', 'Email'));
    const orderId = firstValue(lines, 'Order')?.replace(/^#/, '') ?? null;
    if (/\bchargeback|\bdispute/i.test(n.subject)) {
      return { kind: 'refund', vendorOrderId: orderId, chargeback: true, reason: `Lemon Squeezy dispute: "${n.subject}"` };
    }
    if (/\brefund/i.test(n.subject)) {
      return { kind: 'refund', vendorOrderId: orderId, chargeback: false, reason: `Lemon Squeezy refund: "${n.subject}"` };
    }
    const sale = SALE.exec(n.subject.trim());
    if (!sale) return { kind: 'ignore', reason: `Lemon Squeezy mail that is not a new order: "${n.subject}"` };
    const where = `order #${sale[1] ?? ''}`;
    if (orderId !== sale[1]) throw new ParseError(`${where}: no "Order" row naming #${sale[1] ?? ''}`);
    const buyerName = firstValue(lines, 'Customer');
    if (!buyerName) throw new ParseError(`${where}: no "Customer" row`);
    const buyerEmail = emailIn(firstValue(lines, 'Email'));
    if (!buyerEmail) throw new ParseError(`${where}: no buyer email address`);
    const product = firstValue(lines, 'Product');
    if (!product) throw new ParseError(`${where}: no "Product" row`);
    const quantity = quantityOf(firstValue(lines, 'Quantity'), where);
    const total = parseMoney(firstValue(lines, 'Total') ?? '');
    return {
      kind: 'orders',
      orders: [
        {
          vendorOrderId: orderId,
          buyerName,
          buyerEmail,
          licenseName: null,
          product,
          productCode: null,
          quantity,
          price: total ? unitPrice(total.amount, quantity) : null,
          currency: total?.currency ?? null,
          test: false,
        },
      ],
    };
  },
});
