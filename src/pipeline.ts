/**
 * The one place that runs the stages in order for one message:
 * parse → match product → make serials → render the buyer mail → record (order + outbox, one
 * transaction). Sending happens afterwards, from the outbox (see outbox.ts).
 */
import { sha256 } from './hash';
import type { RaiseAlert } from './alerts';
import type { LoadedConfig, ProductConfig } from './config';
import { decide, tooLargeDecision, type DecideContext, type DecidedOrder, type Decision } from './decide';
import type { Renderer } from './deliver/render';
import { coerceError } from './errors';
import { SerialError, makeSerials } from './fulfil/serial';
import type { Logger } from './log';
import { GroupCommit } from './record/group-commit';
import { isFinal, type MessageRow, type MessageState, type OrderRecord, type OrderRow, type Store } from './record/store';
import type { IncomingMessage, MessageKey, MessageOutcome, ParsedOrder } from './types';

export type { Decision, DecidedOrder } from './decide';


/** The Message-ID header, read from the raw header block without a full parse (first 64 KB). */
function messageIdOf(raw: Buffer): string | null {
  const head = raw.subarray(0, 65536).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  const headers = (end === -1 ? head : head.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  const value = /^message-id:\s*(<[^>\r\n]+>)/im.exec(headers)?.[1];
  return value ?? null;
}

/** How long a message may stay undecided (DNS temporary errors) before it goes to review. */
const DEFER_LIMIT_MS = 3600_000;

export interface PipelineOptions {
  readonly loaded: LoadedConfig;
  readonly store: Store;
  readonly renderer: Renderer;
  readonly log: Logger;
  /** Parsers, products and sender authentication, as decideContext() builds them from the config. */
  readonly context: DecideContext;
  /** Called after a commit that queued mail, so the outbox sends it at once. */
  readonly onMailQueued?: () => void;
  /** Tells the owner about anything that needs them. */
  readonly alert?: RaiseAlert;
}

/** What committing one order of a message came to. */
interface CommittedOrder {
  readonly order: DecidedOrder;
  readonly outcome: 'fulfilled' | 'review' | 'duplicate' | 'served';
}

export interface SignedOrderResult {
  readonly orderId: number;
  /** new: serials made now; replay: the serials of the first time; review: none, see reason. */
  readonly outcome: 'new' | 'replay' | 'review';
  readonly serials: readonly string[] | null;
  readonly reason: string | null;
}

export interface HandleOptions {
  /** Run the message through again even when it already reached a final state (--reprocess). */
  readonly force?: boolean;
  /** Queue another buyer mail for orders that were already fulfilled (--resend). */
  readonly resend?: boolean;
}

type Prepared = { readonly kind: 'done'; readonly outcome: MessageOutcome } | ToCommit;

/** A decided message waiting for the batch's transaction. */
interface ToCommit {
  readonly kind: 'commit';
  readonly message: IncomingMessage;
  readonly hash: string;
  readonly messageId: string | null;
  readonly decision: Decision;
  readonly mails: Map<string, { messageId: string; raw: Buffer }>;
  /** No row for this message existed and an earlier message of the batch looks the same: look again for a handled copy inside the transaction. */
  readonly checkCopy: boolean;
}

interface CommittedMessage {
  readonly kind: 'message';
  readonly state: MessageState;
  readonly reason: string | null;
  readonly outcomes: CommittedOrder[];
  readonly refunded: number;
}

type Committed = CommittedMessage | { readonly kind: 'copy'; readonly copy: MessageRow; readonly state: MessageState };

type CommitResult = { readonly ok: true; readonly value: Committed } | { readonly ok: false; readonly error: unknown };

export class Pipeline {
  private readonly signedOrders: GroupCommit;
  /** Built once (better-sqlite3 builds a new wrapper per db.transaction() call). */
  private readonly commitMessages: (batch: readonly ToCommit[]) => CommitResult[];

  constructor(private readonly options: PipelineOptions) {
    this.signedOrders = new GroupCommit(options.store.db, options.store.walSync);
    const savepoint = options.store.db.transaction((p: ToCommit) => this.commitMessage(p));
    this.commitMessages = options.store.db.transaction((batch: readonly ToCommit[]) =>
      batch.map((p): CommitResult => {
        try {
          return { ok: true, value: savepoint(p) };
        } catch (error) {
          return { ok: false, error };
        }
      }),
    );
  }

  private stopping = false;

  /**
   * Stop taking messages: a batch in hand finishes the message being read, commits what was read,
   * and answers 'defer' for the rest, which the source leaves for the next start.
   */
  stopTaking(): void {
    this.stopping = true;
  }

  /** The source's handler: resolves once every message's final state is committed. */
  readonly handle = (messages: readonly IncomingMessage[]): Promise<MessageOutcome[]> => this.processAll(messages);

  /** One message through every stage; see processAll. */
  async process(message: IncomingMessage, handleOptions: HandleOptions = {}): Promise<MessageOutcome> {
    const [outcome] = await this.processAll([message], handleOptions);
    if (outcome === undefined) throw new Error('no outcome for the message');
    return outcome;
  }

  /**
   * Messages are read and decided one after another, in order; then all of them commit in one
   * transaction (each in its own savepoint), so a backlog pays one fsync per batch rather than one
   * per message; then each is logged and alerted. Resolves once every state is committed. When a
   * message cannot be committed, the others still are, and the error is thrown afterwards: the
   * source leaves that message where it is and the next pass tries it again.
   */
  async processAll(messages: readonly IncomingMessage[], handleOptions: HandleOptions = {}): Promise<MessageOutcome[]> {
    const prepared: Prepared[] = [];
    // Copies within one batch are only recognisable at commit time (the first is not committed
    // when the second is checked); only those are looked up again inside the transaction.
    const seen = new Set<string>();
    for (const message of messages) {
      if (this.stopping) {
        // Stopping: what was read commits; the rest stays where it is for the next start.
        prepared.push({ kind: 'done', outcome: 'defer' });
        continue;
      }
      const p = await this.prepare(message, handleOptions);
      if (p.kind === 'commit') {
        const id = p.messageId === null ? null : `id:${p.messageId}`;
        const again = seen.has(`hash:${p.hash}`) || (id !== null && seen.has(id));
        seen.add(`hash:${p.hash}`);
        if (id !== null) seen.add(id);
        prepared.push(again ? p : { ...p, checkCopy: false });
      } else prepared.push(p);
    }
    const commits = prepared.filter((p): p is ToCommit => p.kind === 'commit');
    let results: CommitResult[] = [];
    if (commits.length > 0) {
      const { walSync } = this.options.store;
      results = walSync.commitLater(() => this.commitMessages(commits));
      // Nothing is reported, sent or moved out of the mailbox before the batch is on the disk.
      await walSync.durable();
    }
    const outcomes: MessageOutcome[] = [];
    let failure: unknown = null;
    let next = 0;
    for (const p of prepared) {
      if (p.kind === 'done') {
        outcomes.push(p.outcome);
        continue;
      }
      const result = results[next++];
      if (!result || !result.ok) {
        failure ??= result ? result.error : new Error('lost in the batch commit');
        outcomes.push('defer');
        continue;
      }
      if (result.value.kind === 'copy') this.reportCopy(p.message.key, result.value.copy);
      else await this.report(p.decision, p.message.key, result.value, handleOptions);
      outcomes.push(result.value.state === 'review' ? 'review' : 'processed');
    }
    if (failure !== null) throw failure;
    return outcomes;
  }

  /** Everything before the commit: the checks, the decision and the buyer mails (async work). */
  private async prepare(message: IncomingMessage, handleOptions: HandleOptions): Promise<Prepared> {
    const { store, log } = this.options;
    const { key, raw } = message;
    const existing = store.findMessage(key);
    if (existing && isFinal(existing.state) && !handleOptions.force) {
      // Committed before, but the move did not happen (crash or lost connection): file it, nothing else.
      log.info('message already handled', { uid: key.uid, state: existing.state });
      return { kind: 'done', outcome: existing.state === 'review' ? 'review' : 'processed' };
    }
    const hash = sha256(raw);
    const checkCopy = !existing && !handleOptions.force;
    if (checkCopy) {
      const copy = store.findHandledCopy(hash, messageIdOf(raw));
      if (copy) {
        this.fileCopy(key, raw, hash, copy);
        this.reportCopy(key, copy);
        return { kind: 'done', outcome: copy.state === 'review' ? 'review' : 'processed' };
      }
    }
    let decision: Decision;
    try {
      decision =
        message.tooLarge === undefined
          ? await decide(raw, this.options.context)
          : tooLargeDecision(message.tooLarge, this.options.loaded.config.maxMessageSize);
    } catch (err) {
      decision = { vendor: null, action: 'review', reason: `internal error: ${coerceError(err).message}`, orders: [], notification: null, refundOf: null };
    }
    const messageId = decision.notification?.messageId ?? null;
    if (decision.action === 'defer') {
      // A DNS hiccup is no verdict: the message waits and is tried again, for up to an hour.
      const row = store.recordMessage(key, raw, hash, messageId, 'seen');
      const waited = Date.now() - Date.parse(store.messageReceivedAt(row));
      if (waited < DEFER_LIMIT_MS) {
        log.warn('message deferred: will try again', { uid: key.uid, vendor: decision.vendor, reason: decision.reason });
        return { kind: 'done', outcome: 'defer' };
      }
      decision = { ...decision, action: 'review', reason: `temporary errors for over an hour: ${decision.reason ?? ''}` };
    }
    // Buyer mails are built before the transaction (building is async), so the message, its
    // orders, their mails and the final state commit together.
    const mails = await this.buildMails(decision);
    return { kind: 'commit', message, hash, messageId, decision, mails, checkCopy };
  }

  /** A message handled before under another key: recorded as a copy of it, nothing done again. */
  private fileCopy(key: MessageKey, raw: Buffer, hash: string, copy: MessageRow): void {
    const { store } = this.options;
    const row = store.recordMessage(key, raw, hash, copy.message_id);
    store.finishMessage(row, copy.state, copy.vendor, `duplicate: same message as #${copy.id} (${copy.source} ${copy.uid}): ${copy.reason ?? copy.state}`);
  }

  private reportCopy(key: MessageKey, copy: MessageRow): void {
    this.options.log.info('duplicate message: handled before under another name or UID; filed, nothing done again', {
      uid: key.uid, first: `${copy.source}#${copy.uid}`, state: copy.state,
    });
  }

  /** One message's rows: its state, its orders and their buyer mails. Runs inside the batch's transaction. */
  private commitMessage(p: ToCommit): Committed {
    const { store } = this.options;
    const { decision, mails } = p;
    const { key, raw } = p.message;
    if (p.checkCopy) {
      // An identical message earlier in the same batch was not committed yet when this one was checked.
      const copy = store.findHandledCopy(p.hash, messageIdOf(raw));
      if (copy) {
        this.fileCopy(key, raw, p.hash, copy);
        return { kind: 'copy', copy, state: copy.state };
      }
    }
    const messageRow = store.recordMessage(key, raw, p.hash, p.messageId, 'parsed');
    let state: MessageState;
    let reason = decision.reason;
    let outcomes: CommittedOrder[] = [];
    let refunded = 0;
    switch (decision.action) {
      case 'reject':
        state = 'review';
        break;
      case 'ignore':
        state = 'ignored';
        break;
      case 'refund':
        state = 'refund';
        refunded = decision.refundOf && decision.vendor ? store.markRefunded(decision.vendor, decision.refundOf, reason ?? 'refund', messageRow) : 0;
        if (refunded === 0) reason = `${reason ?? 'refund'} (no such order in keymailer's log)`;
        break;
      default: {
        outcomes = this.commitOrders(decision, messageRow, mails);
        const reviews = outcomes.filter((o) => o.outcome === 'review').map((o) => o.order.review ?? 'needs review');
        state = decision.action === 'review' || reviews.length > 0 ? 'review' : 'fulfilled';
        if (reviews.length > 0) reason = reviews.join('; ');
      }
    }
    store.finishMessage(messageRow, state, decision.vendor, reason);
    return { kind: 'message', state, reason, outcomes, refunded };
  }

  /** Logs, alerts and follow-ups once a message's outcome is committed. */
  private async report(
    decision: Decision,
    key: MessageKey,
    committed: CommittedMessage,
    handleOptions: HandleOptions,
  ): Promise<void> {
    const { log, store } = this.options;
    const { reason } = committed;
    const n = decision.notification;
    if (decision.action === 'reject') {
      log.warn('notification rejected: not from its vendor', { uid: key.uid, vendor: decision.vendor, reason });
      this.options.alert?.('forgery', `message "${n?.subject ?? key.uid}" from ${n?.fromAddress || 'unknown sender'} failed authentication; no serial made`, reason ?? undefined);
    } else if (decision.action === 'ignore') {
      log.info('message ignored', { uid: key.uid, vendor: decision.vendor, reason });
    } else if (decision.action === 'refund') {
      log.warn('refund or chargeback received', { uid: key.uid, vendor: decision.vendor, order: decision.refundOf, reason, ordersMarked: committed.refunded });
      this.options.alert?.('refund', `${decision.vendor ?? 'vendor'} refund or chargeback for order ${decision.refundOf ?? '(unknown)'}`, reason ?? undefined);
    } else if (decision.orders.length === 0) {
      log.warn('message sent to review', { uid: key.uid, vendor: decision.vendor, reason });
      this.options.alert?.('review', `message "${n?.subject ?? key.uid}" from ${n?.fromAddress || 'unknown sender'} sent to review`, reason ?? undefined);
    }
    let queued = false;
    for (const { order, outcome } of committed.outcomes) {
      const fields = { order: order.vendorOrderId ?? order.orderKey, uid: key.uid, vendor: decision.vendor, product: order.productId ?? order.product, buyer: order.buyerEmail };
      if ((outcome === 'fulfilled' || outcome === 'review') && order.sequence && decision.vendor) this.checkSequence(decision.vendor, order.sequence, fields);
      if (outcome === 'served') {
        log.info('order already served through Avangate\'s key generator: duplicate, no mail', fields);
      } else if (outcome === 'duplicate') {
        log.info('order already fulfilled: duplicate, no second mail', fields);
        const row = handleOptions.resend ? store.findOrder(order.orderKey) : undefined;
        if (row) {
          const { queued: resent, reason: why } = await this.resendOrder(row);
          if (!resent) log.warn('order not resent', { ...fields, reason: why });
        }
      } else if (outcome === 'fulfilled') {
        log.info('order fulfilled', fields);
        queued = true;
      } else {
        log.warn('order sent to review', { ...fields, reason: order.review });
        this.options.alert?.('review', `${decision.vendor ?? ''} order ${fields.order} for ${order.buyerEmail} sent to review`, order.review ?? undefined);
      }
    }
    if (queued) this.options.onMailQueued?.();
  }

  /**
   * A vendor that numbers its notifications (Kagi's SQNM) shows a lost one as a skipped number: the
   * owner is told which numbers never arrived, so they can look the sales up at the vendor.
   */
  private checkSequence(vendor: string, sequence: { series: string; number: number }, fields: Record<string, unknown>): void {
    const gap = this.options.store.missingBefore(vendor, sequence.series, sequence.number);
    if (!gap) return;
    const numbers = gap.from === gap.to ? `number ${gap.from}` : `numbers ${gap.from} to ${gap.to}`;
    this.options.log.warn('notifications missing: the vendor numbered notifications that never arrived', {
      ...fields, series: sequence.series, missingFrom: gap.from, missingTo: gap.to,
    });
    this.options.alert?.(
      'missing-notification',
      `${vendor} ${sequence.series}: ${numbers} never arrived (this one is ${sequence.number})`,
      `Each ${vendor} notification carries a running number per product, and these are missing: those buyers may be waiting. Look the sales up in the ${vendor} control panel and forward their notifications to the mailbox; a late one is fulfilled as usual.`,
    );
  }

  /**
   * Mails an order's serials to its buyer again (the buyer lost them): a new mail with its own
   * Message-ID, recorded as a resend. Only for orders that were fulfilled by mail.
   */
  async resendOrder(order: OrderRow): Promise<{ queued: boolean; reason: string | null }> {
    const { store, log, loaded } = this.options;
    const product = loaded.config.products.find((p) => p.id === order.product_id);
    if (!order.serials || (order.state !== 'sent' && order.state !== 'fulfilled')) {
      return { queued: false, reason: `order ${order.vendor_order_id ?? order.id} has no serial yet (state ${order.state})` };
    }
    if (!product) return { queued: false, reason: `product ${order.product_id ?? '?'} is no longer in the config` };
    const n = store.countResends(order.id) + 1;
    const serials = JSON.parse(order.serials) as string[];
    const mail = await this.options.renderer.buildBuyerMail(
      product.template,
      {
        buyer: { name: order.buyer_name, email: order.buyer_email },
        licenseName: order.license_name ?? order.buyer_name,
        product: { id: product.id, name: product.name },
        serials,
        quantity: order.quantity,
        order: { id: order.vendor_order_id, vendor: order.vendor },
        test: order.test === 1,
      },
      `${order.order_key}#resend-${n}`,
    );
    store.enqueue({ kind: 'resend', recipient: order.buyer_email, ...mail }, order.id);
    store.event(order.id, null, 'resend queued', `resend ${n}`);
    log.info('order resend queued', { order: order.vendor_order_id ?? order.id, buyer: order.buyer_email, resend: n });
    this.options.onMailQueued?.();
    return { queued: true, reason: null };
  }

  /**
   * An order that arrived as a signed request (a processor calling us) rather than a mail: serials
   * from the same generator, recorded in the same orders table. The vendor delivers the serials
   * from our answer, so no buyer mail is queued. A replay (same vendor, order id and product)
   * returns the serials issued the first time and records nothing new.
   */
  async recordSignedOrder(vendor: string, order: ParsedOrder, productId: string): Promise<SignedOrderResult> {
    const { log } = this.options;
    const fields = { order: order.vendorOrderId, vendor, product: productId, buyer: order.buyerEmail, test: order.test };
    // Concurrent POSTs share one commit (and one fsync); each is answered only once it is durable.
    const result = await this.signedOrders.run(() => this.commitSignedOrder(vendor, order, productId));
    if (result.outcome === 'replay') log.info('signed order replayed: same serials answered', fields);
    else if (result.serials) log.info('signed order fulfilled: serials answered', fields);
    else {
      log.warn('signed order sent to review', { ...fields, reason: result.reason });
      this.options.alert?.('review', `${vendor} order ${order.vendorOrderId ?? ''} for ${order.buyerEmail} sent to review`, result.reason ?? undefined);
    }
    return result;
  }

  private commitSignedOrder(vendor: string, order: ParsedOrder, productId: string): SignedOrderResult {
    const { store, loaded } = this.options;
    const orderKey = `${vendor}:${order.vendorOrderId ?? ''}:${order.productCode ?? order.product}`;
    const product = loaded.config.products.find((p) => p.id === productId);
    let serials: string[] | null = null;
    let reason: string | null = null;
    if (!product) reason = `unknown product ${productId}`;
    else {
      try {
        serials = makeSerials(product, {
          name: order.licenseName ?? order.buyerName,
          email: order.buyerEmail,
          productId,
          orderId: order.vendorOrderId ?? orderKey,
          quantity: order.quantity,
          test: order.test,
          issuedAt: new Date().toISOString().slice(0, 10),
        });
      } catch (err) {
        if (!(err instanceof SerialError)) throw err;
        reason = err.message;
      }
    }
    const record: OrderRecord = {
      orderKey, vendor, vendorOrderId: order.vendorOrderId, vendorProduct: order.product, productId,
      buyerName: order.buyerName, buyerEmail: order.buyerEmail, licenseName: order.licenseName,
      quantity: order.quantity, price: order.price, currency: order.currency, test: order.test,
      messageRow: null, state: serials ? 'fulfilled' : 'review', reason, serials, mail: null,
      deliveredInAnswer: true, source: 'signed POST',
    };
    // A new order, the common case, is one INSERT; a retry finds the order it inserted before.
    const inserted = store.insertAnsweredOrder(record);
    if (inserted !== null) return { orderId: inserted, outcome: serials ? 'new' : 'review', serials, reason };
    const existing = store.findOrder(orderKey);
    if (existing && existing.state !== 'review' && existing.serials) {
      // The codes of the first answer, even if the product's settings changed since.
      store.event(existing.id, null, 'replay', 'same order posted again: same serials answered');
      return { orderId: existing.id, outcome: 'replay', serials: JSON.parse(existing.serials) as string[], reason: null };
    }
    // In review before (say a test order without a test key): the seller fixed it, and Avangate retried.
    const { orderId } = store.commitOrder(record);
    return { orderId, outcome: serials ? 'new' : 'review', serials, reason };
  }

  /** The buyer mail of each order that can be fulfilled, by order key. */
  private async buildMails(decision: Decision): Promise<Map<string, { messageId: string; raw: Buffer }>> {
    const mails = new Map<string, { messageId: string; raw: Buffer }>();
    if (decision.action !== 'fulfill' && decision.action !== 'review') return mails;
    for (const order of decision.orders) {
      const product = this.options.loaded.config.products.find((p) => p.id === order.productId);
      if (order.review === null && order.serials !== null && product) {
        mails.set(order.orderKey, await this.buyerMail(order, product, decision.vendor ?? 'unknown', order.orderKey));
      }
    }
    return mails;
  }

  /** Records each order with its buyer mail, inside the message's transaction. */
  private commitOrders(decision: Decision, messageRow: number, mails: Map<string, { messageId: string; raw: Buffer }>): CommittedOrder[] {
    const { store } = this.options;
    return decision.orders.map((order): CommittedOrder => {
      const servedBy = this.servedElsewhere(decision.vendor, order);
      if (servedBy) {
        store.event(servedBy, messageRow, 'duplicate', 'already served through the Avangate key generator');
        return { order, outcome: 'served' };
      }
      const mail = mails.get(order.orderKey) ?? null;
      const { outcome } = store.commitOrder({
        orderKey: order.orderKey,
        vendor: decision.vendor ?? 'unknown',
        vendorOrderId: order.vendorOrderId,
        vendorProduct: order.product,
        productId: order.productId,
        buyerName: order.buyerName,
        buyerEmail: order.buyerEmail,
        licenseName: order.licenseName,
        quantity: order.quantity,
        price: order.price,
        currency: order.currency,
        test: order.test,
        messageRow,
        state: mail ? 'fulfilled' : 'review',
        reason: order.review,
        serials: order.serials,
        mail: mail ? { kind: 'serial', recipient: order.buyerEmail, ...mail } : null,
        sequence: order.sequence,
      });
      if (outcome === 'duplicate') return { order, outcome: 'duplicate' };
      return { order, outcome: mail ? 'fulfilled' : 'review' };
    });
  }

  /**
   * 2Checkout mails the seller about orders whose codes Avangate already fetched from our key
   * generator (the same sale: same REFNO, same product): that order is served, not a second sale.
   */
  private servedElsewhere(vendor: string | null, order: DecidedOrder): number | null {
    if (vendor !== '2checkout' || !order.vendorOrderId || this.options.loaded.config.vendors['avangate'] === undefined) return null;
    return this.options.store.findServedOrder('avangate', order.vendorOrderId, order.productId);
  }

  private buyerMail(order: DecidedOrder, product: ProductConfig, vendor: string, identity: string): Promise<{ messageId: string; raw: Buffer }> {
    return this.options.renderer.buildBuyerMail(
      product.template,
      {
        buyer: { name: order.buyerName, email: order.buyerEmail },
        licenseName: order.nameToLicense,
        product: { id: product.id, name: product.name },
        serials: order.serials ?? [],
        quantity: order.quantity,
        order: { id: order.vendorOrderId, vendor },
        test: order.test,
      },
      identity,
    );
  }
}
