/**
 * A stop while a batch of waiting notifications is being worked: the message being read finishes
 * and is committed; the rest of the batch is left where it is and done on the next start, once.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../src/config';
import { decideContext } from '../src/decide';
import { Renderer } from '../src/deliver/render';
import { createLogger } from '../src/log';
import { Pipeline } from '../src/pipeline';
import { openDatabase } from '../src/record/db';
import { Store } from '../src/record/store';
import type { IncomingMessage } from '../src/types';
import { EXAMPLES, tempDir } from './support/cli';

test('a stop during a backlog commits the notification in hand and leaves the rest for the next start', async () => {
  const dir = tempDir();
  const loaded = parseConfig(
    `owner: { email: owner@acme.example }
from: "Acme <sales@acme.example>"
vendors: { kagi: { auth: none } }
products: [{ id: widget-pro, name: Widget Pro, key: "Tq9#vL2!pX7@mR4s", match: ["Widget Pro"] }]
`,
    path.join(dir, 'config.yaml'),
    dir,
  );
  const db = openDatabase(path.join(dir, 'k.db'));
  const store = new Store(db);
  const make = (): Pipeline =>
    new Pipeline({ loaded, store, renderer: new Renderer(loaded.templatesDir, loaded.config.from), log: createLogger({ level: 'error' }), context: decideContext(loaded) });
  const example = fs.readFileSync(path.join(EXAMPLES, 'kagi-sale-widget-pro.eml'), 'utf8');
  const sales: IncomingMessage[] = [1, 2, 3].map((n) => ({
    key: { source: 'imap:INBOX', uidValidity: 1, uid: String(n) },
    raw: Buffer.from(example.replace(/8811-2046-5537/g, `8811-2046-000${n}`).replace('<20261121234107.58213@kagi.com>', `<sale-${n}@kagi.com>`)),
  }));
  try {
    const pipeline = make();
    const working = pipeline.processAll(sales);
    // Reading the first message is under way (parsing is asynchronous) when the stop comes.
    pipeline.stopTaking();
    assert.deepEqual(await working, ['processed', 'defer', 'defer'], 'the first is done; the others stay in the mailbox');
    assert.deepEqual(store.listOrders().map((o) => o.vendor_order_id), ['8811-2046-0001']);
    assert.equal(store.findMessage(sales[1]!.key), undefined, 'nothing recorded for the messages not read');

    const restarted = make();
    assert.deepEqual(await restarted.processAll(sales), ['processed', 'processed', 'processed']);
    assert.deepEqual(store.listOrders().map((o) => o.vendor_order_id), ['8811-2046-0001', '8811-2046-0002', '8811-2046-0003'], 'each order once');
    assert.equal(db.prepare(`SELECT count(*) AS n FROM outbox WHERE kind = 'serial'`).pluck().get(), 3, 'one buyer mail per order');
  } finally {
    db.close();
  }
});
