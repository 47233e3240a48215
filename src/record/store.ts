/**
 * Everything keymailer writes to SQLite goes through here. Duplicates are stopped by UNIQUE keys
 * inside transactions, never by checks done before them.
 */
import type Database from 'better-sqlite3';
import type { Db } from './db';
import type { MessageKey } from '../types';
import { isoNow } from '../clock';
import { WalSync } from './wal-sync';

/** seen → parsed → fulfilled | ignored | refund | review; only the last four are final. */
export type MessageState = 'seen' | 'parsed' | 'fulfilled' | 'ignored' | 'refund' | 'review';

export function isFinal(state: MessageState): boolean {
  return state !== 'seen' && state !== 'parsed';
}
export type OrderState = 'review' | 'fulfilled' | 'sent' | 'refunded';

export interface MessageRow {
  readonly id: number;
  readonly source: string;
  readonly uid_validity: number;
  readonly uid: string;
  readonly message_id: string | null;
  readonly state: MessageState;
  readonly vendor: string | null;
  readonly reason: string | null;
}

export interface OrderRow {
  readonly id: number;
  readonly order_key: string;
  readonly vendor: string;
  readonly vendor_order_id: string | null;
  readonly vendor_product: string;
  readonly product_id: string | null;
  readonly buyer_name: string;
  readonly buyer_email: string;
  readonly license_name: string | null;
  readonly quantity: number;
  readonly price: string | null;
  readonly currency: string | null;
  readonly test: number;
  readonly serials: string | null;
  readonly state: OrderState;
  readonly reason: string | null;
  readonly message_row: number | null;
  readonly received_at: string;
  readonly fulfilled_at: string | null;
  readonly sent_at: string | null;
}

export interface OutboxRow {
  readonly id: number;
  readonly order_id: number | null;
  readonly kind: string;
  readonly message_id: string;
  readonly recipient: string;
  readonly raw: Buffer;
  readonly attempts: number;
  readonly created_at: string;
}

/** A mail to send, built completely before the transaction that records it. */
export interface OutgoingMail {
  readonly kind: 'serial' | 'resend' | 'alert' | 'summary';
  readonly messageId: string;
  readonly recipient: string;
  readonly raw: Buffer;
}

export interface OrderRecord {
  readonly orderKey: string;
  readonly vendor: string;
  readonly vendorOrderId: string | null;
  readonly vendorProduct: string;
  readonly productId: string | null;
  readonly buyerName: string;
  readonly buyerEmail: string;
  readonly licenseName: string | null;
  readonly quantity: number;
  readonly price: string | null;
  readonly currency: string | null;
  readonly test: boolean;
  readonly messageRow: number | null;
  readonly state: 'fulfilled' | 'review';
  readonly reason: string | null;
  readonly serials: readonly string[] | null;
  /** Required when state is fulfilled, unless the serials went back in an HTTP answer: the buyer mail, committed with the order. */
  readonly mail: OutgoingMail | null;
  /** The vendor delivers the serials itself (signed POST answered with the codes): recorded as sent. */
  readonly deliveredInAnswer?: boolean;
  /** Where the order came from: mail (default) or a signed POST. */
  readonly source?: string;
  /** The vendor's running number of this product's notifications, when it sends one. */
  readonly sequence?: { readonly series: string; readonly number: number } | undefined;
}

/** new: first time; fulfilled-now: was in review, now fulfilled; duplicate: already fulfilled before. */
export type CommitOutcome = 'new' | 'fulfilled-now' | 'still-review' | 'duplicate';

const now = isoNow;

const serialsJson = (order: OrderRecord): string | null => (order.serials ? JSON.stringify(order.serials) : null);

/** The state an order is recorded in: one whose serials went back in the vendor's answer is sent already. */
const stateOf = (order: OrderRecord): OrderState => (order.state === 'fulfilled' && order.deliveredInAnswer ? 'sent' : order.state);

export class Store {
  /** Statements are compiled once: preparing on every call cost a tenth of the daemon's time. */
  private readonly statements = new Map<string, Database.Statement>();

  /** Transaction wrappers are built once too; better-sqlite3 makes a new one on every db.transaction(). */
  private readonly commitOrderTx: (order: OrderRecord) => { orderId: number; outcome: CommitOutcome };
  private readonly finishMessageTx: (id: number, state: MessageState, vendor: string | null, reason: string | null) => void;
  private readonly markRefundedTx: (vendor: string, vendorOrderId: string, reason: string, messageRow: number) => number;
  private readonly markSentTx: (mails: readonly OutboxRow[]) => void;
  private readonly markFailedTx: (mail: OutboxRow, error: string) => void;

