/**
 * A seller who uses Avangate's key generator and also gets 2Checkout's order mails: the same sale
 * must not become a second order with a second buyer mail.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES } from './support/cli';
import { formBody, opensslHmacMd5, signedSource, startHttpApp } from './support/http-app';

const SECRET = 'avangate-test-secret';

test('a 2Checkout mail for an order Avangate already fetched codes for is recorded as a duplicate, not mailed', async () => {
  const running = await startHttpApp(`owner: { email: owner@acme.example }
dropFolder: inbox
outbox: outbox
from: "Acme <sales@acme.example>"
http: { host: 127.0.0.1, port: 8080 }
trustAuthResults: [mx.example.com]
vendors:
  avangate: { secret: "${SECRET}", path: /avangate }
products:
  - { id: widget-pro, name: Widget Pro, key: "0123456789ABCDEF", match: ["WIDGET-PRO", "Widget Pro"] }
  - { id: widget-lite, name: Widget Lite, key: "ABCDEF0123456789", match: ["WIDGET-LITE", "Widget Lite"] }
`);
  try {
    const fields: [string, string][] = [
      ['REFNO', '231875520'], ['PCODE', 'WIDGET-PRO'], ['QUANTITY', '1'], ['TESTORDER', 'NO'],
      ['FIRSTNAME', 'Sam'], ['LASTNAME', 'Ito'], ['EMAIL', 'sam.ito@example.org'],
    ];
    const hash = opensslHmacMd5(SECRET, signedSource(fields.map(([, v]) => v)));
    const answer = await fetch(`${running.url}/avangate`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: formBody([...fields, ['HASH', hash]]),
    });
    assert.equal(answer.status, 200, await answer.clone().text());
    const raw = fs.readFileSync(path.join(FIXTURES, '2checkout', 'sale.eml'));
    const outcome = await running.app.pipeline.process({ key: { source: 'file', uidValidity: 0, uid: 'sale.eml' }, raw });
    assert.equal(outcome, 'processed');
    const rows = running.app.db.prepare(`SELECT vendor, vendor_product FROM orders WHERE vendor_order_id = '231875520' ORDER BY id`).all() as { vendor: string; vendor_product: string }[];
    assert.deepEqual(rows.map((r) => r.vendor), ['avangate', '2checkout'], 'only the item Avangate did not serve (Widget Lite) is a new order');
    const mails = running.app.db.prepare(`SELECT count(*) AS n FROM outbox WHERE kind = 'serial'`).get() as { n: number };
    assert.equal(mails.n, 1, 'one buyer mail: for Widget Lite only');
  } finally {
    await running.close();
  }
});
