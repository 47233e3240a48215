/**
 * The HTTP listener: built apart from listen(), so tests and the daemon run the very same routes.
 *
 *   POST <vendors.avangate.path>   Avangate's key generator (./avangate.ts); only with vendors.avangate
 *   GET  /healthz                  200 when the mailbox is connected and the outbox drains, else 503;
 *                                  JSON either way, with the reasons
 *   GET  /metrics                  Prometheus text format (./metrics.ts)
 *
 * A known path with the wrong method gets 405 with Allow; anything else 404. HEAD works wherever
 * GET does. Plain node:http: three routes need no framework, and the signed POST needs the raw
 * body bytes anyway (the HASH covers PHP's reading of them, not a framework's).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, coerceError } from '../errors';
import type { App } from '../main';
import type { Source } from '../types';
import { AVANGATE_VENDOR, createAvangateHandler, type AvangateHandler } from './avangate';
import { avangateVendorSettings } from './avangate-settings';
import { HttpMetrics, outboxSnapshot } from './metrics';

/** What the listener needs from the app: a real App fits, and so does a part of one. */
export interface HttpDeps extends Pick<App, 'loaded' | 'log' | 'db' | 'pipeline'> {
  readonly source: Pick<Source, 'status' | 'description'>;
  readonly alerts?: Pick<App['alerts'], 'raise'>;
}

export interface HttpAppOptions {
  /**
   * The outbox counts as stuck once its oldest waiting mail is older than this. Default 15 minutes:
   * long enough for a few backoff retries of a flaky SMTP server, and the same as the mailbox
   * outage alert.
   */
  readonly outboxStuckAfterMs?: number;
  /** close() waits this long for requests in flight, then cuts their connections. Default 5 s. */
  readonly closeDeadlineMs?: number;
}

export interface HttpApp {
  readonly server: http.Server;
  readonly metrics: HttpMetrics;
  /** The path Avangate posts to, or null when vendors.avangate is not configured. */
  readonly avangatePath: string | null;
  /**
   * Starts listening; resolves once the port is bound (report readiness after this, not before).
   * Defaults to config.http's host and port; `port: 0` picks a free port (tests).
   * @throws ConfigError when neither config.http nor `at.port` says where.
   */
  listen(at?: { readonly host?: string; readonly port?: number }): Promise<AddressInfo>;
  /** Stops accepting, finishes requests in flight (up to the deadline), frees the port. Safe to call twice. */
  close(): Promise<void>;
}

