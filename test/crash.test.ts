/**
 * Nothing lost, nothing sent twice: the daemon is killed with SIGKILL at random moments (some
 * right as the SMTP server accepts a buyer mail) while notifications keep arriving, restarted
 * each time, and in the end every order has exactly one row and every buyer their serial.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { referenceSerial, startDaemon, tempDir } from './support/cli';
import { appendMessage, listMailbox, startDovecot } from './support/dovecot';
import { TEST_KEY, kagiSale, writeImapConfig } from './support/imap-config';
import { startSmtpSink } from './support/smtp-sink';

const ORDERS = 240;
const KILLS = 32;

test('SIGKILL at random moments, 32 times, loses no order and mails no buyer twice outside the acceptance window', async (t) => {
  const dovecot = await startDovecot();
  const sink = await startSmtpSink();
  const dir = tempDir();
  const config = writeImapConfig(dir, dovecot, sink, 'delivery: { retrySeconds: 0.5 }\n');
  const env = { TEST_IMAP_PASSWORD: dovecot.pass };
  const buyer = (n: number): string => `buyer${n}@example.net`;
  try {
    for (let n = 0; n < ORDERS / 2; n++) await appendMessage(dovecot, 'INBOX', kagiSale(n));
    // The other half arrives while the daemon is being killed and restarted.
    const arrivals = (async () => {
      for (let n = ORDERS / 2; n < ORDERS; n++) {
        await appendMessage(dovecot, 'INBOX', kagiSale(n));
        await sleep(60);
      }
    })();

    let killsAtAcceptance = 0;
    let seed = 20261122;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let kill = 0; kill < KILLS; kill++) {
      const daemon = startDaemon(['--config', config], { env });
      if (kill % 3 === 0) {
        // Right after the SMTP server accepted a mail: the one window where a repeat is possible.
        const seen = sink.messages.length;
        await sink.waitFor((m) => sink.messages.indexOf(m) >= seen, 4000).then(
          () => killsAtAcceptance++,
          () => undefined,
        );
      } else {
        await sleep(100 + random() * 1100);
      }
      await daemon.stop('SIGKILL');
    }
    await arrivals;

    const last = startDaemon(['--config', config], { env });
    try {
      await last.waitForOutput(/watching for notifications/, 20_000);
      const wanted = new Set(Array.from({ length: ORDERS }, (_, n) => buyer(n)));
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && ![...wanted].every((b) => sink.messages.some((m) => m.to.includes(b)))) await sleep(200);
    } finally {
      assert.equal(await last.stop('SIGTERM'), 0, 'the last run stops cleanly');
    }

    const db = new Database(path.join(dir, 'data', 'keymailer.db'), { readonly: true });
    const orders = db.prepare('SELECT vendor_order_id, buyer_email, state FROM orders').all() as { vendor_order_id: string; buyer_email: string; state: string }[];
    const unsent = (db.prepare('SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL').get() as { n: number }).n;
    db.close();
    assert.equal(orders.length, ORDERS, 'every order has exactly one row');
    assert.equal(new Set(orders.map((o) => o.vendor_order_id)).size, ORDERS);
    assert.ok(orders.every((o) => o.state === 'sent'), 'every order is marked sent');
    assert.equal(unsent, 0, 'the outbox is empty');

    const buyerMails = sink.messages.filter((m) => m.to[0] !== 'owner@acme.example');
    for (let n = 0; n < ORDERS; n++) {
      const mails = buyerMails.filter((m) => m.to.includes(buyer(n)));
      assert.ok(mails.length >= 1, `${buyer(n)} received their serial`);
      assert.ok(mails.every((m) => m.parsed.text?.includes(referenceSerial(TEST_KEY, `Buyer ${n}`))), `${buyer(n)}'s serial is right`);
      assert.equal(new Set(mails.map((m) => m.parsed.messageId)).size, 1, 'a repeat carries the same Message-ID');
    }
    const duplicates = buyerMails.length - ORDERS;
    t.diagnostic(`kills: ${KILLS} (${killsAtAcceptance} right after an SMTP acceptance); duplicate deliveries: ${duplicates}`);
    // One mail is in flight at a time, so a kill can repeat at most the one mail the server had just accepted.
    assert.ok(duplicates <= KILLS, `at most one repeat per kill (${duplicates} repeats, ${KILLS} kills)`);
    assert.equal((await listMailbox(dovecot, 'INBOX')).length, 0, 'every notification was filed');
    assert.equal((await listMailbox(dovecot, 'Processed')).length, ORDERS);
  } finally {
    await sink.stop();
    await dovecot.stop();
  }
});
