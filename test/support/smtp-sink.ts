/**
 * An in-process SMTP server on 127.0.0.1 (smtp-server) that records every message it accepts.
 * Plaintext only (STARTTLS disabled: the bundled certificate has expired), AUTH optional and
 * any credentials accepted; clients must use `secure: false, ignoreTLS: true`.
 *
 * A message is pushed to `messages` (already parsed) before the client gets its `250` reply to
 * DATA, so once nodemailer's sendMail() has resolved the message is in `messages`.
 */
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { simpleParser, type ParsedMail } from 'mailparser';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export interface ReceivedMail {
  /** envelope MAIL FROM ('' for the null sender) */
  from: string;
  /** envelope RCPT TO addresses, in order */
  to: string[];
  /** the message exactly as received in DATA (dot-unstuffed, CRLF line ends) */
  raw: Buffer;
  /** performance.now() when the end of DATA arrived (before parsing) */
  receivedAt: number;
  parsed: ParsedMail;
  /** the AUTH username when the client authenticated, else undefined */
  authUser?: string | undefined;
}

export interface SmtpFailure {
  /** SMTP reply code, e.g. 451 (temporary) or 550 (permanent) */
  code: number;
  message: string;
}

export interface SmtpSink {
  host: '127.0.0.1';
  port: number;
  /** every accepted message, in order of arrival */
  messages: ReceivedMail[];
  /** first message (already received or arriving later) matching predicate; rejects on timeout (default 5000 ms) */
  waitFor(predicate: (m: ReceivedMail) => boolean, timeoutMs?: number): Promise<ReceivedMail>;
  /** resolves once messages.length >= n; rejects on timeout (default 5000 ms) */
  waitForCount(n: number, timeoutMs?: number): Promise<void>;
  /** while set, every RCPT TO and every DATA is answered with `code message`; null accepts again */
  setFailure(mode: SmtpFailure | null): void;
  /** number of RCPT/DATA commands rejected because of setFailure */
  readonly rejectedCount: number;
  /** stops listening and drops open (e.g. pooled) client connections; resolves within ~0.5 s */
  stop(): Promise<void>;
}

export interface StartSmtpSinkOptions {
  /** initial failure mode, as setFailure() */
  rejectWith?: SmtpFailure | null;
  /** listen on this port (to bring a stopped sink back where the client expects it); default: any free port */
  port?: number;
}

const DEFAULT_TIMEOUT_MS = 5000;

function smtpError(f: SmtpFailure): Error & { responseCode: number } {
  return Object.assign(new Error(f.message), { responseCode: f.code });
}

function describe(messages: ReceivedMail[]): string {
  if (messages.length === 0) return 'none received';
  return `received ${messages.length}: ${messages
    .map((m) => `[${m.to.join(',')}] ${JSON.stringify(m.parsed.subject ?? '')}`)
    .join('; ')}`;
}

function readAll(stream: SMTPServerDataStream): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

function authUserOf(session: SMTPServerSession): string | undefined {
  const u: unknown = session.user;
  return typeof u === 'string' ? u : undefined;
}

export async function startSmtpSink(opts: StartSmtpSinkOptions = {}): Promise<SmtpSink> {
  const messages: ReceivedMail[] = [];
  const waiters = new Set<() => void>();
  const sockets = new Set<net.Socket>();
  let failure: SmtpFailure | null = opts.rejectWith ?? null;
  let rejectedCount = 0;

  const notify = (): void => {
    for (const w of [...waiters]) w();
  };

  const server = new SMTPServer({
    logger: false,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    authOptional: true,
    disableReverseLookup: true,
    closeTimeout: 250,
    onAuth(auth, _session, callback) {
      callback(null, { user: auth.username ?? '' });
    },
    onRcptTo(_address, _session, callback) {
      if (failure) {
        rejectedCount++;
        callback(smtpError(failure));
        return;
      }
      callback();
    },
    onData(stream, session, callback) {
      readAll(stream)
        .then(async (raw) => {
          const receivedAt = performance.now();
          if (failure) {
            rejectedCount++;
            callback(smtpError(failure));
            return;
          }
          const parsed = await simpleParser(raw);
          const mailFrom = session.envelope.mailFrom;
          messages.push({
            from: mailFrom === false ? '' : mailFrom.address,
            to: session.envelope.rcptTo.map((r) => r.address),
            raw,
            receivedAt,
            parsed,
            authUser: authUserOf(session),
          });
          callback();
          notify();
        })
        .catch((err: unknown) => {
          callback(Object.assign(new Error(`sink could not read/parse the message: ${String(err)}`), { responseCode: 451 }));
        });
    },
  });
  // without a listener an 'error' (e.g. a client resetting its socket) would crash the test process
  server.on('error', () => undefined);
  // track raw sockets so stop() can always drop them, whatever state the SMTP session is in
  server.server.on('connection', (sock: net.Socket) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.server.once('error', onError);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.server.off('error', onError);
      resolve();
    });
  });
  const addr = server.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('smtp sink: no port');
  const port = addr.port;

  let stopped: Promise<void> | undefined;

  const sink: SmtpSink = {
    host: '127.0.0.1',
    port,
    messages,
    get rejectedCount() {
      return rejectedCount;
    },
    setFailure(mode) {
      failure = mode;
    },
    waitFor(predicate, timeoutMs = DEFAULT_TIMEOUT_MS) {
      return new Promise<ReceivedMail>((resolve, reject) => {
        let seen = 0;
        const check = (): boolean => {
          for (; seen < messages.length; seen++) {
            const m = messages[seen];
            if (m !== undefined && predicate(m)) {
              resolve(m);
              return true;
            }
          }
          return false;
        };
        if (check()) return;
        const waiter = (): void => {
          if (check()) {
            clearTimeout(timer);
            waiters.delete(waiter);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`smtp sink: no matching message within ${timeoutMs} ms (${describe(messages)})`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    waitForCount(n, timeoutMs = DEFAULT_TIMEOUT_MS) {
      return new Promise<void>((resolve, reject) => {
        if (messages.length >= n) {
          resolve();
          return;
        }
        const waiter = (): void => {
          if (messages.length >= n) {
            clearTimeout(timer);
            waiters.delete(waiter);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`smtp sink: expected ${n} messages within ${timeoutMs} ms (${describe(messages)})`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        let done = false;
        const finish = (): void => {
          if (done) return;
          done = true;
          clearTimeout(hard);
          resolve();
        };
        // smtp-server answers 421 and closes sessions after closeTimeout (250 ms);
        // anything still open after 500 ms is destroyed outright.
        const hard = setTimeout(() => {
          for (const s of sockets) s.destroy();
          finish();
        }, 500);
        server.close(finish);
        // idle pooled connections: drop them now instead of waiting for closeTimeout
        for (const conn of server.connections) {
          try {
            conn.send(421, 'Server shutting down');
            conn.close();
          } catch {
            /* already closing */
          }
        }
      });
      return stopped;
    },
  };
  return sink;
}
