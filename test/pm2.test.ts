/**
 * Under pm2, as a seller runs it: the ecosystem file starts the compiled daemon, an order is
 * processed, `pm2 reload` swaps the process, another order is processed, `pm2 stop` ends it,
 * and nothing was lost or sent twice.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { PROJECT_ROOT, nodeFlags, referenceSerial, tempDir } from './support/cli';
import { appendMessage, listMailbox, startDovecot } from './support/dovecot';
import { TEST_KEY, kagiSale, writeImapConfig } from './support/imap-config';
import { startSmtpSink } from './support/smtp-sink';

const run = promisify(execFile);
const PM2 = path.join(PROJECT_ROOT, 'node_modules', '.bin', 'pm2');

test('pm2 start, reload and stop: each order mailed once, and the daemon reports ready to pm2', async () => {
  const dovecot = await startDovecot();
  const sink = await startSmtpSink();
  const dir = tempDir();
  const env = {
    ...process.env,
    PM2_HOME: path.join(dir, 'pm2'),
    KEYMAILER_CONFIG: writeImapConfig(dir, dovecot, sink),
    TEST_IMAP_PASSWORD: dovecot.pass,
  };
  const pm2 = (...args: string[]): Promise<{ stdout: string }> => run(PM2, args, { cwd: PROJECT_ROOT, env, timeout: 60_000 });
  const status = async (): Promise<{ status: string; pid: number; restarts: number; nodeArgs: string[] }> => {
    const { stdout } = await pm2('jlist');
    const list = JSON.parse(stdout) as { name: string; pid: number; pm2_env: { status: string; restart_time: number; node_args?: string[] } }[];
    const app = list.find((a) => a.name === 'keymailer');
    return { status: app?.pm2_env.status ?? 'missing', pid: app?.pid ?? 0, restarts: app?.pm2_env.restart_time ?? 0, nodeArgs: app?.pm2_env.node_args ?? [] };
  };
  try {
    // wait_ready: `pm2 start` returns once the daemon sent 'ready' (IMAP in IDLE).
    await pm2('start', 'ecosystem.config.js');
    const first = await status();
    assert.equal(first.status, 'online');
    assert.deepEqual(first.nodeArgs, nodeFlags(), 'pm2 starts node with keymailer\'s heap settings');

    await appendMessage(dovecot, 'INBOX', kagiSale(41, 'Before Reload', 'before.reload@example.org'));
    const one = await sink.waitFor((m) => m.to.includes('before.reload@example.org'), 15_000);
    assert.ok(one.parsed.text?.includes(referenceSerial(TEST_KEY, 'Before Reload')));

    await pm2('reload', 'keymailer');
    const second = await status();
    assert.equal(second.status, 'online');
    assert.notEqual(second.pid, first.pid, 'reload started a new process');

    await appendMessage(dovecot, 'INBOX', kagiSale(42, 'After Reload', 'after.reload@example.org'));
    await sink.waitFor((m) => m.to.includes('after.reload@example.org'), 15_000);

    await pm2('stop', 'keymailer');
    assert.equal((await status()).status, 'stopped');

    const buyerMails = sink.messages.filter((m) => m.to[0] !== 'owner@acme.example');
    assert.equal(buyerMails.length, 2, 'nothing sent twice');
    const db = new Database(path.join(dir, 'data', 'keymailer.db'), { readonly: true });
    const orders = db.prepare('SELECT state FROM orders').all() as { state: string }[];
    db.close();
    assert.deepEqual(orders.map((o) => o.state), ['sent', 'sent'], 'nothing lost');
    assert.equal((await listMailbox(dovecot, 'Processed')).length, 2);
  } finally {
    await pm2('kill').catch(() => undefined);
    await sink.stop();
    await dovecot.stop();
  }
});
