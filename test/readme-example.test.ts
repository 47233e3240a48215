/** The README's worked example of a vendor described in the config reads what it promises. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT, runCli, tempDir } from './support/cli';

test('the README\'s FastSpring custom template example turns the shown notification into the shown order', async () => {
  const readme = fs.readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('Worked example: FastSpring'));
  const blocks = [...section.matchAll(/```(\w*)\n([\s\S]*?)```/g)];
  const notification = blocks[0]?.[2] ?? '';
  const vendors = blocks[1]?.[2] ?? '';
  assert.match(vendors, /^vendors:/);
  const dir = tempDir();
  const config = path.join(dir, 'config.yaml');
  // The example's own lines, plus a product; the notification is unsigned here, hence auth: none.
  fs.writeFileSync(
    config,
    `owner: { email: o@example.com }\nfrom: "A <a@example.com>"\nproducts: [{ id: widget-pro, name: Widget Pro, key: "0123456789ABCDEF", match: ["widget-pro"] }]\n${vendors.replace('    senders:', '    auth: none\n    senders:')}`,
  );
  const eml = path.join(dir, 'order.eml');
  const subject = notification.split('\n')[0] ?? '';
  fs.writeFileSync(eml, `From: FastSpring <noreply@fastspring.com>\r\nTo: s@example.com\r\nSubject: ${subject}\r\nMessage-ID: <x1@fastspring.com>\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n${notification.replace(/\n/g, '\r\n')}`);
  const run = await runCli(['parse', eml, '--config', config]);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as { action: string; orders: Record<string, unknown>[] };
  assert.equal(result.action, 'fulfill');
  assert.deepEqual(result.orders[0], {
    orderId: 'ABC261119-1234-56789', buyerName: 'Sofia Lindqvist', buyerEmail: 'sofia@example.se',
    licenseName: 'Lindqvist Design AB', product: 'Widget Pro', productCode: 'widget-pro', quantity: 1,
    price: '29.00', currency: 'USD', test: false, productId: 'widget-pro',
  });
});
