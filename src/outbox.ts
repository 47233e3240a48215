/**
 * Sends what the outbox table holds, oldest first, as many at once as the mailer has connections. A mail is marked sent right
 * after the server accepted it: the one window where a crash can mean a second copy (with the
 * same Message-ID, so the buyer's client can tell).
 */
import { PermanentError, coerceError } from './errors';
import { backoffDelay } from './backoff';
import { PassRunner } from './pass-runner';
import type { RaiseAlert } from './alerts';
import type { Logger } from './log';
import type { Mailer } from './deliver/mailer';
import type { OutboxRow, Store } from './record/store';

export interface OutboxOptions {
  readonly store: Store;
  readonly mailer: Mailer;
  readonly from: string;
  readonly log: Logger;
  /** First retry delay; doubles per attempt up to maxDelayMs. */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** A mail still unsent after this long is given up and its order sent to review. */
  readonly giveUpAfterMs?: number;
  /** The owner is told once when a mail has waited this long. */
  readonly alertAfterMs?: number;
  readonly alert?: RaiseAlert;
}

/** See OutboxSender.markSent. */
const MARK_WINDOW_MS = 20;
const MARK_BATCH = 25;
/** How soon the records of sent mail follow their commit onto the disk. */
const MARK_SYNC_MS = 20;

export class OutboxSender {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly runner = new PassRunner({
    pass: () => this.pass(),
    keepGoing: () => !this.stopped,
    settled: () => this.schedule(),
  });

  private readonly envelopeFrom: string;
  /** Accepted by the server, not yet recorded as sent: see markSent. */
  private marks: OutboxRow[] = [];
  private markTimer: NodeJS.Timeout | null = null;
  /** The fsync that follows sent-marks, pending: see markSent. */
  private markSync: NodeJS.Timeout | null = null;

  constructor(private readonly options: OutboxOptions) {
    this.envelopeFrom = /<([^>]+)>/.exec(options.from)?.[1] ?? options.from;
  }

  /** Sends whatever is due now; calls made while a pass runs fold into one more pass. */
  kick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return this.runner.request();
  }

  private async pass(): Promise<void> {
    const { store, mailer } = this.options;
    for (;;) {
      if (this.stopped) return;
      const batch = store.dueMail(50);
      if (batch.length === 0) return;
      // As many lanes as the mailer has connections; oldest first within the batch.
      let serverDown = false;
      const lane = async (): Promise<void> => {
        for (let mail = batch.shift(); mail && !serverDown && !this.stopped; mail = batch.shift()) {
          if (!(await this.sendOne(mail))) serverDown = true;
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, mailer.concurrency) }, lane));
      this.commitMarks();
      // The server is likely down for the rest of the batch too; the timer brings us back.
      if (serverDown) return;
    }
  }

  /** Sends one mail and records what happened; false when it must wait for a retry. */
  private async sendOne(mail: OutboxRow): Promise<boolean> {
    const { store, mailer, log } = this.options;
    try {
      await mailer.send({ from: this.envelopeFrom, to: mail.recipient }, mail.raw, `${mail.kind}-${mail.id}`, mail.message_id);
    } catch (thrown) {
      const err = coerceError(thrown);
      const age = Date.now() - Date.parse(mail.created_at);
      if (err instanceof PermanentError || age > (this.options.giveUpAfterMs ?? 3 * 24 * 3600_000)) {
        store.markFailed(mail, err.message);
        if (mail.kind !== 'alert' && mail.kind !== 'summary') this.options.alert?.('undeliverable', `${mail.kind} mail to ${mail.recipient} cannot be delivered`, err.message);
        log.error(`${mail.kind} mail cannot be delivered`, { to: mail.recipient, outbox: mail.id, reason: err.message });
        return true;
      }
      const jittered = backoffDelay(mail.attempts, this.options.baseDelayMs ?? 30_000, this.options.maxDelayMs ?? 3600_000);
      store.markRetry(mail, err.message, new Date(Date.now() + jittered).toISOString());
      if (mail.kind !== 'alert' && mail.kind !== 'summary' && age > (this.options.alertAfterMs ?? 3600_000) && store.markAlerted(mail)) {
        this.options.alert?.('mail-waiting', `${mail.kind} mail to ${mail.recipient} has waited ${Math.round(age / 60_000)} minutes`, err.message);
      }
      log.warn(`${mail.kind} mail not sent, will retry`, { to: mail.recipient, outbox: mail.id, reason: err.message, retryInSeconds: Math.round(jittered / 1000) });
      return false;
    }
    // Outside the try: a failing local write is not the server refusing the mail.
    this.markSent(mail);
    return true;
  }

  /**
   * Records an accepted mail as sent. While more mail of the same pass is going out, marks gather
   * for at most MARK_WINDOW_MS or MARK_BATCH mails and commit together (a commit writes whole pages
   * to the WAL: one per mail would write a backlog's worth several times over); the last mail of a
   * pass, such as the single mail of a single sale, commits at once. The commit reaches the
   * operating system at once and the disk within MARK_SYNC_MS, one fsync for the stretch
   * (record/wal-sync.ts). A crash between the server's acceptance and that commit, or a power cut
   * before that fsync, is the one way a buyer gets a second copy (same Message-ID).
   */
  private markSent(mail: OutboxRow): void {
    this.marks.push(mail);
    if (this.marks.length >= MARK_BATCH) this.commitMarks();
    else this.markTimer ??= setTimeout(() => this.commitMarksOrLog(), MARK_WINDOW_MS);
  }

  private commitMarksOrLog(): void {
    try {
      this.commitMarks();
    } catch (err) {
      this.options.log.error('could not record sent mail; it will be sent again', { reason: coerceError(err).message });
    }
  }

  private commitMarks(): void {
    if (this.markTimer) clearTimeout(this.markTimer);
    this.markTimer = null;
    const marks = this.marks;
    this.marks = [];
    if (marks.length === 0) return;
    const { store, log, mailer } = this.options;
    store.walSync.commitLater(() => store.markSent(marks));
    for (const mail of marks) log.info(`${mail.kind} mail sent`, { to: mail.recipient, outbox: mail.id, via: mailer.description });
    this.markSync ??= setTimeout(() => {
      this.markSync = null;
      void this.syncMarks();
    }, MARK_SYNC_MS);
  }

  private syncMarks(): Promise<void> {
    return this.options.store.walSync.durable().catch((err: unknown) => {
      this.options.log.error('could not make the records of sent mail durable', { reason: coerceError(err).message });
    });
  }

  /** Wakes up when the next retry falls due. */
  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped) return;
    const next = this.options.store.nextDue();
    if (next === null) return;
    const wait = Math.max(0, Math.min(Date.parse(next) - Date.now(), 2 ** 31 - 1));
    this.timer = setTimeout(() => void this.kick(), wait);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.runner.settle();
    this.commitMarksOrLog();
    // The last sent-marks on the disk before the database closes.
    if (this.markSync) clearTimeout(this.markSync);
    this.markSync = null;
    await this.syncMarks();
  }
}
