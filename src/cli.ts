#!/usr/bin/env -S node --max-semi-space-size=2 --heap-growing-percent=25
/**
 * The `keymailer` command. Exit codes: 0 done; 1 failed while running; 2 bad arguments;
 * 3 bad or missing configuration.
 *
 * The first line starts node with package.json's config.nodeFlags (a small young generation, slow
 * old-space growth: the daemon's memory stays near its working set), as `npm start` and the pm2
 * file do; test/node-flags.test.ts keeps the three the same.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { registerAvangateCommands } from './commands/avangate';
import { registerParseCommand } from './commands/parse';
import { registerSellerCommands } from './commands/seller';
import { registerSerialCommands } from './commands/serial';
import { loadConfig, type LoadedConfig } from './config';
import { ConfigError, coerceError } from './errors';
import { sha256 } from './hash';
import { closeLogger, createLogger, type Logger } from './log';
import { NO_PROGRESS, createProgress, type Progress } from './progress';
import { pinProcessClockToUtc } from './schedules';
import { buildApp, preloadLazyCode, seedDemo, type App } from './main';
import { decide, decideContext, summarise } from './decide';
import { DropFolderSource } from './source/drop-folder';
import { ImapSource, newImapClient } from './source/imap';
import type { MessageRow } from './record/store';
import type { IncomingMessage, MessageHandler } from './types';

export const EXIT = { ok: 0, failed: 1, usage: 2, config: 3 } as const;

interface RunOptions {
  config?: string;
  once?: boolean;
  dryRun?: boolean;
  reprocess?: string;
  resend?: boolean;
}

export function buildProgram(): Command {
  const program = new Command('keymailer')
    .description('Turns order-notification emails into license serials, mailed to the buyer within seconds.')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('run', { isDefault: true })
    .description(
      'Run the daemon: process every notification waiting in the mailbox (or drop folder), then keep watching.\n' +
        'Without a config file it runs the built-in demo: drop folder data/inbox, buyer mails as files in data/outbox.',
    )
    .option('-c, --config <path>', 'config file (default: $KEYMAILER_CONFIG, then ./config.yaml, then the built-in demo)')
    .option('--once', 'process what is waiting, send what is due, and exit 0')
    .option('--dry-run', 'parse and report each waiting message as a JSON line; send, move and record nothing')
    .addOption(
      new Option(
        '--reprocess <target>',
        'run messages through again, then exit: an order id, an IMAP UID, "review" (every message in the review folder) or a path to an .eml file',
      ),
    )
    .option('--resend', 'with --reprocess: mail the serial again even when the order was already mailed')
    .addHelpText(
      'after',
      '\nExit codes: 0 done, 1 failed while running, 2 bad arguments, 3 bad configuration.\n' +
        'Examples:\n  keymailer --once\n  keymailer --reprocess review\n  keymailer --reprocess 8811-2046-5537 --resend\n  keymailer --dry-run --reprocess ./order.eml',
    )
    .action(async (options: RunOptions) => {
      process.exitCode = await run(options).catch(configErrorExit);
    });

  registerSerialCommands(program, (configPath) => loadConfig(configPath).config.products);
  registerSellerCommands(program);
  registerParseCommand(program);
  registerAvangateCommands(program, (configPath) => {
    const settings = loadConfig(configPath).config.vendors.avangate;
    const secret = settings?.secret;
    if (typeof secret !== 'string' || secret === '') {
      throw new ConfigError('vendors.avangate.secret is not set in the config');
    }
    return secret;
  });

  return program;
}

/** Every bad setting, whichever stage found it, ends the same way: one line on stderr, exit 3. */
function configErrorExit(err: unknown): number {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`keymailer: config error: ${err.message}\n`);
  return EXIT.config;
}

