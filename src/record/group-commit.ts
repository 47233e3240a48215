/**
 * Group commit: work queued in the same turn of the event loop runs in one transaction, so many
 * concurrent requests share one fsync. Each piece runs in its own savepoint: one failing rolls back
 * only itself. Callers are answered only after the commit, so an answer never outruns the record.
 */
import type { Db } from './db';

interface Pending {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
}

type Result = { ok: true; value: unknown } | { ok: false; error: unknown };

export class GroupCommit {
  private queue: Pending[] = [];
  private scheduled = false;
  /** Built once: better-sqlite3 builds a new wrapper on every db.transaction() call. */
  private readonly savepoint: (work: () => unknown) => unknown;
  private readonly commitBatch: (batch: readonly Pending[], results: Result[]) => void;

  constructor(db: Db) {
    this.savepoint = db.transaction((work: () => unknown) => work());
    this.commitBatch = db.transaction((batch: readonly Pending[], results: Result[]) => {
      for (const item of batch) {
        try {
          results.push({ ok: true, value: this.savepoint(item.work) });
        } catch (error) {
          results.push({ ok: false, error });
        }
      }
    });
  }

  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    this.scheduled = false;
    const results: Result[] = [];
    try {
      this.commitBatch(batch, results);
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, i) => {
      const result = results[i];
      if (result?.ok) item.resolve(result.value);
      else item.reject(result ? result.error : new Error('lost in group commit'));
    });
  }
}
