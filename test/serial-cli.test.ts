/**
 * `keymailer serial`, `verify` and `keys new`, through a small commander program built here with a
 * stub in place of the config loader. End-to-end runs of the real binary are tested elsewhere.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { Command, CommanderError } from 'commander';
import { PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, registerSerialCommands } from '../src/commands/serial';
import { serialSettingsSchema } from '../src/fulfil/serial-settings';
import { generateKeyPair, type SerialProduct } from '../src/fulfil/serial';

interface Outcome {
  code: number;
  out: string;
  err: string;
  configPaths: (string | undefined)[];
}

/** Runs one command line as the real program would: usage errors become exit code 2. */
async function keymailer(products: readonly SerialProduct[] | Error, ...args: string[]): Promise<Outcome> {
  const outcome: Outcome = { code: -1, out: '', err: '', configPaths: [] };
  // Output and exitOverride are set before the commands are added, which inherit them, as in cli.ts.
  const program = new Command('keymailer')
    .exitOverride()
    .configureOutput({ writeOut: (s) => (outcome.out += s), writeErr: (s) => (outcome.err += s) });
  registerSerialCommands(program, (configPath) => {
    outcome.configPaths.push(configPath);
    if (products instanceof Error) throw products;
    return products;
  });
  process.exitCode = 0;
  try {
    await program.parseAsync(args, { from: 'user' });
    outcome.code = Number(process.exitCode ?? 0);
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    outcome.code = err.exitCode === 0 ? 0 : 2;
  } finally {
    process.exitCode = 0;
  }
  return outcome;
}

const myapp: SerialProduct = { id: 'myapp', key: '0123456789abcdef' };
const seats: SerialProduct = {
  id: 'seats',
  serial: serialSettingsSchema.parse({ key: 'hex:000102030405060708090a0b0c0d0e0f', input: '{name}#{unit}', perUnit: true, output: 'base32', group: 5 }),
};
const badPadding: SerialProduct = { id: 'block', serial: serialSettingsSchema.parse({ key: '0123456789abcdef', padding: 'none' }) };
const PRODUCTS = [myapp, seats, badPadding];
const JOSE_SERIAL = '5E50-BB64-4A00-798C-388C-FDF1-02D7-2332';

describe('keymailer serial', () => {
  test('prints the serial for José Müller and nothing else', async () => {
    const r = await keymailer(PRODUCTS, 'serial', '--product', 'myapp', '--name', 'José Müller');
    assert.deepEqual(r, { code: 0, out: `${JOSE_SERIAL}\n`, err: '', configPaths: [undefined] });
  });

  test('prints one serial per line for a perUnit product, one per unit bought', async () => {
    const r = await keymailer(PRODUCTS, 'serial', '--product', 'seats', '--name', 'Ann Lee', '--quantity', '3');
    assert.equal(r.code, 0);
    const lines = r.out.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.equal(new Set(lines).size, 3);
    for (const line of lines) assert.match(line, /^[A-Z2-7]{5}(-[A-Z2-7]{1,5})+$/, 'base32 in dashed groups of 5');
  });

  test('passes --config to the config loader', async () => {
    const r = await keymailer(PRODUCTS, 'serial', '--config', '/etc/keymailer.yaml', '--product', 'myapp', '--name', 'Ann');
    assert.deepEqual(r.configPaths, ['/etc/keymailer.yaml']);
  });

  test('a test order without testKey: exit 1, the review reason on stderr, no serial', async () => {
    const r = await keymailer(PRODUCTS, 'serial', '--product', 'myapp', '--name', 'José Müller', '--test');
    assert.equal(r.code, 1);
    assert.equal(r.out, '');
    assert.match(r.err, /test order and no serial\.testKey for product myapp: sent to review/);
  });

  test('a name the settings cannot encrypt: exit 1 with the reason', async () => {
    const r = await keymailer(PRODUCTS, 'serial', '--product', 'block', '--name', 'José Müller');
    assert.equal(r.code, 1);
    assert.match(r.err, /padding none needs exactly 16 bytes/);
  });

  test('an unknown product: exit 2, naming the known ones', async () => {
    const r = await keymailer(PRODUCTS, 'serial', '--product', 'nope', '--name', 'Ann');
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown product "nope"; known: myapp, seats, block/);
    assert.equal(r.out, '');
  });

  test('bad arguments: no --name, a quantity of 0 or "two", a bad --date: exit 2', async () => {
    for (const args of [
      ['--product', 'myapp'],
      ['--product', 'myapp', '--name', 'Ann', '--quantity', '0'],
      ['--product', 'myapp', '--name', 'Ann', '--quantity', 'two'],
      ['--product', 'myapp', '--name', 'Ann', '--date', '2025-13-01'],
    ]) {
      const r = await keymailer(PRODUCTS, 'serial', ...args);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.out, '');
      assert.notEqual(r.err, '');
    }
  });

  test('a config that cannot be loaded: exit 3 with its message', async () => {
    const r = await keymailer(new Error('config error: products[0].serial.key must be 16 characters'), 'serial', '--product', 'myapp', '--name', 'Ann');
    assert.equal(r.code, 3);
    assert.match(r.err, /products\[0\]\.serial\.key must be 16 characters/);
    assert.equal(r.out, '');
  });

  test('--help explains the options and exit codes', async () => {
    const r = await keymailer(PRODUCTS, 'serial', '--help');
    assert.equal(r.code, 0);
    assert.match(r.out, /--product <id>/);
    assert.match(r.out, /--quantity <n>/);
    assert.match(r.out, /Exit codes: 0 printed, 1 no serial/);
  });
});

