/**
 * Kagi: the seller receives a copy of the buyer's payment acknowledgement, plain text,
 * "Label: value" lines, one block per product starting at "Product Name". Each product blurb ends
 * with "SQNM-<name> <number>", Kagi's per-product sequence number.
 */
import { ParseError } from '../src/errors';
import { defineParser, sentFrom } from '../src/parse/define-parser';
import { emailIn, firstValue, labelLines, parseMoney, quantityOf, splitBlocks } from '../src/parse/labels';
import { bodyText } from '../src/parse/notification';
import type { ParsedOrder } from '../src/types';

export default defineParser({
  id: 'kagi',
  label: 'Kagi',
  matches: sentFrom('kagi.com'),
  parse(n) {
    if (!/payment acknowledgement/i.test(n.subject)) {
      return { kind: 'ignore', reason: `Kagi mail that is not a payment acknowledgement: "${n.subject}"` };
    }
    const text = bodyText(n, 'Kagi Transaction ID');
    const { header, blocks } = splitBlocks(labelLines(text), 'Product Name');
    const transactionId = firstValue(header, 'Kagi Transaction ID', 'Transaction ID');
    if (!transactionId) throw new ParseError('acknowledgement without a "Kagi Transaction ID" line');
    const where = `order ${transactionId}`;
    const buyerName = firstValue(header, 'Purchaser Name');
    if (!buyerName) throw new ParseError(`${where}: no "Purchaser Name"`);
    const buyerEmail = emailIn(firstValue(header, 'Purchaser Email'));
    if (!buyerEmail) throw new ParseError(`${where}: no buyer email address, the serial must be delivered by hand`);
    if (blocks.length === 0) throw new ParseError(`${where}: no "Product Name" line`);
    const sequences = sequenceNumbers(text);
    const orders = blocks.map((block, index): ParsedOrder => {
      const money = parseMoney(firstValue(block, 'Unit Payment', 'Total') ?? '');
      const product = firstValue(block, 'Product Name') ?? '';
      // Each blurb ends with its product's SQNM line; matched by name, else by position.
      const sequence = sequences.find((s) => s.series === product) ?? (sequences.length === blocks.length ? sequences[index] : undefined);
      return {
        vendorOrderId: transactionId,
        buyerName,
        buyerEmail,
        licenseName: firstValue(block, 'Registration Name') ?? firstValue(header, 'Registration Name'),
        product,
        productCode: firstValue(block, 'Product ID'),
        quantity: quantityOf(firstValue(block, 'Quantity Ordered', 'Quantity'), where),
        price: money?.amount ?? null,
        currency: money?.currency ?? null,
        test: false,
        ...(sequence ? { sequence } : {}),
      };
    });
    return { kind: 'orders', orders };
  },
});

/** Every "SQNM-<name> <number>" line, in order. */
function sequenceNumbers(text: string): { series: string; number: number }[] {
  return [...text.matchAll(/^SQNM-(.+?)\s+(\d{1,9})\s*$/gm)].map((m) => ({ series: (m[1] ?? '').trim(), number: Number(m[2]) }));
}
