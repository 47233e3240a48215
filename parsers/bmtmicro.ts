/**
 * BMT Micro: subject "BMT Micro Order <id> - <product> x<qty>", one product per mail. "Label: value"
 * lines for the order, then a "Billing Information" block with the buyer (First Name, Last Name,
 * Company, Email, address).
 */
import { ParseError } from '../src/errors';
import { defineParser, sentFrom } from '../src/parse/define-parser';
import { emailIn, firstValue, fullName, labelLines, parseMoney, quantityOf, yesNo } from '../src/parse/labels';
import { bodyText } from '../src/parse/notification';

const SALE = /^BMT Micro Order (\S+) - (.+) x(\d+)$/i;

export default defineParser({
  id: 'bmtmicro',
  label: 'BMT Micro',
  matches: sentFrom('bmtmicro.com'),
  parse(n) {
    const lines = labelLines(bodyText(n, 'Order ID'));
    const orderId = firstValue(lines, 'Order ID');
    if (/\bchargeback/i.test(n.subject)) {
      return { kind: 'refund', vendorOrderId: orderId, chargeback: true, reason: `BMT Micro chargeback: "${n.subject}"` };
    }
    if (/\brefund/i.test(n.subject)) {
      return { kind: 'refund', vendorOrderId: orderId, chargeback: false, reason: `BMT Micro refund: "${n.subject}"` };
    }
    const sale = SALE.exec(n.subject.trim());
    if (!sale) return { kind: 'ignore', reason: `BMT Micro mail that is not an order: "${n.subject}"` };
    if (!orderId) throw new ParseError(`order ${sale[1] ?? ''}: no "Order ID" line`);
    const where = `order ${orderId}`;
    if (orderId !== sale[1]) throw new ParseError(`${where}: the subject names order ${sale[1] ?? ''}`);
    const product = firstValue(lines, 'Product Name');
    if (!product) throw new ParseError(`${where}: no "Product Name" line`);
    const quantity = quantityOf(firstValue(lines, 'Quantity'), where);
    // The subject and the body are written from the same order; a disagreement means a layout we misread.
    if (String(quantity) !== sale[3]) throw new ParseError(`${where}: quantity ${quantity} in the body, x${sale[3] ?? ''} in the subject`);
    const buyerEmail = emailIn(firstValue(lines, 'Email'));
    if (!buyerEmail) throw new ParseError(`${where}: no buyer email address in the billing information`);
    const buyerName = fullName(firstValue(lines, 'First Name'), firstValue(lines, 'Last Name'));
    if (!buyerName) throw new ParseError(`${where}: no "First Name" or "Last Name" in the billing information`);
    const testText = firstValue(lines, 'Test Order');
    const test = testText === null ? false : yesNo(testText);
    if (test === null) throw new ParseError(`${where}: "Test Order: ${testText}" is neither Yes nor No`);
    const money = parseMoney(firstValue(lines, 'Unit Price') ?? '');
    return {
      kind: 'orders',
      orders: [
        {
          vendorOrderId: orderId,
          buyerName,
          buyerEmail,
          licenseName: firstValue(lines, 'Registration Name'),
          product,
          productCode: firstValue(lines, 'Product ID'),
          quantity,
          price: money?.amount ?? null,
          currency: money?.currency ?? null,
          test,
        },
      ],
    };
  },
});
