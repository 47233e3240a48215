/**
 * The seller's everyday commands through the real compiled CLI: `orders`, `resend`, `check`,
 * `preview`, and the progress bar they use for long work. Orders are made the real way: sale
 * notifications dropped into a folder and run through `keymailer --once`.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { simpleParser } from 'mailparser';
import { createProgress } from '../src/progress';
import { EXAMPLES, referenceSerial, runCli, tempDir } from './support/cli';
import { freePort, startDovecot, type Dovecot } from './support/dovecot';
import { kagiSale, writeImapConfig } from './support/imap-config';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink';

const KEY = 'Tq9#vL2!pX7@mR4s';
const BOB = 'Smith, "Bob" Jr';

interface Setup {
  readonly dir: string;
  readonly config: string;
  readonly inbox: string;
  readonly outbox: string;
  readonly db: string;
}

/** A drop-folder config; `extra` is appended to the YAML (more products, smtp, templates…). */
function setUp(extra = ''): Setup {
  const dir = tempDir();
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(
    config,
    `database: state/orders.db
owner: { email: owner@example.com }
dropFolder: inbox
outbox: outbox
from: "Acme Software <sales@acme.example>"
vendors:
  kagi: { auth: none }
products:
  - id: widget-pro
    name: Widget Pro
    key: "${KEY}"
    match: ["Widget Pro"]
${extra}`,
  );
  const inbox = path.join(dir, 'inbox');
  fs.mkdirSync(inbox);
  return { dir, config, inbox, outbox: path.join(dir, 'outbox'), db: path.join(dir, 'state', 'orders.db') };
}

/** A Kagi sale for a product the config does not know: recorded as an order in review. */
function unknownProductSale(n: number, buyer: string, email: string): string {
  return kagiSale(n, buyer, email).replace(/Widget Pro/g, 'Gadget Max').replace('WIDGET-PRO', 'GADGET-MAX');
}

/** Drops the notifications and lets keymailer handle them once, as the daemon would. */
async function receive(s: Setup, messages: Record<string, string | Buffer>): Promise<void> {
  for (const [name, raw] of Object.entries(messages)) fs.writeFileSync(path.join(s.inbox, name), raw);
  const run = await runCli(['--once', '--config', s.config]);
  assert.equal(run.code, 0, run.stdout + run.stderr);
}

function example(name: string): Buffer {
  return fs.readFileSync(path.join(EXAMPLES, name));
}

async function outboxMails(s: Setup): Promise<{ file: string; to: string; text: string; messageId: string }[]> {
  if (!fs.existsSync(s.outbox)) return [];
  const names = fs.readdirSync(s.outbox).filter((n) => n.endsWith('.eml') && !n.startsWith('alert')).sort();
  return Promise.all(
    names.map(async (file) => {
      const mail = await simpleParser(fs.readFileSync(path.join(s.outbox, file)));
      const to = Array.isArray(mail.to) ? mail.to[0] : mail.to;
      return { file, to: to?.value[0]?.address ?? '', text: mail.text ?? '', messageId: mail.messageId ?? '' };
    }),
  );
}

