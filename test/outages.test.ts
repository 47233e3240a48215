/**
 * Outages do not lose work: the SMTP server refusing for a while, the IMAP server restarting, a
 * second daemon started by mistake, a mailbox whose UIDVALIDITY changed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { EXAMPLES, referenceSerial, runCli, startDaemon, tempDir } from './support/cli';
import { appendMessage, listMailbox, startDovecot } from './support/dovecot';
import { TEST_KEY, kagiSale, writeImapConfig } from './support/imap-config';
import { startSmtpSink } from './support/smtp-sink';

const FAST_RETRY = 'delivery: { retrySeconds: 0.5 }\n';

function query<T>(dir: string, sql: string): T[] {
  const db = new Database(path.join(dir, 'data', 'keymailer.db'), { readonly: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('SMTP server outages', () => {
  test('a buyer mail refused with 451 waits in the outbox and is delivered once the server accepts again', async () => {
    const dovecot = await startDovecot();
    const sink = await startSmtpSink();
    const dir = tempDir();
    const daemon = startDaemon(['--config', writeImapConfig(dir, dovecot, sink, FAST_RETRY)], { env: { TEST_IMAP_PASSWORD: dovecot.pass } });
    try {
      await daemon.waitForOutput(/watching for notifications/);
      sink.setFailure({ code: 451, message: 'Try again later' });
      await appendMessage(dovecot, 'INBOX', kagiSale(21, 'Ines Duarte', 'ines@example.org'));
      await daemon.waitForOutput(/serial mail not sent, will retry/, 10_000);
      assert.equal(sink.messages.length, 0);
      assert.equal((await listMailbox(dovecot, 'Processed')).length, 1, 'the notification is committed and filed while the mail waits');
      sink.setFailure(null);
      const mail = await sink.waitFor((m) => m.to.includes('ines@example.org'), 15_000);
      assert.ok(mail.parsed.text?.includes(referenceSerial(TEST_KEY, 'Ines Duarte')));
      await sleep(1500);
      assert.equal(sink.messages.filter((m) => m.to.includes('ines@example.org')).length, 1, 'delivered exactly once');
    } finally {
      assert.equal(await daemon.stop(), 0);
      await sink.stop();
      await dovecot.stop();
    }
  });

  test('with the SMTP server down for a while, the mail waits, the owner hears once, and it goes out when the server is back', async () => {
    const dovecot = await startDovecot();
    let sink = await startSmtpSink();
    const dir = tempDir();
    const config = writeImapConfig(dir, dovecot, sink, 'delivery: { retrySeconds: 0.5, alertAfterMinutes: 0.02 }\n');
    const port = sink.port;
    await sink.stop();
    const daemon = startDaemon(['--config', config], { env: { TEST_IMAP_PASSWORD: dovecot.pass } });
    try {
      await daemon.waitForOutput(/watching for notifications/);
      await appendMessage(dovecot, 'INBOX', kagiSale(23, 'Tomas Novak', 'tomas@example.org'));
      await daemon.waitForOutput(/serial mail not sent, will retry/, 10_000);
      await sleep(2500);
      sink = await startSmtpSink({ port });
      const mail = await sink.waitFor((m) => m.to.includes('tomas@example.org'), 20_000);
      assert.ok(mail.parsed.text?.includes(referenceSerial(TEST_KEY, 'Tomas Novak')));
      await until(() => sink.messages.some((m) => m.to.includes('owner@acme.example')), 20_000, 'the owner alert');
      await sleep(1500);
      assert.equal(sink.messages.filter((m) => m.to.includes('tomas@example.org')).length, 1, 'delivered once');
      const waiting = query<{ n: number }>(dir, `SELECT count(*) AS n FROM alerts WHERE kind = 'mail-waiting'`)[0]?.n;
      assert.equal(waiting, 1, 'the owner is told once, not per retry');
    } finally {
      assert.equal(await daemon.stop(), 0);
      await sink.stop();
      await dovecot.stop();
    }
  });

  test('a buyer address the server rejects for good (550) sends the order to review and records an owner alert', async () => {
    const dovecot = await startDovecot();
    const sink = await startSmtpSink();
    const dir = tempDir();
    const daemon = startDaemon(['--config', writeImapConfig(dir, dovecot, sink, FAST_RETRY)], { env: { TEST_IMAP_PASSWORD: dovecot.pass } });
    try {
      await daemon.waitForOutput(/watching for notifications/);
      sink.setFailure({ code: 550, message: 'No such user' });
      await appendMessage(dovecot, 'INBOX', kagiSale(22, 'Nobody Here', 'nobody@example.org'));
      await daemon.waitForOutput(/serial mail cannot be delivered/, 10_000);
      const [order] = query<{ state: string; reason: string }>(dir, 'SELECT state, reason FROM orders');
      assert.equal(order?.state, 'review');
      assert.match(order?.reason ?? '', /550/);
      await until(() => query<{ kind: string }>(dir, 'SELECT kind FROM alerts').some((a) => a.kind === 'undeliverable'), 5000, 'an undeliverable alert');
    } finally {
      assert.equal(await daemon.stop(), 0);
      await sink.stop();
      await dovecot.stop();
    }
  });
});

describe('IMAP server outages', () => {
  test('after Dovecot restarts, the daemon reconnects and handles mail that arrived while it was away', async () => {
    const dovecot = await startDovecot();
    const sink = await startSmtpSink();
    const dir = tempDir();
    const daemon = startDaemon(['--config', writeImapConfig(dir, dovecot, sink)], { env: { TEST_IMAP_PASSWORD: dovecot.pass } });
    try {
      await daemon.waitForOutput(/watching for notifications/);
      await appendMessage(dovecot, 'INBOX', kagiSale(31, 'Before Restart', 'before@example.org'));
      await sink.waitFor((m) => m.to.includes('before@example.org'), 10_000);
      await dovecot.stop();
      await daemon.waitForOutput(/IMAP connection closed; reconnecting/, 10_000);
      await dovecot.restart();
      // Appended before the daemon is back: only the pass on reconnect can find it.
      await appendMessage(dovecot, 'INBOX', kagiSale(32, 'While Away', 'away@example.org'));
      const mail = await sink.waitFor((m) => m.to.includes('away@example.org'), 30_000);
      assert.ok(mail.parsed.text?.includes(referenceSerial(TEST_KEY, 'While Away')));
      await appendMessage(dovecot, 'INBOX', kagiSale(33, 'After Restart', 'after@example.org'));
      await sink.waitFor((m) => m.to.includes('after@example.org'), 10_000);
      assert.equal(sink.messages.filter((m) => m.to[0] !== 'owner@acme.example').length, 3, 'each buyer once');
    } finally {
      assert.equal(await daemon.stop(), 0);
      await sink.stop();
      await dovecot.stop();
    }
  });

  test('a mailbox recreated with a new UIDVALIDITY after 100 orders mails no buyer twice and alerts at most once', async () => {
    const dovecot = await startDovecot();
    const sink = await startSmtpSink();
    try {
      const dir = tempDir();
      const config = writeImapConfig(dir, dovecot, sink);
      const env = { TEST_IMAP_PASSWORD: dovecot.pass };
      const sales = Array.from({ length: 100 }, (_, i) => kagiSale(1000 + i));
      for (const sale of sales) await appendMessage(dovecot, 'INBOX', sale);
      assert.equal((await runCli(['--once', '--config', config], { env, timeoutMs: 60_000 })).code, 0);
      await sink.waitForCount(100, 20_000);
      const before = query<{ uid_validity: number }>(dir, `SELECT DISTINCT uid_validity FROM messages`);
      // The server "re-uploads" the same messages, and the mailbox gets a new UIDVALIDITY.
      for (const sale of sales) await appendMessage(dovecot, 'INBOX', sale);
      await dovecot.recreateMailbox('INBOX');
      const run = await runCli(['--once', '--config', config], { env, timeoutMs: 60_000 });
      assert.equal(run.code, 0, run.stderr);
      await sleep(1000);
      const after = query<{ uid_validity: number }>(dir, `SELECT DISTINCT uid_validity FROM messages`);
      assert.ok(after.length > before.length, 'the rescan saw a new UIDVALIDITY');
      const buyerMails = sink.messages.filter((m) => m.to[0] !== 'owner@acme.example');
      assert.equal(buyerMails.length, 100, 'zero new buyer mails');
      assert.ok(sink.messages.length - buyerMails.length <= 1, 'at most one alert');
      assert.equal((await listMailbox(dovecot, 'INBOX')).length, 0, 'the copies are filed away');
      assert.equal(query<{ n: number }>(dir, 'SELECT count(*) AS n FROM orders')[0]?.n, 100);
    } finally {
      await sink.stop();
      await dovecot.stop();
    }
  });
});

describe('one daemon per database', () => {
  test('a second daemon on the same database stands by, and takes over once the first dies', async () => {
    const dir = tempDir();
    const config = path.join(dir, 'config.yaml');
    fs.mkdirSync(path.join(dir, 'inbox'));
    fs.writeFileSync(
      config,
      `owner: { email: owner@acme.example }
dropFolder: inbox
outbox: outbox
from: "Acme <sales@acme.example>"
leaseSeconds: 3
vendors: { kagi: { auth: none } }
products: [{ id: widget-pro, name: Widget Pro, key: "${TEST_KEY}", match: ["Widget Pro"] }]
`,
    );
    const first = startDaemon(['--config', config]);
    await first.waitForOutput(/watching for notifications/);
    const second = startDaemon(['--config', config]);
    try {
      await second.waitForOutput(/another keymailer works this database; standing by/);
      assert.doesNotMatch(second.output(), /watching for notifications/);
      first.child.kill('SIGKILL');
      const killedAt = Date.now();
      await second.waitForOutput(/took over the database lease/, 15_000);
      assert.ok(Date.now() - killedAt < 8000, 'takes over within the lease time and one poll');
      fs.copyFileSync(path.join(EXAMPLES, 'kagi-sale-widget-pro.eml'), path.join(dir, 'inbox', 'sale.eml'));
      await second.waitForOutput(/serial mail sent/, 10_000);
    } finally {
      await first.stop('SIGKILL');
      assert.equal(await second.stop(), 0);
    }
  });
});