export interface HealthReport {
  readonly status: 200 | 503;
  readonly body: {
    readonly status: 'ok' | 'unhealthy';
    readonly reasons: readonly string[];
    readonly mailbox: { readonly source: string; readonly connected: boolean; readonly since: string; readonly lastSyncAt: string | null };
    readonly outbox: { readonly depth: number; readonly failed: number; readonly oldestQueuedAt: string | null };
  };
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The health verdict now: the mailbox must be connected and the outbox must not hold stale mail. */
export function healthReport(deps: Pick<HttpDeps, 'db' | 'source'>, outboxStuckAfterMs = 15 * 60_000, now = Date.now()): HealthReport {
  const mailbox = deps.source.status();
  const outbox = outboxSnapshot(deps.db);
  const reasons: string[] = [];
  if (!mailbox.connected) reasons.push(`mailbox not connected since ${iso(mailbox.since) ?? ''} (${deps.source.description})`);
  if (outbox.oldestQueuedAt !== null && now - outbox.oldestQueuedAt > outboxStuckAfterMs) {
    const minutes = Math.floor((now - outbox.oldestQueuedAt) / 60_000);
    reasons.push(`outbox not draining: ${outbox.depth} mail(s) waiting, the oldest for ${minutes} minutes`);
  }
  return {
    status: reasons.length === 0 ? 200 : 503,
    body: {
      status: reasons.length === 0 ? 'ok' : 'unhealthy',
      reasons,
      mailbox: { source: deps.source.description, connected: mailbox.connected, since: iso(mailbox.since) ?? '', lastSyncAt: iso(mailbox.lastSyncAt) },
      outbox: { depth: outbox.depth, failed: outbox.failed, oldestQueuedAt: iso(outbox.oldestQueuedAt) },
    },
  };
}

/** The path of a request target; the usual origin form ("/path?query") without a URL parser (a few µs per POST). */
function pathOf(target: string): string | null {
  if (target.startsWith('/') && !target.startsWith('//')) {
    const end = target.search(/[?#]/);
    return end === -1 ? target : target.slice(0, end);
  }
  try {
    return new URL(target, 'http://localhost').pathname;
  } catch {
    return null;
  }
}

type Route = { readonly methods: readonly string[]; handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> | void };

function send(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', ...headers });
  res.end(body);
}

/**
 * Builds the listener from the app; nothing listens until listen(). Validates vendors.avangate and
 * every product's avangate settings now.
 * @throws ConfigError naming `vendors.avangate.<key>` or `products.<i>.avangate.<key>`.
 */
export function buildHttpApp(deps: HttpDeps, options: HttpAppOptions = {}): HttpApp {
  const { loaded, log } = deps;
  const vendor = avangateVendorSettings(loaded.config.vendors, loaded.file);
  const metrics = new HttpMetrics(deps, vendor === null ? [] : [AVANGATE_VENDOR]);
  const avangate: AvangateHandler | null =
    vendor === null ? null : createAvangateHandler({ loaded, log, pipeline: deps.pipeline, alerts: deps.alerts, metrics }, vendor);

  const routes = new Map<string, Route>();
  routes.set('/healthz', {
    methods: ['GET', 'HEAD'],
    handle(_req, res) {
      const report = healthReport(deps, options.outboxStuckAfterMs);
      send(res, report.status, `${JSON.stringify(report.body)}\n`, { 'Content-Type': 'application/json; charset=utf-8' });
    },
  });
  routes.set('/metrics', {
    methods: ['GET', 'HEAD'],
    async handle(_req, res) {
      const body = await metrics.render();
      send(res, 200, body, { 'Content-Type': metrics.contentType });
    },
  });
  // The Avangate handler answers every method itself: the allowFrom check comes before the 405.
  if (avangate) routes.set(avangate.path, { methods: [], handle: (req, res) => avangate.handle(req, res) });

  const server = http.createServer((req, res) => {
    const path = pathOf(req.url ?? '/');
    if (path === null) {
      send(res, 400, 'bad request target\n');
      return;
    }
    const route = routes.get(path);
    if (!route) {
      send(res, 404, 'not found\n');
      return;
    }
    if (route.methods.length > 0 && !route.methods.includes(req.method ?? '')) {
      send(res, 405, 'method not allowed\n', { Allow: route.methods.join(', ') });
      return;
    }
    Promise.resolve()
      .then(() => route.handle(req, res))
      .catch((thrown: unknown) => {
        log.error('HTTP request failed', { path, method: req.method, reason: coerceError(thrown).message });
        send(res, 500, 'internal error\n');
      });
  });
  // Avangate's POST is small and quick; slow clients must not hold connections for node's 5-minute default.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;

  let listening: Promise<AddressInfo> | null = null;
  let closing: Promise<void> | null = null;

  return {
    server,
    metrics,
    avangatePath: avangate?.path ?? null,
    listen(at = {}) {
      if (closing) return Promise.reject(new Error('the HTTP listener was closed; build a new one'));
      listening ??= new Promise<AddressInfo>((resolve, reject) => {
        const host = at.host ?? loaded.config.http?.host ?? '127.0.0.1';
        const port = at.port ?? loaded.config.http?.port;
        if (port === undefined) {
          reject(new ConfigError('http: is not configured: give http.host and http.port to listen'));
          return;
        }
        const onError = (err: Error): void => {
          server.off('listening', onListening);
          reject(err);
        };
        const onListening = (): void => {
          server.off('error', onError);
          // An 'error' with no listener would throw and end the daemon; once bound, log it instead.
          server.on('error', (err) => log.error('HTTP listener error', { reason: err.message }));
          const address = server.address() as AddressInfo;
          log.info('HTTP listening', {
            address: `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
            avangate: avangate?.path ?? 'not configured',
          });
          resolve(address);
        };
        server.once('error', onError);
        server.once('listening', onListening);
        server.listen(port, host);
      });
      return listening;
    },
    close() {
      closing ??= (async () => {
        // A listen() still binding would otherwise open the port after close() returned.
        await listening?.catch(() => undefined);
        if (!server.listening) return;
        await new Promise<void>((resolve) => {
          const deadline = setTimeout(() => server.closeAllConnections(), options.closeDeadlineMs ?? 5000);
          deadline.unref();
          server.close(() => {
            clearTimeout(deadline);
            resolve();
          });
          // Keep-alive connections with no request in flight would hold close() open until they time out.
          server.closeIdleConnections();
        });
        log.info('HTTP listener closed');
      })();
      return closing;
    },
  };
}
