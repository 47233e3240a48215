/**
 * Nightly copies of the database with SQLite's online backup API, so a dead disk or a bad edit
 * costs at most a day. The copy is made page by page between other work (better-sqlite3 yields to
 * the event loop after each step), written under a temporary name, checked, and only then given
 * its final name: a half-written file never counts as one of the kept backups.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import cron from 'node-cron';
import { z } from 'zod';
import type { Db } from './db';

/** `backup:` in the config. Use as is: the prefault fills every default when the key is absent. */
export const backupSettingsSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** node-cron expression, in the config's timezone. Avoid 02:00–02:59: that hour is skipped or doubled at a DST change. */
    cron: z
      .string()
      .trim()
      .refine((expr) => cron.validate(expr), 'must be a cron expression such as "30 3 * * *"')
      .default('30 3 * * *'),
    /** How many backups to keep; the oldest beyond that are deleted after each new one. */
    keep: z.number().int().min(1).max(1000).default(7),
    /** Where backups go; relative to the config file. Best on another disk. */
    dir: z.string().trim().min(1, 'must not be empty').default('data/backups'),
  })
  .strict()
  .prefault({});

export type BackupSettings = z.output<typeof backupSettingsSchema>;

export interface BackupOptions {
  /** Where to put the backup; created when missing. */
  readonly dir: string;
  /** How many finished backups to keep, this one included. */
  readonly keep: number;
  /** File name stem; default: the database file's own ("keymailer" for keymailer.db). */
  readonly name?: string;
  /** The time in the file name (UTC, so a repeated hour at a DST change cannot collide). */
  readonly now?: Date;
  /** Pages copied per step; smaller steps give other work more turns. */
  readonly pagesPerStep?: number;
  /** Aborts the copy between two steps (a stopping daemon); the partial file is removed. */
  readonly signal?: AbortSignal;
}

export interface BackupResult {
  readonly file: string;
  readonly bytes: number;
  readonly ms: number;
  /** Older backups deleted to keep `keep`. */
  readonly removed: readonly string[];
}

const PARTIAL = '.partial';

/** `keymailer-20251026T013000Z.db`: sorts by time as text. */
function backupName(stem: string, at: Date): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
  return `${stem}-${stamp}.db`;
}

function backupPattern(stem: string): RegExp {
  const escaped = stem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escaped}-\\d{8}T\\d{6}Z\\.db$`);
}

/** The finished backups in dir for this stem, oldest first. */
export function listBackups(dir: string, stem: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const pattern = backupPattern(stem);
  return fs
    .readdirSync(dir)
    .filter((n) => pattern.test(n))
    .sort()
    .map((n) => path.join(dir, n));
}

export async function backupDatabase(db: Db, options: BackupOptions): Promise<BackupResult> {
  const started = Date.now();
  const stem = options.name ?? path.basename(db.name).replace(/\.[^.]*$/, '');
  fs.mkdirSync(options.dir, { recursive: true });
  const file = path.join(options.dir, backupName(stem, options.now ?? new Date()));
  const partial = `${file}${PARTIAL}`;
  // A copy interrupted by a crash or a power cut is of no use: start from nothing.
  for (const name of fs.readdirSync(options.dir)) {
    if (name.startsWith(`${stem}-`) && name.endsWith(PARTIAL)) fs.rmSync(path.join(options.dir, name), { force: true });
  }
  const pages = options.pagesPerStep ?? 256;
  try {
    await db.backup(partial, {
      progress: () => {
        if (options.signal?.aborted) throw new Error('backup aborted: keymailer is stopping');
        return pages;
      },
    });
    verify(partial);
    fs.renameSync(partial, file);
  } catch (err) {
    fs.rmSync(partial, { force: true });
    throw err;
  }
  const kept = listBackups(options.dir, stem);
  const removed = kept.slice(0, Math.max(0, kept.length - options.keep));
  for (const old of removed) fs.rmSync(old, { force: true });
  return { file, bytes: fs.statSync(file).size, ms: Date.now() - started, removed };
}

/**
 * Opens the copy on its own and asks SQLite to check it. The copy keeps the WAL flag of the
 * original; switching it to a rollback journal makes it one self-contained file to carry around.
 */
function verify(file: string): void {
  const copy = new Database(file);
  try {
    copy.pragma('journal_mode = DELETE');
    const result = copy.pragma('quick_check', { simple: true });
    if (result !== 'ok') throw new Error(`backup check failed: ${String(result)}`);
  } finally {
    copy.close();
  }
}
