/**
 * `keymailer serial`, `keymailer verify` and `keymailer keys new`: make or check a serial from the
 * command line with the code the daemon uses (fulfil/serial.ts), and create an ed25519 key pair.
 *
 * Exit codes (set on process.exitCode, like the other commands, so they work under exitOverride()):
 *   serial:   0 printed, 1 no serial possible (SerialError, reason on stderr), 2 unknown product
 *   verify:   0 the serial matches, 1 it does not, 2 unknown product or unusable settings/arguments
 *   keys new: 0 written, 1 not written (files exist, cannot write)
 *   all:      3 when loading the config failed
 * Usage errors (missing option, bad --quantity) are commander's; the program maps them to 2.
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { coerceError } from '../errors';
import {
  SerialError,
  generateKeyPair,
  makeSerials,
  readEd25519Serial,
  verifySerial,
  type SerialProduct,
  type SerialRequest,
} from '../fulfil/serial';

export const SERIAL_EXIT = { ok: 0, failed: 1, usage: 2, config: 3 } as const;

export const PRIVATE_KEY_FILE = 'ed25519-private.pem';
export const PUBLIC_KEY_FILE = 'ed25519-public.pem';

interface OrderOptions {
  config?: string;
  product: string;
  name: string;
  email?: string;
  quantity?: number;
  order?: string;
  test?: boolean;
  date?: string;
}

type Io = { out(text: string): void; err(text: string): void };

function ioOf(cmd: Command): Io {
  const output = cmd.configureOutput();
  return {
    out: (text) => (output.writeOut ?? ((s: string) => process.stdout.write(s)))(text),
    err: (text) => (output.writeErr ?? ((s: string) => process.stderr.write(s)))(text),
  };
}

function parseQuantity(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of 1 or more');
  return n;
}

function parseDate(value: string): string {
  const ms = Date.parse(`${value}T00:00:00Z`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value) || Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== value) {
    throw new InvalidArgumentError('must be a date as YYYY-MM-DD');
  }
  return value;
}

function addOrderOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--product <id>', 'product id, as in products[].id of the config')
    .requiredOption('--name <name>', 'the name to license, exactly as the buyer gave it')
    .option('--email <email>', "buyer's email (for an input using {email})", '')
    .option('--quantity <n>', 'quantity bought (perUnit products get one serial per unit)', parseQuantity, 1)
    .option('--order <id>', "vendor's order id (for {order}, and written into ed25519 serials)", '')
    .option('--test', 'a test order: uses serial.testKey (aes) or serial.testPrivateKey (ed25519)', false)
    .option('--date <YYYY-MM-DD>', 'issue date written into ed25519 serials (default: today, UTC)', parseDate)
    .option('-c, --config <path>', 'config file (default: as for keymailer run)');
}

/** The product named by --product, or null after reporting why (exit code set). */
function findProduct(
  options: OrderOptions,
  loadProducts: (configPath?: string) => readonly SerialProduct[],
  io: Io,
): SerialProduct | null {
  let products: readonly SerialProduct[];
  try {
    products = loadProducts(options.config);
  } catch (thrown) {
    io.err(`keymailer: ${coerceError(thrown).message}\n`);
    process.exitCode = SERIAL_EXIT.config;
    return null;
  }
  const product = products.find((p) => p.id === options.product);
  if (!product) {
    const known = products.map((p) => p.id).join(', ') || 'none';
    io.err(`keymailer: unknown product ${JSON.stringify(options.product)}; known: ${known}\n`);
    process.exitCode = SERIAL_EXIT.usage;
    return null;
  }
  return product;
}

function requestOf(options: OrderOptions): SerialRequest {
  return {
    name: options.name,
    email: options.email ?? '',
    productId: options.product,
    orderId: options.order ?? '',
    quantity: options.quantity ?? 1,
    test: options.test === true,
    issuedAt: options.date ?? new Date().toISOString().slice(0, 10),
  };
}

/**
 * Adds `serial`, `verify` and `keys new`. `loadProducts(configPath)` returns the configured products
 * (configPath from --config, else undefined) and throws with a message fit for the seller when it cannot.
 */
