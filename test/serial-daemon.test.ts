/** The daemon's buyer mails carry exactly what `keymailer serial` prints for the same order. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { EXAMPLES, runCli, tempDir } from './support/cli';

test('for products with non-default serial settings, the mailed serials equal `keymailer serial` for the same order', async () => {
  const dir = tempDir();
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(
    config,
    `owner: { email: owner@acme.example }
dropFolder: inbox
outbox: outbox
from: "Acme <sales@acme.example>"
vendors: { kagi: { auth: none } }
products:
  - id: widget-pro
    name: Widget Pro
    match: ["Widget Pro"]
    serial:
      key: "hex:000102030405060708090a0b0c0d0e0f"
      mode: cbc
      iv: "hex:0f0e0d0c0b0a09080706050403020100"
      input: "{name}#{unit}|{order}"
      perUnit: true
      normalize: [nfkd-ascii, uppercase]
      encoding: latin1
      output: base32-crockford
      group: 5
      prefix: "WP-"
      length: 20
`,
  );
  fs.mkdirSync(path.join(dir, 'inbox'));
  fs.copyFileSync(path.join(EXAMPLES, 'kagi-sale-company-license.eml'), path.join(dir, 'inbox', 'sale.eml'));
  assert.equal((await runCli(['--once', '--config', config])).code, 0);
  const eml = fs.readdirSync(path.join(dir, 'outbox')).find((n) => n.startsWith('serial-'));
  assert.ok(eml);
  const text = (await simpleParser(fs.readFileSync(path.join(dir, 'outbox', eml)))).text ?? '';
  const mailed = [...text.matchAll(/Serial: (\S+)/g)].map((m) => m[1]);
  const printed = await runCli(['serial', '--config', config, '--product', 'widget-pro', '--name', 'Müller Ingenieure GmbH', '--email', 'joerg.mueller@example.de', '--quantity', '3', '--order', '8811-2051-0093']);
  assert.equal(printed.code, 0, printed.stderr);
  const expected = printed.stdout.trim().split('\n');
  assert.equal(expected.length, 3, 'one serial per unit');
  assert.deepEqual(mailed, expected);
});
