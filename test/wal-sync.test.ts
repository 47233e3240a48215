/**
 * Commits whose fsync runs off the main thread (src/record/wal-sync.ts): nobody hears of a commit
 * before the WAL file is synced, concurrent commits share syncs, and every other commit keeps
 * synchronous=FULL. fs.fdatasync is watched (and, where a test says so, held back) to see it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import Database from 'better-sqlite3';
import { openDatabase, type Db } from '../src/record/db';
import { GroupCommit } from '../src/record/group-commit';
import { WalSync } from '../src/record/wal-sync';
import { tempDir } from './support/cli';

type SyncCall = { fd: number; done: (err: NodeJS.ErrnoException | null) => void };
const realFdatasync = fs.fdatasync;
/** Every fdatasync the code under test asked for. */
let calls: SyncCall[] = [];
/** The ones waiting for the test to let them run. */
let held: SyncCall[] = [];
let hold = false;
function watchSyncs(options: { hold: boolean }): void {
  calls = [];
  held = [];
  hold = options.hold;
  (fs as { fdatasync: unknown }).fdatasync = (fd: number, done: (err: NodeJS.ErrnoException | null) => void): void => {
    const call = { fd, done };
    calls.push(call);
    if (hold) held.push(call);
    else realFdatasync(fd, done);
  };
}
/** Runs the held syncs, and every later one at once. */
function releaseSyncs(): void {
  hold = false;
  for (const call of held.splice(0)) realFdatasync(call.fd, call.done);
}
afterEach(() => {
  (fs as { fdatasync: unknown }).fdatasync = realFdatasync;
});

function database(): Db {
  const db = openDatabase(path.join(tempDir(), 'k.db'));
  db.exec('CREATE TABLE t (n INTEGER)');
  return db;
}
/** A group commit on a fresh database with table t. */
function groupCommit(): { db: Db; walSync: WalSync; group: GroupCommit } {
  const db = database();
  const walSync = new WalSync(db);
  return { db, walSync, group: new GroupCommit(db, walSync) };
}
const rowsIn = (db: Db): number => (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
const synchronous = (db: Db): number => db.pragma('synchronous', { simple: true }) as number;
const FULL = 2;
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('a commit made through commitLater syncs the WAL file itself, and leaves the connection at synchronous=FULL', async () => {
  const db = database();
  const walSync = new WalSync(db);
  watchSyncs({ hold: false });
  let during = -1;
  walSync.commitLater(() => {
    during = synchronous(db);
    db.prepare('INSERT INTO t VALUES (1)').run();
  });
  assert.equal(during, 1, 'NORMAL while the work commits');
  assert.equal(synchronous(db), FULL, 'FULL again for every other commit');
  await walSync.durable();
  assert.equal(calls.length, 1);
  const walFile = `${db.name}-wal`;
  assert.equal(fs.fstatSync(calls[0]?.fd ?? -1).ino, fs.statSync(walFile).ino, 'the descriptor synced is the WAL file');
  await walSync.close();
  db.close();
});

test('work that throws inside commitLater still leaves the connection at synchronous=FULL', () => {
  const db = database();
  const walSync = new WalSync(db);
  assert.throws(() => walSync.commitLater(() => {
    throw new Error('boom');
  }), /boom/);
  assert.equal(synchronous(db), FULL);
  db.close();
});

test('callers that ask while a sync runs share the next one: two syncs for any number of callers', async () => {
  const db = database();
  const walSync = new WalSync(db);
  watchSyncs({ hold: true });
  walSync.commitLater(() => db.prepare('INSERT INTO t VALUES (1)').run());
  let firstDone = false;
  const first = walSync.durable().then(() => (firstDone = true));
  // These commits reach the WAL after the first sync started: the first sync may not cover them.
  walSync.commitLater(() => db.prepare('INSERT INTO t VALUES (2)').run());
  let laterDone = 0;
  const later = Array.from({ length: 10 }, () => walSync.durable().then(() => laterDone++));
  await tick();
  assert.equal(calls.length, 1, 'one sync running');
  assert.equal(firstDone, false, 'nobody hears back before the sync finished');
  releaseSyncs();
  await first;
  await Promise.all(later);
  assert.equal(laterDone, 10);
  assert.equal(calls.length, 2, 'the ten later callers shared one more sync');
  await walSync.close();
  db.close();
});

test('a group commit answers its callers only once the WAL file is synced', async () => {
  const { db, walSync, group } = groupCommit();
  watchSyncs({ hold: true });
  const answered: number[] = [];
  const runs = [1, 2, 3].map((n) => group.run(() => db.prepare('INSERT INTO t VALUES (?)').run(n)).then(() => answered.push(n)));
  for (let i = 0; i < 5; i++) await tick();
  const reader = new Database(db.name, { readonly: true });
  assert.equal(rowsIn(reader), 3, 'committed (one transaction)');
  reader.close();
  assert.deepEqual(answered, [], 'but nobody answered before the sync');
  assert.equal(calls.length, 1);
  releaseSyncs();
  await Promise.all(runs);
  assert.deepEqual(answered, [1, 2, 3]);
  await walSync.close();
  db.close();
});

test('work queued while a batch waits for its sync commits as the next batch, together', async () => {
  const { db, walSync, group } = groupCommit();
  watchSyncs({ hold: true });
  const first = group.run(() => db.prepare('INSERT INTO t VALUES (1)').run());
  for (let i = 0; i < 3; i++) await tick();
  assert.equal(calls.length, 1, 'the first batch is waiting for its sync');
  const next = [2, 3, 4].map((n) => group.run(() => db.prepare('INSERT INTO t VALUES (?)').run(n)));
  for (let i = 0; i < 3; i++) await tick();
  assert.equal(rowsIn(db), 1, 'the next batch waits until the first is on the disk');
  releaseSyncs();
  await first;
  await Promise.all(next);
  assert.equal(rowsIn(db), 4);
  assert.equal(calls.length, 2, 'one sync for the three that waited together');
  await walSync.close();
  db.close();
});

test('a piece of a group commit that throws fails alone: the others in its batch commit', async () => {
  const { db, walSync, group } = groupCommit();
  const insert = db.prepare('INSERT INTO t VALUES (?)');
  const runs = [
    group.run(() => insert.run(1)),
    group.run(() => {
      insert.run(2);
      throw new Error('this order cannot be recorded');
    }),
    group.run(() => insert.run(3)),
  ];
  const settled = await Promise.allSettled(runs);
  assert.deepEqual(settled.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
  assert.match(String((settled[1] as PromiseRejectedResult).reason), /cannot be recorded/);
  assert.deepEqual(db.prepare('SELECT n FROM t ORDER BY n').pluck().all(), [1, 3], 'the failing piece left nothing behind');
  await walSync.close();
  db.close();
});

test('a failed sync fails the callers of its batch: no answer for a commit that may not be on the disk', async () => {
  const { db, walSync, group } = groupCommit();
  (fs as { fdatasync: unknown }).fdatasync = (_fd: number, done: (err: NodeJS.ErrnoException | null) => void): void => {
    done(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
  };
  await assert.rejects(group.run(() => db.prepare('INSERT INTO t VALUES (1)').run()), /EIO/);
  await walSync.close();
  db.close();
});

test('a database in memory has no WAL file: durable() has nothing to wait for', async () => {
  const db = new Database(':memory:');
  const walSync = new WalSync(db);
  watchSyncs({ hold: true });
  walSync.commitLater(() => db.exec('CREATE TABLE t (n INTEGER)'));
  await walSync.durable();
  assert.equal(calls.length, 0);
  db.close();
});
