/**
 * The whole path against real servers: Dovecot (IMAP, IDLE) on loopback, an SMTP server that
 * records what it receives, the real compiled daemon. A sale goes in by APPEND; the buyer mail
 * must come out at the SMTP server within seconds.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { EXAMPLES, referenceSerial, runCli, startDaemon, tempDir, type Daemon } from './support/cli';
import { appendMessage, listMailbox, startDovecot, type Dovecot } from './support/dovecot';
import { TEST_KEY, kagiSale, writeImapConfig } from './support/imap-config';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink';

describe('IMAP mailbox to SMTP', () => {
  let dovecot: Dovecot;
  let sink: SmtpSink;
  let dir: string;
  let config: string;
  let daemon: Daemon;
  const env = (): NodeJS.ProcessEnv => ({ TEST_IMAP_PASSWORD: dovecot.pass });

  before(async () => {
    dovecot = await startDovecot();
    sink = await startSmtpSink();
    dir = tempDir();
    config = writeImapConfig(dir, dovecot, sink);
    daemon = startDaemon(['--config', config], { env: env() });
    await daemon.waitForOutput(/watching for notifications/);
  });

  after(async () => {
    const code = await daemon?.stop('SIGTERM');
    await sink?.stop();
    await dovecot?.stop();
    assert.equal(code, 0, 'the daemon stops cleanly on SIGTERM');
  });

  test('a sale appended to the mailbox reaches the buyer with the right serial within seconds', async () => {
    const started = Date.now();
    await appendMessage(dovecot, 'INBOX', fs.readFileSync(path.join(EXAMPLES, 'kagi-sale-widget-pro.eml')));
    const mail = await sink.waitFor((m) => m.to.includes('marie.dubois@example.net'), 10_000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 5000, `buyer mail took ${elapsed} ms`);
    assert.ok(mail.parsed.text?.includes(referenceSerial(TEST_KEY, 'Marie Dubois')), mail.parsed.text);
    assert.equal(mail.parsed.subject, 'Your Widget Pro serial');
    assert.equal(mail.from, 'sales@acme.example');
  });

  test('the order is in SQLite as sent, with its timestamps', async () => {
    const db = new Database(path.join(dir, 'data', 'keymailer.db'), { readonly: true });
    try {
      // The sent mark is written right after the server accepted the mail: allow it a moment.
      let row: { state: string; received_at: string; fulfilled_at: string; sent_at: string | null } | undefined;
      for (let i = 0; i < 50; i++) {
        row = db.prepare(`SELECT state, received_at, fulfilled_at, sent_at FROM orders WHERE vendor_order_id = '8811-2046-5537'`).get() as typeof row;
        if (row?.state === 'sent') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(row?.state, 'sent');
      assert.ok(row?.received_at && row.fulfilled_at && row.sent_at);
    } finally {
      db.close();
    }
  });

  test('the handled notification is moved to Processed, out of the inbox', async () => {
    for (let i = 0; i < 50 && (await listMailbox(dovecot, 'Processed')).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await listMailbox(dovecot, 'Processed')).length, 1);
    assert.equal((await listMailbox(dovecot, 'INBOX')).length, 0);
  });

  test('a message no parser knows lands in Review and the daemon keeps working', async () => {
    await appendMessage(dovecot, 'INBOX', fs.readFileSync(path.join(EXAMPLES, 'not-a-sale.eml')));
    await daemon.waitForOutput(/message sent to review/, 10_000);
    for (let i = 0; i < 50 && (await listMailbox(dovecot, 'Review')).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const review = await listMailbox(dovecot, 'Review');
    assert.equal(review.length, 1);
    assert.match(review[0]?.raw.toString() ?? '', /Big SALE this week/);
    await appendMessage(dovecot, 'INBOX', kagiSale(1, 'Ana Souza', 'ana.souza@example.org'));
    const mail = await sink.waitFor((m) => m.to.includes('ana.souza@example.org'), 10_000);
    assert.ok(mail.parsed.text?.includes(referenceSerial(TEST_KEY, 'Ana Souza')));
    assert.equal(daemon.child.exitCode, null, 'still running');
  });
});

describe('IMAP backlog at start', () => {
  test('--once processes every message already waiting, mails each buyer once and exits 0', async () => {
    const dovecot = await startDovecot();
    const sink = await startSmtpSink();
    try {
      const dir = tempDir();
      const config = writeImapConfig(dir, dovecot, sink);
      for (let n = 1; n <= 5; n++) await appendMessage(dovecot, 'INBOX', kagiSale(n));
      const env = { TEST_IMAP_PASSWORD: dovecot.pass };
      const run = await runCli(['--once', '--config', config], { env });
      assert.equal(run.code, 0, run.stdout + run.stderr);
      await sink.waitForCount(5);
      assert.deepEqual(sink.messages.map((m) => m.to[0]).sort(), [1, 2, 3, 4, 5].map((n) => `buyer${n}@example.net`).sort());
      assert.equal((await listMailbox(dovecot, 'Processed')).length, 5);
      const again = await runCli(['--once', '--config', config], { env });
      assert.equal(again.code, 0);
      assert.equal(sink.messages.length, 5, 'a second run sends nothing again');
      assert.ok(!run.stdout.includes(dovecot.pass) && !run.stdout.includes(TEST_KEY), 'no secret in the log');
    } finally {
      await sink.stop();
      await dovecot.stop();
    }
  });
});

describe('reprocessing over IMAP', () => {
  test('--reprocess review fulfils what waited in Review once the product is configured, and files it in Processed', async () => {
    const dovecot = await startDovecot();
    const sink = await startSmtpSink();
    try {
      const dir = tempDir();
      const config = writeImapConfig(dir, dovecot, sink);
      const good = fs.readFileSync(config, 'utf8');
      fs.writeFileSync(config, good.replace('match: ["Widget Pro", "WIDGET-PRO"]', 'match: ["Gadget"]'));
      const env = { TEST_IMAP_PASSWORD: dovecot.pass };
      await appendMessage(dovecot, 'INBOX', kagiSale(7, 'Lena Berg', 'lena.berg@example.net'));
      assert.equal((await runCli(['--once', '--config', config], { env })).code, 0);
      assert.equal((await listMailbox(dovecot, 'Review')).length, 1);
      const alert = await sink.waitFor((m) => m.to.includes('owner@acme.example'));
      assert.match(alert.parsed.text ?? '', /unknown product/, 'the owner is told why');
      assert.equal(sink.messages.filter((m) => m.to.includes('lena.berg@example.net')).length, 0, 'no serial for an unknown product');
      fs.writeFileSync(config, good);
      const run = await runCli(['--reprocess', 'review', '--config', config], { env });
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const mail = await sink.waitFor((m) => m.to.includes('lena.berg@example.net'));
      assert.ok(mail.parsed.text?.includes(referenceSerial(TEST_KEY, 'Lena Berg')));
      assert.equal((await listMailbox(dovecot, 'Review')).length, 0);
      assert.equal((await listMailbox(dovecot, 'Processed')).length, 1);
    } finally {
      await sink.stop();
      await dovecot.stop();
    }
  });

  test('--reprocess UID mails nothing again, and with --resend mails the same serial once more', async () => {
    const dovecot = await startDovecot();
    const sink = await startSmtpSink();
    try {
      const dir = tempDir();
      const config = writeImapConfig(dir, dovecot, sink);
      const env = { TEST_IMAP_PASSWORD: dovecot.pass };
      const uid = await appendMessage(dovecot, 'INBOX', kagiSale(8, 'Kofi Mensah', 'kofi@example.org'));
      assert.equal((await runCli(['--once', '--config', config], { env })).code, 0);
      await sink.waitForCount(1);
      const again = await runCli(['--reprocess', String(uid), '--config', config], { env });
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.match(again.stdout, /duplicate/);
      assert.equal(sink.messages.length, 1);
      const resend = await runCli(['--reprocess', String(uid), '--resend', '--config', config], { env });
      assert.equal(resend.code, 0);
      await sink.waitForCount(2);
      const serial = referenceSerial(TEST_KEY, 'Kofi Mensah');
      assert.ok(sink.messages.every((m) => m.parsed.text?.includes(serial)));
      const unknown = await runCli(['--reprocess', '99999', '--config', config], { env });
      assert.equal(unknown.code, 1, 'a target that matches nothing is an error');
    } finally {
      await sink.stop();
      await dovecot.stop();
    }
  });
});


describe('oversized and malformed messages', () => {
  test('a message over maxMessageSize goes to Review undownloaded, with its size as the reason, and the next sale still flows', async () => {
    const dovecot = await startDovecot();
    const sink = await startSmtpSink();
    try {
      const dir = tempDir();
      const config = writeImapConfig(dir, dovecot, sink, 'maxMessageSize: 1048576\n');
      const env = { TEST_IMAP_PASSWORD: dovecot.pass };
      const attachment = Buffer.alloc(3 * 1024 * 1024, 'A').toString('base64').replace(/.{76}/g, '$&\r\n');
      const huge = kagiSale(51).replace('Content-Type: text/plain; charset=UTF-8', 'Content-Type: multipart/mixed; boundary="b"').replace(
        'Content-Transfer-Encoding: 8bit\r\n\r\n',
        `\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n${attachment}\r\n--b--\r\n`,
      );
      const headerLine = `X-Junk: ${'x'.repeat(1024 * 1024)}\r\n`;
      await appendMessage(dovecot, 'INBOX', huge);
      await appendMessage(dovecot, 'INBOX', headerLine + kagiSale(52).slice(0, 400));
      await appendMessage(dovecot, 'INBOX', kagiSale(53, 'Still Flowing', 'flowing@example.org'));
      const run = await runCli(['--once', '--config', config], { env });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /over the 1\.0 MB limit \(maxMessageSize\): not downloaded/);
      await sink.waitFor((m) => m.to.includes('flowing@example.org'));
      assert.equal(sink.messages.filter((m) => m.to.includes('buyer51@example.net')).length, 0);
      assert.equal((await listMailbox(dovecot, 'Review')).length, 2, 'the huge one and the broken one wait for the seller');
      assert.equal((await listMailbox(dovecot, 'INBOX')).length, 0);
    } finally {
      await sink.stop();
      await dovecot.stop();
    }
  });
});
