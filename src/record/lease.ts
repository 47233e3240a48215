/**
 * A lease row in SQLite: only one daemon works a database at a time. A second instance (pm2 in
 * cluster mode by mistake, a second manual start) stays passive, and takes over once the holder
 * stops renewing. UNIQUE keys still stop a double fulfilment if both ever act.
 */
import os from 'node:os';
import type { Db } from './db';

export const LEASE_TTL_MS = 30_000;

export interface LeaseHolder {
  readonly holder: string;
  readonly expiresAt: number;
}

/**
 * A holder on this machine whose process is gone (killed, crashed): its lease need not run out,
 * so a restart after a crash resumes at once instead of waiting for the expiry.
 */
function isDeadLocalHolder(holder: string): boolean {
  const match = /^(.*) pid (\d+)$/.exec(holder);
  if (!match || match[1] !== os.hostname()) return false;
  try {
    process.kill(Number(match[2]), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export class Lease {
  readonly holder = `${os.hostname()} pid ${process.pid}`;

  constructor(
    private readonly db: Db,
    private readonly ttlMs: number = LEASE_TTL_MS,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Takes the lease when it is free, expired or already ours; false when someone else holds it. */
  tryAcquire(): boolean {
    const now = this.clock();
    return this.db.transaction((): boolean => {
      const row = this.current();
      if (row && row.holder !== this.holder && row.expiresAt > now && !isDeadLocalHolder(row.holder)) return false;
      this.db
        .prepare(
          `INSERT INTO lease (name, holder, expires_at) VALUES ('daemon', ?, ?)
           ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at`,
        )
        .run(this.holder, now + this.ttlMs);
      return true;
    }).immediate();
  }

  /** Extends our lease; false when it was lost (we stalled past its expiry and another took it). */
  renew(): boolean {
    const result = this.db
      .prepare(`UPDATE lease SET expires_at = ? WHERE name = 'daemon' AND holder = ?`)
      .run(this.clock() + this.ttlMs, this.holder);
    return result.changes === 1;
  }

  release(): void {
    this.db.prepare(`DELETE FROM lease WHERE name = 'daemon' AND holder = ?`).run(this.holder);
  }

  current(): LeaseHolder | null {
    const row = this.db.prepare(`SELECT holder, expires_at FROM lease WHERE name = 'daemon'`).get() as
      | { holder: string; expires_at: number }
      | undefined;
    return row ? { holder: row.holder, expiresAt: row.expires_at } : null;
  }
}
