/**
 * The IMAP mailbox the vendors' notifications are forwarded to, watched with IDLE (imapflow) and
 * polled by node-cron as a fallback. A message is moved out of the mailbox only after its handler
 * resolved, i.e. after its final state is committed.
 *
 * imapflow traps avoided here: the `error` listener is attached before connect(); no command is
 * issued while a fetch() iterator is open (UIDs are collected first); a closed client is never
 * reused, each connection gets a fresh ImapFlow object.
 */
import { ImapFlow, type ImapFlowOptions } from 'imapflow';
import cron, { type ScheduledTask } from 'node-cron';
import { coerceError } from '../errors';
import type { Logger } from '../log';
import type { IncomingMessage, MessageHandler, MessageOutcome, Source, SourceStatus } from '../types';
import { backoffDelay } from '../backoff';
import { PassRunner } from '../pass-runner';

export interface ImapSettings {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly user: string;
  readonly pass: string;
  readonly mailbox: string;
  readonly processed: string;
  readonly review: string;
  readonly allowSelfSigned: boolean;
}

/**
 * A new, unconnected client for the seller's mailbox; the caller attaches its `error` listener
 * before connect(). Every connection gets a fresh one: a closed ImapFlow cannot be reused.
 */
export function newImapClient(
  s: Pick<ImapSettings, 'host' | 'port' | 'secure' | 'user' | 'pass' | 'allowSelfSigned'>,
  extra: Partial<ImapFlowOptions> = {},
): ImapFlow {
  return new ImapFlow({
    host: s.host,
    port: s.port,
    secure: s.secure,
    auth: { user: s.user, pass: s.pass },
    logger: false,
    disableAutoIdle: true,
    tls: { rejectUnauthorized: !s.allowSelfSigned },
    ...extra,
  });
}

/** Messages fetched per round trip: small enough to bound memory, large enough for a backlog. */
const BATCH = 50;

export class ImapSource implements Source {
  readonly description: string;
  private client: ImapFlow | null = null;
  private handler: MessageHandler | null = null;
  private readonly runner = new PassRunner({
    pass: async () => {
      const client = this.client;
      if (!client || !this.handler || this.stopped) return;
      await this.passOn(client, this.settings.mailbox, this.handler, (outcome) =>
        outcome === 'processed' ? this.settings.processed : this.settings.review,
      );
    },
    keepGoing: () => !this.stopped,
    done: () => {
      if (!this.client?.usable) return;
      this.lastSyncAt = Date.now();
      if (!this.stopped) void this.client.idle().catch(() => undefined);
    },
    onError: (err) => this.log.warn('IMAP pass interrupted; will retry', { reason: err.message }),
  });
  private stopped = false;
  private failures = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private poll: ScheduledTask | null = null;
  private connectedState = { connected: false, since: Date.now() };
  private lastSyncAt: number | null = null;

  constructor(
    private readonly settings: ImapSettings,
    private readonly log: Logger,
    private readonly pollSchedule: string = '* * * * *',
    private readonly maxMessageSize: number = 10 * 1024 * 1024,
  ) {
    this.description = `IMAP ${settings.user}@${settings.host}:${settings.port}/${settings.mailbox}`;
  }

  status(): SourceStatus {
    return { ...this.connectedState, lastSyncAt: this.lastSyncAt };
  }

  private setConnected(connected: boolean): void {
    if (this.connectedState.connected !== connected) this.connectedState = { connected, since: Date.now() };
  }

  async start(handle: MessageHandler): Promise<void> {
    this.handler = handle;
    await this.connect();
    await this.requestPass();
    this.poll = cron.schedule(this.pollSchedule, () => this.onPoll(), { noOverlap: true, name: 'imap-poll', timezone: 'UTC' });
  }

  async drain(handle: MessageHandler): Promise<void> {
    this.handler = handle;
    await this.connect();
    await this.requestPass();
  }

  /** Runs `fn` on a connection to another folder of the same account (used by --reprocess review). */
  async processFolder(folder: string, handle: MessageHandler, onTotal?: (count: number) => void): Promise<number> {
    const client = await this.openClient();
    try {
      await client.mailboxOpen(folder);
      return await this.passOn(client, folder, handle, (outcome) => (outcome === 'processed' ? this.settings.processed : null), onTotal);
    } finally {
      await client.logout().catch(() => undefined);
    }
  }

