/**
 * Loaded into a profiled daemon with `node --require dist/bench/sqlite-probe.js`: watches every
 * SQLite statement the daemon runs, without touching its code. It wraps better-sqlite3's
 * Statement.prototype run/get/all and records, per SQL text: calls, time spent (fsync included),
 * and autocommits (a write run outside any transaction: one fsync each with synchronous=FULL).
 * A COMMIT statement (the end of every db.transaction()) counts as a transaction. Written as JSON
 * to $KEYMAILER_BENCH_SQLITE when the process exits.
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';

export interface StatementStats {
  calls: number;
  ms: number;
  autocommits: number;
}

export interface SqliteProbe {
  transactions: number;
  autocommits: number;
  /** SQL text (whitespace folded) → what it cost */
  bySql: Record<string, StatementStats>;
}

interface ProbedStatement {
  readonly source: string;
  readonly reader: boolean;
  readonly database: { readonly inTransaction: boolean };
}
type Method = (this: ProbedStatement, ...params: unknown[]) => unknown;

const CONTROL = /^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b/i;

function install(file: string): void {
  const scratch = new Database(':memory:');
  const proto = Object.getPrototypeOf(scratch.prepare('SELECT 1')) as Record<'run' | 'get' | 'all', Method>;
  scratch.close();
  const probe: SqliteProbe = { transactions: 0, autocommits: 0, bySql: {} };
  for (const name of ['run', 'get', 'all'] as const) {
    const original = proto[name];
    proto[name] = function probed(this: ProbedStatement, ...params: unknown[]): unknown {
      const source = this.source;
      const control = CONTROL.test(source);
      const autocommit = name === 'run' && !this.reader && !this.database.inTransaction && !control;
      const t = performance.now();
      const result = original.apply(this, params);
      const ms = performance.now() - t;
      if (source === 'COMMIT') probe.transactions++;
      if (autocommit) probe.autocommits++;
      const key = control ? source.trim().split(/\s/)[0] ?? source : source.replace(/\s+/g, ' ').trim();
      const stats = (probe.bySql[key] ??= { calls: 0, ms: 0, autocommits: 0 });
      stats.calls++;
      stats.ms += ms;
      if (autocommit) stats.autocommits++;
      return result;
    };
  }
  process.on('exit', () => fs.writeFileSync(file, JSON.stringify(probe)));
}

const target = process.env['KEYMAILER_BENCH_SQLITE'];
if (target) install(target);
