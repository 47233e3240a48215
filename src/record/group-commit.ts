/**
 * Group commit: work queued while the previous batch is being made durable runs in one
 * transaction, so concurrent requests share one commit and one fsync, and a batch grows with the
 * disk's latency instead of with the event loop's turns (a commit writes whole pages to the WAL:
 * fewer, larger commits write less). The fsync runs off the main thread (./wal-sync.ts). A piece
 * that fails fails only itself (see commitBatch). Callers hear back only once their commit is on
 * the disk, so an answer never outruns the record.
 */
import type { Db } from './db';
import type { WalSync } from './wal-sync';

interface Pending {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
}

type Result = { ok: true; value: unknown } | { ok: false; error: unknown };

export class GroupCommit {
  private queue: Pending[] = [];
  private scheduled = false;
  /** A committed batch is waiting for its fsync: new work gathers for the next batch meanwhile. */
  private syncing = false;
  /** Built once: better-sqlite3 builds a new wrapper on every db.transaction() call. */
  private readonly savepoint: (work: () => unknown) => unknown;
  private readonly commitTogether: (batch: readonly Pending[], results: Result[]) => void;
  private readonly commitApart: (batch: readonly Pending[], results: Result[]) => void;

  constructor(
    db: Db,
    private readonly walSync: WalSync,
  ) {
    this.savepoint = db.transaction((work: () => unknown) => work());
    this.commitTogether = db.transaction((batch: readonly Pending[], results: Result[]) => {
      for (const item of batch) results.push({ ok: true, value: item.work() });
    });
    this.commitApart = db.transaction((batch: readonly Pending[], results: Result[]) => {
      for (const item of batch) {
        try {
          results.push({ ok: true, value: this.savepoint(item.work) });
        } catch (error) {
          results.push({ ok: false, error });
        }
      }
    });
  }

  /**
   * The batch in one transaction. Work seldom fails, so it first runs without a savepoint each
   * (two statements fewer per piece); when a piece throws, that transaction rolls back whole and
   * the batch runs again with a savepoint per piece, so only the failing one is left out.
   */
  private commitBatch(batch: readonly Pending[]): Result[] {
    const results: Result[] = [];
    try {
      this.commitTogether(batch, results);
      return results;
    } catch {
      results.length = 0;
      this.commitApart(batch, results);
      return results;
    }
  }

  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  /** The next batch commits at the end of this turn, or once the batch being synced is on the disk. */
  private schedule(): void {
    if (this.scheduled || this.syncing || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    this.scheduled = false;
    let results: Result[];
    try {
      results = this.walSync.commitLater(() => this.commitBatch(batch));
    } catch (error) {
      for (const item of batch) item.reject(error);
      this.schedule();
      return;
    }
    this.syncing = true;
    this.walSync
      .durable()
      .then(
        () =>
          batch.forEach((item, i) => {
            const result = results[i];
            if (result?.ok) item.resolve(result.value);
            else item.reject(result ? result.error : new Error('lost in group commit'));
          }),
        (error: unknown) => {
          for (const item of batch) item.reject(error);
        },
      )
      .finally(() => {
        this.syncing = false;
        this.schedule();
      });
  }
}