  /** Commits whose fsync runs off the main thread: see wal-sync.ts. */
  readonly walSync: WalSync;

  constructor(readonly db: Db) {
    this.walSync = new WalSync(db);
    this.commitOrderTx = db.transaction((order: OrderRecord) => this.commitOrderNow(order));
    this.finishMessageTx = db.transaction((id: number, state: MessageState, vendor: string | null, reason: string | null) => {
      this.sql('UPDATE messages SET state = ?, vendor = ?, reason = ?, updated_at = ? WHERE id = ?').run(state, vendor, reason, now(), id);
      this.event(null, id, `message ${state}`, reason);
    });
    this.markRefundedTx = db.transaction((vendor: string, vendorOrderId: string, reason: string, messageRow: number) => {
      const rows = this.sql('SELECT id FROM orders WHERE vendor = ? AND vendor_order_id = ?').all(vendor, vendorOrderId) as { id: number }[];
      const at = now();
      for (const { id } of rows) {
        this.sql(`UPDATE orders SET state = 'refunded', reason = ?, updated_at = ? WHERE id = ?`).run(reason, at, id);
        this.event(id, messageRow, 'refunded', reason);
      }
      return rows.length;
    });
    this.markSentTx = db.transaction((mails: readonly OutboxRow[]) => {
      const at = now();
      for (const mail of mails) {
        this.sql('UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ?').run(at, mail.id);
        if (mail.order_id !== null && mail.kind === 'serial') {
          this.sql(`UPDATE orders SET state = 'sent', sent_at = ?, updated_at = ? WHERE id = ? AND state = 'fulfilled'`).run(at, at, mail.order_id);
        }
        this.event(mail.order_id, null, `${mail.kind} mail sent`, mail.message_id);
      }
    });
    this.markFailedTx = db.transaction((mail: OutboxRow, error: string) => {
      const at = now();
      this.sql('UPDATE outbox SET attempts = attempts + 1, last_error = ?, failed_at = ? WHERE id = ?').run(error, at, mail.id);
      if (mail.order_id !== null && mail.kind === 'serial') {
        this.sql(`UPDATE orders SET state = 'review', reason = ?, updated_at = ? WHERE id = ?`).run(`buyer mail refused: ${error}`, at, mail.order_id);
      }
      this.event(mail.order_id, null, `${mail.kind} mail failed`, error);
    });
  }

