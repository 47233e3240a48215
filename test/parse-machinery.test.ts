/** The shared reading machinery every vendor parser stands on (src/parse/). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { htmlToText } from '../src/parse/html-text';
import {
  emailIn,
  firstLine,
  firstValue,
  fullName,
  labelLines,
  parseMoney,
  quantityOf,
  textBlocks,
  unitPrice,
  yesNo,
} from '../src/parse/labels';
import { bodyText, forwardedOf, toNotification } from '../src/parse/notification';

const eml = (head: string, body: string): Buffer => Buffer.from(`${head.trim()}\n\n${body}`);

describe('labels in the three layouts', () => {
  test('"Label: value" lines are read, a URL or a time is no label', () => {
    const lines = labelLines('Order ID: 42\nSee https://example.com/x\nAt 10:14 we shipped\nEmpty:\n');
    assert.equal(firstValue(lines, 'order id'), '42');
    assert.equal(firstValue(lines, 'https'), null);
    assert.equal(firstValue(lines, 'At 10'), null);
    assert.equal(firstValue(lines, 'Empty'), null);
  });

  test('a known label on its own line takes the lines below it, up to a blank line', () => {
    const lines = labelLines('Buyer\nAna Souza\nana@example.com\n\nTransaction ID\n7XK19834LM5520931\n', ['Buyer', 'Transaction ID']);
    assert.deepEqual(firstLine(lines, 'Buyer')?.values, ['Ana Souza', 'ana@example.com']);
    assert.equal(firstValue(lines, 'Transaction ID'), '7XK19834LM5520931');
  });

  test('"Label:" with the value below it, as older layouts write it', () => {
    const lines = labelLines('Buyer:\nJürgen Weiß\njw@example.org\nTransaction ID: 3HG55012KX8841736\n', ['Buyer']);
    assert.deepEqual(firstLine(lines, 'Buyer')?.values, ['Jürgen Weiß', 'jw@example.org']);
    assert.equal(firstValue(lines, 'Transaction ID'), '3HG55012KX8841736');
  });

  test('an empty known label does not swallow the next label line', () => {
    const lines = labelLines('Company:\nCountry: France\n', ['Company']);
    assert.equal(firstValue(lines, 'Company'), null);
    assert.equal(firstValue(lines, 'Country'), 'France');
  });

  test('an unknown bare line is never taken for a label', () => {
    assert.deepEqual(labelLines('Widget Pro\nis a product of Acme\n'), []);
  });

  test('HTML table rows read as "Label: value", entities decoded, headings in their own case', () => {
    const text = htmlToText(
      '<h1>New sale</h1><table><tr><td><table>' +
        '<tr><th>Customer:</th><td>Siobh&aacute;n O&#39;Connor</td></tr>' +
        '<tr><td>Email</td><td><a href="mailto:s@example.net">s@example.net</a></td></tr>' +
        '<tr><td colspan="2">A sentence on its own row</td></tr>' +
        '<tr><td>Product</td><td>Qty</td><td>Price</td></tr>' +
        '</table></td></tr></table>',
    );
    assert.match(text, /^New sale$/m);
    assert.match(text, /^Customer: Siobhán O'Connor$/m);
    assert.match(text, /^Email: s@example\.net$/m);
    assert.match(text, /^A sentence on its own row$/m);
    assert.match(text, /^Product \| Qty \| Price$/m);
  });

  test('a long value in a table cell is not wrapped across lines', () => {
    const name = 'Internationale Gesellschaft für angewandte Softwareentwicklung und Beratung mbH & Co. KG';
    assert.match(htmlToText(`<table><tr><td>Registration Name</td><td>${name.replace('&', '&amp;')}</td></tr></table>`), new RegExp(`Registration Name: ${name.replace(/[.]/g, '\\.')}`));
  });

  test('item blocks split at their headings', () => {
    const { header, blocks } = textBlocks('Customer: A\n1) Widget Pro\n Quantity: 2\n2) Widget Lite\n Quantity: 1\n', /^\s*(\d+)\)\s+(\S.*)$/);
    assert.equal(header, 'Customer: A');
    assert.deepEqual(blocks.map((b) => [b.heading[2], firstValue(labelLines(b.text), 'Quantity')]), [['Widget Pro', '2'], ['Widget Lite', '1']]);
  });
});

describe('values', () => {
  test('money in the ways vendors write it becomes a decimal string and a currency', () => {
    const cases: [string, string, string | null][] = [
      ['$1,234.50 USD', '1234.50', 'USD'],
      ['$29.00', '29.00', 'USD'],
      ['EUR 25,00', '25.00', 'EUR'],
      ['25,00 €', '25.00', 'EUR'],
      ['1.234,50\u00a0€', '1234.50', 'EUR'],
      ['£9.99', '9.99', 'GBP'],
      ['3,900 JPY', '3900', 'JPY'],
      ['CA$29', '29', 'CAD'],
      ['ZZ$29', '29', null],
      ['290,00', '290.00', null],
    ];
    for (const [text, amount, currency] of cases) assert.deepEqual(parseMoney(text), { amount, currency }, text);
    assert.equal(parseMoney('free'), null);
  });

  test('a line total is divided into a unit price only when it divides exactly', () => {
    assert.equal(unitPrice('98', 2), '49');
    assert.equal(unitPrice('117.00', 3), '39.00');
    assert.equal(unitPrice('0.05', 1), '0.05');
    assert.equal(unitPrice('10.00', 3), null);
  });

  test('the buyer address is taken only when the field holds exactly one', () => {
    assert.equal(emailIn('Jane Doe <Jane.Doe@Example.com>'), 'jane.doe@example.com');
    assert.equal(emailIn('a@example.com, b@example.com'), null);
    assert.equal(emailIn('none given'), null);
    assert.equal(emailIn(`${'a'.repeat(2000)}@example.com`), null);
  });

  test('a quantity that is no whole number is an error, not a guess', () => {
    assert.equal(quantityOf('3', 'order 1'), 3);
    assert.equal(quantityOf(null, 'order 1'), 1);
    assert.throws(() => quantityOf('2.5', 'order 1'), /order 1: quantity "2\.5"/);
    assert.throws(() => quantityOf('0', 'order 1'), /quantity "0"/);
  });

  test('Yes/No flags; any other word is unknown', () => {
    assert.equal(yesNo('Yes'), true);
    assert.equal(yesNo('no'), false);
    assert.equal(yesNo('maybe'), null);
  });

  test('names in Chinese, Japanese or Korean script are written family name first', () => {
    assert.equal(fullName('Dagny', 'Halvorsen'), 'Dagny Halvorsen');
    assert.equal(fullName('太郎', '山田'), '山田 太郎');
    assert.equal(fullName(null, 'Halvorsen'), 'Halvorsen');
    assert.equal(fullName(' ', null), null);
  });
});

describe('decoding a notification', () => {
  test('a stub text part falls back to the HTML part for its labels', async () => {
    const n = await toNotification(
      eml(
        'From: a@example.com\nSubject: s\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b"',
        '--b\nContent-Type: text/plain\n\nView this email in your browser.\n--b\nContent-Type: text/html\n\n<table><tr><td>Email</td><td>x@example.com</td></tr></table>\n--b--\n',
      ),
    );
    assert.equal(n.text.trim(), 'View this email in your browser.');
    assert.match(bodyText(n, 'Email'), /^Email: x@example\.com$/m);
  });

  test('an HTML-only mail reads as text with its rows as labels', async () => {
    const n = await toNotification(eml('From: a@example.com\nSubject: s\nContent-Type: text/html; charset=UTF-8', '<table><tr><td>Customer</td><td>Jos&eacute;</td></tr></table>'));
    assert.equal(firstValue(labelLines(n.text), 'Customer'), 'José');
  });

  for (const [program, marker, headers] of [
    ['Gmail', '---------- Forwarded message ---------', 'From: Kagi <admin@kagi.com>\nDate: Tue, Nov 10, 2026 at 9:12 AM\nSubject: Kagi Payment Acknowledgement\nTo: <me@example.com>'],
    ['Thunderbird', '-------- Original Message --------', 'Subject: Kagi Payment Acknowledgement\nDate: Tue, 10 Nov 2026 09:12:44 -0800\nFrom: Kagi <admin@kagi.com>\nTo: me@example.com'],
    ['Outlook', '-----Original Message-----', 'From: Kagi [mailto:admin@kagi.com]\nSent: Tuesday, November 10, 2026 6:12 PM\nTo: me@example.com\nSubject: Kagi Payment Acknowledgement'],
    ['Apple Mail', 'Begin forwarded message:', '\nFrom: Kagi <admin@kagi.com>\nSubject: Kagi Payment Acknowledgement\nDate: 10 November 2026 at 18:12:44 CET\nTo: me@example.com'],
  ] as const) {
    test(`an inline forward from ${program} is read as the original, marked as forwarded by the seller`, async () => {
      const n = await toNotification(
        eml('From: Owner <owner@example.com>\nSubject: Fwd: Kagi Payment Acknowledgement\nMessage-ID: <fwd@example.com>', `Please have a look.\n\n${marker}\n${headers}\n\nKagi Transaction ID: 8811-1\n`),
      );
      assert.equal(n.fromAddress, 'admin@kagi.com');
      assert.equal(n.fromName, 'Kagi');
      assert.equal(n.subject, 'Kagi Payment Acknowledgement');
      assert.equal(firstValue(labelLines(n.text), 'Kagi Transaction ID'), '8811-1');
      assert.deepEqual(forwardedOf(n), { how: 'inline', by: 'owner@example.com', outerSubject: 'Fwd: Kagi Payment Acknowledgement', outerMessageId: '<fwd@example.com>', original: null });
    });
  }

  test('a forward without a zone in its date keeps no date, so the result does not depend on the machine', async () => {
    const n = await toNotification(eml('From: owner@example.com\nSubject: Fwd: x', '---------- Forwarded message ---------\nFrom: admin@kagi.com\nDate: Tue, Nov 10, 2026 at 9:12 AM\nSubject: x\n\nbody\n'));
    assert.equal(n.fromAddress, 'admin@kagi.com');
    assert.equal(n.date, null);
  });

  test('an attached original is read as itself and kept byte for byte for its own signature', async () => {
    const original = 'From: FastSpring <noreply@fastspring.com>\nSubject: =?UTF-8?Q?New_Order_=C3=A9?=\nMessage-ID: <inner@fastspring.com>\nContent-Type: text/plain; charset=UTF-8\n\nCustomer: A\n';
    const n = await toNotification(
      eml(
        'From: owner@example.com\nSubject: Fwd: order\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="m"',
        `--m\nContent-Type: text/plain\n\nsee attached\n--m\nContent-Type: message/rfc822\n\n${original}--m--\n`,
      ),
    );
    assert.equal(n.fromAddress, 'noreply@fastspring.com');
    assert.equal(n.subject, 'New Order é');
    assert.equal(n.messageId, '<inner@fastspring.com>');
    const forwarded = forwardedOf(n);
    assert.equal(forwarded?.how, 'attachment');
    assert.equal(forwarded?.by, 'owner@example.com');
    assert.equal(forwarded?.original?.toString(), original.replace(/\n$/, ''));
  });

  test('a message that arrived first-hand is not marked as forwarded', async () => {
    assert.equal(forwardedOf(await toNotification(eml('From: sales@kagi.com\nSubject: x', 'Kagi Transaction ID: 1\n'))), null);
  });

  test('a quoted-printable message with a huge run of blanks is refused at once instead of stalling the decoder', async () => {
    const started = Date.now();
    await assert.rejects(
      toNotification(eml('From: a@example.com\nContent-Transfer-Encoding: quoted-printable', `x${' '.repeat(100_000)}y\n`)),
      /run of 100000 blanks/,
    );
    assert.ok(Date.now() - started < 1000);
  });
});
