/**
 * `keymailer avangate sign|check`: compute or verify the HASH of an Avangate key-generator POST
 * from the command line, with the same code the HTTP listener uses (authenticate/signed-post.ts).
 *
 * Exit codes (set on process.exitCode, so these commands work under both parse() and
 * parseAsync(), and under exitOverride() in tests):
 *   0  sign: HASH printed; check: HASH ok
 *   1  check: HASH mismatch (or no HASH field)
 *   2  bad input: unreadable file, invalid UTF-8, malformed body, no fields
 *   3  no secret: loadSecret threw, or --secret-env names an unset or empty variable
 * Usage errors (unknown option, missing FILE) are commander's own and exit with its code (1).
 * The secret is never printed, not even with --verbose.
 */
import { readFileSync } from 'node:fs';
import { TextDecoder } from 'node:util';
import { Option, type Command } from 'commander';
import { coerceError } from '../errors';
import {
  computeHash,
  fieldsFromPairs,
  hashSource,
  MalformedPostError,
  parsePostedFields,
  verifyHash,
  type PostedField,
} from '../authenticate/signed-post';

export const EXIT_OK = 0;
export const EXIT_MISMATCH = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_NO_SECRET = 3;

type AvangateOptions = { config?: string; secretEnv?: string; verbose?: boolean };

type Io = { out(text: string): void; err(text: string): void };

class BadInput extends Error {
  override readonly name = 'BadInput';
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The input file's bytes, `-` being standard input, less ONE trailing newline (LF or CR LF). */
function readInput(file: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = file === '-' ? readFileSync(0) : readFileSync(file);
  } catch (thrown) {
    throw new BadInput(`cannot read ${file === '-' ? 'standard input' : file}: ${coerceError(thrown).message}`);
  }
  if (bytes.length > 0 && bytes[bytes.length - 1] === 0x0a) {
    bytes = bytes.subarray(0, bytes.length - (bytes.length > 1 && bytes[bytes.length - 2] === 0x0d ? 2 : 1));
  }
  return bytes;
}

function parseBody(bytes: Buffer): PostedField[] {
  try {
    return parsePostedFields(bytes);
  } catch (thrown) {
    if (thrown instanceof MalformedPostError) throw new BadInput(`malformed body: ${thrown.message}`);
    throw thrown;
  }
}

/**
 * The fields of a `sign` input. A urlencoded body is one line holding `&` (a trailing newline
 * removed first); anything else is a fields file: one `NAME=value` a line, the value taken
 * literally up to the end of the line (no decoding, may hold `=` and `&`; a CR before the LF is
 * dropped), `NAME[]` lines grouped as PHP groups them, blank lines and lines starting with `#`
 * skipped, a leading byte-order mark ignored. A single field written as a body (`PID=1`, no `&`)
 * is read as a fields file, which differs only when its value holds `%` or `+`.
 */
export function parseSignInput(bytes: Buffer): { format: 'body' | 'lines'; fields: PostedField[] } {
  if (bytes.includes(0x26) && !bytes.includes(0x0a)) return { format: 'body', fields: parseBody(bytes) };
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new BadInput('the fields file is not valid UTF-8');
  }
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  const pairs: [string, string][] = [];
  text.split('\n').forEach((rawLine, i) => {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (line.trim() === '' || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new BadInput(`line ${i + 1}: expected NAME=value`);
    pairs.push([line.slice(0, eq), line.slice(eq + 1)]);
  });
  const fields = fieldsFromPairs(pairs);
  if (fields.length === 0) throw new BadInput('no fields in the input');
  return { format: 'lines', fields };
}

