/**
 * The one place that runs the stages in order for one message:
 * parse → match product → make serials → render the buyer mail → record (order + outbox, one
 * transaction). Sending happens afterwards, from the outbox (see outbox.ts).
 */
import crypto from 'node:crypto';
import type { LoadedConfig, ProductConfig } from './config';
import { coerceError } from './errors';
import { matchProduct } from './fulfil/products';
import { SerialError, makeSerials } from './fulfil/serial';
import type { RaiseAlert } from './alerts';
import type { Logger } from './log';
import { toNotification } from './parse/notification';
import { PARSERS, findParser } from './parse/registry';
import type { Renderer } from './deliver/render';
import type { MessageState, OrderRow, Store } from './record/store';
import type { IncomingMessage, MessageKey, MessageOutcome, Notification, ParsedOrder, VendorParser } from './types';

export type Action = 'fulfill' | 'refund' | 'ignore' | 'review';

export interface DecidedOrder extends ParsedOrder {
  readonly orderKey: string;
  readonly productId: string | null;
  /** The name the serial is made for: the license name when given, else the buyer's name. */
  readonly nameToLicense: string;
  readonly serials: readonly string[] | null;
  /** Why this order needs a human; null when it can be fulfilled. */
  readonly review: string | null;
}

/** What keymailer concludes about one message, before anything is recorded or sent. */
export interface Decision {
  readonly vendor: string | null;
  readonly action: Action;
  readonly reason: string | null;
  readonly orders: readonly DecidedOrder[];
  readonly notification: Notification | null;
  readonly refundOf: string | null;
}

const sha256 = (data: Buffer | string): string => crypto.createHash('sha256').update(data).digest('hex');

