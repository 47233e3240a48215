/**
 * Kagi: the seller receives a copy of the buyer's payment acknowledgement, plain text,
 * "Label: value" lines, one block per product starting at "Product Name".
 */
import { ParseError } from '../src/errors';
import { defineParser } from '../src/parse/define-parser';
import { firstValue, labelLines, parseMoney, splitBlocks } from '../src/parse/labels';
import type { ParsedOrder } from '../src/types';

const SENDERS = /@(?:[a-z0-9-]+\.)*kagi\.com$/;

export default defineParser({
  id: 'kagi',
  label: 'Kagi',
  matches: (n) => SENDERS.test(n.fromAddress),
  parse(n) {
    if (!/payment acknowledgement/i.test(n.subject)) {
      return { kind: 'ignore', reason: `Kagi mail that is not a payment acknowledgement: "${n.subject}"` };
    }
    const { header, blocks } = splitBlocks(labelLines(n.text), 'Product Name');
    const transactionId = firstValue(header, 'Kagi Transaction ID', 'Transaction ID');
    if (!transactionId) throw new ParseError('Kagi acknowledgement without a "Kagi Transaction ID" line');
    const buyerName = firstValue(header, 'Purchaser Name');
    if (!buyerName) throw new ParseError(`Kagi order ${transactionId}: no "Purchaser Name"`);
    const buyerEmail = firstValue(header, 'Purchaser Email');
    if (!buyerEmail || !buyerEmail.includes('@')) {
      throw new ParseError(`Kagi order ${transactionId}: no buyer email address, the serial must be delivered by hand`);
    }
    if (blocks.length === 0) throw new ParseError(`Kagi order ${transactionId}: no "Product Name" line`);
    const orders = blocks.map((block): ParsedOrder => {
      const product = firstValue(block, 'Product Name') ?? '';
      const quantityText = firstValue(block, 'Quantity Ordered', 'Quantity') ?? '1';
      const quantity = Number(quantityText);
      if (!Number.isInteger(quantity) || quantity < 1) {
        throw new ParseError(`Kagi order ${transactionId}: quantity "${quantityText}" is not a whole number`);
      }
      const money = parseMoney(firstValue(block, 'Unit Payment', 'Total') ?? '');
      return {
        vendorOrderId: transactionId,
        buyerName,
        buyerEmail: buyerEmail.toLowerCase(),
        licenseName: firstValue(block, 'Registration Name') ?? firstValue(header, 'Registration Name'),
        product,
        productCode: firstValue(block, 'Product ID'),
        quantity,
        price: money?.amount ?? null,
        currency: money?.currency ?? null,
        test: false,
      };
    });
    return { kind: 'orders', orders };
  },
});
