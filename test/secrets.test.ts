/**
 * No secret reaches a log, an error or the database: a full run with every kind of secret
 * configured, then a grep of everything keymailer wrote for each of them.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { EXAMPLES, runCli, startDaemon, tempDir } from './support/cli';
import { appendMessage, startDovecot } from './support/dovecot';
import { freePort } from './support/dovecot';
import { opensslHmacMd5, signedSource, formBody } from './support/http-app';
import { startSmtpSink } from './support/smtp-sink';

function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(full) : [full];
  });
}

test('after a full run, no password, product key, HMAC secret or private key appears in output, log files or the database', async () => {
  const dovecot = await startDovecot();
  const sink = await startSmtpSink();
  const dir = tempDir();
  const port = await freePort();
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const secrets = {
    TEST_IMAP_PASSWORD: dovecot.pass,
    SMTP_PASSWORD: 'smtp-Pa55word-not-for-logs',
    PRODUCT_KEY: 'Zq7!Lm3#Rt8@Wx1$',
    AVANGATE_SECRET: 'hmac-secret-4-avangate',
    SIGNING_KEY: pem,
  };
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(
    config,
    `owner: { email: owner@acme.example }
imap: { host: 127.0.0.1, port: ${dovecot.port}, secure: false, user: ${dovecot.user}, pass: "\${TEST_IMAP_PASSWORD}" }
smtp: { host: 127.0.0.1, port: ${sink.port}, secure: false, ignoreTLS: true, user: orders, pass: "\${SMTP_PASSWORD}" }
from: "Acme <sales@acme.example>"
http: { host: 127.0.0.1, port: ${port} }
vendors:
  kagi: { auth: none }
  avangate: { secret: "\${AVANGATE_SECRET}" }
products:
  - { id: widget-pro, name: Widget Pro, key: "\${PRODUCT_KEY}", match: ["Widget Pro", "WP-1"] }
  - id: gadget
    name: Gadget
    match: ["Gadget"]
    serial: { scheme: ed25519, privateKey: "\${SIGNING_KEY}" }
`,
  );
  const env = { ...secrets };
  const daemon = startDaemon(['--config', config], { env });
  let output = '';
  try {
    await daemon.waitForOutput(/watching for notifications/);
    await appendMessage(dovecot, 'INBOX', fs.readFileSync(path.join(EXAMPLES, 'kagi-sale-widget-pro.eml')));
    await appendMessage(dovecot, 'INBOX', fs.readFileSync(path.join(EXAMPLES, 'not-a-sale.eml')));
    await sink.waitFor((m) => m.to.includes('marie.dubois@example.net'), 10_000);
    const fields: [string, string][] = [['PCODE', 'WP-1'], ['REFNO', '7700001'], ['QUANTITY', '1'], ['FIRSTNAME', 'Pat'], ['LASTNAME', 'Lee'], ['EMAIL', 'pat@example.net']];
    const good = opensslHmacMd5(secrets.AVANGATE_SECRET, signedSource(fields.map(([, v]) => v)));
    const headers = { 'Content-Type': 'application/x-www-form-urlencoded' };
    assert.equal((await fetch(`http://127.0.0.1:${port}/avangate`, { method: 'POST', headers, body: formBody([...fields, ['HASH', good]]) })).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${port}/avangate`, { method: 'POST', headers, body: formBody([...fields, ['HASH', '0'.repeat(32)]]) })).status, 400);
    await daemon.waitForOutput(/message sent to review/, 10_000);
  } finally {
    assert.equal(await daemon.stop(), 0);
    output += daemon.output();
  }
  // A wrong password, as a seller mistypes it: the error must not echo the one configured either.
  const check = await runCli(['check', '--config', config], { env: { ...env, TEST_IMAP_PASSWORD: `${dovecot.pass}-wrong` } });
  output += check.stdout + check.stderr;
  await sink.stop();
  await dovecot.stop();

  const written = filesUnder(path.join(dir, 'data'));
  assert.ok(written.some((f) => f.includes(`${path.sep}logs${path.sep}`)), `log files were written: ${written.join(', ')}`);
  assert.ok(written.some((f) => f.endsWith('.db')));
  const haystacks = [{ name: 'console output', bytes: Buffer.from(output) }, ...written.map((f) => ({ name: f, bytes: fs.readFileSync(f) }))];
  const needles = Object.entries(secrets).map(([name, value]) => [name, name === 'SIGNING_KEY' ? (value.split('\n')[1] ?? value) : value] as const);
  needles.push(['IMAP_PASSWORD_AS_TYPED_WRONG', `${dovecot.pass}-wrong`]);
  for (const { name, bytes } of haystacks) {
    for (const [secret, value] of needles) {
      assert.equal(bytes.includes(Buffer.from(value)), false, `${secret} found in ${name}`);
    }
  }
});