export function registerSerialCommands(program: Command, loadProducts: (configPath?: string) => readonly SerialProduct[]): void {
  addOrderOptions(
    program.command('serial').description('print the serial(s) the daemon would send for this order, one per line'),
  )
    .addHelpText(
      'after',
      `
Prints only the serial(s) on standard output; any problem goes to standard error.
Exit codes: 0 printed, 1 no serial for this order (the reason the order would go to review),
2 bad arguments or unknown product, 3 config error.

Example:
  keymailer serial --product myapp --name "José Müller"`,
    )
    .action((_options: unknown, cmd: Command) => {
      const io = ioOf(cmd);
      const options = cmd.optsWithGlobals<OrderOptions>();
      const product = findProduct(options, loadProducts, io);
      if (!product) return;
      let serials: string[];
      try {
        serials = makeSerials(product, requestOf(options));
      } catch (thrown) {
        if (!(thrown instanceof SerialError)) throw thrown;
        io.err(`keymailer: ${thrown.message}\n`);
        process.exitCode = SERIAL_EXIT.failed;
        return;
      }
      io.out(serials.map((s) => `${s}\n`).join(''));
      process.exitCode = SERIAL_EXIT.ok;
    });

  addOrderOptions(
    program.command('verify').description('check that a serial is the one for this name and product'),
  )
    .requiredOption('--serial <serial>', 'the serial to check; case, grouping and separators do not matter (aes)')
    .addHelpText(
      'after',
      `
For aes serials the serial is made again and compared; for perUnit products give --quantity to
accept units 1..N. For ed25519 serials the signature is checked with the public key, and the
name (or email, per serial.input) and product in the serial must match.
Exit codes: 0 matches, 1 does not match, 2 bad arguments, unknown product or settings that
cannot verify, 3 config error.

Example:
  keymailer verify --product myapp --name "José Müller" --serial 5E50-BB64-...`,
    )
    .action((_options: unknown, cmd: Command) => {
      const io = ioOf(cmd);
      const options = cmd.optsWithGlobals<OrderOptions & { serial: string }>();
      const product = findProduct(options, loadProducts, io);
      if (!product) return;
      const req = requestOf(options);
      let ok: boolean;
      try {
        ok = verifySerial(product, req, options.serial);
      } catch (thrown) {
        if (!(thrown instanceof SerialError)) throw thrown;
        io.err(`keymailer: cannot verify: ${thrown.message}\n`);
        process.exitCode = SERIAL_EXIT.usage;
        return;
      }
      if (!ok) {
        io.out(`no match: not the serial for ${JSON.stringify(req.name)} and product ${product.id}\n`);
        process.exitCode = SERIAL_EXIT.failed;
        return;
      }
      const payload = readEd25519Serial(product, options.serial, req.test);
      io.out(
        payload
          ? `match: licensed to ${JSON.stringify(payload.licensee)}, ${payload.seats} seat(s), order ${JSON.stringify(payload.order)}, issued ${payload.issuedAt}\n`
          : `match\n`,
      );
      process.exitCode = SERIAL_EXIT.ok;
    });

  const keys = program.command('keys').description('ed25519 key pairs for serial.scheme: ed25519');
  keys
    .command('new')
    .description(`write a new ed25519 key pair: ${PRIVATE_KEY_FILE} (mode 0600) and ${PUBLIC_KEY_FILE}`)
    .option('--out <dir>', 'folder to write the two files to (created if missing)', '.')
    .option('-c, --config <path>', 'accepted like for the other commands; not used')
    .addHelpText(
      'after',
      `
Refuses to overwrite existing key files. Keep the private key secret (give it to keymailer,
e.g. as serial.privateKey: \${SERIAL_PRIVATE_KEY} or file:PATH); ship the public key in your app.
Exit codes: 0 written, 1 not written.`,
    )
    .action((_options: unknown, cmd: Command) => {
      const io = ioOf(cmd);
      const dir = cmd.opts<{ out: string }>().out;
      const privatePath = path.join(dir, PRIVATE_KEY_FILE);
      const publicPath = path.join(dir, PUBLIC_KEY_FILE);
      const existing = [privatePath, publicPath].filter((p) => existsSync(p));
      if (existing.length > 0) {
        io.err(`keymailer: ${existing.join(' and ')} already exist; not overwritten\n`);
        process.exitCode = SERIAL_EXIT.failed;
        return;
      }
      const pair = generateKeyPair();
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        writeFileSync(privatePath, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
        // The umask may only remove bits; chmod makes the mode exactly 0600 whatever it is.
        chmodSync(privatePath, 0o600);
        writeFileSync(publicPath, pair.publicKeyPem, { mode: 0o644, flag: 'wx' });
      } catch (thrown) {
        io.err(`keymailer: cannot write the key pair: ${coerceError(thrown).message}\n`);
        process.exitCode = SERIAL_EXIT.failed;
        return;
      }
      io.out(
        `wrote ${privatePath} (private: keep it secret)\n` +
          `wrote ${publicPath} (public: ship it in your app)\n` +
          `in the config, under the product:\n` +
          `  serial:\n    scheme: ed25519\n    privateKey: file:${path.resolve(privatePath)}\n    publicKey: file:${path.resolve(publicPath)}\n`,
      );
      process.exitCode = SERIAL_EXIT.ok;
    });
}
