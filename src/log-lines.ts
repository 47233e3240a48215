/**
 * keymailer's winston transport: every log entry becomes a human line for the console (pm2 keeps
 * those) and a JSON line for the rotated log file, and each destination gets one write per turn of
 * the event loop instead of one per line. Under a burst (a backlog of hundreds of notifications,
 * thousands of signed POSTs a second) a write per line, through a format and a stream per
 * transport, cost more than the order it recorded: 25–45 µs per line against about 9 now
 * (bench/RESULTS.md, signed POSTs).
 *
 * Nothing waits longer than the current turn. An exit, an uncaught exception's included, writes the
 * console lines still pending synchronously (see flushOnExit), so the last words before a crash are
 * not lost; the file lines are written by an fs stream, as they always were, and closeLogger()
 * waits for them on a normal stop.
 */
import winston from 'winston';
import TransportStream from 'winston-transport';
import type DailyRotateFile from 'winston-daily-rotate-file';

/** winston's (triple-beam's) key for the formatted message, which DailyRotateFile.log() writes. */
const MESSAGE = Symbol.for('message');

/** Lines gathered during one turn of the event loop, written together at its end (joined, without a final line break). */
class LineBatch {
  private lines: string[] = [];
  private scheduled = false;

  constructor(private readonly write: (text: string) => void) {}

  push(line: string): void {
    this.lines.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.lines.length === 0) return;
    const text = this.lines.join('\n');
    this.lines = [];
    this.write(text);
  };
}

/** Console batches of every live logger: one 'exit' listener for all of them, however many tests create. */
const pendingOnExit = new Set<LineBatch>();
let exitHooked = false;
function flushOnExit(batch: LineBatch): void {
  pendingOnExit.add(batch);
  if (exitHooked) return;
  exitHooked = true;
  // process.stdout and stderr write synchronously to files, pipes and terminals on Linux, so this
  // still reaches them after process.exit() or an uncaught exception.
  process.on('exit', () => {
    for (const pending of pendingOnExit) pending.flush();
  });
}

/** `2026-12-01T17:40:12.345Z … level message key=value …`: one line a seller can read in `pm2 logs`. */
function humanLine(info: Record<string, unknown>): string {
  let line = `${String(info['timestamp'])} ${String(info['level']).padEnd(5)} ${String(info['message'])}`;
  for (const key of Object.keys(info)) {
    if (key === 'level' || key === 'message' || key === 'timestamp') continue;
    const value = info[key];
    line += ` ${key}=${typeof value === 'string' && !/\s/.test(value) ? value : safeJson(value)}`;
  }
  return line;
}

/** The entry as one JSON object (string keys only: winston's own symbols stay out). */
function jsonLine(info: Record<string, unknown>): string {
  try {
    return JSON.stringify(info);
  } catch {
    // A BigInt or a cycle in some field: logform's JSON format (safe-stable-stringify) copes with both.
    const formatted = winston.format.json().transform({ ...info } as winston.Logform.TransformableInfo) as unknown as Record<symbol, unknown>;
    return String(formatted[MESSAGE]);
  }
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

export interface LineTransportOptions {
  /** Where human lines go; null for no console output. */
  readonly console: NodeJS.WritableStream | null;
  /** The rotated JSON log file, or null. */
  readonly file: DailyRotateFile | null;
}

export class LineTransport extends TransportStream {
  /** The rotated log file this transport writes, if any (closeLogger waits for it; tests watch its rotations). */
  readonly file: DailyRotateFile | null;
  private readonly consoleLines: LineBatch | null;
  private readonly fileLines: LineBatch | null;

  constructor(options: LineTransportOptions) {
    super();
    this.file = options.file;
    const stream = options.console;
    this.consoleLines = stream ? new LineBatch((text) => stream.write(`${text}\n`)) : null;
    if (this.consoleLines) flushOnExit(this.consoleLines);
    const file = options.file;
    // DailyRotateFile.log() writes info[MESSAGE] plus a newline, and checks for rotation, once per batch.
    this.fileLines = file ? new LineBatch((text) => file.log?.({ [MESSAGE]: text }, () => undefined)) : null;
  }

  override log(info: Record<string, unknown>, next: () => void): void {
    this.consoleLines?.push(humanLine(info));
    this.fileLines?.push(jsonLine(info));
    next();
  }

  /** Called by winston when the logger closes: what is pending is written, then the file is closed. */
  override close(): void {
    this.consoleLines?.flush();
    this.fileLines?.flush();
    if (this.consoleLines) pendingOnExit.delete(this.consoleLines);
    this.file?.close?.();
  }
}
