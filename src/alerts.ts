/**
 * Owner alerts: things the seller must look at (a message in review, a refund, a mail that cannot
 * be delivered, a forgery, IMAP down). Recorded in SQLite first, then grouped into few mails: the
 * first alert goes out at once, later ones wait for the window to pass and leave as one mail, so a
 * flood of bad messages yields a handful of mails, not thousands.
 */
import { coerceError } from './errors';
import type { Logger } from './log';
import { composeMail, stableMessageId } from './deliver/render';
import type { Store } from './record/store';

export type AlertKind = 'review' | 'refund' | 'undeliverable' | 'forgery' | 'imap-down' | 'mail-waiting' | 'missing-notification';

export type RaiseAlert = (kind: AlertKind, subject: string, detail?: string) => void;

const TITLES: Record<AlertKind, string> = {
  review: 'Sent to review',
  refund: 'Refunds and chargebacks',
  undeliverable: 'Buyer mails that cannot be delivered',
  forgery: 'Notifications that failed authentication',
  'imap-down': 'Mailbox unreachable',
  'mail-waiting': 'Buyer mails waiting to be sent',
  'missing-notification': 'Notifications that never arrived (a gap in the vendor\'s numbering)',
};

/** Items listed per kind in one mail; the rest are counted. */
const LIST_LIMIT = 30;

export interface AlertsOptions {
  readonly store: Store;
  readonly owner: string;
  readonly from: string;
  readonly log: Logger;
  readonly onQueued: () => void;
  /** At most one alert mail per window. */
  readonly windowMs?: number;
}

interface AlertRow {
  readonly id: number;
  readonly at: string;
  readonly kind: AlertKind;
  readonly subject: string;
  readonly detail: string | null;
}

export class Alerts {
  private timer: NodeJS.Timeout | null = null;
  /** When the pending timer's mail is allowed to go (ms since epoch). */
  private dueAt = 0;
  private flushing: Promise<void> | null = null;
  private stopped = false;

  constructor(private readonly options: AlertsOptions) {}

  private get windowMs(): number {
    return this.options.windowMs ?? 15 * 60_000;
  }

  readonly raise: RaiseAlert = (kind, subject, detail) => {
    this.options.store.db
      .prepare('INSERT INTO alerts (at, kind, subject, detail) VALUES (?, ?, ?, ?)')
      .run(new Date().toISOString(), kind, subject, detail ?? null);
    this.options.log.debug('owner alert recorded', { kind, subject });
    this.schedule();
  };

  /** Mails pending alerts now if the window allows, else sets a timer for when it does. */
  schedule(): void {
    if (this.stopped || this.timer) return;
    const last = this.options.store.db
      .prepare(`SELECT max(created_at) AS at FROM outbox WHERE kind = 'alert'`)
      .get() as { at: string | null };
    const wait = last.at ? Math.max(0, Date.parse(last.at) + this.windowMs - Date.now()) : 0;
    this.dueAt = Date.now() + wait;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flushing = this.flushOrLog();
    }, wait);
    this.timer.unref();
  }

  /** Groups every unmailed alert into one owner mail in the outbox. */
  async flush(): Promise<void> {
    const { store, owner, from } = this.options;
    const pending = store.db.prepare('SELECT id, at, kind, subject, detail FROM alerts WHERE mailed_at IS NULL ORDER BY id').all() as AlertRow[];
    if (pending.length === 0) return;
    const first = pending[0];
    const lastRow = pending[pending.length - 1];
    if (!first || !lastRow) return;
    const subject =
      pending.length === 1 ? `keymailer: ${first.subject}` : `keymailer: ${pending.length} things need your attention`;
    const sections: string[] = [];
    for (const kind of Object.keys(TITLES) as AlertKind[]) {
      const items = pending.filter((a) => a.kind === kind);
      if (items.length === 0) continue;
      const lines = items.slice(0, LIST_LIMIT).map((a) => `- ${a.at.replace('T', ' ').slice(0, 19)} UTC  ${a.subject}${a.detail ? `\n    ${a.detail}` : ''}`);
      if (items.length > LIST_LIMIT) lines.push(`- … and ${items.length - LIST_LIMIT} more (keymailer orders --status review)`);
      sections.push(`${TITLES[kind]} (${items.length})\n${lines.join('\n')}`);
    }
    const text = `${sections.join('\n\n')}\n\nThis mail groups alerts; the next one comes at the earliest ${Math.round(this.windowMs / 60_000)} minutes from now.\n`;
    const messageId = stableMessageId(`alert:${first.id}-${lastRow.id}`, from);
    const raw = await composeMail({ from, to: owner, subject, text, html: null, messageId, date: new Date() });
    store.db.transaction(() => {
      store.enqueue({ kind: 'alert', messageId, recipient: owner, raw }, null);
      store.db.prepare('UPDATE alerts SET mailed_at = ? WHERE id BETWEEN ? AND ? AND mailed_at IS NULL').run(new Date().toISOString(), first.id, lastRow.id);
    })();
    this.options.log.info('owner alert queued', { alerts: pending.length, to: owner });
    this.options.onQueued();
  }

  /**
   * Alerts whose mail may already go are queued now (a `--once` run can end before the timer fires);
   * alerts still inside the window wait in the table for the next start.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      if (this.dueAt <= Date.now()) this.flushing ??= this.flushOrLog();
    }
    await this.flushing;
  }

  /** A failed flush (a busy database, say) leaves the alerts unmailed: the next alert or start tries again. */
  private flushOrLog(): Promise<void> {
    return this.flush()
      .catch((err: unknown) => {
        this.options.log.warn('owner alert not queued yet', { reason: coerceError(err).message });
      })
      .finally(() => (this.flushing = null));
  }
}
