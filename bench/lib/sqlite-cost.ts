/** The raw cost of a durable commit on this disk: better-sqlite3, WAL, one row per transaction. */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';

/**
 * Commits each row in its own transaction into a fresh database file in `dir`; returns the time
 * taken for all of them. `synchronous` as the daemon sets it (FULL) or without the per-commit fsync
 * (NORMAL), to tell the fsync's share.
 */
export function timeCommits(dir: string, rows: readonly Buffer[], synchronous: 'FULL' | 'NORMAL'): number {
  const db = new Database(path.join(dir, `commits-${synchronous}-${process.hrtime.bigint()}.db`));
  try {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${synchronous}`);
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, raw BLOB NOT NULL, at TEXT NOT NULL)');
    const insert = db.prepare('INSERT INTO t (k, raw, at) VALUES (?, ?, ?)');
    const commit = db.transaction((k: string, raw: Buffer) => insert.run(k, raw, new Date().toISOString()));
    const t = performance.now();
    rows.forEach((raw, i) => commit(`row-${i}`, raw));
    return performance.now() - t;
  } finally {
    db.close();
  }
}
