/** The owner's daily summary: built from a real database holding every kind of day a seller has. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { simpleParser } from 'mailparser';
import { createLogger } from '../src/log';
import { openDatabase, type Db } from '../src/record/db';
import { Store, type OrderRecord } from '../src/record/store';
import { buildSummary, queueSummary, summarySettingsSchema, type ScheduleDeps } from '../src/schedules';
import { backupSettingsSchema } from '../src/record/backup';

const tempDirs: string[] = [];
/** A fresh directory, removed when the file's tests are done. */
function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

const SINCE = new Date('2025-10-25T06:00:00.000Z'); // 08:00 in Berlin, summer time
const UNTIL = new Date('2025-10-26T07:00:00.000Z'); // 08:00 in Berlin, winter time: a 25-hour day
const IN_WINDOW = '2025-10-25T12:00:00.000Z';

function freshStore(): { db: Db; store: Store } {
  const dir = tempDir('km-summary-');
  const db = openDatabase(path.join(dir, 'keymailer.db'));
  return { db, store: new Store(db) };
}

let seq = 0;
function order(store: Store, fields: Partial<OrderRecord> & { receivedAt?: string; sent?: boolean }): number {
  seq++;
  const state = fields.state ?? 'fulfilled';
  const record: OrderRecord = {
    orderKey: `k${seq}`,
    vendor: 'fastspring',
    vendorOrderId: `FS-${seq}`,
    vendorProduct: 'Widget Pro',
    productId: 'widget-pro',
    buyerName: 'Ann Buyer',
    buyerEmail: `buyer${seq}@example.com`,
    licenseName: null,
    quantity: 1,
    price: '29.95',
    currency: 'USD',
    test: false,
    messageRow: null,
    reason: null,
    serials: state === 'fulfilled' ? ['SERIAL'] : null,
    mail: state === 'fulfilled' ? { kind: 'serial', messageId: `<m${seq}@example.com>`, recipient: `buyer${seq}@example.com`, raw: Buffer.from('mail') } : null,
    ...fields,
    state,
  };
  const { orderId } = store.commitOrder(record);
  const at = fields.receivedAt ?? IN_WINDOW;
  store.db.prepare('UPDATE orders SET received_at = ? WHERE id = ?').run(at, orderId);
  store.db.prepare('UPDATE outbox SET created_at = ? WHERE order_id = ?').run(at, orderId);
  if (fields.sent !== false && state === 'fulfilled') {
    const mail = store.dueMail(100).find((m) => m.order_id === orderId);
    if (mail) store.markSent([mail]);
  }
  return orderId;
}

function message(store: Store, uid: string, state: 'review' | 'refund', vendor: string | null, reason: string, at = IN_WINDOW): void {
  const id = store.recordMessage({ source: 'imap:INBOX', uidValidity: 1, uid }, Buffer.from(uid), `hash-${uid}`, null);
  store.finishMessage(id, state, vendor, reason);
  store.db.prepare('UPDATE messages SET received_at = ?, updated_at = ? WHERE id = ?').run(at, at, id);
}

/** A day with everything: sales in two currencies, a test order, review, a refund, mail trouble. */
function busyDay(): Db {
  const { db, store } = freshStore();
  order(store, {});
  order(store, { quantity: 2 });
  order(store, { vendor: 'paddle', price: '25.00', currency: 'EUR' });
  const waiting = order(store, { vendor: 'paddle', productId: 'gadget', vendorProduct: 'Gadget', quantity: 3, price: '12', currency: 'EUR', sent: false });
  const due = store.dueMail(100).find((m) => m.order_id === waiting);
  if (due) store.markRetry(due, '421 try again later', '2025-10-26T07:30:00.000Z');
  order(store, { vendor: 'gumroad', price: '10.00', test: true });
  order(store, { productId: null, vendorProduct: 'Mystery Box', state: 'review', reason: 'no product matches "Mystery Box"', price: null, vendorOrderId: 'FS-MB' });
  order(store, { price: '100.00', receivedAt: '2025-10-20T10:00:00.000Z' });
  order(store, { state: 'review', reason: 'serial settings: key missing', receivedAt: '2025-10-21T10:00:00.000Z', vendorOrderId: 'FS-OLD' });
  const refused = order(store, { vendor: 'paddle', price: '25.00', currency: 'EUR', sent: false, vendorOrderId: 'PD-BAD' });
  const bad = store.dueMail(100).find((m) => m.order_id === refused);
  if (bad) store.markFailed(bad, '550 5.1.1 no such user');
  db.prepare('UPDATE outbox SET failed_at = ? WHERE order_id = ?').run('2025-10-25T12:01:00.000Z', refused);
  message(store, '501', 'review', null, 'no parser recognises this message');
  message(store, '502', 'review', null, 'duplicate: same message as #1 (imap:INBOX 501): no parser recognises this message');
  message(store, '503', 'refund', 'fastspring', 'refund of FS-1');
  message(store, '504', 'refund', 'fastspring', 'refund of an old order', '2025-10-24T10:00:00.000Z');
  return db;
}

