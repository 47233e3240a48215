/** Owner alerts are grouped and rate-limited: a flood of bad messages yields a few mails, not thousands. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { simpleParser } from 'mailparser';
import { Alerts } from '../src/alerts';
import { createLogger } from '../src/log';
import { openDatabase, type Db } from '../src/record/db';
import { Store } from '../src/record/store';
import { tempDir } from './support/cli';

/** Alerts on a fresh database, with the owner and sender every test uses. */
function setUp(windowMs: number, log = createLogger({ level: 'error' })): { db: Db; alerts: Alerts } {
  const db = openDatabase(path.join(tempDir(), 'k.db'));
  const alerts = new Alerts({ store: new Store(db), owner: 'owner@acme.example', from: 'Acme <sales@acme.example>', log, onQueued: () => undefined, windowMs });
  return { db, alerts };
}

/** Owner mails queued, and alerts still waiting to be mailed. */
function counts(db: Db): { mails: number; waiting: number } {
  const n = (sql: string): number => (db.prepare(sql).get() as { n: number }).n;
  return { mails: n(`SELECT count(*) AS n FROM outbox WHERE kind = 'alert'`), waiting: n('SELECT count(*) AS n FROM alerts WHERE mailed_at IS NULL') };
}

test('500 messages sent to review within the window give the owner two mails: the first at once, the rest grouped', async () => {
  const { db, alerts } = setUp(1500);
  try {
    alerts.raise('review', 'message 0 sent to review', 'no parser recognises this message');
    await sleep(200);
    for (let i = 1; i < 500; i++) alerts.raise(i % 2 ? 'review' : 'forgery', `message ${i}`, 'reason');
    await sleep(600);
    const early = db.prepare(`SELECT raw FROM outbox WHERE kind = 'alert' ORDER BY id`).all() as { raw: Buffer }[];
    assert.equal(early.length, 1, 'only the first alert went out at once');
    await sleep(1500);
    const mails = db.prepare(`SELECT raw FROM outbox WHERE kind = 'alert' ORDER BY id`).all() as { raw: Buffer }[];
    assert.equal(mails.length, 2, 'the rest waited for the window and left as one mail');
    const grouped = await simpleParser(mails[1]?.raw ?? Buffer.alloc(0));
    assert.equal(grouped.subject, 'keymailer: 499 things need your attention');
    assert.match(grouped.text ?? '', /Sent to review \(250\)/);
    assert.match(grouped.text ?? '', /Notifications that failed authentication \(249\)/);
    assert.match(grouped.text ?? '', /and 220 more/);
    const unmailed = db.prepare('SELECT count(*) AS n FROM alerts WHERE mailed_at IS NULL').get() as { n: number };
    assert.equal(unmailed.n, 0);
  } finally {
    await alerts.stop();
    db.close();
  }
});

test('an alert raised just before keymailer stops is still queued for the owner (a --once run ends at once)', async () => {
  const { db, alerts } = setUp(60_000);
  try {
    alerts.raise('forgery', 'message "Kagi Payment Acknowledgement" failed authentication');
    // No turn of the event loop in between: the alert's timer has not fired yet.
    await alerts.stop();
    assert.equal(counts(db).mails, 1);
  } finally {
    db.close();
  }
});

test('an alert still inside the window when keymailer stops waits in the table for the next start', async () => {
  const { db, alerts } = setUp(60_000);
  try {
    alerts.raise('review', 'first');
    await sleep(300);
    alerts.raise('review', 'second, inside the window');
    await alerts.stop();
    assert.deepEqual(counts(db), { mails: 1, waiting: 1 }, 'only the first went out; the second waits');
  } finally {
    db.close();
  }
});

test('an alert that cannot be queued (the database refuses) is logged and kept for later, and keymailer keeps running', async () => {
  const warnings: string[] = [];
  const log = createLogger({ level: 'error' });
  log.warn = ((message: string) => {
    warnings.push(message);
    return log;
  }) as typeof log.warn;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  const { db, alerts } = setUp(60_000, log);
  try {
    alerts.raise('review', 'message sent to review');
    // The outbox is gone before the alert's mail can be queued.
    db.exec('DROP TABLE outbox');
    await sleep(300);
    assert.deepEqual(unhandled, []);
    assert.deepEqual(warnings, ['owner alert not queued yet']);
    assert.equal(db.prepare('SELECT count(*) FROM alerts WHERE mailed_at IS NULL').pluck().get(), 1, 'the alert waits for the next try');
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await alerts.stop();
    db.close();
  }
});
