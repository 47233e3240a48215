/**
 * PayPal: "Notification of payment received", from paypal.com or a country domain. A label line
 * followed by its value lines (`Buyer` / name / email; older layouts write `Buyer:`), and one block
 * per item: title, `Item# <id>`, unit price, quantity, line total, one per line.
 */
import { ParseError } from '../src/errors';
import { defineParser, sentFrom } from '../src/parse/define-parser';
import { emailIn, firstLine, firstValue, labelLines, parseMoney, quantityOf } from '../src/parse/labels';
import { bodyText } from '../src/parse/notification';
import type { ParsedOrder } from '../src/types';

const KNOWN = ['Buyer', 'Transaction ID', 'Transaction date', 'Note to seller'];
const ITEM_ID = /^\s*Item\s*#\s*(.*?)\s*$/i;
const TRANSACTION_ID = /^[A-Z0-9]{17}$/;

export default defineParser({
  id: 'paypal',
  label: 'PayPal',
  matches: sentFrom(
    'paypal.com', 'paypal.de', 'paypal.es', 'paypal.fr', 'paypal.it', 'paypal.nl', 'paypal.co.uk',
    'paypal.com.au', 'paypal.ca', 'paypal.at', 'paypal.ch', 'paypal.be', 'paypal.pl', 'paypal.jp',
  ),
  parse(n) {
    const text = bodyText(n, ...KNOWN);
    const lines = labelLines(text, KNOWN);
    const transactionId = firstValue(lines, 'Transaction ID');
    if (/\bdispute|\bchargeback|\breversal|\bopened a (?:case|claim)\b/i.test(n.subject)) {
      return { kind: 'refund', vendorOrderId: transactionId, chargeback: true, reason: `PayPal dispute: "${n.subject}"` };
    }
    if (/\brefund/i.test(n.subject)) {
      return { kind: 'refund', vendorOrderId: transactionId, chargeback: false, reason: `PayPal refund: "${n.subject}"` };
    }
    if (!/notification of payment received/i.test(n.subject)) {
      return { kind: 'ignore', reason: `PayPal mail that is not a payment notification: "${n.subject}"` };
    }
    if (!transactionId) throw new ParseError('payment without a "Transaction ID"');
    const where = `transaction ${transactionId}`;
    if (!TRANSACTION_ID.test(transactionId)) throw new ParseError(`${where}: not a 17-character transaction id`);
    const buyer = firstLine(lines, 'Buyer')?.values ?? [];
    const buyerEmail = buyer.map(emailIn).find((e) => e !== null) ?? null;
    if (!buyerEmail) throw new ParseError(`${where}: no buyer email address under "Buyer"`);
    const buyerName = buyer.find((v) => emailIn(v) === null);
    if (!buyerName) throw new ParseError(`${where}: no buyer name under "Buyer"`);

    const rows = text.split(/\r?\n/).map((l) => l.trim());
    const orders: ParsedOrder[] = [];
    rows.forEach((row, i) => {
      const itemId = ITEM_ID.exec(row);
      if (!itemId) return;
      const before = rows.slice(0, i).filter((r) => r !== '');
      const after = rows.slice(i + 1).filter((r) => r !== '');
      const title = before[before.length - 1];
      const [unit, quantity, total] = after;
      if (!title || unit === undefined || quantity === undefined || total === undefined) {
        throw new ParseError(`${where}: item "${row}" is not followed by unit price, quantity and amount`);
      }
      const money = parseMoney(unit);
      if (!money || !parseMoney(total)) {
        throw new ParseError(`${where}: item "${title}" has no price where its unit price and amount should be`);
      }
      orders.push({
        vendorOrderId: transactionId,
        buyerName,
        buyerEmail,
        licenseName: null,
        product: title,
        productCode: itemId[1] || null,
        quantity: quantityOf(quantity, where),
        price: money.amount,
        currency: money.currency,
        test: false,
      });
    });
    if (orders.length === 0) throw new ParseError(`${where}: no "Item#" line, so no product`);
    return { kind: 'orders', orders };
  },
});