  private sql(text: string): Database.Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }

  findMessage(key: MessageKey): MessageRow | undefined {
    return this.sql('SELECT * FROM messages WHERE source = ? AND uid_validity = ? AND uid = ?')
      .get(key.source, key.uidValidity, key.uid) as MessageRow | undefined;
  }

  /**
   * A message handled before under another key: the same bytes, or the same Message-ID, already
   * in a final state. Recognises a mailbox whose UIDVALIDITY changed or a server that re-uploaded
   * old mail under new UIDs, so nothing is fulfilled or alerted twice.
   */
  findHandledCopy(contentHash: string, messageId: string | null): MessageRow | undefined {
    const byHash = this.sql(`SELECT * FROM messages WHERE content_hash = ? AND state NOT IN ('seen', 'parsed') ORDER BY id LIMIT 1`)
      .get(contentHash) as MessageRow | undefined;
    if (byHash || messageId === null) return byHash;
    return this.sql(`SELECT * FROM messages WHERE message_id = ? AND state NOT IN ('seen', 'parsed') ORDER BY id LIMIT 1`)
      .get(messageId) as MessageRow | undefined;
  }

  messageById(id: number): MessageRow | undefined {
    return this.sql('SELECT * FROM messages WHERE id = ?').get(id) as MessageRow | undefined;
  }

  /** The newest message recorded under this IMAP UID, in any mailbox or UIDVALIDITY. */
  latestImapMessage(uid: string): MessageRow | undefined {
    return this.sql(`SELECT * FROM messages WHERE uid = ? AND source LIKE 'imap:%' ORDER BY id DESC LIMIT 1`).get(uid) as MessageRow | undefined;
  }

  /** An order of this vendor, order id and product that was already served (not in review). */
  findServedOrder(vendor: string, vendorOrderId: string, productId: string | null): number | null {
    const row = this.sql(`SELECT id FROM orders WHERE vendor = ? AND vendor_order_id = ? AND product_id IS ? AND state != 'review' LIMIT 1`)
      .get(vendor, vendorOrderId, productId) as { id: number } | undefined;
    return row?.id ?? null;
  }

  messageReceivedAt(id: number): string {
    const row = this.sql('SELECT received_at FROM messages WHERE id = ?').get(id) as { received_at: string } | undefined;
    return row?.received_at ?? new Date().toISOString();
  }

  messageRaw(id: number): Buffer | undefined {
    const row = this.sql('SELECT raw FROM messages WHERE id = ?').get(id) as { raw: Buffer } | undefined;
    return row?.raw;
  }

  /**
   * Records a message as seen, or as parsed once keymailer has read it (or finds its row again and
   * moves it forward), and returns its row id. A final state is never moved back.
   */
  recordMessage(key: MessageKey, raw: Buffer, contentHash: string, messageId: string | null, state: 'seen' | 'parsed' = 'seen'): number {
    const at = now();
    const written = this.sql(
        `INSERT INTO messages (source, uid_validity, uid, message_id, content_hash, state, raw, received_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (source, uid_validity, uid) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
         WHERE messages.state IN ('seen', 'parsed')
         RETURNING id`,
      )
      .get(key.source, key.uidValidity, key.uid, messageId, contentHash, state, raw, at, at) as { id: number } | undefined;
    if (written) return written.id;
    // Already final: nothing was written, and RETURNING gives no row.
    const row = this.findMessage(key);
    if (!row) throw new Error('message row vanished after insert');
    return row.id;
  }

  /** The final state and its event in one transaction: one fsync per message, not two. */
  finishMessage(id: number, state: MessageState, vendor: string | null, reason: string | null): void {
    this.finishMessageTx(id, state, vendor, reason);
  }

  event(orderId: number | null, messageRow: number | null, kind: string, detail: string | null): void {
    this.sql('INSERT INTO events (at, order_id, message_row, kind, detail) VALUES (?, ?, ?, ?, ?)')
      .run(now(), orderId, messageRow, kind, detail);
  }

  findOrder(orderKey: string): OrderRow | undefined {
    return this.sql('SELECT * FROM orders WHERE order_key = ?').get(orderKey) as OrderRow | undefined;
  }

  /** Orders matching what a seller types: keymailer's row id, the vendor's order id, or the buyer's email. */
  findOrders(reference: string): OrderRow[] {
    return this.sql(
        `SELECT * FROM orders WHERE CAST(id AS TEXT) = ? OR vendor_order_id = ? OR order_key = ? OR buyer_email = lower(?)
         ORDER BY id`,
      )
      .all(reference, reference, reference, reference) as OrderRow[];
  }

  listOrders(): OrderRow[] {
    return this.sql('SELECT * FROM orders ORDER BY id').all() as OrderRow[];
  }

  /**
   * Records an order and, when fulfilled, its buyer mail, in one transaction: after a crash
   * either both exist or neither, so the mail is sent exactly when the order is recorded.
   */
  commitOrder(order: OrderRecord): { orderId: number; outcome: CommitOutcome } {
    return this.commitOrderTx(order);
  }

  /**
   * A new order whose serials went back in the vendor's HTTP answer (a signed POST): its row and
   * its event, two statements, no look-up first. Null when an order with this key is already
   * recorded (a retry): the caller looks at it. Runs inside the caller's transaction (the group
   * commit gives each POST a savepoint).
   */
  insertAnsweredOrder(order: OrderRecord): number | null {
    const orderId = this.insertOrder(order, now());
    if (orderId !== null) this.orderEvent(orderId, order);
    return orderId;
  }

  private commitOrderNow(order: OrderRecord): { orderId: number; outcome: CommitOutcome } {
    const at = now();
    const existing = this.findOrder(order.orderKey);
    if (existing && existing.state !== 'review') {
      this.event(existing.id, order.messageRow, 'duplicate', `already ${existing.state}`);
      return { orderId: existing.id, outcome: 'duplicate' };
    }
    let orderId: number;
    if (existing) {
      const state = stateOf(order);
      this
        .sql(
          `UPDATE orders SET product_id = ?, license_name = ?, serials = ?, state = ?, reason = ?, message_row = ?,
           fulfilled_at = ?, sent_at = ?, updated_at = ? WHERE id = ?`,
        )
        .run(
          order.productId, order.licenseName, serialsJson(order), state, order.reason, order.messageRow,
          order.state === 'fulfilled' ? at : null, state === 'sent' ? at : null, at, existing.id,
        );
      orderId = existing.id;
    } else {
      const inserted = this.insertOrder(order, at);
      // The look-up above ran in this same transaction.
      if (inserted === null) throw new Error(`order ${order.orderKey} appeared during its own transaction`);
      orderId = inserted;
    }
    this.orderEvent(orderId, order);
    if (order.state === 'fulfilled' && !order.deliveredInAnswer) {
      if (!order.mail) throw new Error('a fulfilled order needs its buyer mail');
      this.enqueue(order.mail, orderId, at);
    }
    if (order.state === 'fulfilled') return { orderId, outcome: existing ? 'fulfilled-now' : 'new' };
    return { orderId, outcome: existing ? 'still-review' : 'new' };
  }

  /** What happened to a recorded order: fulfilled or sent to review, and why or from where. */
  private orderEvent(orderId: number, order: OrderRecord): void {
    this.event(orderId, order.messageRow, order.state === 'fulfilled' ? 'fulfilled' : 'review', order.reason ?? order.source ?? null);
  }

  /** The order's row; null when one with its key exists. An order whose serials went back in an answer is sent already. */
  private insertOrder(order: OrderRecord, at: string): number | null {
    const state = stateOf(order);
    const row = this
      .sql(
        `INSERT INTO orders (order_key, vendor, vendor_order_id, vendor_product, product_id, buyer_name, buyer_email,
         license_name, quantity, price, currency, test, serials, state, reason, message_row, received_at, fulfilled_at, sent_at,
         updated_at, sequence_series, sequence_number)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (order_key) DO NOTHING RETURNING id`,
      )
      .get(
        order.orderKey, order.vendor, order.vendorOrderId, order.vendorProduct, order.productId, order.buyerName,
        order.buyerEmail, order.licenseName, order.quantity, order.price, order.currency, order.test ? 1 : 0,
        serialsJson(order), state, order.reason, order.messageRow, at,
        order.state === 'fulfilled' ? at : null, state === 'sent' ? at : null, at,
        order.sequence?.series ?? null, order.sequence?.number ?? null,
      ) as { id: number } | undefined;
    return row?.id ?? null;
  }

  /**
   * The numbers of the vendor's series between the nearest number below `number` that an order
   * carries and `number` itself; null when none is missing or no lower number was ever seen.
   */
  missingBefore(vendor: string, series: string, number: number): { from: number; to: number } | null {
    const row = this.sql(
        `SELECT max(sequence_number) AS previous FROM orders WHERE vendor = ? AND sequence_series = ? AND sequence_number < ?`,
      )
      .get(vendor, series, number) as { previous: number | null };
    if (row.previous === null || row.previous >= number - 1) return null;
    return { from: row.previous + 1, to: number - 1 };
  }

  /**
   * Marks the vendor's order as refunded (or charged back); returns how many order rows (line
   * items) it touched: 0 when keymailer never saw that order.
   */
  markRefunded(vendor: string, vendorOrderId: string, reason: string, messageRow: number): number {
    return this.markRefundedTx(vendor, vendorOrderId, reason, messageRow);
  }

  /** Queues a mail in the outbox; a second mail with the same Message-ID is ignored. */
  enqueue(mail: OutgoingMail, orderId: number | null, at: string = now()): void {
    this.sql(
        `INSERT INTO outbox (order_id, kind, message_id, recipient, raw, created_at, next_attempt_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING`,
      )
      .run(orderId, mail.kind, mail.messageId, mail.recipient, mail.raw, at, at);
  }

  countResends(orderId: number): number {
    const row = this.sql(`SELECT count(*) AS n FROM outbox WHERE order_id = ? AND kind = 'resend'`)
      .get(orderId) as { n: number };
    return row.n;
  }

  dueMail(limit: number, at: string = now()): OutboxRow[] {
    return this.sql(
        `SELECT id, order_id, kind, message_id, recipient, raw, attempts, created_at FROM outbox
         WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`,
      )
      .all(at, limit) as OutboxRow[];
  }

  /** When the next unsent mail falls due, or null when the outbox is empty. */
  nextDue(): string | null {
    const row = this.sql('SELECT min(next_attempt_at) AS at FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL')
      .get() as { at: string | null };
    return row.at;
  }

  /**
   * Accepted mails, recorded in one transaction (one fsync) right after the server accepted them:
   * the only window for a double send.
   */
  markSent(mails: readonly OutboxRow[]): void {
    if (mails.length > 0) this.markSentTx(mails);
  }

  markRetry(mail: OutboxRow, error: string, nextAttemptAt: string): void {
    this.sql('UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?')
      .run(error, nextAttemptAt, mail.id);
  }

  /** True the first time only: the owner hears once that a mail is waiting, not on every retry. */
  markAlerted(mail: OutboxRow): boolean {
    return this.sql('UPDATE outbox SET alerted_at = ? WHERE id = ? AND alerted_at IS NULL').run(now(), mail.id).changes === 1;
  }

  markFailed(mail: OutboxRow, error: string): void {
    this.markFailedTx(mail, error);
  }
}