function query<T>(s: Setup, sql: string, ...params: (string | number)[]): T[] {
  const db = new Database(s.db, { readonly: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

describe('keymailer orders', () => {
  let s: Setup;
  let marieReceivedAt: string;

  before(async () => {
    s = setUp();
    await receive(s, {
      'a-marie.eml': example('kagi-sale-widget-pro.eml'),
      'b-joerg.eml': example('kagi-sale-company-license.eml'),
      'c-bob.eml': kagiSale(3, BOB, 'bob@example.net'),
      'd-rita.eml': unknownProductSale(4, 'Rita Review', 'rita@example.net'),
      'e-eve.eml': kagiSale(7, '=HYPERLINK("http://evil.example")', 'eve@example.net'),
    });
    // An old order, so --since has something to leave out.
    marieReceivedAt = '2020-01-01T12:00:00.000Z';
    const db = new Database(s.db);
    db.prepare(`UPDATE orders SET received_at = ? WHERE vendor_order_id = '8811-2046-5537'`).run(marieReceivedAt);
    db.close();
  });

  test('shows every order as a table with received time in local time, buyer, email, quantity and state', async () => {
    // India is UTC+05:30: a shift no rounding could fake.
    const run = await runCli(['orders', '--config', s.config], { env: { TZ: 'Asia/Kolkata' } });
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^\s*ID\s+RECEIVED\s+VENDOR\s+ORDER\s+PRODUCT\s+BUYER\s+EMAIL\s+QTY\s+STATE\s+REASON$/);
    const marie = lines.find((l) => l.includes('8811-2046-5537')) ?? '';
    assert.match(marie, /2020-01-01 17:30\s+kagi\s+8811-2046-5537\s+widget-pro\s+Marie Dubois\s+marie\.dubois@example\.net\s+1\s+sent/);
    const joerg = lines.find((l) => l.includes('8811-2051-0093')) ?? '';
    assert.match(joerg, /Jörg Müller\s+joerg\.mueller@example\.de\s+3\s+sent/);
    const rita = lines.find((l) => l.includes('Rita Review')) ?? '';
    assert.match(rita, /review\s+unknown product "Gadget Max"/);
    assert.ok(rita.length < 220, 'the reason is shortened in the table');
    assert.equal(lines.at(-1), '5 orders');
  });

  test('--json prints one JSON object per order per line with every field in full', async () => {
    const run = await runCli(['orders', '--json', '--config', s.config]);
    assert.equal(run.code, 0, run.stderr);
    const rows = run.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(rows.length, 5);
    const marie = rows.find((r) => r['orderId'] === '8811-2046-5537');
    assert.deepEqual(
      { ...marie, id: undefined, fulfilledAt: undefined, sentAt: undefined },
      {
        id: undefined,
        receivedAt: marieReceivedAt,
        vendor: 'kagi',
        orderId: '8811-2046-5537',
        product: 'widget-pro',
        vendorProduct: 'Widget Pro',
        buyerName: 'Marie Dubois',
        buyerEmail: 'marie.dubois@example.net',
        licenseName: 'Marie Dubois',
        quantity: 1,
        price: '29.00',
        currency: 'USD',
        test: false,
        state: 'sent',
        reason: null,
        fulfilledAt: undefined,
        sentAt: undefined,
        resends: 0,
      },
    );
    assert.equal(rows.find((r) => r['buyerName'] === 'Jörg Müller')?.['licenseName'], 'Müller Ingenieure GmbH');
    assert.match(String(rows.find((r) => r['state'] === 'review')?.['reason']), /unknown product "Gadget Max" \(code GADGET-MAX\)/);
  });

  test('--csv quotes a name with a comma and quotes per RFC 4180, and a formula-like name cannot run in a spreadsheet', async () => {
    const run = await runCli(['orders', '--csv', '--config', s.config]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, '', 'no progress output when stderr is not a terminal');
    assert.ok(run.stdout.endsWith('\r\n'), 'CRLF line ends');
    const lines = run.stdout.split('\r\n').slice(0, -1);
    assert.equal(
      lines[0],
      'id,receivedAt,vendor,orderId,product,vendorProduct,buyerName,buyerEmail,licenseName,quantity,price,currency,test,state,reason,fulfilledAt,sentAt,resends',
    );
    assert.equal(lines.length, 6);
    const bob = lines.find((l) => l.includes('bob@example.net')) ?? '';
    assert.ok(bob.includes(',"Smith, ""Bob"" Jr",bob@example.net,'), bob);
    const eve = lines.find((l) => l.includes('eve@example.net')) ?? '';
    assert.ok(eve.includes(`,"'=HYPERLINK(""http://evil.example"")",`), eve);
    const rita = lines.find((l) => l.includes('rita@example.net')) ?? '';
    assert.ok(rita.includes(',review,"unknown product ""Gadget Max"" (code GADGET-MAX): '), rita);
    const marie = lines.find((l) => l.includes('8811-2046-5537')) ?? '';
    assert.match(marie, /^\d+,2020-01-01T12:00:00\.000Z,kagi,8811-2046-5537,widget-pro,Widget Pro,Marie Dubois,marie\.dubois@example\.net,Marie Dubois,1,29\.00,USD,false,sent,,/);
  });

  test('--status review lists only the orders waiting for the seller', async () => {
    const run = await runCli(['orders', '--status', 'review', '--json', '--config', s.config]);
    assert.equal(run.code, 0, run.stderr);
    const rows = run.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { buyerName: string; state: string });
    assert.deepEqual(rows.map((r) => [r.buyerName, r.state]), [['Rita Review', 'review']]);
  });

  test('--since leaves out orders received before the given day or age', async () => {
    const names = async (...args: string[]): Promise<string[]> => {
      const run = await runCli(['orders', '--json', '--config', s.config, ...args]);
      assert.equal(run.code, 0, run.stderr);
      return run.stdout.trimEnd().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { buyerName: string }).buyerName);
    };
    assert.ok(!(await names('--since', '2021-01-01')).includes('Marie Dubois'));
    assert.equal((await names('--since', '2021-01-01')).length, 4);
    assert.ok((await names('--since', '2019-12-31')).includes('Marie Dubois'));
    assert.equal((await names('--since', '30d')).length, 4);
  });

  test('--search finds orders by name, email or order id, ignoring case and accents', async () => {
    const ids = async (text: string): Promise<string[]> => {
      const run = await runCli(['orders', '--json', '--search', text, '--config', s.config]);
      assert.equal(run.code, 0, run.stderr);
      return run.stdout.trimEnd().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { orderId: string }).orderId);
    };
    assert.deepEqual(await ids('MULLER'), ['8811-2051-0093']);
    assert.deepEqual(await ids('marie.dubois@'), ['8811-2046-5537']);
    assert.deepEqual(await ids('9000-0003'), ['9000-0003-0001']);
    assert.deepEqual(await ids('nobody at all'), []);
    const table = await runCli(['orders', '--search', 'nobody at all', '--config', s.config]);
    assert.match(table.stdout, /no orders match/);
  });

  test('--json with --csv, an unknown --status or a bad --since date is a usage error (exit 2)', async () => {
    assert.equal((await runCli(['orders', '--json', '--csv', '--config', s.config])).code, 2);
    assert.equal((await runCli(['orders', '--status', 'lost', '--config', s.config])).code, 2);
    assert.equal((await runCli(['orders', '--since', '2026-02-30', '--config', s.config])).code, 2);
  });

  test('a database that does not exist yet is reported clearly (exit 1), and not created', async () => {
    const fresh = setUp();
    const run = await runCli(['orders', '--config', fresh.config]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /no order database at .*orders\.db yet/);
    assert.equal(fs.existsSync(fresh.db), false);
  });
});

