/**
 * A DNS temporary error while verifying a sale is no verdict: the message waits and is tried
 * again, and goes to review only after an hour of such errors.
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
import { EXAMPLES, tempDir } from './support/cli';
import { fakeDns, signAs } from './support/dkim';

test('a sale whose DKIM key lookup fails temporarily waits, is fulfilled once DNS answers, and goes to review after an hour of failures', async () => {
  const dir = tempDir();
  const loaded = parseConfig(
    `owner: { email: owner@acme.example }
from: "Acme <sales@acme.example>"
products: [{ id: widget-pro, name: Widget Pro, key: "Tq9#vL2!pX7@mR4s", match: ["Widget Pro"] }]
`,
    path.join(dir, 'config.yaml'),
    dir,
  );
  const db = openDatabase(path.join(dir, 'k.db'));
  const store = new Store(db);
  let dnsDown = true;
  const down = fakeDns({ publish: [], temporary: { 'kagi.com': 'ESERVFAIL' } });
  const up = fakeDns({ publish: ['kagi.com'] });
  const context = decideContext(loaded, (name, type) => (dnsDown ? down.resolve(name, type) : up.resolve(name, type)));
  const pipeline = new Pipeline({ loaded, store, renderer: new Renderer(loaded.templatesDir, loaded.config.from), log: createLogger({ level: 'error' }), context });
  const sale = Buffer.from(fs.readFileSync(path.join(EXAMPLES, 'kagi-sale-widget-pro.eml'), 'utf8').replace(/\r?\n/g, '\r\n'));
  const signed = await signAs(sale, 'kagi.com');
  const other = await signAs(Buffer.from(sale.toString().replace(/8811-2046-5537/g, '8811-2046-9999').replace('<20261121234107.58213@kagi.com>', '<20261121234107.99999@kagi.com>')), 'kagi.com');
  try {
    const first = { key: { source: 'imap:INBOX', uidValidity: 1, uid: '1' }, raw: signed };
    assert.equal(await pipeline.process(first), 'defer', 'left in the mailbox for the next pass');
    assert.equal(store.findMessage(first.key)?.state, 'seen');
    assert.equal(store.listOrders().length, 0, 'nothing decided, nothing made');
    dnsDown = false;
    assert.equal(await pipeline.process(first), 'processed');
    assert.equal(store.listOrders()[0]?.state, 'fulfilled');

    dnsDown = true;
    const second = { key: { source: 'imap:INBOX', uidValidity: 1, uid: '2' }, raw: other };
    assert.equal(await pipeline.process(second), 'defer');
    db.prepare(`UPDATE messages SET received_at = ? WHERE uid = '2'`).run(new Date(Date.now() - 61 * 60_000).toISOString());
    assert.equal(await pipeline.process(second), 'review');
    assert.match(store.findMessage(second.key)?.reason ?? '', /temporary errors for over an hour/);
  } finally {
    db.close();
  }
});