/** A posted value shown safely on a terminal: as is when plain printable ASCII, else JSON-quoted. */
function shown(value: string): string {
  if (/^[\x21-\x7e]+$/.test(value)) return value;
  return JSON.stringify(value).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function ioOf(cmd: Command): Io {
  const output = cmd.configureOutput();
  return {
    out: (text) => (output.writeOut ?? ((s: string) => process.stdout.write(s)))(text),
    err: (text) => (output.writeErr ?? ((s: string) => process.stderr.write(s)))(text),
  };
}

function resolveSecret(options: AvangateOptions, loadSecret: (configPath?: string) => string, io: Io): string | null {
  let secret: string;
  if (options.secretEnv !== undefined) {
    const value = process.env[options.secretEnv];
    if (value === undefined || value === '') {
      io.err(`environment variable ${options.secretEnv} is not set or empty\n`);
      return null;
    }
    secret = value;
  } else {
    try {
      secret = loadSecret(options.config);
    } catch (thrown) {
      io.err(`${coerceError(thrown).message}\n`);
      return null;
    }
    if (secret === '') {
      io.err('the Avangate secret is empty\n');
      return null;
    }
  }
  return secret;
}

function run(cmd: Command, body: (io: Io, options: AvangateOptions) => number): void {
  const io = ioOf(cmd);
  const options = cmd.optsWithGlobals<AvangateOptions>();
  try {
    process.exitCode = body(io, options);
  } catch (thrown) {
    if (!(thrown instanceof BadInput)) throw thrown;
    io.err(`${thrown.message}\n`);
    process.exitCode = EXIT_BAD_INPUT;
  }
}

function addCommonOptions(cmd: Command): Command {
  return cmd
    .option('--config <path>', 'config file holding the Avangate secret (default: the usual config)')
    .addOption(
      new Option('--secret-env <name>', 'take the secret from this environment variable instead of the config').conflicts(
        'config',
      ),
    )
    .option('-v, --verbose', 'also print the signed source string to standard error');
}

const INPUT_HELP = `
FILE is a path, or - for standard input. One trailing newline is ignored.
The secret is never printed.`;

/**
 * Add `avangate sign FILE|-` and `avangate check FILE|-` to the program. `loadSecret(configPath)`
 * returns the Avangate secret from the config (configPath from --config, else undefined) and
 * throws with a message fit for the seller when it cannot.
 */
export function registerAvangateCommands(program: Command, loadSecret: (configPath?: string) => string): void {
  const avangate = program
    .command('avangate')
    .description('Avangate (2Checkout) key-generator requests: compute or check their HASH');

  addCommonOptions(
    avangate
      .command('sign')
      .description('print the HASH Avangate would send with these fields')
      .argument('<file>', 'fields file (NAME=value lines) or urlencoded body; - for standard input'),
  )
    .addHelpText(
      'after',
      `${INPUT_HELP}

Input formats:
  a urlencoded body   one line holding '&', e.g. PID=189645&PCODE=123&REFNO=1250747
                      (a HASH field in it is ignored)
  a fields file       anything else: one NAME=value a line, value taken literally
                      (no %-decoding; it may hold '=' and '&'); NAME[] lines form an
                      array at the place of the first one, as PHP does; blank lines
                      and lines starting with # are skipped

Prints the lower-case hex HASH on standard output.
Exit codes: 0 printed, 2 bad input, 3 no secret.

Example:
  keymailer avangate sign --secret-env AVANGATE_SECRET order.txt`,
    )
    .action((file: string, _options: unknown, cmd: Command) => {
      run(cmd, (io, options) => {
        const { fields } = parseSignInput(readInput(file));
        const secret = resolveSecret(options, loadSecret, io);
        if (secret === null) return EXIT_NO_SECRET;
        if (options.verbose === true) io.err(`source: ${hashSource(fields).toString('utf8')}\n`);
        io.out(`${computeHash(fields, secret)}\n`);
        return EXIT_OK;
      });
    });

  addCommonOptions(
    avangate
      .command('check')
      .description("check the HASH of a captured request body against the seller's secret")
      .argument('<file>', 'the urlencoded request body as Avangate posted it; - for standard input'),
  )
    .addHelpText(
      'after',
      `${INPUT_HELP}

Prints "HASH ok", or "HASH mismatch: expected <hash> got <posted HASH>" on standard output.
Exit codes: 0 ok, 1 mismatch or no HASH field, 2 bad input (malformed body), 3 no secret.

Example:
  keymailer avangate check --config /etc/keymailer.yaml captured-body.txt`,
    )
    .action((file: string, _options: unknown, cmd: Command) => {
      run(cmd, (io, options) => {
        const fields = parseBody(readInput(file));
        const secret = resolveSecret(options, loadSecret, io);
        if (secret === null) return EXIT_NO_SECRET;
        if (options.verbose === true) io.err(`source: ${hashSource(fields).toString('utf8')}\n`);
        const verdict = verifyHash(fields, secret);
        if (verdict.ok) {
          io.out('HASH ok\n');
          return EXIT_OK;
        }
        const expected = computeHash(fields, secret);
        const posted = fields.find((field) => field.name === 'HASH');
        let got: string;
        if (posted === undefined) got = 'nothing (no HASH field)';
        else if (posted.isArray) got = 'an array HASH[]';
        else got = shown(posted.values[0] ?? '');
        io.out(`HASH mismatch: expected ${expected} got ${got}\n`);
        return EXIT_MISMATCH;
      });
    });
}
