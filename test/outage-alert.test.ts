/** The owner hears once per outage when the mailbox has been unreachable past the limit. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../src/log';
import { watchOutage } from '../src/main';
import type { SourceStatus } from '../src/types';

test('a mailbox down longer than the limit raises one imap-down alert per outage, none while connected', async () => {
  let status: SourceStatus = { connected: true, since: Date.now(), lastSyncAt: null };
  const raised: string[] = [];
  const timer = watchOutage(
    { description: 'IMAP orders@mail.example', status: () => status },
    { raise: (kind, subject) => raised.push(`${kind}: ${subject}`) },
    createLogger({ level: 'error' }),
    300,
    20,
  );
  try {
    await sleep(400);
    assert.deepEqual(raised, [], 'connected: nothing to say');
    status = { connected: false, since: Date.now(), lastSyncAt: null };
    await sleep(150);
    assert.deepEqual(raised, [], 'down, but not yet past the limit');
    await sleep(400);
    assert.equal(raised.length, 1);
    assert.match(raised[0] ?? '', /^imap-down: IMAP orders@mail\.example unreachable for \d+ minutes$/);
    await sleep(200);
    assert.equal(raised.length, 1, 'once per outage, not every check');
    status = { connected: true, since: Date.now(), lastSyncAt: Date.now() };
    await sleep(100);
    status = { connected: false, since: Date.now(), lastSyncAt: Date.now() };
    await sleep(500);
    assert.equal(raised.length, 2, 'a new outage is told again');
  } finally {
    clearInterval(timer);
  }
});
