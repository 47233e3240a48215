/**
 * `keymailer parse FILE.eml... [--config PATH]`: what keymailer concludes about each message, as one
 * JSON object per line (fulfill, refund, ignore, review, reject or defer, with the reason), without
 * sending, moving or recording anything.
 *
 * Exit codes: 0 every file was read (whatever the conclusions); 1 a file could not be read (the
 * others are still reported); 3 bad configuration.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { loadConfig, type ProductConfig } from '../config';
import { decide, decideContext, summarise, type DecideContext } from '../decide';
import { ConfigError, coerceError } from '../errors';

const EXIT_OK = 0;
const EXIT_UNREADABLE = 1;
const EXIT_CONFIG = 3;

/**
 * The same context the daemon decides with (products, the vendors described under `vendors:`,
 * sender authentication), so `parse` concludes what the daemon would, `reject` included.
 */
function contextFor(configPath: string | undefined, loadProducts: (configPath?: string) => readonly ProductConfig[]): DecideContext {
  return { ...decideContext(loadConfig(configPath)), products: loadProducts(configPath) };
}

export function registerParseCommand(
  program: Command,
  loadProducts: (configPath?: string) => readonly ProductConfig[] = (configPath) => loadConfig(configPath).config.products,
): void {
  program
    .command('parse')
    .description('Print what keymailer concludes about each message (JSON, one line per file); sends, moves and records nothing')
    .argument('<files...>', '.eml files')
    .option('-c, --config <path>', 'config file whose products and vendors to use (default: as for run)')
    .addHelpText('after', '\nExit codes: 0 every file read, 1 a file could not be read, 3 bad configuration.\nExample:\n  keymailer parse order.eml --config config.yaml')
    .action(async (files: string[], options: { config?: string }) => {
      let context: DecideContext;
      try {
        context = contextFor(options.config, loadProducts);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`keymailer: config error: ${err.message}\n`);
        process.exitCode = EXIT_CONFIG;
        return;
      }
      let exitCode = EXIT_OK;
      for (const file of files) {
        let raw: Buffer;
        try {
          raw = readFileSync(file);
        } catch (err) {
          // One unreadable file must not hide the conclusions about the others.
          process.stderr.write(`keymailer: cannot read ${file}: ${coerceError(err).message}\n`);
          exitCode = EXIT_UNREADABLE;
          continue;
        }
        const decision = await decide(raw, context);
        process.stdout.write(`${JSON.stringify(summarise(decision))}\n`);
      }
      process.exitCode = exitCode;
    });
}