describe('keymailer resend', () => {
  test('resend by order id mails the same serial again with a new Message-ID, recorded as a resend', async () => {
    const s = setUp();
    await receive(s, { 'marie.eml': example('kagi-sale-widget-pro.eml') });
    const run = await runCli(['resend', '8811-2046-5537', '--config', s.config]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^resent order 8811-2046-5537 .*Marie Dubois <marie\.dubois@example\.net> via outbox folder/m);
    const mails = await outboxMails(s);
    assert.equal(mails.length, 2, mails.map((m) => m.file).join(', '));
    const serial = referenceSerial(KEY, 'Marie Dubois');
    assert.ok(mails.every((m) => m.to === 'marie.dubois@example.net' && m.text.includes(serial)));
    assert.notEqual(mails[0]?.messageId, mails[1]?.messageId);
    assert.deepEqual(
      query<{ kind: string; sent: number }>(s, `SELECT kind, sent_at IS NOT NULL AS sent FROM outbox WHERE kind != 'alert' ORDER BY id`),
      [{ kind: 'serial', sent: 1 }, { kind: 'resend', sent: 1 }],
    );
    const events = query<{ kind: string }>(s, `SELECT kind FROM events WHERE kind LIKE 'resend%' ORDER BY id`).map((e) => e.kind);
    assert.deepEqual(events, ['resend queued', 'resend mail sent']);
    const listed = await runCli(['orders', '--json', '--config', s.config]);
    assert.equal((JSON.parse(listed.stdout) as { resends: number }).resends, 1);
  });

  test('resend by email resends every order of that buyer, one line each', async () => {
    const s = setUp();
    await receive(s, {
      'anna-1.eml': kagiSale(5, 'Anna Berg', 'anna@example.net'),
      'anna-2.eml': kagiSale(6, 'Anna Berg', 'anna@example.net'),
      'other.eml': kagiSale(8, 'Otto Other', 'otto@example.net'),
    });
    const run = await runCli(['resend', 'Anna@Example.net', '--config', s.config]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const lines = run.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2, run.stdout);
    assert.match(lines[0] ?? '', /^resent order 9000-0005-0001 /);
    assert.match(lines[1] ?? '', /^resent order 9000-0006-0001 /);
    const mails = await outboxMails(s);
    assert.equal(mails.filter((m) => m.to === 'anna@example.net').length, 4);
    assert.equal(mails.filter((m) => m.to === 'otto@example.net').length, 1);
    const serial = referenceSerial(KEY, 'Anna Berg');
    assert.ok(mails.filter((m) => m.to === 'anna@example.net').every((m) => m.text.includes(serial)));
    assert.equal(query(s, `SELECT id FROM outbox WHERE kind = 'resend' AND sent_at IS NOT NULL`).length, 2);
  });

  test('resend of an order nobody has exits 1 and says how to find one', async () => {
    const s = setUp();
    await receive(s, { 'marie.eml': example('kagi-sale-widget-pro.eml') });
    const run = await runCli(['resend', 'nobody@example.org', '--config', s.config]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /no order matches "nobody@example\.org".*keymailer orders --search/);
    assert.equal((await outboxMails(s)).length, 1, 'nothing new was mailed');
  });

  test('resend of an order still in review exits 1: it has no serial to resend', async () => {
    const s = setUp();
    await receive(s, { 'rita.eml': unknownProductSale(4, 'Rita Review', 'rita@example.net') });
    const run = await runCli(['resend', 'rita@example.net', '--config', s.config]);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /^not resent: order 9000-0004-0001 .*has no serial yet \(state review\)/m);
  });
});

