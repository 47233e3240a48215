/**
 * What the seller's everyday commands (orders, resend, check, preview) share: exit codes, loading
 * the config with the same message as `keymailer run`, and making untrusted text safe to print.
 */
import { InvalidArgumentError } from 'commander';
import { loadConfig, type LoadedConfig } from '../config';
import { ConfigError } from '../errors';

/** The same meaning as cli.ts's EXIT; repeated here so the commands do not import cli.ts (a cycle). */
export const SELLER_EXIT = { ok: 0, failed: 1, usage: 2, config: 3 } as const;

/** The buyer `check` and `preview` pretend to serve; plain ASCII so any serial input accepts it. */
export const TEST_BUYER = { name: 'Test Buyer', email: 'test.buyer@example.com' } as const;

export const CONFIG_OPTION_HELP = 'config file (default: $KEYMAILER_CONFIG, then ./config.yaml, then the built-in demo)';

export function out(text: string): void {
  process.stdout.write(text);
}

export function err(text: string): void {
  process.stderr.write(text);
}

/** The config, or null after saying why on stderr and setting exit code 3. */
export function loadConfigOrReport(configPath: string | undefined): LoadedConfig | null {
  try {
    return loadConfig(configPath);
  } catch (thrown) {
    if (!(thrown instanceof ConfigError)) throw thrown;
    err(`keymailer: config error: ${thrown.message}\n`);
    process.exitCode = SELLER_EXIT.config;
    return null;
  }
}

export function parseWholeNumber(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of 1 or more');
  return n;
}

// C0 and C1 controls, DEL, and the bidi overrides: a buyer name arrives in a stranger's email, and
// printed raw it could move the cursor, recolour the terminal or reorder what the seller reads.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]+/g;

/** Text from a notification, made safe to show on a terminal: controls become one space. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, ' ');
}