test('a busy day: orders per product and vendor, revenue per currency, review, undelivered', () => {
  const db = busyDay();
  const summary = buildSummary(db, SINCE, UNTIL, 'Europe/Berlin');
  assert.equal(summary.subject, 'keymailer summary: 6 orders, EUR 86.00, USD 89.85 · 4 in review · 2 undelivered');
  assert.equal(
    summary.text,
    [
      'keymailer summary from 2025-10-25 08:00 to 2025-10-26 08:00 (Europe/Berlin)',
      '',
      'Orders: 6 orders, 9 units (and 1 test order, not counted)',
      '  product                    vendor      orders  units  sent  review',
      '  widget-pro                 fastspring       2      3     2       0',
      '  widget-pro                 paddle           2      2     1       1',
      '  (no product: Mystery Box)  fastspring       1      1     0       1',
      '  gadget                     paddle           1      3     0       0',
      '',
      'Revenue (as the vendors reported it, before their fees):',
      '  EUR 86.00',
      '  USD 89.85',
      '  (1 order without a price)',
      '',
      'Refunds and chargebacks received: 1',
      '  2025-10-25 14:00  fastspring  refund of FS-1',
      '',
      'In review, waiting for you: 4',
      '  2025-10-21 12:00  fastspring order FS-OLD  buyer8@example.com  widget-pro: serial settings: key missing',
      '  2025-10-25 14:00  fastspring order FS-MB  buyer6@example.com  Mystery Box: no product matches "Mystery Box"',
      '  2025-10-25 14:00  paddle order PD-BAD  buyer9@example.com  widget-pro: buyer mail refused: 550 5.1.1 no such user',
      '  2025-10-25 14:00  message 501 (imap:INBOX): no parser recognises this message',
      '  After fixing the cause: keymailer --reprocess review',
      '',
      'Buyer mails not delivered: 2',
      '  waiting since 2025-10-25 14:00  serial to buyer4@example.com, 1 attempt: 421 try again later',
      '  given up 2025-10-25 14:01  serial to buyer9@example.com: 550 5.1.1 no such user',
      '',
    ].join('\n'),
  );
  db.close();
});

test('a quiet day says so, and the same window always gives the same text', () => {
  const { db } = freshStore();
  const a = buildSummary(db, SINCE, UNTIL, 'America/New_York');
  const b = buildSummary(db, SINCE, UNTIL, 'America/New_York');
  assert.deepEqual(a, b);
  assert.equal(a.subject, 'keymailer summary: no orders');
  assert.match(a.text, /^keymailer summary from 2025-10-25 02:00 to 2025-10-26 03:00 \(America\/New_York\)\n/);
  assert.match(a.text, /Orders: 0 orders, 0 units\n/);
  assert.match(a.text, /Revenue[^\n]*\n {2}none\n/);
  assert.match(a.text, /In review, waiting for you: nothing\n/);
  assert.match(a.text, /Buyer mails not delivered: none\n$/);
  db.close();
});

test('revenue is exact decimal arithmetic, whatever the number of decimals', () => {
  const { db, store } = freshStore();
  for (let i = 0; i < 10; i++) order(store, { price: '0.10', currency: 'USD' });
  order(store, { price: '3900', currency: 'JPY', quantity: 3 });
  order(store, { price: '1.005', currency: 'BHD' });
  order(store, { price: '0.5', currency: 'BHD', quantity: 2 });
  const { text } = buildSummary(db, SINCE, UNTIL);
  assert.match(text, /\n {2}BHD 2\.005\n {2}JPY 11700\n {2}USD 1\.00\n/);
  db.close();
});

test('long lists are cut with a count of the rest', () => {
  const { db, store } = freshStore();
  for (let i = 0; i < 35; i++) order(store, { state: 'review', reason: 'needs a look', price: null });
  const { text } = buildSummary(db, SINCE, UNTIL);
  assert.equal((text.match(/needs a look/g) ?? []).length, 30);
  assert.match(text, / {2}… and 5 more \(keymailer orders --status review\)\n/);
  db.close();
});

function deps(db: Db): ScheduleDeps {
  return {
    db,
    log: createLogger({ level: 'error', stderr: true }),
    timezone: 'Europe/Berlin',
    owner: 'seller@example.com',
    from: 'Shop <sales@example.com>',
    summary: summarySettingsSchema.parse({}),
    backup: { ...backupSettingsSchema.parse({}), enabled: false },
  };
}

test('the summary mail is queued for the owner once per window, and picks up where the last one ended', async () => {
  const db = busyDay();
  let kicked = 0;
  const d = { ...deps(db), onQueued: () => kicked++ };
  assert.equal(await queueSummary(d, UNTIL), true);
  assert.equal(await queueSummary(d, new Date(UNTIL.getTime() + 30_000)), false, 'a second run moments later mails nothing');
  const rows = db.prepare(`SELECT kind, recipient, raw FROM outbox WHERE kind = 'summary'`).all() as { kind: string; recipient: string; raw: Buffer }[];
  assert.equal(rows.length, 1);
  assert.equal(kicked, 1);
  const mail = await simpleParser(rows[0]?.raw ?? Buffer.alloc(0));
  assert.equal(mail.subject, 'keymailer summary: 6 orders, EUR 86.00, USD 89.85 · 4 in review · 2 undelivered');
  assert.equal(mail.to && !Array.isArray(mail.to) ? mail.to.text : '', 'seller@example.com');
  assert.match(mail.text ?? '', /from 2025-10-25 09:00 to 2025-10-26 08:00 \(Europe\/Berlin\)/, 'the first summary covers 24 hours');
  // The next day's summary starts where this one ended, even though 25 hours passed.
  const next = new Date(UNTIL.getTime() + 25 * 3600_000);
  assert.equal(await queueSummary(d, next), true);
  const texts = (db.prepare(`SELECT raw FROM outbox WHERE kind = 'summary' ORDER BY id`).all() as { raw: Buffer }[]).map((r) => r.raw.toString());
  assert.equal(texts.length, 2);
  const second = await simpleParser(Buffer.from(texts[1] ?? ''));
  assert.match(second.text ?? '', /from 2025-10-26 08:00 to 2025-10-27 09:00 \(Europe\/Berlin\)/);
  db.close();
});