describe('keymailer verify', () => {
  test('exit 0 for the serial of that name, whatever its case, grouping and separators', async () => {
    for (const serial of [JOSE_SERIAL, JOSE_SERIAL.toLowerCase().replace(/-/g, ''), '5E50 BB64 4A00 798C 388C FDF1 02D7 2332']) {
      const r = await keymailer(PRODUCTS, 'verify', '--product', 'myapp', '--name', 'José Müller', '--serial', serial);
      assert.equal(r.code, 0, serial);
      assert.match(r.out, /^match/);
    }
  });

  test('exit 1 for a serial with one character changed, for another name, or for another product', async () => {
    const changed = await keymailer(PRODUCTS, 'verify', '--product', 'myapp', '--name', 'José Müller', '--serial', JOSE_SERIAL.replace('5E50', '5E51'));
    assert.equal(changed.code, 1);
    assert.match(changed.out, /no match/);
    const otherName = await keymailer(PRODUCTS, 'verify', '--product', 'myapp', '--name', 'Jose Muller', '--serial', JOSE_SERIAL);
    assert.equal(otherName.code, 1);
    const otherProduct = await keymailer(PRODUCTS, 'verify', '--product', 'seats', '--name', 'José Müller', '--serial', JOSE_SERIAL);
    assert.equal(otherProduct.code, 1);
  });

  test('a perUnit serial verifies with --quantity covering its unit', async () => {
    const made = await keymailer(PRODUCTS, 'serial', '--product', 'seats', '--name', 'Ann Lee', '--quantity', '2');
    const second = made.out.trimEnd().split('\n')[1]!;
    assert.equal((await keymailer(PRODUCTS, 'verify', '--product', 'seats', '--name', 'Ann Lee', '--quantity', '2', '--serial', second)).code, 0);
    assert.equal((await keymailer(PRODUCTS, 'verify', '--product', 'seats', '--name', 'Ann Lee', '--serial', second)).code, 1);
  });

  test('exit 2 on bad arguments: no --serial, an unknown product, an empty name', async () => {
    assert.equal((await keymailer(PRODUCTS, 'verify', '--product', 'myapp', '--name', 'Ann')).code, 2);
    assert.equal((await keymailer(PRODUCTS, 'verify', '--product', 'nope', '--name', 'Ann', '--serial', 'X')).code, 2);
    const empty = await keymailer(PRODUCTS, 'verify', '--product', 'myapp', '--name', '  ', '--serial', JOSE_SERIAL);
    assert.equal(empty.code, 2);
    assert.match(empty.err, /cannot verify: the name to license is empty/);
  });

  test('exit 3 when the config cannot be loaded', async () => {
    assert.equal((await keymailer(new Error('no config'), 'verify', '--product', 'myapp', '--name', 'Ann', '--serial', 'X')).code, 3);
  });
});

