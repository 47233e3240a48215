/**
 * The winston root logger. Every secret in the config is redacted from every line, whatever the
 * field it hides in: a password pasted into an error message must not reach a log file either.
 */
import winston from 'winston';

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

export interface LoggerOptions {
  readonly level?: string;
  readonly secrets?: readonly string[];
  /** Extra transports (files); the console is always there. */
  readonly transports?: winston.transport[];
  /** Where console lines go; stderr keeps stdout clean for commands that print results. */
  readonly stderr?: boolean;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const redact = redactor(options.secrets ?? []);
  const redaction = winston.format((info) => {
    for (const key of Object.keys(info)) {
      if (key === 'level') continue;
      const value = info[key];
      info[key] = SECRET_FIELD.test(key) ? REDACTED : redactValue(value, redact);
    }
    return info;
  });
  const human = winston.format.printf((info) => {
    const { level, message, timestamp, ...meta } = info;
    const rest = Object.entries(meta)
      .filter(([k]) => typeof k === 'string')
      .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
      .join(' ');
    return `${String(timestamp)} ${level.padEnd(5)} ${String(message)}${rest ? ` ${rest}` : ''}`;
  });
  return winston.createLogger({
    level: options.level ?? 'info',
    format: winston.format.combine(redaction(), winston.format.timestamp()),
    transports: [
      new winston.transports.Console({
        format: human,
        stderrLevels: options.stderr === false ? [] : ['error', 'warn', 'info', 'debug'],
      }),
      ...(options.transports ?? []),
    ],
  });
}
