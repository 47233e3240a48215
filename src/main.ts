/**
 * Composition root: builds every stage from the config and wires them together. Nothing else
 * in keymailer knows that IMAP, SQLite and SMTP exist at the same time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Alerts } from './alerts';
import { decideContext, uncheckedVendors } from './decide';
import { PROJECT_ROOT, type LoadedConfig } from './config';
import { fileMailer, smtpMailer, type Mailer } from './deliver/mailer';
import { Renderer, preloadMailComposer } from './deliver/render';
import { coerceError } from './errors';
import type { Logger } from './log';
import type { HttpApp } from './http/app';
import { OutboxSender } from './outbox';
import { startSchedules, type Schedules } from './schedules';
import { Pipeline } from './pipeline';
import { openDatabase, type Db } from './record/db';
import { Lease } from './record/lease';
import { preloadMailParser } from './parse/notification';
import { Store } from './record/store';
import { DropFolderSource } from './source/drop-folder';
import { ImapSource } from './source/imap';
import type { Source } from './types';

export interface App {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly db: Db;
  readonly store: Store;
  readonly lease: Lease;
  readonly renderer: Renderer;
  readonly mailer: Mailer;
  readonly outbox: OutboxSender;
  readonly alerts: Alerts;
  readonly pipeline: Pipeline;
  readonly source: Source;
  /** The HTTP listener (health, metrics, Avangate), built but not listening; null without `http:` in the config. */
  readonly http: HttpApp | null;
  /** Starts the daily summary and the nightly backup (daemon only; not --once or --reprocess). */
  startSchedules(): void;
  /** Stops intake, finishes the message in hand, flushes the outbox if it can, closes everything. Safe to call twice. */
  stop(): Promise<void>;
}

export function buildApp(loaded: LoadedConfig, log: Logger): App {
  const { config } = loaded;
  const renderer = new Renderer(loaded.templatesDir, config.from);
  for (const product of config.products) renderer.check(product.template);
  const db = openDatabase(config.database);
  const store = new Store(db);
  const lease = new Lease(db, config.leaseSeconds * 1000);
  const mailer = config.smtp ? smtpMailer(config.smtp) : fileMailer(config.outbox);
  // The outbox is created first but kicked lazily, so alerts and the pipeline can both feed it.
  let outbox: OutboxSender | null = null;
  const kick = (): void => void outbox?.kick();
  const alerts = new Alerts({ store, owner: config.owner.email, from: config.from, log, onQueued: kick, windowMs: config.alertWindowMinutes * 60_000 });
  outbox = new OutboxSender({
    store,
    mailer,
    from: config.from,
    log,
    alert: alerts.raise,
    baseDelayMs: config.delivery.retrySeconds * 1000,
    alertAfterMs: config.delivery.alertAfterMinutes * 60_000,
    giveUpAfterMs: config.delivery.giveUpHours * 3600_000,
  });
  let schedules: Schedules | null = null;
  const startJobs = (): void => {
    schedules ??= startSchedules({
      db, log, timezone: config.timezone, owner: config.owner.email, from: config.from,
      summary: config.summary, backup: config.backup, onQueued: kick,
    });
  };
  const context = decideContext(loaded);
  for (const vendor of uncheckedVendors(context)) {
    log.warn(`${vendor} notifications are accepted WITHOUT checking they come from ${vendor} (auth: none in the config)`);
  }
  const pipeline = new Pipeline({ loaded, store, renderer, log, context, onMailQueued: kick, alert: alerts.raise });
  const source: Source = config.imap
    ? new ImapSource(config.imap, log, config.poll, config.maxMessageSize)
    : new DropFolderSource(config.dropFolder, log, config.poll, config.maxMessageSize);
  let http: HttpApp | null = null;
  try {
    // Loaded only when configured: the listener and its metrics library cost start-up time otherwise.
    http = config.http ? (require('./http/app') as typeof import('./http/app')).buildHttpApp({ loaded, log, db, pipeline, source, alerts }) : null;
  } catch (err) {
    // A bad vendors.avangate or products[].avangate value: release the database before the ConfigError reaches the CLI.
    db.close();
    throw err;
  }
  if (!config.http && config.vendors['avangate'] !== undefined) {
    log.warn('vendors.avangate is set but http is not: Avangate cannot reach keymailer; add http: { host, port }');
  }
  const outage = watchOutage(source, alerts, log);
  // Keeps the WAL file from growing without bound on a box that runs for months.
  const checkpoint = setInterval(() => {
    try {
      db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (err) {
      log.debug('WAL checkpoint skipped', { reason: coerceError(err).message });
    }
  }, 5 * 60_000);
  checkpoint.unref();
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(outage);
      clearInterval(checkpoint);
      // Intake first: no new Avangate order may be answered, and no further message of a batch
      // taken, while the rest shuts down.
      pipeline.stopTaking();
      await http?.close();
      await source.stop().catch((err: unknown) => log.warn('source did not stop cleanly', { reason: coerceError(err).message }));
      await schedules?.stop();
      await alerts.stop();
      await outbox?.stop();
      mailer.close();
      await store.walSync.close();
      lease.release();
      db.close();
    })();
    return stopping;
  };
  return { loaded, log, db, store, lease, renderer, mailer, outbox, alerts, pipeline, source, http, startSchedules: startJobs, stop };
}

/** Loads the packages that stages load on first use (mailparser, nodemailer's composer). */
export function preloadLazyCode(): void {
  preloadMailParser();
  preloadMailComposer();
}

/** Tells the owner once per outage when the mailbox has been unreachable for 15 minutes. */
export function watchOutage(
  source: Pick<Source, 'status' | 'description'>,
  alerts: Pick<Alerts, 'raise'>,
  log: Logger,
  limitMs = 15 * 60_000,
  checkEveryMs = 30_000,
): NodeJS.Timeout {
  let alertedFor: number | null = null;
  const timer = setInterval(() => {
    const status = source.status();
    if (status.connected || Date.now() - status.since < limitMs || alertedFor === status.since) return;
    alertedFor = status.since;
    const minutes = Math.round((Date.now() - status.since) / 60_000);
    log.error('mailbox unreachable', { source: source.description, minutes });
    alerts.raise('imap-down', `${source.description} unreachable for ${minutes} minutes`);
  }, checkEveryMs);
  timer.unref();
  return timer;
}

/** On the embedded demo, the drop folder starts with the sample notifications from examples/. */
export function seedDemo(loaded: LoadedConfig, log: Logger): void {
  if (loaded.file !== null || fs.existsSync(loaded.config.dropFolder)) return;
  const examples = path.join(PROJECT_ROOT, 'examples');
  fs.mkdirSync(loaded.config.dropFolder, { recursive: true });
  for (const name of fs.readdirSync(examples).filter((n) => n.endsWith('.eml'))) {
    fs.copyFileSync(path.join(examples, name), path.join(loaded.config.dropFolder, name));
  }
  log.info('demo: copied the sample notifications from examples/ into the drop folder', { folder: loaded.config.dropFolder });
}