describe('keymailer check', () => {
  const lines = (stdout: string): string[] => stdout.trimEnd().split('\n');

  test('a good drop-folder config passes every check with ✓ and exits 0', async () => {
    const s = setUp();
    const run = await runCli(['check', '--config', s.config]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const out = lines(run.stdout);
    assert.equal(out.at(-1), 'all checks passed');
    for (const line of out.slice(0, -1)) assert.match(line, /^✓ /);
    assert.match(run.stdout, /^✓ config .*config\.yaml is valid$/m);
    assert.match(run.stdout, /^✓ database .*orders\.db created, writable, schema up to date/m);
    assert.match(run.stdout, /^✓ serial settings of widget-pro: made a serial for "Test Buyer"$/m);
    assert.match(run.stdout, /^✓ template "serial" for widget-pro renders/m);
    assert.match(run.stdout, /^✓ drop folder .*inbox is writable/m);
    assert.match(run.stdout, /^✓ outbox folder .*outbox is writable/m);
    assert.ok(!run.stdout.includes(KEY), 'the serial key is never printed');
  });

  test('a template that does not parse is ✗ with the template error, exit 1', async () => {
    const s = setUp(`    template: broken\ntemplates: tpl\n`);
    fs.mkdirSync(path.join(s.dir, 'tpl'));
    fs.writeFileSync(path.join(s.dir, 'tpl', 'broken.subject.hbs'), 'Your {{product.name}} serial');
    fs.writeFileSync(path.join(s.dir, 'tpl', 'broken.text.hbs'), 'Serials: {{#each serials}}{{this}}\n');
    const run = await runCli(['check', '--config', s.config]);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, /^✗ template "broken" for widget-pro: Parse error/m);
    assert.match(run.stdout, /^✓ serial settings of widget-pro/m, 'the other checks still run');
    assert.match(run.stdout, /^1 check failed$/m);
  });

  test('a template whose mail would not show the serial is ✗', async () => {
    const s = setUp(`    template: noserial\ntemplates: tpl\n`);
    fs.mkdirSync(path.join(s.dir, 'tpl'));
    fs.writeFileSync(path.join(s.dir, 'tpl', 'noserial.subject.hbs'), 'Thanks');
    fs.writeFileSync(path.join(s.dir, 'tpl', 'noserial.text.hbs'), 'Thank you, {{buyer.name}}.\n');
    const run = await runCli(['check', '--config', s.config]);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /^✗ template "noserial" for widget-pro: renders, but the mail does not show the serial/m);
  });

  test('serial settings that cannot make a serial are ✗ with the reason, exit 1', async () => {
    const s = setUp(`  - id: signed-app
    name: Signed App
    match: ["Signed App"]
    serial: { scheme: ed25519 }
`);
    const run = await runCli(['check', '--config', s.config]);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, /^✓ serial settings of widget-pro/m);
    assert.match(run.stdout, /^✗ serial settings of signed-app: product signed-app has no serial\.privateKey/m);
  });

  test('an SMTP server nobody answers on is ✗ connection refused, exit 1, password not shown', async () => {
    const port = await freePort();
    const s = setUp(`smtp: { host: 127.0.0.1, port: ${port}, ignoreTLS: true, user: mailer, pass: "\${SMTP_TEST_PASS}" }\n`);
    const run = await runCli(['check', '--config', s.config], { env: { SMTP_TEST_PASS: 'hunter2-smtp-secret' } });
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, new RegExp(`^✗ SMTP mailer@127\\.0\\.0\\.1:${port} login: connection refused`, 'm'));
    assert.ok(!(run.stdout + run.stderr).includes('hunter2-smtp-secret'));
  });

  test('an invalid config is ✗ naming the key, and exits 3 without trying anything else', async () => {
    const s = setUp();
    fs.writeFileSync(s.config, fs.readFileSync(s.config, 'utf8').replace('owner: { email: owner@example.com }', 'owner: { email: not-an-address }'));
    const run = await runCli(['check', '--config', s.config]);
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.match(run.stdout, /^✗ config: .*owner\.email: must be an email address$/m);
    assert.equal(fs.existsSync(s.db), false, 'no database created for a config that is not valid');
  });

  describe('against a real IMAP server and SMTP server', () => {
    let dovecot: Dovecot;
    let sink: SmtpSink;

    before(async () => {
      dovecot = await startDovecot();
      sink = await startSmtpSink();
    });

    after(async () => {
      await sink?.stop();
      await dovecot?.stop();
    });

    test('IMAP login, mailbox and folders, and SMTP login are all ✓; missing folders are created', async () => {
      const config = writeImapConfig(tempDir(), dovecot, sink);
      const run = await runCli(['check', '--config', config], { env: { TEST_IMAP_PASSWORD: dovecot.pass } });
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.match(run.stdout, new RegExp(`^✓ IMAP ${dovecot.user}@127\\.0\\.0\\.1:${dovecot.port} login$`, 'm'));
      assert.match(run.stdout, /^✓ IMAP mailbox "INBOX" exists$/m);
      assert.match(run.stdout, /^✓ IMAP folder "Processed" (created|exists)$/m);
      assert.match(run.stdout, /^✓ IMAP folder "Review" (created|exists)$/m);
      assert.match(run.stdout, new RegExp(`^✓ SMTP 127\\.0\\.0\\.1:${sink.port} connection`, 'm'));
      assert.ok(!run.stdout.includes(dovecot.pass), 'the IMAP password is never printed');
      assert.equal(sink.messages.length, 0, 'check sends no mail');
      const again = await runCli(['check', '--config', config], { env: { TEST_IMAP_PASSWORD: dovecot.pass } });
      assert.match(again.stdout, /^✓ IMAP folder "Processed" exists$/m);
    });

    test('a wrong IMAP password is ✗ login refused, exit 1, and the password is not shown', async () => {
      const config = writeImapConfig(tempDir(), dovecot, sink);
      const run = await runCli(['check', '--config', config], { env: { TEST_IMAP_PASSWORD: 'wrong-imap-password' } });
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stdout, /^✗ IMAP .* login: login refused.*check imap\.user and imap\.pass/m);
      assert.ok(!(run.stdout + run.stderr).includes('wrong-imap-password'));
    });
  });
});

