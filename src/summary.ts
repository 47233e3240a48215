/**
 * The owner's daily summary, as text: what sold, what it earned, and what still needs a human.
 * A pure read of the database (src/schedules.ts mails it), so a test can pin every line.
 */
import type { Db } from './record/db';

export interface Summary {
  readonly subject: string;
  readonly text: string;
}

interface WindowOrder {
  readonly vendor: string;
  readonly product_id: string | null;
  readonly vendor_product: string;
  readonly quantity: number;
  readonly price: string | null;
  readonly currency: string | null;
  readonly test: number;
  readonly state: string;
}

interface ReviewOrder {
  readonly received_at: string;
  readonly vendor: string;
  readonly vendor_order_id: string | null;
  readonly buyer_email: string;
  readonly product_id: string | null;
  readonly vendor_product: string;
  readonly reason: string | null;
}

interface ReviewMessage {
  readonly id: number;
  readonly received_at: string;
  readonly source: string;
  readonly uid: string;
  readonly vendor: string | null;
  readonly reason: string | null;
}

interface WaitingMail {
  readonly kind: string;
  readonly recipient: string;
  readonly created_at: string;
  readonly attempts: number;
  readonly last_error: string | null;
  readonly failed_at: string | null;
}

/** Items listed per section; the rest are counted. */
const LIST_LIMIT = 30;

/** A sum of decimal strings, exact: money is never a float. */
class DecimalSum {
  private minor = 0n;
  private scale = 0;

  /** Adds amount × quantity; false when the amount is not a plain decimal. */
  add(amount: string, quantity: number): boolean {
    const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(amount.trim());
    if (!match) return false;
    const fraction = match[3] ?? '';
    if (fraction.length > this.scale) {
      this.minor *= 10n ** BigInt(fraction.length - this.scale);
      this.scale = fraction.length;
    }
    const value = BigInt(`${match[2] ?? '0'}${fraction.padEnd(this.scale, '0')}`) * (match[1] === '-' ? -1n : 1n);
    this.minor += value * BigInt(quantity);
    return true;
  }

  toString(): string {
    const negative = this.minor < 0n;
    const digits = (negative ? -this.minor : this.minor).toString().padStart(this.scale + 1, '0');
    const whole = this.scale === 0 ? digits : digits.slice(0, -this.scale);
    const fraction = this.scale === 0 ? '' : `.${digits.slice(-this.scale)}`;
    return `${negative ? '-' : ''}${whole}${fraction}`;
  }
}

/** "2025-10-26 08:00" in the zone. */
export function localTime(at: Date | string, timeZone: string): string {
  const date = typeof at === 'string' ? new Date(at) : at;
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  }).formatToParts(date);
  const get = (type: Intl.DateTimeFormatPartTypes): string => parts.find((p) => p.type === type)?.value ?? '??';
  return `${get('year')}-${get('month')}-${get('day')} ${get('hour')}:${get('minute')}`;
}

function table(header: readonly string[], rows: readonly (readonly string[])[], numeric: ReadonlySet<number>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    `  ${cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ')}`.trimEnd();
  return [line(header), ...rows.map(line)];
}