/** The Message-ID header, read from the raw header block without a full parse (first 64 KB). */
function messageIdOf(raw: Buffer): string | null {
  const head = raw.subarray(0, 65536).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  const headers = (end === -1 ? head : head.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  const value = /^message-id:\s*(<[^>\r\n]+>)/im.exec(headers)?.[1];
  return value ?? null;
}

/** Parses and decides, with no side effect at all: shared by the daemon, --dry-run and `parse`. */
export async function decide(
  raw: Buffer,
  products: readonly ProductConfig[],
  parsers: readonly VendorParser[] = PARSERS,
  today: string = new Date().toISOString().slice(0, 10),
): Promise<Decision> {
  const review = (reason: string, vendor: string | null = null, notification: Notification | null = null): Decision => ({
    vendor, action: 'review', reason, orders: [], notification, refundOf: null,
  });
  let notification: Notification;
  try {
    notification = await toNotification(raw);
  } catch (err) {
    return review(`cannot decode the message: ${coerceError(err).message}`);
  }
  const parser = findParser(notification, parsers);
  if (!parser) {
    return review(
      `no parser recognises this message (From: ${notification.fromAddress || 'none'}, Subject: "${notification.subject}")`,
      null,
      notification,
    );
  }
  let result;
  try {
    result = parser.parse(notification);
  } catch (err) {
    return review(`${parser.label}: ${coerceError(err).message}`, parser.id, notification);
  }
  if (result.kind === 'ignore') {
    return { vendor: parser.id, action: 'ignore', reason: result.reason, orders: [], notification, refundOf: null };
  }
  if (result.kind === 'refund') {
    return { vendor: parser.id, action: 'refund', reason: result.reason, orders: [], notification, refundOf: result.vendorOrderId };
  }
  if (result.orders.length === 0) return review(`${parser.label}: a sale without any item`, parser.id, notification);
  const seenKeys = new Set<string>();
  const orders = result.orders.map((order, index): DecidedOrder => {
    const identity =
      order.vendorOrderId ?? `msg-${sha256(`${parser.id}|${order.buyerEmail}|${notification.messageId ?? sha256(raw)}`).slice(0, 20)}`;
    let orderKey = `${parser.id}:${identity}:${order.product}`;
    if (seenKeys.has(orderKey)) orderKey += `#${index + 1}`;
    seenKeys.add(orderKey);
    const nameToLicense = order.licenseName ?? order.buyerName;
    const product = matchProduct(products, order.product, order.productCode);
    const base = { ...order, orderKey, nameToLicense, productId: product?.id ?? null };
    if (!product) {
      const code = order.productCode ? ` (code ${order.productCode})` : '';
      return { ...base, serials: null, review: `unknown product "${order.product}"${code}: add it to a product's match list` };
    }
    try {
      const serials = makeSerials(product, {
        name: nameToLicense,
        email: order.buyerEmail,
        productId: product.id,
        orderId: order.vendorOrderId ?? orderKey,
        quantity: order.quantity,
        test: order.test,
        issuedAt: today,
      });
      return { ...base, serials, review: null };
    } catch (err) {
      if (err instanceof SerialError) return { ...base, serials: null, review: err.message };
      throw err;
    }
  });
  const problems = orders.filter((o) => o.review !== null).map((o) => o.review);
  return {
    vendor: parser.id,
    action: problems.length > 0 ? 'review' : 'fulfill',
    reason: problems.length > 0 ? problems.join('; ') : null,
    orders,
    notification,
    refundOf: null,
  };
}

/** A message too large to download whole: review, with its size, never parsed. */
function tooLargeDecision(size: number, limit: number): Decision {
  const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;
  return {
    vendor: null,
    action: 'review',
    reason: `message of ${mb(size)} is over the ${mb(limit)} limit (maxMessageSize): not downloaded`,
    orders: [],
    notification: null,
    refundOf: null,
  };
}

export interface PipelineOptions {
  readonly loaded: LoadedConfig;
  readonly store: Store;
  readonly renderer: Renderer;
  readonly log: Logger;
  readonly parsers?: readonly VendorParser[];
  /** Called after a commit that queued mail, so the outbox sends it at once. */
  readonly onMailQueued?: () => void;
  /** Tells the owner about anything that needs them. */
  readonly alert?: RaiseAlert;
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

export class Pipeline {
  constructor(private readonly options: PipelineOptions) {}

  /** The source's handler: resolves once the message's final state is committed. */
  readonly handle = (message: IncomingMessage): Promise<MessageOutcome> => this.process(message);

  async process(message: IncomingMessage, handleOptions: HandleOptions = {}): Promise<MessageOutcome> {
    const { store, log } = this.options;
    const { key, raw } = message;
    const existing = store.findMessage(key);
    if (existing && existing.state !== 'seen' && !handleOptions.force) {
      // Committed before, but the move did not happen (crash or lost connection): file it, nothing else.
      log.info('message already handled', { uid: key.uid, state: existing.state });
      return existing.state === 'review' ? 'review' : 'processed';
    }
    const hash = sha256(raw);
    if (!existing && !handleOptions.force) {
      const copy = store.findHandledCopy(hash, messageIdOf(raw));
      if (copy) {
        const row = store.recordMessage(key, raw, hash, copy.message_id);
        store.finishMessage(row, copy.state, copy.vendor, `duplicate: same message as #${copy.id} (${copy.source} ${copy.uid}): ${copy.reason ?? copy.state}`);
        log.info('duplicate message: handled before under another name or UID; filed, nothing done again', { uid: key.uid, first: `${copy.source}#${copy.uid}`, state: copy.state });
        return copy.state === 'review' ? 'review' : 'processed';
      }
    }
    let decision: Decision;
    try {
      decision =
        message.tooLarge === undefined
          ? await decide(raw, this.options.loaded.config.products, this.options.parsers ?? PARSERS)
          : tooLargeDecision(message.tooLarge, this.options.loaded.config.maxMessageSize);
    } catch (err) {
      decision = { vendor: null, action: 'review', reason: `internal error: ${coerceError(err).message}`, orders: [], notification: null, refundOf: null };
    }
    const messageRow = store.recordMessage(key, raw, hash, decision.notification?.messageId ?? null);
    let state: MessageState;
    let reason = decision.reason;
    switch (decision.action) {
      case 'ignore':
        state = 'ignored';
        log.info('message ignored', { uid: key.uid, vendor: decision.vendor, reason });
        break;
      case 'refund': {
        state = 'refund';
        const touched = decision.refundOf && decision.vendor ? store.markRefunded(decision.vendor, decision.refundOf, reason ?? 'refund', messageRow) : 0;
        if (touched === 0) reason = `${reason ?? 'refund'} (no such order in keymailer's log)`;
        log.warn('refund or chargeback received', { uid: key.uid, vendor: decision.vendor, order: decision.refundOf, reason, ordersMarked: touched });
        this.options.alert?.('refund', `${decision.vendor ?? 'vendor'} refund or chargeback for order ${decision.refundOf ?? '(unknown)'}`, reason ?? undefined);
        break;
      }
      default: {
        const reviews = await this.commitOrders(decision, messageRow, key, handleOptions);
        state = decision.action === 'review' || reviews.length > 0 ? 'review' : 'fulfilled';
        if (reviews.length > 0) reason = reviews.join('; ');
        if (decision.orders.length === 0) {
          log.warn('message sent to review', { uid: key.uid, vendor: decision.vendor, reason });
          const n = decision.notification;
          this.options.alert?.('review', `message "${n?.subject ?? key.uid}" from ${n?.fromAddress || 'unknown sender'} sent to review`, reason ?? undefined);
        }
      }
    }
    store.finishMessage(messageRow, state, decision.vendor, reason);
    return state === 'review' ? 'review' : 'processed';
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
  recordSignedOrder(vendor: string, order: ParsedOrder, productId: string): SignedOrderResult {
    const { store, log, loaded } = this.options;
    const orderKey = `${vendor}:${order.vendorOrderId ?? ''}:${order.productCode ?? order.product}`;
    const fields = { order: order.vendorOrderId, vendor, product: productId, buyer: order.buyerEmail, test: order.test };
    const existing = store.findOrder(orderKey);
    if (existing && existing.state !== 'review' && existing.serials) {
      store.event(existing.id, null, 'replay', 'same order posted again: same serials answered');
      log.info('signed order replayed: same serials answered', fields);
      return { orderId: existing.id, outcome: 'replay', serials: JSON.parse(existing.serials) as string[], reason: null };
    }
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
    const { orderId } = store.commitOrder({
      orderKey, vendor, vendorOrderId: order.vendorOrderId, vendorProduct: order.product, productId,
      buyerName: order.buyerName, buyerEmail: order.buyerEmail, licenseName: order.licenseName,
      quantity: order.quantity, price: order.price, currency: order.currency, test: order.test,
      messageRow: null, state: serials ? 'fulfilled' : 'review', reason, serials, mail: null,
      deliveredInAnswer: true, source: 'signed POST',
    });
    if (serials) log.info('signed order fulfilled: serials answered', fields);
    else {
      log.warn('signed order sent to review', { ...fields, reason });
      this.options.alert?.('review', `${vendor} order ${order.vendorOrderId ?? ''} for ${order.buyerEmail} sent to review`, reason ?? undefined);
    }
    return { orderId, outcome: serials ? 'new' : 'review', serials, reason };
  }

  /** Records each order with its buyer mail; returns the review reasons of orders that need a human. */
  private async commitOrders(decision: Decision, messageRow: number, key: MessageKey, handleOptions: HandleOptions): Promise<string[]> {
    const { store, renderer, log, loaded } = this.options;
    const reviews: string[] = [];
    let queued = false;
    for (const order of decision.orders) {
      const product = loaded.config.products.find((p) => p.id === order.productId);
      const fulfil = order.review === null && order.serials !== null && product !== undefined;
      const mail = fulfil ? await this.buyerMail(order, product, decision.vendor ?? 'unknown', order.orderKey) : null;
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
        state: fulfil ? 'fulfilled' : 'review',
        reason: order.review,
        serials: order.serials,
        mail: mail ? { kind: 'serial', recipient: order.buyerEmail, ...mail } : null,
      });
      const fields = { order: order.vendorOrderId ?? order.orderKey, uid: key.uid, vendor: decision.vendor, product: order.productId ?? order.product, buyer: order.buyerEmail };
      if (outcome === 'duplicate') {
        log.info('order already fulfilled: duplicate, no second mail', fields);
        const row = handleOptions.resend ? store.findOrder(order.orderKey) : undefined;
        if (row) {
          const { queued: resent, reason } = await this.resendOrder(row);
          if (!resent) log.warn('order not resent', { ...fields, reason });
        }
      } else if (fulfil) {
        log.info('order fulfilled', fields);
        queued = true;
      } else {
        log.warn('order sent to review', { ...fields, reason: order.review });
        this.options.alert?.('review', `${decision.vendor ?? ''} order ${fields.order} for ${order.buyerEmail} sent to review`, order.review ?? undefined);
        reviews.push(order.review ?? 'needs review');
      }
    }
    if (queued) this.options.onMailQueued?.();
    return reviews;
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
