/**
 * Hands finished MIME messages to the world: an SMTP server (nodemailer, pooled), or .eml files
 * in the outbox folder when no SMTP server is configured.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Transporter } from 'nodemailer';
import { PermanentError, TemporaryError, coerceError } from '../errors';

export interface Envelope {
  readonly from: string;
  readonly to: string;
}

export interface Mailer {
  readonly description: string;
  /** How many mails it usefully sends at once (the SMTP pool's connections). */
  readonly concurrency: number;
  /**
   * Resolves once the mail is accepted; throws TemporaryError (retry) or PermanentError (never).
   * `messageId` is the one inside `raw`; given, nodemailer does not make up one of its own for its
   * logs (five random draws per mail).
   */
  send(envelope: Envelope, raw: Buffer, name: string, messageId?: string): Promise<void>;
  /** Logs in without sending, for `keymailer check`. */
  verify(): Promise<void>;
  close(): void;
}

export interface SmtpSettings {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly user?: string | undefined;
  readonly pass?: string | undefined;
  readonly ignoreTLS: boolean;
  readonly allowSelfSigned: boolean;
}

/** Two connections keep one mail in flight while the other waits for the server's answer. */
const SMTP_CONNECTIONS = 2;

export function smtpMailer(settings: SmtpSettings): Mailer {
  // Created (and nodemailer loaded) with the first mail: a daemon starting on an empty mailbox is ready sooner.
  let pool: Transporter | null = null;
  const transport = (): Transporter => (pool ??= createPool(settings));
  return {
    description: `SMTP ${settings.host}:${settings.port}`,
    concurrency: SMTP_CONNECTIONS,
    async send(envelope, raw, _name, messageId) {
      try {
        await transport().sendMail({ envelope: { from: envelope.from, to: [envelope.to] }, raw, ...(messageId ? { messageId } : {}) });
      } catch (thrown) {
        throw classifySmtpError(thrown);
      }
    },
    async verify() {
      try {
        await transport().verify();
      } catch (thrown) {
        throw classifySmtpError(thrown);
      }
    },
    close: () => pool?.close(),
  };
}

function createPool(settings: SmtpSettings): Transporter {
  const nodemailer = require('nodemailer') as typeof import('nodemailer');
  return nodemailer.createTransport({
    pool: true,
    maxConnections: SMTP_CONNECTIONS,
    host: settings.host,
    port: settings.port,
    secure: settings.secure,
    ignoreTLS: settings.ignoreTLS,
    ...(settings.user ? { auth: { user: settings.user, pass: settings.pass ?? '' } } : {}),
    tls: { rejectUnauthorized: !settings.allowSelfSigned },
    connectionTimeout: 15_000,
    greetingTimeout: 15_000,
    socketTimeout: 60_000,
  });
}

/** 5xx is the server's final word (a bad address); anything else may work later. */
export function classifySmtpError(thrown: unknown): TemporaryError | PermanentError {
  const err = coerceError(thrown) as Error & { responseCode?: number; code?: string };
  const reason = err.responseCode ? `SMTP ${err.responseCode}: ${err.message}` : err.message;
  if (err.responseCode !== undefined && err.responseCode >= 500 && err.code !== 'EAUTH') {
    return new PermanentError(reason, 'SMTP_REJECTED');
  }
  return new TemporaryError(reason, err.code ?? 'SMTP_TEMPORARY');
}

/** Writes each mail as <name>.eml, complete on disk or not at all (write, fsync, rename). */
export function fileMailer(folder: string): Mailer {
  return {
    description: `outbox folder ${folder}`,
    concurrency: 1,
    async send(_envelope, raw, name) {
      await fs.promises.mkdir(folder, { recursive: true });
      const file = path.join(folder, `${name.replace(/[^A-Za-z0-9._-]+/g, '_')}.eml`);
      const temporary = `${file}.tmp`;
      const handle = await fs.promises.open(temporary, 'w');
      try {
        await handle.writeFile(raw);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.promises.rename(temporary, file);
    },
    async verify() {
      await fs.promises.mkdir(folder, { recursive: true });
      await fs.promises.access(folder, fs.constants.W_OK);
    },
    close() {},
  };
}
