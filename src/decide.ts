/**
 * What keymailer concludes about one message, with no side effect at all:
 * decode → find the vendor's parser → parse → authenticate the sender → match products → make
 * serials. Shared by the daemon, --dry-run and `keymailer parse`.
 */
import { sha256 } from './hash';
import { buildAuthPolicy, authenticateSender, type AuthPolicy, type Resolver } from './authenticate/sender';
import type { LoadedConfig, ProductConfig } from './config';
import { coerceError } from './errors';
import { matchProduct } from './fulfil/products';
import { SerialError, makeSerials } from './fulfil/serial';
import { forwardedOf, toNotification } from './parse/notification';
import { buildParsers, findParser } from './parse/registry';
import type { Notification, ParsedOrder, VendorParser } from './types';

/**
 * fulfill: a sale to serve; refund; ignore: vendor mail that is no sale; review: needs a human;
 * reject: failed authentication (a forgery, or mail the vendor did not send); defer: cannot be
 * decided yet (a DNS temporary error while verifying): try again later.
 */
export type Action = 'fulfill' | 'refund' | 'ignore' | 'review' | 'reject' | 'defer';

export interface DecidedOrder extends ParsedOrder {
  readonly orderKey: string;
  readonly productId: string | null;
  /** The name the serial is made for: the license name when given, else the buyer's name. */
  readonly nameToLicense: string;
  readonly serials: readonly string[] | null;
  /** Why this order needs a human; null when it can be fulfilled. */
  readonly review: string | null;
}

export interface Decision {
  readonly vendor: string | null;
  readonly action: Action;
  readonly reason: string | null;
  readonly orders: readonly DecidedOrder[];
  readonly notification: Notification | null;
  readonly refundOf: string | null;
}

export interface AuthContext {
  readonly policy: AuthPolicy;
  /** DNS for DKIM keys; the system resolver when absent. */
  readonly resolver?: Resolver;
}

export interface DecideContext {
  readonly products: readonly ProductConfig[];
  readonly parsers: readonly VendorParser[];
  /** Sender authentication; null only where a caller checks parsing alone, never in the daemon. */
  readonly auth: AuthContext | null;
  /** YYYY-MM-DD, written into signed serials. */
  readonly today?: string;
}

/** Parsers and authentication policy for a config. Throws ConfigError naming the bad key. */
export function decideContext(loaded: LoadedConfig, resolver?: Resolver): DecideContext {
  const { config } = loaded;
  const parsers = buildParsers(config.vendors);
  // Only vendors that have a parser are mail vendors; vendors.avangate belongs to the HTTP listener.
  const ids = new Set(parsers.map((p) => p.id));
  const mailVendors = Object.fromEntries(Object.entries(config.vendors).filter(([id]) => ids.has(id)));
  const labels = Object.fromEntries(parsers.map((p) => [p.id, p.label]));
  const policy = buildAuthPolicy(mailVendors, [...config.trustAuthResults], labels);
  return { products: config.products, parsers, auth: resolver ? { policy, resolver } : { policy } };
}

/** Vendors whose notifications are accepted unchecked (`auth: none`): said at start, every start. */
export function uncheckedVendors(context: DecideContext): string[] {
  return context.auth ? context.parsers.filter((p) => context.auth?.policy.vendor(p.id).auth === 'none').map((p) => p.label) : [];
}


function verdict(action: Action, reason: string, vendor: string | null, notification: Notification | null): Decision {
  return { vendor, action, reason, orders: [], notification, refundOf: null };
}

export async function decide(raw: Buffer, context: DecideContext): Promise<Decision> {
  const today = context.today ?? new Date().toISOString().slice(0, 10);
  let notification: Notification;
  try {
    notification = await toNotification(raw);
  } catch (err) {
    return verdict('review', `cannot decode the message: ${coerceError(err).message}`, null, null);
  }
  const parser = findParser(notification, context.parsers);
  if (!parser) {
    const sender = notification.fromAddress || 'none';
    return verdict('review', `no parser recognises this message (From: ${sender}, Subject: "${notification.subject}")`, null, notification);
  }
  let result;
  try {
    result = parser.parse(notification);
  } catch (err) {
    return verdict('review', `${parser.label}: ${coerceError(err).message}`, parser.id, notification);
  }
  if (result.kind === 'ignore') return verdict('ignore', result.reason, parser.id, notification);
  if (result.kind === 'refund') {
    return { ...verdict('refund', result.reason, parser.id, notification), refundOf: result.vendorOrderId };
  }
  if (result.orders.length === 0) return verdict('review', `${parser.label}: a sale without any item`, parser.id, notification);

  // No serial for a forgery: the sale must prove it comes from the vendor before anything is made.
  const forwarded = forwardedOf(notification);
  if (context.auth) {
    const check = await authenticateSender(
      { raw, vendorId: parser.id, forwardedOriginal: forwarded?.original ?? null },
      context.auth.policy,
      context.auth.resolver,
    );
    if (!check.ok) {
      if (check.temporary) return verdict('defer', `${parser.label}: ${check.reason}`, parser.id, notification);
      if (forwarded) {
        const how = forwarded.how === 'attachment' ? 'attached to a mail' : 'forwarded inline';
        return verdict('review', `forwarded notification: not trusted (${parser.label} mail ${how} by ${forwarded.by || 'an unknown sender'}: ${check.reason})`, parser.id, notification);
      }
      return verdict('reject', `${parser.label}: ${check.reason}`, parser.id, notification);
    }
  } else if (forwarded) {
    return verdict('review', `forwarded notification: not trusted (sender authentication not checked)`, parser.id, notification);
  }

  const seenKeys = new Set<string>();
  const orders = result.orders.map((order, index): DecidedOrder => {
    const identity =
      order.vendorOrderId ?? `msg-${sha256(`${parser.id}|${order.buyerEmail}|${notification.messageId ?? sha256(raw)}`).slice(0, 20)}`;
    let orderKey = `${parser.id}:${identity}:${order.product}`;
    if (seenKeys.has(orderKey)) orderKey += `#${index + 1}`;
    seenKeys.add(orderKey);
    const nameToLicense = order.licenseName ?? order.buyerName;
    const product = matchProduct(context.products, order.product, order.productCode);
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
export function tooLargeDecision(size: number, limit: number): Decision {
  const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;
  return verdict('review', `message of ${mb(size)} is over the ${mb(limit)} limit (maxMessageSize): not downloaded`, null, null);
}

/** The JSON shape of a decision, shared by `keymailer parse` and --dry-run. */
export function summarise(decision: Decision): Record<string, unknown> {
  return {
    vendor: decision.vendor,
    action: decision.action,
    reason: decision.reason,
    ...(decision.action === 'refund' ? { refundOf: decision.refundOf } : {}),
    orders: decision.orders.map((o) => ({
      orderId: o.vendorOrderId,
      buyerName: o.buyerName,
      buyerEmail: o.buyerEmail,
      licenseName: o.licenseName,
      product: o.product,
      productCode: o.productCode,
      quantity: o.quantity,
      price: o.price,
      currency: o.currency,
      test: o.test,
      productId: o.productId,
      ...(o.sequence ? { sequence: `${o.sequence.series} ${o.sequence.number}` } : {}),
    })),
  };
}
