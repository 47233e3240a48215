/**
 * The whole path without any server: notifications dropped as .eml files, buyer mails written as
 * .eml files, orders in SQLite. Runs the real compiled CLI.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { simpleParser } from 'mailparser';
import { EXAMPLES, referenceSerial, runCli, startDaemon, tempDir } from './support/cli';

const KEY = 'Tq9#vL2!pX7@mR4s';

function setUp(): { dir: string; config: string; inbox: string; outbox: string; db: string } {
  const dir = tempDir();
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(
    config,
    `database: state/orders.db
owner: { email: owner@example.com }
dropFolder: inbox
outbox: outbox
from: "Acme Software <sales@acme.example>"
vendors: { kagi: { auth: none } }
products:
  - id: widget-pro
    name: Widget Pro
    key: "${KEY}"
    match: ["Widget Pro"]
`,
  );
  const inbox = path.join(dir, 'inbox');
  fs.mkdirSync(inbox);
  return { dir, config, inbox, outbox: path.join(dir, 'outbox'), db: path.join(dir, 'state', 'orders.db') };
}

function drop(inbox: string, example: string, as = example): void {
  fs.copyFileSync(path.join(EXAMPLES, example), path.join(inbox, as));
}

async function buyerMails(outbox: string): Promise<{ to: string; text: string; html: string; messageId: string }[]> {
  if (!fs.existsSync(outbox)) return [];
  // Owner alerts land in the same folder; a buyer mail is anything else.
  const names = fs.readdirSync(outbox).filter((n) => n.endsWith('.eml') && !n.startsWith('alert-')).sort();
  return Promise.all(
    names.map(async (n) => {
      const mail = await simpleParser(fs.readFileSync(path.join(outbox, n)));
      const to = Array.isArray(mail.to) ? mail.to[0] : mail.to;
      return { to: to?.value[0]?.address ?? '', text: mail.text ?? '', html: typeof mail.html === 'string' ? mail.html : '', messageId: mail.messageId ?? '' };
    }),
  );
}

function orders(db: string): { vendor_order_id: string; state: string; buyer_email: string; serials: string; sent_at: string | null }[] {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare('SELECT vendor_order_id, state, buyer_email, serials, sent_at FROM orders ORDER BY vendor_order_id').all() as never;
  } finally {
    conn.close();
  }
}

/** The example Kagi sale as another order: its own transaction id, Message-ID and SQNM number. */
function kagiSale(sequence: number, transactionId: string): string {
  return fs
    .readFileSync(path.join(EXAMPLES, 'kagi-sale-widget-pro.eml'), 'utf8')
    .replace(/8811-2046-5537/g, transactionId)
    .replace('<20261121234107.58213@kagi.com>', `<${transactionId}@kagi.com>`)
    .replace('SQNM-Widget Pro 1042', `SQNM-Widget Pro ${sequence}`);
}

/** Subjects of the owner alerts about notifications that never arrived. */
function missingAlerts(db: string): string[] {
  const conn = new Database(db, { readonly: true });
  try {
    return (conn.prepare(`SELECT subject FROM alerts WHERE kind = 'missing-notification' ORDER BY id`).all() as { subject: string }[]).map((r) => r.subject);
  } finally {
    conn.close();
  }
}