async function run(options: RunOptions): Promise<number> {
  if (options.resend && !options.reprocess) {
    process.stderr.write('keymailer: --resend only goes with --reprocess TARGET (or use `keymailer resend`)\n');
    return EXIT.usage;
  }
  const loaded = loadConfig(options.config);
  const settings = loaded.config.log;
  const log = createLogger({
    level: settings.level,
    secrets: loaded.secrets,
    stderr: !!options.dryRun,
    // --dry-run touches nothing, log files included.
    ...(options.dryRun ? {} : { file: { dir: settings.dir, maxSize: settings.maxSize, maxFiles: settings.maxFiles } }),
  });
  // node-cron 4.6.0 loops at the autumn DST change when the process zone has DST; jobs keep the
  // seller's zone through their own timezone option (see schedules.ts).
  if (!options.dryRun) pinProcessClockToUtc();
  if (options.dryRun) return dryRun(loaded, log, options.reprocess);
  if (loaded.file === null) {
    log.info('running the built-in demo configuration (no config.yaml found)');
    log.info('to go live: copy config.example.yaml to config.yaml, fill in IMAP, SMTP and your products, then start again');
    seedDemo(loaded, log);
  } else {
    log.info('config loaded', { file: loaded.file });
  }
  const app = buildApp(loaded, log);
  log.info('keymailer started', { source: app.source.description, delivery: app.mailer.description, database: loaded.config.database });
  try {
    if (options.reprocess) return await reprocess(app, options.reprocess, !!options.resend);
    if (options.once) {
      if (!app.lease.tryAcquire()) {
        log.error('another keymailer works this database; --once would compete with it', { holder: app.lease.current()?.holder });
        return EXIT.failed;
      }
      await app.source.drain(app.pipeline.handle);
      await app.outbox.kick();
      return EXIT.ok;
    }
    return await daemon(app);
  } catch (err) {
    log.error('keymailer stopped on an error', { reason: coerceError(err).message });
    return EXIT.failed;
  } finally {
    await app.stop();
    await closeLogger(log);
  }
}

/** Runs until SIGINT or SIGTERM: the first finishes the message in hand and exits 0, a second forces. */
async function daemon(app: App): Promise<number> {
  const stopped = new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) {
        app.log.warn('second signal: exiting now', { signal });
        process.exit(EXIT.failed);
      }
      app.log.info('stopping: finishing the message in hand', { signal });
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  const gotLease = await waitForLease(app, stopped);
  if (!gotLease) {
    await app.stop();
    app.log.info('keymailer stopped');
    return EXIT.ok;
  }
  const renewal = setInterval(() => {
    // Also picks up mail queued by another process (`keymailer resend` while the daemon runs).
    void app.outbox.kick();
    if (!app.lease.renew()) {
      app.log.error('lost the database lease to another keymailer; stopping so only one works the mailbox');
      process.kill(process.pid, 'SIGTERM');
    }
  }, (app.loaded.config.leaseSeconds * 1000) / 3);
  try {
    // Only the lease holder listens: a standby would answer Avangate for a database it does not work.
    if (app.http) {
      await app.http.listen();
      app.log.info('HTTP listening', { at: `${app.loaded.config.http?.host}:${app.loaded.config.http?.port}` });
    }
    await app.source.start(app.pipeline.handle);
    app.startSchedules();
    void app.outbox.kick();
    app.log.info('watching for notifications', { source: app.source.description });
    process.send?.('ready');
    // Code the first notification needs, loaded now that start-up is done rather than on its arrival.
    setImmediate(preloadLazyCode);
    await stopped;
    await app.stop();
  } finally {
    clearInterval(renewal);
  }
  app.log.info('keymailer stopped');
  return EXIT.ok;
}

/**
 * Waits until this process holds the database lease; a second instance stays passive and says why.
 * Resolves false when stopped before getting it.
 */
async function waitForLease(app: App, stopped: Promise<void>): Promise<boolean> {
  let isStopped = false;
  void stopped.then(() => (isStopped = true));
  let told = false;
  while (!isStopped) {
    if (app.lease.tryAcquire()) {
      if (told) app.log.info('took over the database lease; starting');
      return true;
    }
    if (!told) {
      const holder = app.lease.current();
      app.log.warn('another keymailer works this database; standing by until it stops', {
        holder: holder?.holder,
        database: app.loaded.config.database,
      });
      told = true;
    }
    await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 2000))]);
  }
  return false;
}