  private async openClient(): Promise<ImapFlow> {
    const s = this.settings;
    const client = newImapClient(s, {
      // Re-issue IDLE every few minutes: some servers and NATs drop a quiet connection silently.
      maxIdleTime: 4 * 60_000,
      connectionTimeout: 30_000,
    });
    client.on('error', (err: unknown) => this.log.warn('IMAP connection error', { reason: coerceError(err).message }));
    await client.connect();
    for (const folder of [s.processed, s.review]) {
      try {
        const result = await client.mailboxCreate(folder);
        if (result.created) this.log.info('IMAP folder created', { folder });
      } catch (err) {
        // Already there is the common case; anything else surfaces when we move into it.
        const e = err as { serverResponseCode?: string };
        if (e.serverResponseCode !== 'ALREADYEXISTS') this.log.debug('IMAP folder not created', { folder, reason: coerceError(err).message });
      }
    }
    return client;
  }

  private async connect(): Promise<void> {
    const client = await this.openClient();
    await client.mailboxOpen(this.settings.mailbox);
    client.on('exists', () => void this.requestPass());
    client.on('close', () => this.onClose(client));
    this.client = client;
    this.failures = 0;
    this.setConnected(true);
    this.log.info('IMAP connected', { mailbox: this.settings.mailbox, server: `${this.settings.host}:${this.settings.port}` });
  }

  private onClose(client: ImapFlow): void {
    client.removeAllListeners('exists');
    client.removeAllListeners('close');
    if (this.client === client) {
      this.client = null;
      this.setConnected(false);
    }
    if (this.stopped) return;
    this.log.warn('IMAP connection closed; reconnecting');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = backoffDelay(this.failures++, 1000, 60_000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect()
        .then(() => this.requestPass())
        .catch((err: unknown) => {
          this.log.warn('IMAP reconnect failed', { reason: coerceError(err).message, attempt: this.failures });
          this.scheduleReconnect();
        });
    }, delay);
  }

  private onPoll(): void {
    if (this.client?.usable) void this.requestPass();
    else if (!this.reconnectTimer) this.scheduleReconnect();
  }

  /** One pass at a time; requests during a pass fold into one more pass. */
  private requestPass(): Promise<void> {
    return this.runner.request();
  }

  /** Handles every message in the open folder; files each one where `destination` says (null: leave). */
  private async passOn(
    client: ImapFlow,
    folder: string,
    handle: MessageHandler,
    destination: (outcome: Exclude<MessageOutcome, 'defer'>) => string | null,
    onTotal?: (count: number) => void,
  ): Promise<number> {
    const uidValidity = Number(client.mailbox ? client.mailbox.uidValidity : 0);
    const found = await client.search({ all: true }, { uid: true });
    const uids = (Array.isArray(found) ? found : []).sort((a, b) => a - b);
    onTotal?.(uids.length);
    let handled = 0;
    for (let i = 0; i < uids.length && !this.stoppedFor(client); i += BATCH) {
      const batch = uids.slice(i, i + BATCH);
      // Sizes first, so a 50 MB attachment is never downloaded whole; all fetches are complete
      // arrays before any other command is issued (an open fetch iterator deadlocks imapflow).
      const sizes = await client.fetchAll(batch.join(','), { uid: true, size: true }, { uid: true });
      const large = new Set(sizes.filter((m) => (m.size ?? 0) > this.maxMessageSize).map((m) => m.uid));
      const small = batch.filter((uid) => !large.has(uid));
      const fetched = small.length ? await client.fetchAll(small.join(','), { uid: true, source: true }, { uid: true }) : [];
      const heads = large.size ? await client.fetchAll([...large].join(','), { uid: true, headers: true, size: true }, { uid: true }) : [];
      const messages: IncomingMessage[] = [];
      for (const item of fetched) {
        if (item.source) messages.push({ key: { source: `imap:${folder}`, uidValidity, uid: String(item.uid) }, raw: item.source });
      }
      for (const item of heads) {
        messages.push({
          key: { source: `imap:${folder}`, uidValidity, uid: String(item.uid) },
          raw: item.headers ?? Buffer.alloc(0),
          tooLarge: item.size ?? this.maxMessageSize + 1,
        });
      }
      messages.sort((a, b) => Number(a.key.uid) - Number(b.key.uid));
      const outcomes = await handle(messages);
      handled += messages.length;
      const moves = new Map<string, number[]>();
      messages.forEach((message, index) => {
        const outcome = outcomes[index];
        const target = outcome === undefined || outcome === 'defer' ? null : destination(outcome);
        if (target) moves.set(target, [...(moves.get(target) ?? []), Number(message.key.uid)]);
      });
      for (const [target, list] of moves) await client.messageMove(list.join(','), target, { uid: true });
    }
    return handled;
  }

  /** Stop taking new messages once stop() was called; the one in hand is finished first. */
  private stoppedFor(client: ImapFlow): boolean {
    return this.stopped && client === this.client;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.poll?.stop();
    await this.runner.settle();
    const client = this.client;
    this.client = null;
    if (client) {
      client.removeAllListeners('exists');
      client.removeAllListeners('close');
      await client.logout().catch(() => client.close());
    }
  }
}