describe('drop folder and outbox files', () => {
  test('a Kagi sale dropped in the folder gives the buyer a mail with the serial of their registration name', async () => {
    const s = setUp();
    drop(s.inbox, 'kagi-sale-widget-pro.eml');
    const run = await runCli(['--once', '--config', s.config]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const mails = await buyerMails(s.outbox);
    assert.equal(mails.length, 1);
    assert.equal(mails[0]?.to, 'marie.dubois@example.net');
    const serial = referenceSerial(KEY, 'Marie Dubois');
    assert.match(mails[0]?.text ?? '', new RegExp(`Serial: ${serial}`));
    assert.ok(mails[0]?.html.includes(serial), 'the HTML part carries the serial too');
    assert.deepEqual(fs.readdirSync(path.join(s.inbox, 'processed')), ['kagi-sale-widget-pro.eml']);
    const [order] = orders(s.db);
    assert.equal(order?.state, 'sent');
    assert.equal(order?.vendor_order_id, '8811-2046-5537');
    assert.deepEqual(JSON.parse(order?.serials ?? '[]'), [serial]);
    assert.ok(order?.sent_at);
  });

  test('the serial is made from the registration name, not the buyer name, with UTF-8 intact', async () => {
    const s = setUp();
    drop(s.inbox, 'kagi-sale-company-license.eml');
    assert.equal((await runCli(['--once', '--config', s.config])).code, 0);
    const [mail] = await buyerMails(s.outbox);
    assert.equal(mail?.to, 'joerg.mueller@example.de');
    assert.ok(mail?.text.includes('Hello Jörg Müller'), mail?.text);
    assert.ok(mail?.text.includes(referenceSerial(KEY, 'Müller Ingenieure GmbH')), mail?.text);
  });

  test('a message no parser knows goes to review/ and nothing is mailed', async () => {
    const s = setUp();
    drop(s.inbox, 'not-a-sale.eml');
    const run = await runCli(['--once', '--config', s.config]);
    assert.equal(run.code, 0);
    assert.deepEqual(fs.readdirSync(path.join(s.inbox, 'review')), ['not-a-sale.eml']);
    assert.equal((await buyerMails(s.outbox)).length, 0);
    assert.match(run.stdout, /no parser recognises this message/);
  });

  test('the same notification dropped again is recorded as a duplicate and not mailed twice', async () => {
    const s = setUp();
    drop(s.inbox, 'kagi-sale-widget-pro.eml');
    await runCli(['--once', '--config', s.config]);
    drop(s.inbox, 'kagi-sale-widget-pro.eml', 'forwarded-again.eml');
    const second = await runCli(['--once', '--config', s.config]);
    assert.equal(second.code, 0);
    assert.match(second.stdout, /duplicate/);
    assert.equal((await buyerMails(s.outbox)).length, 1);
    assert.equal(orders(s.db).length, 1);
  });

  test('two copies of one notification waiting together give one order and one mail; both are filed', async () => {
    const s = setUp();
    // Read, decided and committed in the same batch: the second copy is recognised inside the commit.
    drop(s.inbox, 'kagi-sale-widget-pro.eml', 'a-sale.eml');
    drop(s.inbox, 'kagi-sale-widget-pro.eml', 'b-same-sale-again.eml');
    const run = await runCli(['--once', '--config', s.config]);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /duplicate message: handled before/);
    assert.equal((await buyerMails(s.outbox)).length, 1);
    assert.equal(orders(s.db).length, 1);
    assert.deepEqual(fs.readdirSync(s.inbox).filter((n) => n.endsWith('.eml')), [], 'both moved out of the drop folder');
    assert.deepEqual(fs.readdirSync(path.join(s.inbox, 'processed')).sort(), ['a-sale.eml', 'b-same-sale-again.eml']);
  });

  test('a Kagi sale whose running number skips ahead tells the owner which notifications never arrived', async () => {
    const s = setUp();
    fs.writeFileSync(path.join(s.inbox, 'a.eml'), kagiSale(1042, '8811-2046-0001'));
    await runCli(['--once', '--config', s.config]);
    fs.writeFileSync(path.join(s.inbox, 'b.eml'), kagiSale(1043, '8811-2046-0002'));
    fs.writeFileSync(path.join(s.inbox, 'c.eml'), kagiSale(1046, '8811-2046-0003'));
    const run = await runCli(['--once', '--config', s.config]);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /notifications missing/);
    assert.deepEqual(missingAlerts(s.db), ['kagi Widget Pro: numbers 1044 to 1045 never arrived (this one is 1046)']);
    assert.equal((await buyerMails(s.outbox)).length, 3, 'the sales that did arrive are fulfilled as usual');
  });

  test('a missing Kagi notification that arrives late is fulfilled without another alert', async () => {
    const s = setUp();
    fs.writeFileSync(path.join(s.inbox, 'a.eml'), kagiSale(1042, '8811-2046-0001'));
    fs.writeFileSync(path.join(s.inbox, 'c.eml'), kagiSale(1044, '8811-2046-0003'));
    await runCli(['--once', '--config', s.config]);
    assert.equal(missingAlerts(s.db).length, 1);
    fs.writeFileSync(path.join(s.inbox, 'b.eml'), kagiSale(1043, '8811-2046-0002'));
    const late = await runCli(['--once', '--config', s.config]);
    assert.doesNotMatch(late.stdout, /notifications missing/);
    assert.equal(missingAlerts(s.db).length, 1);
    assert.equal((await buyerMails(s.outbox)).length, 3);
  });

  test('--reprocess ORDER does not mail again; with --resend it mails the same serial once more', async () => {
    const s = setUp();
    drop(s.inbox, 'kagi-sale-widget-pro.eml');
    await runCli(['--once', '--config', s.config]);
    const again = await runCli(['--reprocess', '8811-2046-5537', '--config', s.config]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.equal((await buyerMails(s.outbox)).length, 1);
    const resend = await runCli(['--reprocess', '8811-2046-5537', '--resend', '--config', s.config]);
    assert.equal(resend.code, 0, resend.stdout + resend.stderr);
    const mails = await buyerMails(s.outbox);
    assert.equal(mails.length, 2);
    assert.notEqual(mails[0]?.messageId, mails[1]?.messageId, 'a resend is a new mail, recognisable as such');
    const serial = referenceSerial(KEY, 'Marie Dubois');
    assert.ok(mails.every((m) => m.text.includes(serial)));
  });

  test('--reprocess review fulfils a message once its product is configured', async () => {
    const s = setUp();
    drop(s.inbox, 'kagi-sale-widget-pro.eml');
    const unknownProduct = fs.readFileSync(s.config, 'utf8').replace('match: ["Widget Pro"]', 'match: ["Gadget"]');
    fs.writeFileSync(s.config, unknownProduct);
    const first = await runCli(['--once', '--config', s.config]);
    assert.match(first.stdout, /unknown product \\?"Widget Pro\\?"/);
    assert.deepEqual(fs.readdirSync(path.join(s.inbox, 'review')), ['kagi-sale-widget-pro.eml']);
    assert.equal(orders(s.db)[0]?.state, 'review');
    fs.writeFileSync(s.config, unknownProduct.replace('match: ["Gadget"]', 'match: ["Widget Pro"]'));
    const again = await runCli(['--reprocess', 'review', '--config', s.config]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.equal((await buyerMails(s.outbox)).length, 1);
    assert.equal(orders(s.db)[0]?.state, 'sent');
    assert.deepEqual(fs.readdirSync(path.join(s.inbox, 'review')), []);
    assert.deepEqual(fs.readdirSync(path.join(s.inbox, 'processed')), ['kagi-sale-widget-pro.eml']);
  });

  test('--reprocess FILE.eml runs one file through the path', async () => {
    const s = setUp();
    const run = await runCli(['--reprocess', path.join(EXAMPLES, 'kagi-sale-widget-pro.eml'), '--config', s.config]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal((await buyerMails(s.outbox)).length, 1);
  });

  test('--dry-run reports each waiting message and sends, moves and records nothing', async () => {
    const s = setUp();
    drop(s.inbox, 'kagi-sale-widget-pro.eml');
    drop(s.inbox, 'not-a-sale.eml');
    const run = await runCli(['--dry-run', '--config', s.config]);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { action: string; orders: { buyerEmail: string }[] });
    assert.deepEqual(lines.map((l) => l.action), ['fulfill', 'review']);
    assert.equal(lines[0]?.orders[0]?.buyerEmail, 'marie.dubois@example.net');
    assert.deepEqual(fs.readdirSync(s.inbox).sort(), ['kagi-sale-widget-pro.eml', 'not-a-sale.eml']);
    assert.equal(fs.existsSync(s.outbox), false);
    assert.equal(fs.existsSync(s.db), false);
  });

  test('the daemon picks up a file dropped while it runs, and SIGTERM stops it with exit 0', async () => {
    const s = setUp();
    const daemon = startDaemon(['--config', s.config]);
    try {
      await daemon.waitForOutput(/watching for notifications/);
      drop(s.inbox, 'kagi-sale-widget-pro.eml');
      await daemon.waitForOutput(/serial mail sent/, 10_000);
    } finally {
      assert.equal(await daemon.stop('SIGTERM'), 0);
    }
    assert.equal((await buyerMails(s.outbox)).length, 1);
    assert.match(daemon.output(), /keymailer stopped/);
  });

  test('no product key ever appears in what keymailer prints', async () => {
    const s = setUp();
    drop(s.inbox, 'kagi-sale-widget-pro.eml');
    drop(s.inbox, 'not-a-sale.eml');
    const run = await runCli(['--once', '--config', s.config], { env: { } });
    assert.equal(run.stdout.includes(KEY) || run.stderr.includes(KEY), false);
  });
});

describe('the command line', () => {
  test('--help documents --once, --reprocess, --resend and --dry-run, and exits 0', async () => {
    const run = await runCli(['run', '--help']);
    assert.equal(run.code, 0);
    for (const flag of ['--once', '--reprocess', '--resend', '--dry-run', '--config']) assert.ok(run.stdout.includes(flag), flag);
  });

  test('an unknown flag exits 2', async () => {
    assert.equal((await runCli(['--frobnicate'])).code, 2);
  });

  test('a bad config stops start-up with one line naming the key, and exit 3', async () => {
    const s = setUp();
    fs.writeFileSync(s.config, fs.readFileSync(s.config, 'utf8').replace(`"${KEY}"`, '"too-short"'));
    const run = await runCli(['--once', '--config', s.config]);
    assert.equal(run.code, 3);
    const lines = run.stderr.trim().split('\n');
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0] ?? '', /products\.0\.key: must be/);
    assert.ok(!run.stderr.includes('too-short'), 'the key itself is never echoed');
  });

  test('a config that names a missing environment variable says which', async () => {
    const s = setUp();
    fs.writeFileSync(s.config, fs.readFileSync(s.config, 'utf8').replace(`"${KEY}"`, '${WIDGET_KEY_NOT_SET}'));
    const run = await runCli(['--once', '--config', s.config]);
    assert.equal(run.code, 3);
    assert.match(run.stderr, /products\.0\.key: environment variable WIDGET_KEY_NOT_SET is not set/);
  });
});