describe('keymailer preview', () => {
  test('writes preview-<product>.eml and .html; the HTML shows the serial made for the given name', async () => {
    const s = setUp();
    const out = path.join(s.dir, 'previews');
    const run = await runCli(['preview', '--product', 'widget-pro', '--name', 'José Müller', '--email', 'jose@example.es', '--out', out, '--config', s.config]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const eml = path.join(out, 'preview-widget-pro.eml');
    const html = path.join(out, 'preview-widget-pro.html');
    assert.deepEqual(run.stdout.trimEnd().split('\n'), [eml, html]);
    const serial = referenceSerial(KEY, 'José Müller');
    const page = fs.readFileSync(html, 'utf8');
    assert.ok(page.includes(serial), page);
    assert.ok(page.includes('José Müller'));
    const mail = await simpleParser(fs.readFileSync(eml));
    const to = Array.isArray(mail.to) ? mail.to[0] : mail.to;
    assert.equal(to?.value[0]?.address, 'jose@example.es');
    assert.equal(mail.subject, 'Your Widget Pro serial');
    assert.ok(mail.text?.includes(serial), mail.text);
    assert.equal(fs.existsSync(s.outbox), false, 'nothing was sent');
  });

  test('an unknown product is a usage error (exit 2) that lists the known ones', async () => {
    const s = setUp();
    const run = await runCli(['preview', '--product', 'nope', '--out', s.dir, '--config', s.config]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /unknown product "nope"; known: widget-pro/);
  });
});

describe('--help of the seller commands', () => {
  for (const command of ['orders', 'resend', 'check', 'preview']) {
    test(`keymailer ${command} --help shows examples and exit codes`, async () => {
      const run = await runCli([command, '--help']);
      assert.equal(run.code, 0);
      assert.match(run.stdout, /Exit codes: 0 /);
      assert.match(run.stdout, new RegExp(`Examples:\\n  keymailer ${command}`));
    });
  }
});

/** A stand-in for a terminal: records what would have been drawn. */
class FakeStream extends Writable {
  written = '';

  constructor(
    readonly isTTY: boolean,
    readonly columns = 80,
  ) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.written += chunk.toString();
    callback();
  }
}

