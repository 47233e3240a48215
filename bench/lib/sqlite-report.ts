/** Reads what bench/sqlite-probe.ts recorded in a daemon and explains the costly statements. */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import type { SqliteProbe, StatementStats } from '../sqlite-probe';
import { fmt } from './stats';

export function readProbe(file: string): SqliteProbe | null {
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as SqliteProbe) : null;
}

/** SQLite's plan for a statement on that database (EXPLAIN QUERY PLAN, parameters bound to NULL). */
export function planOf(dbFile: string, sql: string): string {
  if (!/^\s*(SELECT|UPDATE|DELETE|INSERT)/i.test(sql)) return '';
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const params = (sql.match(/\?/g) ?? []).map(() => null);
    const rows = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[];
    return rows.map((r) => r.detail).join('; ');
  } catch (err) {
    return `(no plan: ${err instanceof Error ? err.message : String(err)})`;
  } finally {
    db.close();
  }
}

export interface CostlyStatement extends StatementStats {
  readonly sql: string;
  readonly plan: string;
}

/** The statements that took the most time in all, with their plans on the daemon's database. */
export function costliest(probe: SqliteProbe, dbFile: string, top = 6): CostlyStatement[] {
  return Object.entries(probe.bySql)
    .sort((a, b) => b[1].ms - a[1].ms)
    .slice(0, top)
    .map(([sql, stats]) => ({ sql, ...stats, plan: planOf(dbFile, sql) }));
}

const short = (sql: string, max = 90): string => (sql.length > max ? `${sql.slice(0, max)}…` : sql);

/** Markdown table: per statement, calls and time per unit of work (a notification, a request). */
export function statementTable(statements: readonly CostlyStatement[], units: number, unit: string): string {
  const lines = [
    `| statement (SQL as the daemon runs it) | calls per ${unit} | ms per call | ms per ${unit} | SQLite's plan |`,
    '| --- | --- | --- | --- | --- |',
    ...statements.map(
      (s) =>
        `| \`${short(s.sql).replace(/\|/g, '\\|')}\` | ${fmt(s.calls / units, 2)} | ${fmt(s.ms / s.calls, 3)} | ${fmt(s.ms / units, 3)} | ${s.plan.replace(/\|/g, '\\|')} |`,
    ),
  ];
  return lines.join('\n');
}

/** A plan that reads a whole table ("SCAN outbox", not "SCAN outbox USING INDEX …"). */
export const fullScan = (plan: string): string | null => /\bSCAN (\w+)(?! USING)(?!\w)/.exec(plan)?.[1] ?? null;