function limited<T>(items: readonly T[], render: (item: T) => string, more: string): string[] {
  const lines = items.slice(0, LIST_LIMIT).map(render);
  if (items.length > LIST_LIMIT) lines.push(`  … and ${items.length - LIST_LIMIT} more (${more})`);
  return lines;
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/**
 * The owner's summary of [since, until): orders per product and vendor, revenue per currency,
 * refunds; and, whenever they happened, everything still in review and every buyer mail not
 * delivered. Reads only; the same database and window always give the same text.
 */
export function buildSummary(db: Db, since: Date, until: Date, timeZone = 'UTC'): Summary {
  const from = since.toISOString();
  const to = until.toISOString();
  const orders = db
    .prepare(
      `SELECT vendor, product_id, vendor_product, quantity, price, currency, test, state FROM orders
       WHERE received_at >= ? AND received_at < ? ORDER BY id`,
    )
    .all(from, to) as WindowOrder[];
  const real = orders.filter((o) => o.test === 0);
  const tests = orders.length - real.length;

  // Orders per product and vendor.
  const groups = new Map<string, { product: string; vendor: string; orders: number; units: number; sent: number; review: number }>();
  for (const o of real) {
    const product = o.product_id ?? `(no product: ${o.vendor_product})`;
    const key = `${product}\u0000${o.vendor}`;
    const g = groups.get(key) ?? { product, vendor: o.vendor, orders: 0, units: 0, sent: 0, review: 0 };
    g.orders++;
    g.units += o.quantity;
    if (o.state === 'sent') g.sent++;
    if (o.state === 'review') g.review++;
    groups.set(key, g);
  }
  const rows = [...groups.values()].sort((a, b) => b.orders - a.orders || a.product.localeCompare(b.product) || a.vendor.localeCompare(b.vendor));

  // Revenue per currency: unit price × quantity, as the vendors reported it (before their fees).
  const revenue = new Map<string, DecimalSum>();
  let unpriced = 0;
  for (const o of real) {
    if (o.price === null) {
      unpriced++;
      continue;
    }
    const currency = o.currency ?? '(currency unknown)';
    const sum = revenue.get(currency) ?? new DecimalSum();
    if (sum.add(o.price, o.quantity)) revenue.set(currency, sum);
    else unpriced++;
  }
  const currencies = [...revenue.keys()].sort();

  const refunds = db
    .prepare(`SELECT updated_at, vendor, reason FROM messages WHERE state = 'refund' AND updated_at >= ? AND updated_at < ? ORDER BY id`)
    .all(from, to) as { updated_at: string; vendor: string | null; reason: string | null }[];

  // Review and undelivered: whenever they happened, until someone deals with them.
  const reviewOrders = db
    .prepare(
      `SELECT received_at, vendor, vendor_order_id, buyer_email, product_id, vendor_product, reason FROM orders
       WHERE state = 'review' ORDER BY received_at, id`,
    )
    .all() as ReviewOrder[];
  const reviewMessages = db
    .prepare(
      `SELECT id, received_at, source, uid, vendor, reason FROM messages m
       WHERE state = 'review' AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.message_row = m.id)
         AND (reason IS NULL OR reason NOT LIKE 'duplicate:%') ORDER BY received_at, id`,
    )
    .all() as ReviewMessage[];
  const waiting = db
    .prepare(
      `SELECT kind, recipient, created_at, attempts, last_error, failed_at FROM outbox
       WHERE kind IN ('serial', 'resend') AND sent_at IS NULL AND failed_at IS NULL ORDER BY id`,
    )
    .all() as WaitingMail[];
  const failed = db
    .prepare(
      `SELECT kind, recipient, created_at, attempts, last_error, failed_at FROM outbox
       WHERE kind IN ('serial', 'resend') AND failed_at >= ? AND failed_at < ? ORDER BY id`,
    )
    .all(from, to) as WaitingMail[];
  const ownerWaiting = (
    db
      .prepare(`SELECT count(*) AS n FROM outbox WHERE kind NOT IN ('serial', 'resend') AND sent_at IS NULL AND failed_at IS NULL`)
      .get() as { n: number }
  ).n;

  const at = (iso: string): string => localTime(iso, timeZone);
  const lines: string[] = [`keymailer summary from ${localTime(since, timeZone)} to ${localTime(until, timeZone)} (${timeZone})`, ''];

  const units = real.reduce((n, o) => n + o.quantity, 0);
  lines.push(`Orders: ${plural(real.length, 'order')}, ${plural(units, 'unit')}${tests ? ` (and ${plural(tests, 'test order')}, not counted)` : ''}`);
  if (rows.length) {
    lines.push(
      ...table(
        ['product', 'vendor', 'orders', 'units', 'sent', 'review'],
        rows.map((g) => [g.product, g.vendor, String(g.orders), String(g.units), String(g.sent), String(g.review)]),
        new Set([2, 3, 4, 5]),
      ),
    );
  }
  lines.push('');

  lines.push('Revenue (as the vendors reported it, before their fees):');
  if (currencies.length === 0) lines.push('  none');
  for (const currency of currencies) lines.push(`  ${currency} ${revenue.get(currency)?.toString() ?? '0'}`);
  if (unpriced) lines.push(`  (${plural(unpriced, 'order')} without a price)`);
  if (refunds.length) {
    lines.push('', `Refunds and chargebacks received: ${refunds.length}`);
    lines.push(...limited(refunds, (r) => `  ${at(r.updated_at)}  ${r.vendor ?? 'unknown vendor'}  ${r.reason ?? ''}`.trimEnd(), 'see the log'));
  }
  lines.push('');

  const inReview = reviewOrders.length + reviewMessages.length;
  lines.push(`In review, waiting for you: ${inReview === 0 ? 'nothing' : inReview}`);
  lines.push(
    ...limited(
      reviewOrders,
      (o) =>
        `  ${at(o.received_at)}  ${o.vendor} order ${o.vendor_order_id ?? '(no id)'}  ${o.buyer_email}  ${o.product_id ?? o.vendor_product}: ${o.reason ?? 'no reason recorded'}`,
      'keymailer orders --status review',
    ),
  );
  lines.push(
    ...limited(
      reviewMessages,
      (m) => `  ${at(m.received_at)}  message ${m.uid} (${m.source})${m.vendor ? ` from ${m.vendor}` : ''}: ${m.reason ?? 'no reason recorded'}`,
      'the Review folder',
    ),
  );
  if (inReview) lines.push('  After fixing the cause: keymailer --reprocess review');
  lines.push('');

  const undelivered = waiting.length + failed.length;
  lines.push(`Buyer mails not delivered: ${undelivered === 0 ? 'none' : undelivered}`);
  lines.push(
    ...limited(
      waiting,
      (w) => `  waiting since ${at(w.created_at)}  ${w.kind} to ${w.recipient}, ${plural(w.attempts, 'attempt')}${w.last_error ? `: ${w.last_error}` : ''}`,
      'see the log',
    ),
  );
  lines.push(
    ...limited(
      failed,
      (w) => `  given up ${at(w.failed_at ?? w.created_at)}  ${w.kind} to ${w.recipient}: ${w.last_error ?? 'unknown error'}`,
      'keymailer orders --status review',
    ),
  );
  if (ownerWaiting) lines.push(`  (and ${plural(ownerWaiting, 'mail')} to you still waiting to be sent)`);

  const headline = [
    real.length === 0 ? 'no orders' : `${plural(real.length, 'order')}${currencies.length ? `, ${currencies.map((c) => `${c} ${revenue.get(c)?.toString() ?? ''}`).slice(0, 3).join(', ')}` : ''}`,
    ...(inReview ? [`${inReview} in review`] : []),
    ...(undelivered ? [`${undelivered} undelivered`] : []),
  ];
  return { subject: `keymailer summary: ${headline.join(' · ')}`, text: `${lines.join('\n')}\n` };
}