describe('progress', () => {
  test('draws nothing when the stream is not a terminal', () => {
    const stream = new FakeStream(false);
    const progress = createProgress(10, 'work', stream, { delayMs: 0, intervalMs: 0 });
    for (let i = 0; i < 10; i++) progress.tick();
    progress.done();
    assert.equal(stream.written, '');
  });

  test('on a terminal, long work shows a bar with percent and count, and done() erases it', () => {
    let now = 0;
    const stream = new FakeStream(true);
    const progress = createProgress(200, 'orders', stream, { now: () => now });
    progress.tick();
    assert.equal(stream.written, '', 'nothing in the first half second');
    now = 1000;
    progress.tick(99);
    assert.match(stream.written, /\rorders \[█+░+\]  50% 100\/200, 1s left\x1b\[K$/);
    progress.done();
    assert.ok(stream.written.endsWith('\r\x1b[K'));
    const before = stream.written;
    progress.tick();
    progress.done();
    assert.equal(stream.written, before, 'nothing after done()');
  });

  test('work that finishes quickly never draws', () => {
    let now = 0;
    const stream = new FakeStream(true);
    const progress = createProgress(1000, 'quick', stream, { now: () => now });
    for (let i = 0; i < 1000; i++) {
      now += 0.1;
      progress.tick();
    }
    progress.done();
    assert.equal(stream.written, '');
  });
});