async function reprocess(app: App, target: string, resend: boolean): Promise<number> {
  // Hundreds of messages take a while: a bar on a terminal, nothing when not on one.
  let progress: Progress = NO_PROGRESS;
  const onTotal = (total: number): void => {
    progress = createProgress(total, 'reprocessing');
  };
  const handle: MessageHandler = async (messages) => {
    const outcomes = await app.pipeline.processAll(messages, { force: true, resend });
    progress.tick(messages.length);
    return outcomes;
  };
  let count = 0;
  try {
    if (target === 'review') {
      const source = app.source;
      if (source instanceof ImapSource) count = await source.processFolder(app.loaded.config.imap?.review ?? 'Review', handle, onTotal);
      else if (source instanceof DropFolderSource) count = await source.processReview(handle, onTotal);
    } else {
      const messages = findMessages(app, target);
      if (messages === null) {
        app.log.error('nothing to reprocess: no such file, order id or message UID', { target });
        return EXIT.failed;
      }
      onTotal(messages.length);
      for (const message of messages) {
        await handle([message]);
        count++;
      }
    }
  } finally {
    progress.done();
  }
  await app.outbox.kick();
  app.log.info('reprocessing done', { target, messages: count });
  return EXIT.ok;
}


/** The messages a reprocess target names: a file, the messages of an order, or a recorded IMAP UID. */
function findMessages(app: App, target: string): IncomingMessage[] | null {
  if (target.toLowerCase().endsWith('.eml') || fs.existsSync(target)) {
    if (!fs.existsSync(target)) return null;
    const raw = fs.readFileSync(target);
    return [{ key: { source: 'file', uidValidity: 0, uid: `${path.resolve(target)}:${sha256(raw).slice(0, 16)}` }, raw }];
  }
  const rows = new Map<number, MessageRow>();
  for (const order of app.store.findOrders(target)) {
    const row = order.message_row === null ? undefined : app.store.messageById(order.message_row);
    if (row) rows.set(row.id, row);
  }
  if (rows.size === 0 && /^\d+$/.test(target)) {
    const found = app.store.latestImapMessage(target);
    if (found) rows.set(found.id, found);
  }
  if (rows.size === 0) return null;
  return [...rows.values()].map((row) => ({
    key: { source: row.source, uidValidity: row.uid_validity, uid: row.uid },
    raw: app.store.messageRaw(row.id) ?? Buffer.alloc(0),
  }));
}

/** Prints what would happen to each waiting message (or the reprocess target), touching nothing. */
async function dryRun(loaded: LoadedConfig, log: Logger, target: string | undefined): Promise<number> {
  const context = decideContext(loaded);
  const report = async (label: string, raw: Buffer): Promise<void> => {
    const decision = await decide(raw, context);
    process.stdout.write(`${JSON.stringify({ message: label, ...summarise(decision) })}\n`);
  };
  if (target) {
    if (!fs.existsSync(target)) {
      log.error('--dry-run with --reprocess takes a path to an .eml file', { target });
      return EXIT.usage;
    }
    await report(target, fs.readFileSync(target));
    return EXIT.ok;
  }
  const { config } = loaded;
  if (config.imap) {
    const client = newImapClient(config.imap);
    client.on('error', (err: unknown) => log.warn('IMAP connection error', { reason: coerceError(err).message }));
    await client.connect();
    try {
      await client.mailboxOpen(config.imap.mailbox, { readOnly: true });
      const uids = await client.search({ all: true }, { uid: true });
      const list = Array.isArray(uids) ? uids : [];
      const messages = list.length ? await client.fetchAll(list.join(','), { uid: true, source: true }, { uid: true }) : [];
      for (const m of messages) if (m.source) await report(`uid ${m.uid}`, m.source);
    } finally {
      await client.logout().catch(() => undefined);
    }
  } else if (fs.existsSync(config.dropFolder)) {
    for (const name of fs.readdirSync(config.dropFolder).filter((n) => n.endsWith('.eml')).sort()) {
      await report(name, fs.readFileSync(path.join(config.dropFolder, name)));
    }
  }
  return EXIT.ok;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    process.stderr.write(`keymailer: ${coerceError(err).message}\n`);
    process.exitCode = EXIT.failed;
  }
}

if (require.main === module) {
  // stdout carries command results only (JSON lines, serials): a library that calls console.log
  // (mailauth does, on some crafted signatures) must not corrupt them.
  console.log = (...args: unknown[]): void => console.error(...args);
  // `keymailer orders | head` closes the pipe early: that is not an error worth a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT.ok);
  });
  void main(process.argv).then(() => {
    // Cron tasks or pooled sockets must not keep a finished command alive; the timer itself does not.
    setTimeout(() => process.exit(), 200).unref();
  });
}
