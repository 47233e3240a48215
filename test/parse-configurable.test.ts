/**
 * A vendor described in the config: the worked example is a FastSpring custom notification
 * template, the one the README shows.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDocument } from 'yaml';
import { ParseError } from '../src/errors';
import { configurableVendorSchema, createConfigurableParser } from '../src/parse/configurable';
import { toNotification } from '../src/parse/notification';
import type { ParseResult } from '../src/types';

const SETTINGS_YAML = `
senders: [fastspring.com]
subject: "New Order"
labels:
  orderId: Order Reference
  buyerName: Customer
  buyerEmail: Email
  licenseName: License Name
  product: Product
  productCode: Product Path
  quantity: Quantity
  price: Unit Price
itemStart: Product
test: { label: Test Order }
refund: { subject: "Refund" }
`;

const parser = createConfigurableParser('fastspring', configurableVendorSchema.parse(parseDocument(SETTINGS_YAML).toJS()));

const mail = (subject: string, body: string): Buffer =>
  Buffer.from(`From: FastSpring <noreply@fastspring.com>\nSubject: ${subject}\nContent-Type: text/plain; charset=UTF-8\n\n${body}`);

async function parse(subject: string, body: string): Promise<ParseResult> {
  return parser.parse(await toNotification(mail(subject, body)));
}

describe('a vendor described in the config (FastSpring custom template)', () => {
  test('claims mail from its senders and their subdomains only', async () => {
    assert.ok(parser.matches(await toNotification(mail('x', ''))));
    assert.ok(!parser.matches(await toNotification(Buffer.from('From: a@fastspring.com.example.org\n\nx'))));
  });

  test('reads a two-product order as two orders of one buyer', async () => {
    const result = await parse(
      '[Acme] New Order ACM1-2-3',
      'Order Reference: ACM1-2-3\nTest Order: No\nCustomer: Ana Souza\nEmail: ana@example.com\nLicense Name: Souza Design\n\n' +
        'Product: Widget Pro\nProduct Path: widget-pro\nQuantity: 2\nUnit Price: $39.00 USD\n\n' +
        'Product: Widget Lite\nProduct Path: widget-lite\nUnit Price: $15.00 USD\n',
    );
    assert.deepEqual(result, {
      kind: 'orders',
      orders: [
        { vendorOrderId: 'ACM1-2-3', buyerName: 'Ana Souza', buyerEmail: 'ana@example.com', licenseName: 'Souza Design', product: 'Widget Pro', productCode: 'widget-pro', quantity: 2, price: '39.00', currency: 'USD', test: false },
        { vendorOrderId: 'ACM1-2-3', buyerName: 'Ana Souza', buyerEmail: 'ana@example.com', licenseName: 'Souza Design', product: 'Widget Lite', productCode: 'widget-lite', quantity: 1, price: '15.00', currency: 'USD', test: false },
      ],
    });
  });

  test('marks a test order from its Test Order label', async () => {
    const result = await parse('New Order T-1', 'Order Reference: T-1\nTest Order: Yes\nCustomer: QA\nEmail: qa@example.com\nProduct: Widget Pro\n');
    assert.equal(result.kind === 'orders' && result.orders[0]?.test, true);
  });

  test('reads a refund as a refund of the order it names, never as a sale', async () => {
    assert.deepEqual(await parse('Refund for ACM1-2-3', 'Order Reference: ACM1-2-3\nCustomer: Ana\nEmail: ana@example.com\nProduct: Widget Pro\n'), {
      kind: 'refund',
      vendorOrderId: 'ACM1-2-3',
      chargeback: false,
      reason: 'fastspring refund of order ACM1-2-3',
    });
  });

  test('ignores mail from the vendor whose subject is no sale', async () => {
    const result = await parse('Our November newsletter: order more!', 'Customer: you\nEmail: news@fastspring.com\nProduct: all\n');
    assert.equal(result.kind, 'ignore');
  });

  test('a sale without the buyer email is an error naming the label it looked for', async () => {
    await assert.rejects(parse('New Order X-1', 'Order Reference: X-1\nCustomer: Ana\nProduct: Widget Pro\n'), (err: unknown) =>
      err instanceof ParseError && err.message === 'order X-1: no buyer email address under "Email"',
    );
  });

  test('settings are checked: a broken pattern and a missing name are reported by key', () => {
    const result = configurableVendorSchema.safeParse({ senders: ['x.example'], subject: '(', labels: { buyerEmail: 'E', product: 'P' } });
    assert.equal(result.success, false);
    const paths = result.error?.issues.map((i) => i.path.join('.')) ?? [];
    assert.ok(paths.includes('subject'), paths.join());
    assert.ok(paths.includes('labels'), paths.join());
  });
});
