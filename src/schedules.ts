/**
 * Jobs that run on the clock: the owner's daily summary mail and the nightly database backup.
 *
 * Every job runs through node-cron with `noOverlap` (a slow backup is never started twice) and an
 * explicit timezone (the seller's, not whatever the server was installed with). node-cron 4.6.0
 * matches wall-clock time: across a DST change a daily job runs once, but a job placed in the
 * hour that is skipped (spring) does not run that day, and a sub-hourly job pauses for up to an
 * hour at the fall-back. Keep daily jobs out of 02:00–02:59 local time.
 *
 * node-cron before 4.3 could spin forever in its catch-up loop at a DST change. 4.6.0 still
 * busy-loops for up to an hour at the fall-back when the process's own zone (TZ) has DST; see
 * pinProcessClockToUtc(). test/schedules.test.ts runs both changes on a fast fake clock and fails
 * if either comes back.
 */
import cron, { type ScheduledTask, type TaskContext } from 'node-cron';
import { z } from 'zod';
import { composeMail, stableMessageId } from './deliver/render';
import { coerceError } from './errors';
import type { Logger } from './log';
import { backupDatabase, type BackupResult, type BackupSettings } from './record/backup';
import type { Db } from './record/db';
import { buildSummary } from './summary';

export { backupSettingsSchema } from './record/backup';
export { buildSummary, localTime, type Summary } from './summary';

/** True for an IANA zone name the runtime knows ("Europe/Berlin", "UTC"). */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

const currentZone = (): string => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

/** Read when keymailer starts, before pinProcessClockToUtc() can change it. */
const ZONE_AT_START = currentZone();

/** The zone the system runs in (as keymailer found it at start); the default for `timezone:`. */
export function systemTimeZone(): string {
  return ZONE_AT_START;
}

/**
 * Puts the process clock in UTC. node-cron 4.6.0 truncates "now" to the second with the local-time
 * setter `setMilliseconds(0)`; in the hour a fall-back repeats, that setter lands on the first of
 * the two instants, an hour early, and the scheduler re-arms its timer with no delay over and over
 * until the hour is over: a busy loop at full CPU, no runs, then a batch of "missed" ones. It hits
 * every node-cron task in the process (the IMAP poll too), whatever their `timezone` option, as
 * soon as TZ is a zone with DST, as it is on most home servers. In UTC no local time is ambiguous.
 * Jobs keep the seller's zone through their `timezone` option; keymailer writes UTC ISO times, so
 * only code that reads local time without naming a zone sees the change. Call it before any
 * schedule starts (startSchedules() does; the IMAP poll is a node-cron task too).
 * Returns the zone the process had.
 */
export function pinProcessClockToUtc(): string {
  const before = currentZone();
  if (process.env.TZ !== 'UTC') process.env.TZ = 'UTC';
  return before;
}

/** `timezone:` in the config: an IANA name, defaulting to the system's zone. */
export const timezoneSchema = z
  .string()
  .trim()
  .refine(isTimeZone, 'must be a timezone name such as "Europe/Berlin" or "UTC"')
  .default(systemTimeZone);

const cronExpression = (fallback: string): z.ZodDefault<z.ZodString> =>
  z
    .string()
    .trim()
    .refine((expr) => cron.validate(expr), `must be a cron expression such as "${fallback}"`)
    .default(fallback);

/** `summary:` in the config. Use as is: the prefault fills every default when the key is absent. */
export const summarySettingsSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** node-cron expression, in the config's timezone. */
    cron: cronExpression('0 8 * * *'),
  })
  .strict()
  .prefault({});

export type SummarySettings = z.output<typeof summarySettingsSchema>;

// ---------------------------------------------------------------------------------------------
// Running a job

export interface JobOptions {
  readonly name: string;
  readonly cron: string;
  readonly timezone: string;
  readonly log: Logger;
  readonly run: (slot: Date) => Promise<unknown> | unknown;
  /** How late a run may start and still run (node-cron's default: 1000 ms). Tests with a fast clock raise it. */
  readonly missedExecutionToleranceMs?: number;
}

/** node-cron's own warnings (a missed run, an overlap) go to our log, not to the console raw. */
function cronLogger(log: Logger, name: string): NonNullable<Parameters<typeof cron.schedule>[2]>['logger'] {
  const text = (m: string | Error): string => (m instanceof Error ? m.message : m);
  return {
    info: (m) => log.info(`schedule ${name}: ${m}`),
    warn: (m) => log.warn(`schedule ${name}: ${m}`),
    error: (m, err) => log.error(`schedule ${name}: ${text(m)}`, err ? { reason: err.message } : {}),
    debug: (m) => log.debug(`schedule ${name}: ${text(m)}`),
  };
}

