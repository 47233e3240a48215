/**
 * 1. Time to the buyer: the daemon IDLEs on the mailbox; notifications are APPENDed one at a time,
 * a second or more apart; for each, the time from the APPEND's OK to the buyer mail arriving at the
 * SMTP server. Baseline on the very same APPENDs: a bare imapflow client IDLE-ing on the same
 * mailbox, APPEND OK → `exists`. All three instants are performance.now() in this process.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImapFlow } from 'imapflow';
import { withImap } from '../test/support/dovecot';
import { kagiSale } from '../test/support/imap-config';
import { startBenchDaemon } from './lib/daemon';
import { num, type SectionResult } from './lib/report';
import { startWorld } from './lib/setup';
import { fmt, median, percentile } from './lib/stats';

export interface TimeToBuyerOptions {
  readonly count: number;
  /** least time between two APPENDs */
  readonly gapMs: number;
}

export async function timeToBuyer(options: TimeToBuyerOptions): Promise<SectionResult> {
  const world = await startWorld();
  const daemon = startBenchDaemon({ config: world.config, env: world.env, logFile: path.join(world.dir, 'daemon.log') });
  const watcher = new ImapFlow({
    host: world.dovecot.host,
    port: world.dovecot.port,
    secure: false,
    auth: { user: world.dovecot.user, pass: world.dovecot.pass },
    logger: false,
  });
  watcher.on('error', () => undefined);
  const existsAt: number[] = [];
  let expunges = 0;
  let unannounced = 0;
  /** buyer mail − the bare client's exists, for the APPENDs both saw */
  const extra: number[] = [];
  const baseline: number[] = [];
  const keymailer: number[] = [];
  let code: number | null = null;
  try {
    await daemon.ready();
    await watcher.connect();
    await watcher.mailboxOpen('INBOX');
    watcher.on('exists', (info: { count: number; prevCount: number }) => {
      if (info.count > info.prevCount) existsAt.push(performance.now());
    });
    watcher.on('expunge', () => expunges++);
    // IDLE now: imapflow would only enter it by itself after 15 s without commands.
    void watcher.idle().catch(() => undefined);
    await sleep(200);

    await withImap(world.dovecot, async (client) => {
      let lastAppend = 0;
      // i = 0 warms the daemon's code paths up (its first message after start); it is not counted
      for (let i = 0; i <= options.count; i++) {
        const wait = lastAppend + options.gapMs - performance.now();
        if (wait > 0) await sleep(wait);
        const email = `ttb${i}@example.net`;
        const seenExists = existsAt.length;
        const seenExpunges = expunges;
        const before = performance.now();
        await client.append('INBOX', kagiSale(10_000 + i, `Buyer ${i}`, email));
        const ok = performance.now();
        lastAppend = before;
        const mail = await world.sink.waitFor((m) => m.to.includes(email), 15_000);
        const deadline = Date.now() + 2000;
        while (existsAt.length === seenExists && Date.now() < deadline) await sleep(2);
        const exists = existsAt[seenExists];
        // Dovecot holds change notifications ~500 ms and then sends every change since: when the
        // next APPEND fell inside the window of the daemon's move (EXPUNGE) of this message, the bare
        // client would learn of it early and the baseline would be wrong. So the next APPEND waits
        // until the bare client has been told of that move.
        while (expunges === seenExpunges && Date.now() < deadline + 5000) await sleep(5);
        await sleep(50);
        if (i === 0) continue;
        keymailer.push(mail.receivedAt - ok);
        if (exists === undefined) {
          // The bare client's notification came after the daemon had already moved the message, so
          // Dovecot told it nothing (a message added and removed between two of its syncs is never
          // announced): this APPEND has no baseline sample (counted below).
          unannounced++;
          continue;
        }
        baseline.push(exists - ok);
        extra.push(mail.receivedAt - exists);
      }
    });
  } finally {
    await watcher.logout().catch(() => watcher.close());
    code = await daemon.stop();
    await world.close();
  }

  const p50 = percentile(keymailer, 50);
  const p99 = percentile(keymailer, 99);
  const b50 = percentile(baseline, 50);
  const b99 = percentile(baseline, 99);
  return {
    id: 'time-to-buyer',
    title: '1. Time to the buyer',
    method:
      `The daemon runs (IDLE on INBOX). ${options.count} Kagi notifications (after one uncounted warm-up) are APPENDed one at ` +
      `a time, at least ${options.gapMs} ms apart and each only after the bare client below was told of the daemon's move of the ` +
      'previous one (else Dovecot folds the new message into that pending notification), on one IMAP connection. ' +
      "For each: APPEND's tagged OK → the buyer mail's end of DATA at the " +
      'SMTP sink (keymailer), and APPEND OK → `exists` on a bare imapflow client IDLE-ing on the same mailbox at the same ' +
      'time (baseline; Dovecot holds IDLE notifications about 500 ms). All instants are performance.now() in the bench ' +
      'process. Percentiles are nearest-rank.',
    rows: [
      {
        measure: 'p50',
        value: num(p50, 'ms', 1),
        baseline: num(b50, 'ms', 1),
        baselineLabel: 'bare IDLE',
        comparison: `${p50 - b50 >= 0 ? '+' : ''}${fmt(p50 - b50, 1)} ms`,
        target: 'within 50 ms of the baseline',
        met: p50 - b50 <= 50,
      },
      {
        measure: 'p99',
        value: num(p99, 'ms', 1),
        baseline: num(b99, 'ms', 1),
        baselineLabel: 'bare IDLE',
        comparison: `${p99 - b99 >= 0 ? '+' : ''}${fmt(p99 - b99, 1)} ms`,
        target: 'within 100 ms of the baseline',
        met: p99 - b99 <= 100,
      },
    ],
    details: [
      `samples: keymailer ${keymailer.length}, baseline ${baseline.length}` +
        (unannounced > 0
          ? ` (the bare client was never told of ${unannounced} APPENDs: its notification came after the daemon had already moved them, and Dovecot does not announce a message added and removed between two syncs)`
          : '') +
        `; keymailer min ${fmt(Math.min(...keymailer), 1)} ms, max ${fmt(Math.max(...keymailer), 1)} ms; ` +
        `baseline min ${fmt(Math.min(...baseline), 1)} ms, max ${fmt(Math.max(...baseline), 1)} ms`,
      `keymailer's own share per notification (buyer mail arrival − the bare client's exists, for the ${extra.length} APPENDs both saw): ` +
        `median ${fmt(median(extra), 1)} ms, p99 ${fmt(percentile(extra, 99), 1)} ms`,
    ],
    checks: {
      'every APPENDed notification reached its buyer': keymailer.length === options.count,
      'the daemon stopped cleanly (exit 0 on SIGTERM)': code === 0,
    },
    notes: [],
  };
}
