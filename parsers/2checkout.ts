/**
 * 2Checkout (Avangate): "Label: value" lines with the order (REFNO, ORDERNO, status), a Customer
 * block and a Products block of one or more "Product:" entries. Test orders carry "[TEST]" in the
 * subject and a "*** TEST ORDER ***" line. The order status decides what the mail is.
 */
import { ParseError } from '../src/errors';
import { defineParser, sentFrom } from '../src/parse/define-parser';
import { emailIn, firstValue, fullName, labelLines, parseMoney, quantityOf, splitBlocks } from '../src/parse/labels';
import { bodyText } from '../src/parse/notification';
import type { ParsedOrder } from '../src/types';

const REFNO = ['Order reference (REFNO)', 'Order reference', 'REFNO'];

export default defineParser({
  id: '2checkout',
  label: '2Checkout',
  matches: sentFrom('2checkout.com', 'avangate.com'),
  parse(n) {
    const text = bodyText(n, ...REFNO);
    const { header, blocks } = splitBlocks(labelLines(text), 'Product');
    const refno = firstValue(header, ...REFNO);
    const status = firstValue(header, 'Order status')?.toUpperCase() ?? null;
    if (!refno) {
      return { kind: 'ignore', reason: `2Checkout mail without an order reference: "${n.subject}"` };
    }
    const where = `order ${refno}`;
    switch (status) {
      case 'COMPLETE':
        break;
      case 'REFUND':
        return { kind: 'refund', vendorOrderId: refno, chargeback: false, reason: `2Checkout ${where} refunded` };
      case 'REVERSED':
      case 'CHARGEBACK':
        return { kind: 'refund', vendorOrderId: refno, chargeback: true, reason: `2Checkout ${where} reversed (chargeback)` };
      case 'CANCELED':
        return { kind: 'ignore', reason: `2Checkout ${where} was canceled before payment` };
      case null:
        throw new ParseError(`${where}: no "Order status" line`);
      default:
        throw new ParseError(`${where}: status "${status}" is not COMPLETE; fulfil it by hand once paid`);
    }
    const buyerEmail = emailIn(firstValue(header, 'Email'));
    if (!buyerEmail) throw new ParseError(`${where}: no buyer email address`);
    const buyerName = fullName(firstValue(header, 'First name'), firstValue(header, 'Last name'));
    if (!buyerName) throw new ParseError(`${where}: no "First name" or "Last name"`);
    if (blocks.length === 0) throw new ParseError(`${where}: no "Product:" line`);
    const test = /\[TEST\]/i.test(n.subject) || /^\s*\*+\s*TEST ORDER\s*\*+\s*$/im.test(text);
    const orders = blocks.map((block): ParsedOrder => {
      const money = parseMoney(firstValue(block, 'Price') ?? '');
      return {
        vendorOrderId: refno,
        buyerName,
        buyerEmail,
        licenseName: null,
        product: firstValue(block, 'Product') ?? '',
        productCode: firstValue(block, 'Product code'),
        quantity: quantityOf(firstValue(block, 'Quantity'), where),
        price: money?.amount ?? null,
        currency: money?.currency ?? null,
        test,
      };
    });
    return { kind: 'orders', orders };
  },
});
