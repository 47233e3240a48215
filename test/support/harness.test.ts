import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { appendMessage, listMailbox, startDovecot, withImap, type Dovecot } from './dovecot';
import { startSmtpSink, type SmtpSink } from './smtp-sink';

function rawMail(subject: string, id: string): string {
  return [
    'From: Shop <shop@example.com>',
    'To: orders@example.com',
    `Subject: ${subject}`,
    `Message-ID: <${id}@example.com>`,
    'Date: Mon, 01 Jan 2024 10:00:00 +0000',
    'Content-Type: text/plain; charset=utf-8',
    '',
    `Order ${id}`,
    '',
  ].join('\r\n');
}

describe('dovecot harness', () => {
  let d: Dovecot | undefined;
  before(async () => {
    d = await startDovecot();
  });
  after(async () => {
    await d?.stop();
  });
  const dv = (): Dovecot => {
    assert.ok(d, 'dovecot started');
    return d;
  };

  test('append to INBOX and list it back', async () => {
    const raw = rawMail('Order 1001', 'o1001');
    const uid = await appendMessage(dv(), 'INBOX', raw);
    assert.equal(uid, 1);
    const msgs = await listMailbox(dv(), 'INBOX');
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0]?.uid, 1);
    assert.equal(msgs[0]?.raw.toString('utf8'), raw);
  });

  test('missing mailbox lists as [], append creates it', async () => {
    assert.deepEqual(await listMailbox(dv(), 'Missing'), []);
    const uid = await appendMessage(dv(), 'Orders', rawMail('Order 2001', 'o2001'));
    assert.equal(uid, 1);
    assert.equal((await listMailbox(dv(), 'Orders')).length, 1);
  });

  test('restart keeps port and messages', async () => {
    const port = dv().port;
    await dv().restart();
    assert.equal(dv().port, port);
    const msgs = await listMailbox(dv(), 'INBOX');
    assert.deepEqual(
      msgs.map((m) => m.uid),
      [1],
    );
    assert.match(msgs[0]?.raw.toString('utf8') ?? '', /Subject: Order 1001/);
  });

  test('recreateMailbox changes UIDVALIDITY and keeps messages', async () => {
    await appendMessage(dv(), 'INBOX', rawMail('Order 1002', 'o1002'));
    const status = (box: string) =>
      withImap(dv(), async (c) => {
        const st = await c.status(box, { uidValidity: true, messages: true, uidNext: true });
        assert.ok(st, `STATUS ${box}`);
        return st;
      });
    const before = await status('INBOX');
    await dv().recreateMailbox('INBOX');
    const afterStatus = await status('INBOX');
    assert.equal(afterStatus.messages, 2);
    assert.ok(before.uidValidity !== undefined && afterStatus.uidValidity !== undefined);
    assert.ok(afterStatus.uidValidity > before.uidValidity, 'UIDVALIDITY grew');
    const msgs = await listMailbox(dv(), 'INBOX');
    assert.deepEqual(
      msgs.map((m) => m.raw.toString('utf8').match(/^Subject: (.*)$/m)?.[1]).sort(),
      ['Order 1001', 'Order 1002'],
    );
    const orders = await status('Orders');
    await dv().recreateMailbox('Orders');
    const orders2 = await status('Orders');
    assert.equal(orders2.messages, 1);
    assert.ok(orders.uidValidity !== undefined && orders2.uidValidity !== undefined);
    assert.ok(orders2.uidValidity > orders.uidValidity);
    await assert.rejects(dv().recreateMailbox('Nope'), /does not exist/);
  });
});

describe('smtp sink harness', () => {
  let sink: SmtpSink | undefined;
  type SmtpTransporter = Transporter<SMTPTransport.SentMessageInfo, SMTPTransport.Options>;
  const transports: SmtpTransporter[] = [];
  before(async () => {
    sink = await startSmtpSink();
  });
  after(async () => {
    for (const t of transports) t.close();
    await sink?.stop();
  });
  const s = (): SmtpSink => {
    assert.ok(sink, 'sink started');
    return sink;
  };
  const transport = (): SmtpTransporter => {
    const t = nodemailer.createTransport({ host: s().host, port: s().port, secure: false, ignoreTLS: true });
    transports.push(t);
    return t;
  };

  test('receives a mail and waitFor finds it', async () => {
    const waiting = s().waitFor((m) => m.parsed.subject === 'Your license key', 5000);
    await transport().sendMail({
      from: 'keys@example.com',
      to: 'buyer@example.org',
      subject: 'Your license key',
      text: 'KEY-1234',
    });
    const m = await waiting;
    assert.equal(m.from, 'keys@example.com');
    assert.deepEqual(m.to, ['buyer@example.org']);
    assert.match(m.parsed.text ?? '', /KEY-1234/);
    assert.ok(m.raw.length > 0);
    assert.equal(s().messages.length, 1);
    // already received: resolves immediately
    assert.equal(await s().waitFor((x) => x.to.includes('buyer@example.org'), 10), m);
    await s().waitForCount(1, 10);
    await assert.rejects(s().waitForCount(2, 50), /expected 2 messages within 50 ms/);
  });

  test('setFailure rejects with the given code, then accepts again', async () => {
    s().setFailure({ code: 550, message: 'No such user' });
    await assert.rejects(
      transport().sendMail({ from: 'keys@example.com', to: 'gone@example.org', subject: 'x', text: 'x' }),
      (err: unknown) => {
        assert.equal((err as { responseCode?: unknown }).responseCode, 550);
        return true;
      },
    );
    s().setFailure({ code: 451, message: 'Try again later' });
    await assert.rejects(
      transport().sendMail({ from: 'keys@example.com', to: 'later@example.org', subject: 'y', text: 'y' }),
      (err: unknown) => {
        assert.equal((err as { responseCode?: unknown }).responseCode, 451);
        return true;
      },
    );
    s().setFailure(null);
    assert.equal(s().messages.length, 1);
    await transport().sendMail({ from: 'keys@example.com', to: 'ok@example.org', subject: 'z', text: 'z' });
    assert.equal(s().messages.length, 2);
  });

  test('stop() is prompt with an open pooled connection', async () => {
    const local = await startSmtpSink();
    const pooled = nodemailer.createTransport({
      host: local.host,
      port: local.port,
      secure: false,
      ignoreTLS: true,
      pool: true,
    });
    pooled.on('error', () => undefined);
    try {
      await pooled.sendMail({ from: 'a@example.com', to: 'b@example.org', subject: 'pooled', text: 'p' });
      const t0 = performance.now();
      await local.stop();
      assert.ok(performance.now() - t0 < 1000, `stop took ${performance.now() - t0} ms`);
    } finally {
      pooled.close();
      await local.stop();
    }
  });
});