/** Starts one job: never two runs at once, in the given zone, failures logged and not thrown. */
export function scheduleJob(options: JobOptions): ScheduledTask {
  const { name, log } = options;
  const task = cron.schedule(
    options.cron,
    async (context: TaskContext) => {
      try {
        await options.run(context.date);
      } catch (err) {
        log.error(`${name} failed`, { reason: coerceError(err).message });
      }
    },
    {
      name,
      timezone: options.timezone,
      noOverlap: true,
      logger: cronLogger(log, name),
      unref: true,
      ...(options.missedExecutionToleranceMs === undefined ? {} : { missedExecutionTolerance: options.missedExecutionToleranceMs }),
    },
  );
  return task;
}

// ---------------------------------------------------------------------------------------------
// The jobs

export interface ScheduleDeps {
  readonly db: Db;
  readonly log: Logger;
  /** The seller's zone: when jobs run and how times read in the summary. */
  readonly timezone: string;
  /** owner.email and from in the config. */
  readonly owner: string;
  readonly from: string;
  readonly summary: SummarySettings;
  /** dir must already be absolute (resolved against the config file). */
  readonly backup: BackupSettings;
  /** Called after the summary mail is queued, so the outbox sends it now. */
  readonly onQueued?: () => void;
}

export interface Schedules {
  /** Queues the summary of the time since the last one (at most a week, 24 hours the first time). */
  runSummary(until?: Date): Promise<boolean>;
  runBackup(): Promise<BackupResult>;
  /** Stops both schedules, aborts a backup in progress and waits for it. Safe to call twice. */
  stop(): Promise<void>;
}

const SUMMARY_EVENT = 'summary queued';
const DAY_MS = 24 * 3600_000;

/**
 * The summary mail joins the outbox with kind 'summary': the outbox sends it like any other mail,
 * and it does not count as an alert, so an alert right after 08:00 is not held back by the
 * alert window. Recorded with the end of its window, so the next one starts where it ended even
 * across restarts, and a second run for the same moment is a no-op (same Message-ID).
 */
export async function queueSummary(deps: ScheduleDeps, until: Date = new Date()): Promise<boolean> {
  const { db, owner, from } = deps;
  const last = db.prepare('SELECT detail FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1').get(SUMMARY_EVENT) as
    | { detail: string | null }
    | undefined;
  const lastUntil = last?.detail ? Date.parse(last.detail) : NaN;
  const sinceMs = Number.isNaN(lastUntil) ? until.getTime() - DAY_MS : Math.max(lastUntil, until.getTime() - 7 * DAY_MS);
  // A restart a few seconds after the last summary (or a doubled trigger) must not mail an empty one.
  if (until.getTime() - sinceMs < 60_000) return false;
  const since = new Date(sinceMs);
  const { subject, text } = buildSummary(db, since, until, deps.timezone);
  const messageId = stableMessageId(`summary:${until.toISOString()}`, from);
  const raw = await composeMail({ from, to: owner, subject, text, html: null, messageId, date: until });
  const at = new Date().toISOString();
  db.transaction(() => {
    db.prepare(
      `INSERT INTO outbox (order_id, kind, message_id, recipient, raw, created_at, next_attempt_at)
       VALUES (NULL, 'summary', ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING`,
    ).run(messageId, owner, raw, at, at);
    db.prepare('INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)').run(at, SUMMARY_EVENT, until.toISOString());
  })();
  deps.log.info('daily summary queued', { to: owner, since: since.toISOString(), until: until.toISOString(), subject });
  deps.onQueued?.();
  return true;
}

export function startSchedules(deps: ScheduleDeps): Schedules {
  const { log } = deps;
  const zone = pinProcessClockToUtc();
  if (zone !== 'UTC') log.debug('process clock set to UTC (node-cron DST guard); schedules keep their zone', { systemZone: zone, timezone: deps.timezone });
  const abort = new AbortController();
  const running = new Set<Promise<unknown>>();
  const track = <T>(work: Promise<T>): Promise<T> => {
    running.add(work);
    void work.then(
      () => running.delete(work),
      () => running.delete(work),
    );
    return work;
  };

  const runSummary = (until?: Date): Promise<boolean> => track(queueSummary(deps, until));
  const runBackup = (): Promise<BackupResult> =>
    track(
      (async () => {
        const result = await backupDatabase(deps.db, { dir: deps.backup.dir, keep: deps.backup.keep, signal: abort.signal });
        log.info('database backed up', { file: result.file, bytes: result.bytes, ms: result.ms, removed: result.removed.length });
        return result;
      })(),
    );

  const tasks: ScheduledTask[] = [];
  if (deps.summary.enabled) {
    tasks.push(scheduleJob({ name: 'daily-summary', cron: deps.summary.cron, timezone: deps.timezone, log, run: () => runSummary() }));
  }
  if (deps.backup.enabled) {
    tasks.push(scheduleJob({ name: 'database-backup', cron: deps.backup.cron, timezone: deps.timezone, log, run: () => runBackup() }));
  }
  for (const task of tasks) log.info('scheduled', { job: task.name, next: task.getNextRun()?.toISOString(), timezone: deps.timezone });

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const task of tasks) await task.destroy();
      abort.abort();
      await Promise.allSettled([...running]);
    })();
    return stopping;
  };
  return { runSummary, runBackup, stop };
}
