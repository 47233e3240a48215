/**
 * What `GET /metrics` shows, in Prometheus text format. One Registry per listener, never
 * prom-client's global one: two apps in one process (tests, `--once` next to a daemon's code)
 * must not count into each other's numbers or fail on a metric registered twice.
 *
 * Orders, the outbox and the mailbox are read from their owners at scrape time (the database is the
 * source of truth, so the numbers survive restarts and include what CLI commands did); only the
 * signed POSTs, which leave no row when refused, are counted in memory since start.
 */
import type { Registry } from 'prom-client';
import type { Db } from '../record/db';
import type { Source } from '../types';

/** What happened to one signed POST. */
export const SIGNED_POST_RESULTS = [
  /** Codes made now and answered. */
  'fulfilled',
  /** A retry of an order answered before: the same codes again. */
  'replay',
  /** Recorded, but held for review (e.g. a test order without a test key): answered 503. */
  'review',
  'bad_hash',
  'malformed',
  'unknown_product',
  'forbidden',
  'too_large',
  'wrong_method',
  /** An internal error: answered 500. */
  'error',
] as const;
export type SignedPostResult = (typeof SIGNED_POST_RESULTS)[number];

export interface OutboxSnapshot {
  /** Mails waiting to be sent (not sent, not given up). */
  readonly depth: number;
  /** Mails given up (refused permanently or too old). */
  readonly failed: number;
  /** When the oldest waiting mail was queued, ms since epoch; null when none waits. */
  readonly oldestQueuedAt: number | null;
}

/** The outbox as the database holds it now. */
export function outboxSnapshot(db: Db): OutboxSnapshot {
  const row = db
    .prepare(
      `SELECT
         sum(CASE WHEN sent_at IS NULL AND failed_at IS NULL THEN 1 ELSE 0 END) AS depth,
         sum(CASE WHEN failed_at IS NOT NULL THEN 1 ELSE 0 END) AS failed,
         min(CASE WHEN sent_at IS NULL AND failed_at IS NULL THEN created_at END) AS oldest
       FROM outbox`,
    )
    .get() as { depth: number | null; failed: number | null; oldest: string | null };
  return { depth: row.depth ?? 0, failed: row.failed ?? 0, oldestQueuedAt: row.oldest === null ? null : Date.parse(row.oldest) };
}

export interface MetricsDeps {
  readonly db: Db;
  readonly source: Pick<Source, 'status'>;
}

export class HttpMetrics {
  /** Signed POSTs by vendor and result since start; kept here so prom-client loads only when scraped. */
  private readonly signedPosts = new Map<string, number>();
  private built: Registry | null = null;

  constructor(
    private readonly deps: MetricsDeps,
    private readonly vendors: readonly string[] = [],
  ) {}

  signedPost(vendor: string, result: SignedPostResult): void {
    const key = `${vendor}\n${result}`;
    this.signedPosts.set(key, (this.signedPosts.get(key) ?? 0) + 1);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Built on the first scrape: prom-client costs start-up time, and many sellers never scrape. */
  private get registry(): Registry {
    this.built ??= this.build();
    return this.built;
  }

  private build(): Registry {
    const { Counter, Gauge, Registry } = require('prom-client') as typeof import('prom-client');
    const { db, source } = this.deps;
    const registry = new Registry();
    const registers = [registry];
    new Gauge({
      name: 'keymailer_orders',
      help: 'Orders in the database by vendor and state (review, fulfilled, sent, refunded)',
      labelNames: ['vendor', 'state'] as const,
      registers,
      collect() {
        this.reset();
        const rows = db.prepare('SELECT vendor, state, count(*) AS n FROM orders GROUP BY vendor, state').all() as {
          vendor: string;
          state: string;
          n: number;
        }[];
        for (const row of rows) this.set({ vendor: row.vendor, state: row.state }, row.n);
      },
    });

    // One query serves the three outbox gauges; each scrape reads the outbox once per gauge, which
    // is a few index lookups: cheaper than caching and explaining stale numbers.
    new Gauge({
      name: 'keymailer_outbox_depth',
      help: 'Mails queued and not yet sent (buyer mails, resends, owner alerts)',
      registers,
      collect() {
        this.set(outboxSnapshot(db).depth);
      },
    });
    new Gauge({
      name: 'keymailer_outbox_failed',
      help: 'Mails given up after a permanent refusal or too long a wait',
      registers,
      collect() {
        this.set(outboxSnapshot(db).failed);
      },
    });
    new Gauge({
      name: 'keymailer_outbox_oldest_age_seconds',
      help: 'Age of the oldest mail still waiting to be sent; 0 when none waits',
      registers,
      collect() {
        const oldest = outboxSnapshot(db).oldestQueuedAt;
        this.set(oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
      },
    });

    new Gauge({
      name: 'keymailer_mailbox_connected',
      help: '1 when the mailbox (IMAP, or the drop folder) is reachable',
      registers,
      collect() {
        this.set(source.status().connected ? 1 : 0);
      },
    });
    new Gauge({
      name: 'keymailer_mailbox_last_sync_timestamp_seconds',
      help: 'When the last complete pass over the mailbox finished, Unix time; 0 before the first',
      registers,
      collect() {
        const at = source.status().lastSyncAt;
        this.set(at === null ? 0 : at / 1000);
      },
    });

    const signedPosts = this.signedPosts;
    const vendors = this.vendors;
    new Counter({
      name: 'keymailer_signed_posts_total',
      help: 'Signed POSTs from payment processors (Avangate) by result, since start',
      labelNames: ['vendor', 'result'] as const,
      registers,
      collect() {
        this.reset();
        // Every result shows from the start at 0, so a rate() or an alert on bad_hash works before the first one.
        for (const vendor of vendors) for (const result of SIGNED_POST_RESULTS) this.inc({ vendor, result }, 0);
        for (const [key, n] of signedPosts) {
          const [vendor = '', result = ''] = key.split('\n');
          this.inc({ vendor, result }, n);
        }
      },
    });
    return registry;
  }
}
