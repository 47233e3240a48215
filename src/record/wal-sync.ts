/**
 * Group fsync for the busy paths: signed POSTs, a backlog's batches, sent-marks.
 *
 * The database runs with synchronous=FULL: every commit fsyncs the WAL before it returns, and for
 * those 0.3–2 ms the one thread that answers every request and reads every message waits. A
 * transaction run through `commitLater()` commits with synchronous=NORMAL instead: its frames are in
 * the WAL file in the operating system (a crash or kill of keymailer loses nothing) but not yet on
 * the disk (a power cut could). `durable()` then fdatasyncs the WAL file on libuv's thread pool and
 * resolves once every commit made before the call is on the disk; every commit made while a sync
 * runs shares the next one. Callers act on a commit (answer a POST with its codes, move a message
 * out of the mailbox, send a buyer mail) only once durable() resolved, so a power cut loses nothing
 * that anyone was told of, exactly as with FULL.
 *
 * An fdatasync of any descriptor of the WAL file flushes that file's data, whichever descriptor
 * SQLite wrote it through. SQLite keeps its WAL file (the same inode) while a connection is open;
 * the inode is checked before each sync anyway, and the descriptor reopened if the file was
 * replaced. A database without a WAL file (in memory) has nothing to sync.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Db } from './db';

export class WalSync {
  private readonly walFile: string | null;
  private fd: number | null = null;
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  constructor(private readonly db: Db) {
    const wal = !db.memory && String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal';
    this.walFile = wal ? `${db.name}-wal` : null;
  }

  /** Runs `work` (which commits) with its fsync left to durable(); every other commit keeps FULL. */
  commitLater<T>(work: () => T): T {
    if (this.walFile === null) return work();
    // exec, not a statement prepared once: SQLite applies this pragma while preparing it, so
    // running a prepared copy again does not reliably set it (test/wal-sync.test.ts).
    this.db.exec('PRAGMA synchronous = NORMAL');
    try {
      return work();
    } finally {
      this.db.exec('PRAGMA synchronous = FULL');
    }
  }

  /** Resolves once every commit made before this call is on the disk. */
  durable(): Promise<void> {
    if (this.walFile === null) return Promise.resolve();
    if (this.running === null) {
      this.running = this.sync().finally(() => {
        this.running = null;
      });
      return this.running;
    }
    // The sync running may have started before this caller's commit reached the WAL: take the next.
    this.next ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.next = null;
        return this.durable();
      });
    return this.next;
  }

  /** Waits for the syncs under way, then releases the descriptor; call before closing the database. */
  async close(): Promise<void> {
    await Promise.allSettled([this.running, this.next]);
    this.release();
  }

  private release(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private async sync(): Promise<void> {
    const fd = this.descriptor();
    if (fd === null) return;
    await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
  }

  /** The open WAL file, reopened when SQLite replaced it; null when there is none (nothing uncheckpointed). */
  private descriptor(): number | null {
    const file = this.walFile;
    if (file === null) return null;
    let onDisk: fs.Stats;
    try {
      onDisk = fs.statSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        // No WAL file: a checkpoint (which syncs the database itself) took everything.
        this.release();
        return null;
      }
      throw err;
    }
    if (this.fd !== null) {
      const held = fs.fstatSync(this.fd);
      if (held.ino === onDisk.ino && held.dev === onDisk.dev) return this.fd;
      this.release();
    }
    this.fd = fs.openSync(file, 'r+');
    // A new WAL file's directory entry must survive a power cut too.
    const dir = fs.openSync(path.dirname(file), 'r');
    try {
      fs.fsyncSync(dir);
    } finally {
      fs.closeSync(dir);
    }
    return this.fd;
  }
}
