/**
 * Buyer mails are written by src/deliver/mime.ts in one pass instead of by nodemailer's streams:
 * the bytes must be the very bytes MimeNode.build() gives for the same composed mail, whatever the
 * names, subjects and bodies (non-ASCII, long lines, trailing blanks, lone CR or LF, dots, sizes
 * over the encoders' 64 KiB slices).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import MailComposer from 'nodemailer/lib/mail-composer';
import { buildMime } from '../src/deliver/mime';
import { composeMail } from '../src/deliver/render';
import { seededRandom } from './support/random';

const ALPHABET = [
  ...'abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ 0123456789 .,;:!?-_=+*/\\"\'()<>[]@#%&',
  ' ', ' ', '  ', '\t', '\n', '\n', '\r\n', '\r', '.', '\n.', '=', '=3D',
  'é', 'ü', 'ß', 'Ø', 'ł', 'Ж', 'Ω', '中', '文', '日本', '😀', '\u00a0', '\u200b',
];

function text(random: () => number, maxLength: number): string {
  const length = Math.floor(random() * maxLength);
  let out = '';
  while (out.length < length) {
    // now and then a long run without a break, which quoted-printable must wrap
    if (random() < 0.02) out += 'x'.repeat(60 + Math.floor(random() * 200));
    else out += ALPHABET[Math.floor(random() * ALPHABET.length)] ?? '';
  }
  return out;
}

function mailOptions(random: () => number, i: number): ConstructorParameters<typeof MailComposer>[0] {
  const big = random() < 0.05;
  return {
    from: random() < 0.5 ? 'Acme Apps <sales@acme.example>' : `"${text(random, 30).replace(/[\r\n"\\]/g, '')}" <sales@acme.example>`,
    to: { name: text(random, 40).replace(/[\r\n]/g, ' '), address: `buyer${i}@example.net` },
    subject: text(random, 120),
    text: text(random, big ? 150_000 : 2_000),
    ...(random() < 0.8 ? { html: `<p>${text(random, big ? 100_000 : 3_000)}</p>` } : {}),
    messageId: `<${i}.km@acme.example>`,
    date: new Date(Date.UTC(2026, 11, 1, 17, 40, i % 60)),
    headers: { 'X-Mailer': 'keymailer' },
    // The boundary is random per message: the same one on both sides so the bytes can be compared.
    baseBoundary: `b${i}`,
  } as ConstructorParameters<typeof MailComposer>[0];
}

test('buyer mails written in one pass are byte for byte what nodemailer streams, over 3,000 generated mails', async () => {
  const random = seededRandom(20261201);
  for (let i = 0; i < 3000; i++) {
    const options = mailOptions(random, i);
    const streamed = await new MailComposer(options).compile().build();
    const written = await buildMime(new MailComposer(options).compile());
    if (!written.equals(streamed)) {
      assert.equal(written.toString('latin1'), streamed.toString('latin1'), `mail ${i} differs (options: ${JSON.stringify(options).slice(0, 400)})`);
    }
  }
});

test('a part whose content is a stream is still built by nodemailer, with the same result', async () => {
  const { Readable } = await import('node:stream');
  const options = { from: 'sales@acme.example', to: 'buyer@example.net', subject: 'Hi', messageId: '<s.km@acme.example>', date: new Date(0), baseBoundary: 'b' };
  const streamed = await new MailComposer({ ...options, text: Readable.from([Buffer.from('from a stream\n')]) }).compile().build();
  const written = await buildMime(new MailComposer({ ...options, text: Readable.from([Buffer.from('from a stream\n')]) } as ConstructorParameters<typeof MailComposer>[0]).compile());
  assert.equal(written.toString(), streamed.toString());
  assert.match(written.toString(), /from a stream/);
});

test('composeMail gives a complete two-part buyer mail', async () => {
  const raw = await composeMail({
    from: 'Acme Apps <sales@acme.example>',
    to: { name: 'Jörg Müller', address: 'jorg@example.net' },
    subject: 'Your Widget Pro licence',
    text: 'Serial: 8F2B-D544\n',
    html: '<p>Serial: <b>8F2B-D544</b></p>',
    messageId: '<abc.km@acme.example>',
    date: new Date(Date.UTC(2026, 11, 1)),
  });
  const mail = raw.toString();
  assert.match(mail, /^Content-Type: multipart\/alternative;\r\n boundary="([^"]+)"\r$/m);
  assert.match(mail, /^To: =\?UTF-8\?Q\?J=C3=B6rg_M=C3=BCller\?= <jorg@example\.net>$/m);
  assert.match(mail, /^Message-ID: <abc\.km@acme\.example>$/m);
  assert.match(mail, /Serial: 8F2B-D544/);
  assert.ok(mail.endsWith('--\r\n'));
});