describe('keymailer keys new, and ed25519 serials from the command line', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'keymailer-keys-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const keysDir = path.join(dir, 'keys');

  test('writes a key pair, the private key readable by its owner only', async () => {
    const r = await keymailer([], 'keys', 'new', '--out', keysDir);
    assert.equal(r.code, 0, r.err);
    const privateFile = path.join(keysDir, PRIVATE_KEY_FILE);
    const publicFile = path.join(keysDir, PUBLIC_KEY_FILE);
    assert.equal(statSync(privateFile).mode & 0o777, 0o600);
    assert.match(readFileSync(privateFile, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
    assert.match(readFileSync(publicFile, 'utf8'), /^-----BEGIN PUBLIC KEY-----/);
    assert.ok(r.out.includes(privateFile) && r.out.includes(`privateKey: file:${path.resolve(privateFile)}`), r.out);
    assert.ok(!r.out.includes('BEGIN PRIVATE KEY'), 'the private key is not printed');
  });

  test('refuses to overwrite an existing pair: exit 1, files unchanged', async () => {
    const before = readFileSync(path.join(keysDir, PRIVATE_KEY_FILE), 'utf8');
    const r = await keymailer([], 'keys', 'new', '--out', keysDir, '--config', 'ignored.yaml');
    assert.equal(r.code, 1);
    assert.match(r.err, /already exist; not overwritten/);
    assert.equal(readFileSync(path.join(keysDir, PRIVATE_KEY_FILE), 'utf8'), before);
  });

  test('a product using the new keys: serial prints one, verify and the README example accept it', async () => {
    const product: SerialProduct = {
      id: 'newapp',
      serial: serialSettingsSchema.parse({
        scheme: 'ed25519',
        privateKey: `file:${path.join(keysDir, PRIVATE_KEY_FILE)}`,
        publicKey: `file:${path.join(keysDir, PUBLIC_KEY_FILE)}`,
      }),
    };
    const made = await keymailer([product], 'serial', '--product', 'newapp', '--name', 'José Müller', '--order', 'ORD-9', '--quantity', '5', '--date', '2025-06-01');
    assert.equal(made.code, 0, made.err);
    const serial = made.out.trimEnd();
    assert.match(serial, /^[1-9A-HJ-NP-Za-km-z]+$/);
    const checked = await keymailer([product], 'verify', '--product', 'newapp', '--name', 'José Müller', '--serial', serial);
    assert.equal(checked.code, 0, checked.err);
    assert.equal(checked.out, 'match: licensed to "José Müller", 5 seat(s), order "ORD-9", issued 2025-06-01\n');
    assert.equal((await keymailer([product], 'verify', '--product', 'newapp', '--name', 'Jose Muller', '--serial', serial)).code, 1);
    const example = path.resolve(__dirname, '../../examples/verify-ed25519.js');
    const run = (name: string) => spawnSync(process.execPath, [example, path.join(keysDir, PUBLIC_KEY_FILE), serial, name], { encoding: 'utf8' });
    const ok = run('José Müller');
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /"seats":5/);
    assert.equal(run('Someone Else').status, 1);
  });

  test('an ed25519 product without a private key: serial exits 1 and says so', async () => {
    const verifyOnly: SerialProduct = { id: 'app', serial: serialSettingsSchema.parse({ scheme: 'ed25519', publicKey: generateKeyPair().publicKeyPem }) };
    const r = await keymailer([verifyOnly], 'serial', '--product', 'app', '--name', 'Ann');
    assert.equal(r.code, 1);
    assert.match(r.err, /no serial\.privateKey/);
  });

  test('keys new --help says where the files go and that they are never overwritten', async () => {
    const r = await keymailer([], 'keys', 'new', '--help');
    assert.equal(r.code, 0);
    assert.match(r.out, /--out <dir>/);
    assert.match(r.out, /Refuses to overwrite/);
  });
});
