/**
 * No serial for a forgery, end to end: the daemon trusts the topmost Authentication-Results of
 * the seller's own mail server, and nothing else.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { EXAMPLES, referenceSerial, runCli, tempDir } from './support/cli';

const KEY = 'Tq9#vL2!pX7@mR4s';
const sale = fs.readFileSync(path.join(EXAMPLES, 'kagi-sale-widget-pro.eml'), 'utf8');

function setUp(): { config: string; inbox: string; outbox: string } {
  const dir = tempDir();
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(
    config,
    `owner: { email: owner@acme.example }
dropFolder: inbox
outbox: outbox
from: "Acme Software <sales@acme.example>"
trustAuthResults: [mx1.acme.example]
products:
  - { id: widget-pro, name: Widget Pro, key: "${KEY}", match: ["Widget Pro"] }
`,
  );
  fs.mkdirSync(path.join(dir, 'inbox'));
  return { config, inbox: path.join(dir, 'inbox'), outbox: path.join(dir, 'outbox') };
}

function outboxFiles(outbox: string, prefix: string): string[] {
  return fs.existsSync(outbox) ? fs.readdirSync(outbox).filter((n) => n.startsWith(prefix)) : [];
}

describe('forged notifications', () => {
  test('a Kagi sale vouched for by the seller\'s own mail server is fulfilled', async () => {
    const s = setUp();
    fs.writeFileSync(path.join(s.inbox, 'sale.eml'), `Authentication-Results: mx1.acme.example; dkim=pass header.d=kagi.com; dmarc=pass header.from=kagi.com\r\n${sale}`);
    const run = await runCli(['--once', '--config', s.config]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const [mail] = outboxFiles(s.outbox, 'serial-');
    assert.ok(mail, run.stdout);
    assert.ok(fs.readFileSync(path.join(s.outbox, mail), 'utf8').includes(referenceSerial(KEY, 'Marie Dubois').slice(0, 9)));
  });

  test('the same sale with no proof goes to review, the owner is alerted, and no serial is made', async () => {
    const s = setUp();
    fs.writeFileSync(path.join(s.inbox, 'sale.eml'), sale);
    const run = await runCli(['--once', '--config', s.config]);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /notification rejected: not from its vendor/);
    assert.deepEqual(outboxFiles(s.outbox, 'serial-'), []);
    assert.deepEqual(fs.readdirSync(path.join(s.inbox, 'review')), ['sale.eml']);
    const [alert] = outboxFiles(s.outbox, 'alert-');
    assert.ok(alert, 'the owner is told');
    assert.match(fs.readFileSync(path.join(s.outbox, alert), 'utf8'), /failed authentication/);
  });

  test('an Authentication-Results header written by someone else counts for nothing', async () => {
    const s = setUp();
    fs.writeFileSync(path.join(s.inbox, 'sale.eml'), `Authentication-Results: mx.attacker.example; dkim=pass header.d=kagi.com; dmarc=pass header.from=kagi.com\r\n${sale}`);
    await runCli(['--once', '--config', s.config]);
    assert.deepEqual(outboxFiles(s.outbox, 'serial-'), []);
  });

  test('a trusted header below an untrusted one is not honoured', async () => {
    const s = setUp();
    fs.writeFileSync(
      path.join(s.inbox, 'sale.eml'),
      `Authentication-Results: mx.attacker.example; dkim=none\r\nAuthentication-Results: mx1.acme.example; dkim=pass header.d=kagi.com; dmarc=pass header.from=kagi.com\r\n${sale}`,
    );
    await runCli(['--once', '--config', s.config]);
    assert.deepEqual(outboxFiles(s.outbox, 'serial-'), []);
  });

  test('keymailer parse reports a forgery as reject with the reason', async () => {
    const s = setUp();
    const file = path.join(s.inbox, 'sale.eml');
    fs.writeFileSync(file, sale.replace('From: Kagi <admin@kagi.com>', 'From: Kagi <admin@kagi-payments.example>'));
    const run = await runCli(['parse', file, '--config', s.config]);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { action: string; reason: string };
    assert.equal(result.action, 'review', 'a sender that is not Kagi is not even read as Kagi');
    fs.writeFileSync(file, `Authentication-Results: mx1.acme.example; dkim=fail header.d=kagi.com; dmarc=fail header.from=kagi.com\r\n${sale}`);
    const forged = JSON.parse((await runCli(['parse', file, '--config', s.config])).stdout) as { action: string; reason: string };
    assert.equal(forged.action, 'reject');
    assert.match(forged.reason, /Kagi/);
  });
});
