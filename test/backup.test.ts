/** Nightly database backups: a real SQLite file, copied while it is being written, pruned to `keep`. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { backupDatabase, backupSettingsSchema, listBackups } from '../src/record/backup';
import { openDatabase, type Db } from '../src/record/db';

const tempDirs: string[] = [];
/** A fresh directory, removed when the file's tests are done. */
function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function freshDb(): { db: Db; dir: string } {
  const dir = tempDir('km-backup-');
  const db = openDatabase(path.join(dir, 'keymailer.db'));
  return { db, dir };
}

function addEvents(db: Db, n: number, detail = 'x'.repeat(2000)): void {
  const insert = db.prepare('INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)');
  db.transaction(() => {
    for (let i = 0; i < n; i++) insert.run(new Date().toISOString(), 'test', detail);
  })();
}

function countEvents(file: string): number {
  const copy = new Database(file, { readonly: true });
  try {
    return (copy.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
  } finally {
    copy.close();
  }
}

test('a backup is a complete, checked, self-contained copy', async () => {
  const { db, dir } = freshDb();
  addEvents(db, 500);
  const backups = path.join(dir, 'backups');
  const result = await backupDatabase(db, { dir: backups, keep: 7, now: new Date('2025-10-26T01:30:00.000Z') });
  assert.equal(path.basename(result.file), 'keymailer-20251026T013000Z.db');
  assert.ok(result.bytes > 500 * 2000);
  assert.deepEqual(result.removed, []);
  assert.equal(countEvents(result.file), 500);
  assert.deepEqual(fs.readdirSync(backups), ['keymailer-20251026T013000Z.db'], 'no -wal, -shm or partial file next to it');
  const copy = new Database(result.file, { readonly: true });
  assert.equal(copy.pragma('user_version', { simple: true }), db.pragma('user_version', { simple: true }));
  assert.equal(copy.pragma('integrity_check', { simple: true }), 'ok');
  copy.close();
  db.close();
});

test('keeps the last `keep` backups and deletes older ones and leftovers of a crash', async () => {
  const { db, dir } = freshDb();
  addEvents(db, 10);
  const backups = path.join(dir, 'backups');
  fs.mkdirSync(backups);
  fs.writeFileSync(path.join(backups, 'keymailer-20251001T033000Z.db.partial'), 'half a copy from a power cut');
  fs.writeFileSync(path.join(backups, 'notes.txt'), 'the seller keeps this here');
  const day = 24 * 3600_000;
  const start = Date.parse('2025-10-01T01:30:00.000Z');
  const removed: string[] = [];
  for (let i = 0; i < 10; i++) {
    addEvents(db, 1);
    const result = await backupDatabase(db, { dir: backups, keep: 7, now: new Date(start + i * day) });
    removed.push(...result.removed.map((f) => path.basename(f)));
  }
  const kept = listBackups(backups, 'keymailer').map((f) => path.basename(f));
  assert.equal(kept.length, 7);
  assert.equal(kept[0], 'keymailer-20251004T013000Z.db');
  assert.equal(kept[6], 'keymailer-20251010T013000Z.db');
  assert.deepEqual(removed, ['keymailer-20251001T013000Z.db', 'keymailer-20251002T013000Z.db', 'keymailer-20251003T013000Z.db']);
  assert.ok(fs.existsSync(path.join(backups, 'notes.txt')), 'files that are not backups are left alone');
  assert.ok(!fs.readdirSync(backups).some((n) => n.endsWith('.partial')));
  assert.equal(countEvents(path.join(backups, kept[6] ?? '')), 20);
  db.close();
});

test('the copy is consistent while the daemon keeps writing between steps', async () => {
  const { db, dir } = freshDb();
  addEvents(db, 2000);
  let writes = 0;
  const writer = setInterval(() => {
    addEvents(db, 5);
    writes += 5;
  }, 1);
  try {
    const result = await backupDatabase(db, { dir: path.join(dir, 'backups'), keep: 2, pagesPerStep: 8 });
    const n = countEvents(result.file);
    assert.ok(n >= 2000, `copy has ${n} events`);
    assert.ok(writes > 0, 'writes happened during the copy');
    const copy = new Database(result.file, { readonly: true });
    assert.equal(copy.pragma('integrity_check', { simple: true }), 'ok');
    copy.close();
  } finally {
    clearInterval(writer);
    db.close();
  }
});

test('an aborted backup leaves nothing behind', async () => {
  const { db, dir } = freshDb();
  addEvents(db, 2000);
  const backups = path.join(dir, 'backups');
  const controller = new AbortController();
  const copying = backupDatabase(db, { dir: backups, keep: 7, pagesPerStep: 4, signal: controller.signal });
  setImmediate(() => controller.abort());
  await assert.rejects(copying, /aborted/);
  assert.deepEqual(fs.readdirSync(backups), []);
  // The database itself is untouched and can be closed right away (what App.stop() does next).
  db.close();
});

test('backup settings: defaults and bounds', () => {
  assert.deepEqual(backupSettingsSchema.parse(undefined), { enabled: true, cron: '30 3 * * *', keep: 7, dir: 'data/backups' });
  assert.equal(backupSettingsSchema.parse({ keep: 30 }).keep, 30);
  assert.equal(backupSettingsSchema.safeParse({ keep: 0 }).success, false);
  assert.equal(backupSettingsSchema.safeParse({ every: 'day' }).success, false);
  assert.equal(backupSettingsSchema.safeParse({ cron: 'nightly' }).success, false);
});
