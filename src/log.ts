/**
 * The winston root logger. Every secret in the config is redacted from every line, whatever the
 * field it hides in: a password pasted into an error message must not reach a log file either.
 * Human-readable lines go to the console (pm2 keeps those); JSON lines go to daily files in
 * log.dir, pruned by winston-daily-rotate-file so a box that runs for years never fills its disk.
 * Both are written by one transport, a batch per turn of the event loop (./log-lines.ts).
 */
import path from 'node:path';
import winston from 'winston';
import DailyRotateFile from 'winston-daily-rotate-file';
import { z } from 'zod';
import { isoNow } from './clock';
import { LineTransport } from './log-lines';

export type Logger = winston.Logger;

const REDACTED = '[redacted]';
const SECRET_FIELD = /^(pass|password|key|testkey|secret|privatekey|token|hash|serials?)$/i;

export function redactor(secrets: readonly string[]): (text: string) => string {
  // Longest first, so a secret that contains another is removed whole.
  const sorted = [...secrets].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const secret of sorted) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    return out;
  };
}

function redactValue(value: unknown, redact: (s: string) => string, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (depth > 5 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return redact(value.message);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, redact, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = SECRET_FIELD.test(k) ? REDACTED : redactValue(v, redact, depth + 1);
  }
  return out;
}

/** A size as file-stream-rotator reads it: digits and k, m or g ("20m"). */
const SIZE = /^[1-9]\d*[kmg]$/i;
/** A number of files ("30") or of days ("14d"). */
const RETENTION = /^[1-9]\d*d?$/;

/** `log:` in the config. Use as is: the prefault fills every default when the key is absent. */
export const logSettingsSchema = z
  .object({
    level: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
    /** Where the JSON log files go; relative to the config file. */
    dir: z.string().trim().min(1, 'must not be empty').default('data/logs'),
    /** A file that grows past this starts a second file for the same day. */
    maxSize: z.string().regex(SIZE, 'must be a size such as "20m" (k, m or g)').default('20m'),
    /** How many files to keep ("30"), or for how many days ("14d"); older ones are deleted. */
    maxFiles: z
      .union([z.number().int().min(1), z.string().regex(RETENTION, 'must be a number of files ("30") or days ("14d")')])
      .default('14d'),
  })
  .strict()
  .prefault({});

export type LogSettings = z.output<typeof logSettingsSchema>;

/** JSON log files, one per UTC day (plus .1, .2 … when a day passes maxSize). */
export interface LogFileOptions {
  readonly dir: string;
  /** Default '20m'. */
  readonly maxSize?: string;
  /** Default '14d'. */
  readonly maxFiles?: string | number;
  /** moment.js pattern of the date in the file name; a new file starts whenever it changes. Default 'YYYY-MM-DD'. */
  readonly datePattern?: string;
  /** File name stem. Default 'keymailer'. */
  readonly name?: string;
}

export interface LoggerOptions {
  readonly level?: string;
  readonly secrets?: readonly string[];
  /** Extra transports; the console is always there. */
  readonly transports?: winston.transport[];
  /** Where console lines go; stderr keeps stdout clean for commands that print results. */
  readonly stderr?: boolean;
  /** JSON lines in rotated daily files. */
  readonly file?: LogFileOptions;
}

/**
 * The rotating log file (a winston-daily-rotate-file transport, written through LineTransport). The rotator ends the old stream before it opens the next one, so
 * a rotation costs no file descriptor (test/logging.test.ts rotates hundreds of times to hold it
 * to that). The audit file, which remembers which files to prune, lives in the same directory.
 */
function fileTransport(options: LogFileOptions): DailyRotateFile {
  const name = options.name ?? 'keymailer';
  return new DailyRotateFile({
    dirname: options.dir,
    filename: `${name}-%DATE%`,
    extension: '.log',
    datePattern: options.datePattern ?? 'YYYY-MM-DD',
    // File names follow the UTC dates of the timestamps inside them, and a UTC day is always 24 hours.
    utc: true,
    maxSize: options.maxSize ?? '20m',
    maxFiles: options.maxFiles ?? '14d',
    auditFile: path.join(options.dir, `.${name}-log-audit.json`),
  });
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const redact = redactor(options.secrets ?? []);
  // One format for the logger (redaction, then the time), not one per destination: every line pays it.
  const stamp = winston.format((info) => {
    for (const key of Object.keys(info)) {
      if (key === 'level') continue;
      const value = info[key];
      info[key] = SECRET_FIELD.test(key) ? REDACTED : redactValue(value, redact);
    }
    info['timestamp'] = isoNow();
    return info;
  });
  return winston.createLogger({
    level: options.level ?? 'info',
    format: stamp(),
    transports: [
      new LineTransport({
        console: options.stderr === false ? process.stdout : process.stderr,
        file: options.file ? fileTransport(options.file) : null,
      }),
      ...(options.transports ?? []),
    ],
  });
}

/** The rotated log file a logger writes, or null. */
export function logFileOf(log: Logger): DailyRotateFile | null {
  for (const transport of log.transports) if (transport instanceof LineTransport && transport.file) return transport.file;
  return null;
}

/**
 * Closes the logger and waits (at most timeoutMs) until the log files have their last lines: an
 * exit right after `keymailer stopped` would otherwise lose the lines still in the stream buffer.
 * The descriptor itself is released a moment later.
 */
export async function closeLogger(log: Logger, timeoutMs = 2000): Promise<void> {
  const file = logFileOf(log);
  // The file transport says 'finish' once the file it writes has flushed everything (not per rotation).
  const flushed = file ? [new Promise<void>((resolve) => file.once('finish', () => resolve()))] : [];
  log.close();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
  await Promise.race([Promise.all(flushed), deadline]);
  clearTimeout(timer);
}
