/**
 * Makes and checks serials.
 *
 * scheme aes: AES-128 of a text built from the order, exactly as the seller's old generator did it;
 * see serial-settings.ts for the choices. scheme ed25519: a signed payload, verifiable offline with
 * the public key (examples/verify-ed25519.js is the reference verifier; keep the two in step).
 *
 * ed25519 serial, version 1: prefix + base58(payload ‖ signature), Bitcoin alphabet, where
 *   payload = 0x01 version, flags (bit 0: test order), issue date (uint16 BE, days since 1970-01-01),
 *             seats (uint16 BE), then product id, order id and licensee (the rendered `input`, by default
 *             the name), each as a length byte and UTF-8,
 *   signature = Ed25519 over the payload bytes (64 bytes).
 * Base58 because a serial is copied from a mail: no characters that a double-click stops at or that
 * look alike. The name travels inside the serial, so an app can show who it is licensed to.
 *
 * Test orders: AES serials use serial.testKey; ed25519 serials are signed with serial.testPrivateKey
 * and carry the test flag. A separate key, rather than the real key plus a flag, so that an app
 * which forgets to check the flag still rejects them: a forged "test" notification never yields a
 * working serial. Without the test key a test order goes to review.
 */
import {
  createCipheriv,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPairSync,
  sign,
  timingSafeEqual,
  verify,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PermanentError } from '../errors';
import {
  OUTPUT_ALPHABETS,
  keyTextBytes,
  keyTextProblem,
  parseInputTemplate,
  serialSettingsSchema,
} from './serial-settings';
import type {
  AesSerialSettings,
  Ed25519SerialSettings,
  Normalizer,
  OutputEncoding,
  SerialSettings,
  TemplatePart,
} from './serial-settings';

export interface SerialRequest {
  /** The name to license. */
  name: string;
  email: string;
  productId: string;
  orderId: string;
  quantity: number;
  test: boolean;
  /** YYYY-MM-DD */
  issuedAt: string;
}

export interface SerialProduct {
  id: string;
  /** Legacy `products[].key`, same forms as serial.key. */
  key?: string;
  /** Undefined means all defaults. */
  serial?: SerialSettings;
}

/** Permanent: the message is the seller's review reason and never holds key material. */
export class SerialError extends PermanentError {
  constructor(message: string) {
    super(message, 'serial');
  }
}

/** A guard against a typo'd quantity flooding a mail with serials. */
const MAX_UNITS = 1000;
const ED25519_VERSION = 1;
const SIGNATURE_BYTES = 64;

interface Common {
  readonly productId: string;
  readonly template: readonly TemplatePart[];
  readonly normalize: readonly Normalizer[];
  readonly perUnit: boolean;
}

interface AesPrepared extends Common {
  readonly scheme: 'aes';
  readonly settings: AesSerialSettings;
  readonly cipher: 'aes-128-ecb' | 'aes-128-cbc';
  // KeyObjects: createCipheriv is markedly faster with one than with raw key bytes.
  readonly key: KeyObject | null;
  readonly testKey: KeyObject | null;
  readonly iv: Buffer | null;
  readonly strip: RegExp;
}

interface Ed25519Prepared extends Common {
  readonly scheme: 'ed25519';
  readonly settings: Ed25519SerialSettings;
  readonly privateKey: KeyObject | null;
  readonly publicKey: KeyObject | null;
  readonly testPrivateKey: KeyObject | null;
  readonly testPublicKey: KeyObject | null;
}

type Prepared = AesPrepared | Ed25519Prepared;

// Keyed on the product object: settings are parsed, keys decoded and files read once per product.
const prepared = new WeakMap<SerialProduct, Prepared>();

function prepare(product: SerialProduct): Prepared {
  const cached = prepared.get(product);
  if (cached) return cached;
  const made = prepareUncached(product);
  prepared.set(product, made);
  return made;
}

function prepareUncached(product: SerialProduct): Prepared {
  // Parsing again is idempotent for parsed settings and catches a caller passing raw config.
  const parsed = serialSettingsSchema.safeParse(product.serial ?? {});
  if (!parsed.success) {
    const reasons = parsed.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message));
    throw new SerialError(`serial settings of product ${product.id}: ${reasons.join('; ')}`);
  }
  const settings = parsed.data;
  const common = {
    productId: product.id,
    template: parseInputTemplate(settings.input),
    normalize: settings.normalize,
    perUnit: settings.perUnit,
  };
  if (settings.scheme === 'ed25519') {
    if (product.key !== undefined) {
      throw new SerialError(
        `product ${product.id}: products[].key is an AES key, but serial.scheme is ed25519, which uses serial.privateKey`,
      );
    }
    const where = `serial of product ${product.id}`;
    const privateKey = loadKey(settings.privateKey, 'privateKey', 'private', where);
    const testPrivateKey = loadKey(settings.testPrivateKey, 'testPrivateKey', 'private', where);
    const publicKey = pairedPublicKey(settings.publicKey, 'publicKey', privateKey, 'privateKey', where);
    const testPublicKey = pairedPublicKey(settings.testPublicKey, 'testPublicKey', testPrivateKey, 'testPrivateKey', where);
    if (publicKey && testPublicKey && spki(publicKey).equals(spki(testPublicKey))) {
      throw new SerialError(`${where}: the test key pair must differ from the real one, or test orders would get real serials`);
    }
    return { ...common, scheme: 'ed25519', settings, privateKey, publicKey, testPrivateKey, testPublicKey };
  }
  if (product.key !== undefined) {
    const problem = keyTextProblem(product.key);
    if (problem) throw new SerialError(`product ${product.id}: products[].key ${problem}`);
  }
  const key = settings.key ?? product.key;
  if (settings.key !== undefined && product.key !== undefined && !keyTextBytes(settings.key).equals(keyTextBytes(product.key))) {
    throw new SerialError(`product ${product.id} has two different keys, products[].key and serial.key; keep one`);
  }
  const keyBytes = key === undefined ? null : keyTextBytes(key);
  const testKey = settings.testKey === undefined ? null : keyTextBytes(settings.testKey);
  if (keyBytes && testKey?.equals(keyBytes)) {
    throw new SerialError(`product ${product.id}: serial.testKey must differ from the key, or test orders would get real serials`);
  }
  const cbc = settings.mode === 'cbc';
  return {
    ...common,
    scheme: 'aes',
    settings,
    cipher: cbc ? 'aes-128-cbc' : 'aes-128-ecb',
    key: keyBytes && createSecretKey(keyBytes),
    testKey: testKey && createSecretKey(testKey),
    iv: cbc ? (settings.iv === undefined ? Buffer.alloc(16) : keyTextBytes(settings.iv)) : null,
    strip: stripPattern(settings),
  };
}

const spki = (key: KeyObject): Buffer => key.export({ type: 'spki', format: 'der' });

/** Reads `PEM text` or `file:path`; null when not configured. */
function loadKey(text: string | undefined, setting: string, kind: 'private' | 'public', where: string): KeyObject | null {
  if (text === undefined) return null;
  let pem = text;
  if (text.startsWith('file:')) {
    const file = text.slice(5);
    try {
      pem = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new SerialError(`${where}: cannot read ${setting} file ${file} (${code})`);
    }
  }
  // Keys passed through environment variables often arrive with their newlines written as \n.
  if (!pem.includes('\n') && pem.includes('\\n')) pem = pem.replace(/\\n/g, '\n');
  if (kind === 'public' && pem.includes('PRIVATE KEY')) {
    throw new SerialError(`${where}: ${setting} holds a private key; give the public key there`);
  }
  let key: KeyObject;
  try {
    key = kind === 'private' ? createPrivateKey({ key: pem, format: 'pem' }) : createPublicKey({ key: pem, format: 'pem' });
  } catch {
    // The crypto error may quote the key material, so it is not passed on.
    throw new SerialError(`${where}: ${setting} is not a readable PEM ${kind} key`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new SerialError(`${where}: ${setting} is a ${key.asymmetricKeyType ?? 'non-asymmetric'} key, not an Ed25519 key`);
  }
  return key;
}

/** The configured public key, checked against the private key; else derived from the private key. */
function pairedPublicKey(
  text: string | undefined,
  setting: string,
  privateKey: KeyObject | null,
  privateSetting: string,
  where: string,
): KeyObject | null {
  const given = loadKey(text, setting, 'public', where);
  const derived = privateKey ? createPublicKey(privateKey) : null;
  if (given && derived) {
    if (!spki(given).equals(spki(derived))) throw new SerialError(`${where}: ${setting} does not belong to ${privateSetting}`);
  }
  return given ?? derived;
}

// ---------------------------------------------------------------------------------------------
// Input: template, normalization, emptiness

function renderInputs(p: Prepared, req: SerialRequest): string[] {
  if (!Number.isInteger(req.quantity) || req.quantity < 1) {
    throw new SerialError(`quantity ${req.quantity} is not a whole number of 1 or more`);
  }
  if (!p.perUnit) return [renderInput(p, req, null)];
  if (req.quantity > MAX_UNITS) {
    throw new SerialError(`quantity ${req.quantity} is more than ${MAX_UNITS} serials (one per unit) for product ${p.productId}`);
  }
  const inputs: string[] = [];
  for (let unit = 1; unit <= req.quantity; unit++) inputs.push(renderInput(p, req, unit));
  return inputs;
}

function renderInput(p: Prepared, req: SerialRequest, unit: number | null): string {
  let text = '';
  for (const part of p.template) {
    if ('literal' in part) {
      text += part.literal;
      continue;
    }
    switch (part.field) {
      case 'name':
        if (req.name.trim() === '') throw new SerialError('the name to license is empty');
        text += req.name;
        break;
      case 'email':
        if (req.email.trim() === '') throw new SerialError(`serial input for product ${p.productId} uses {email}, but the order has no email`);
        text += req.email;
        break;
      case 'order':
        if (req.orderId.trim() === '') throw new SerialError(`serial input for product ${p.productId} uses {order}, but the order has no order id`);
        text += req.orderId;
        break;
      case 'product':
        text += p.productId;
        break;
      case 'quantity':
        text += String(req.quantity);
        break;
      case 'unit':
        text += String(unit ?? 1);
        break;
    }
  }
  for (const step of p.normalize) text = normalizeStep(step, text);
  if (text.trim() === '') {
    throw new SerialError(`the serial input for product ${p.productId} is empty after normalize (${p.normalize.join(', ')})`);
  }
  return text;
}

function normalizeStep(step: Normalizer, text: string): string {
  switch (step) {
    case 'trim':
      return text.trim();
    case 'collapse-spaces':
      return text.replace(/\s+/g, ' ');
    case 'lowercase':
      return text.toLowerCase();
    case 'uppercase':
      return text.toUpperCase();
    case 'nfc':
      return text.normalize('NFC');
    case 'nfkd-ascii':
      // é decomposes into e + accent; letters that do not decompose (ø, ß, æ) are spelled out as
      // iconv's ASCII//TRANSLIT does; what is still outside ASCII (accents, CJK, emoji) is dropped.
      return text
        .normalize('NFKD')
        .replace(/[^\x00-\x7f]/g, (c) => LATIN_LETTERS[c] ?? '');
  }
}

const LATIN_LETTERS: Readonly<Record<string, string>> = {
  ß: 'ss', ẞ: 'SS', æ: 'ae', Æ: 'AE', œ: 'oe', Œ: 'OE', ø: 'o', Ø: 'O', ł: 'l', Ł: 'L',
  đ: 'd', Đ: 'D', ð: 'd', Ð: 'D', þ: 'th', Þ: 'TH', ı: 'i', ħ: 'h', Ħ: 'H', ŋ: 'ng', Ŋ: 'NG',
};

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function encodeText(text: string, encoding: AesSerialSettings['encoding']): Buffer {
  if (LONE_SURROGATE.test(text)) throw new SerialError(`the serial input ${JSON.stringify(text)} has a broken character (a lone UTF-16 surrogate)`);
  if (encoding === 'utf-8') return Buffer.from(text, 'utf8');
  if (encoding === 'utf-16le') return Buffer.from(text, 'utf16le');
  const outside = /[^\x00-\xff]/u.exec(text);
  if (outside) {
    throw new SerialError(
      `the serial input ${JSON.stringify(text)} has "${outside[0]}", which latin1 cannot encode; use encoding utf-8, or normalize nfkd-ascii`,
    );
  }
  return Buffer.from(text, 'latin1');
}

// ---------------------------------------------------------------------------------------------
// AES

function pad(bytes: Buffer, padding: AesSerialSettings['padding'], text: string, encoding: string): Buffer {
  const rest = bytes.length % 16;
  switch (padding) {
    case 'pkcs7': {
      const n = 16 - rest;
      return Buffer.concat([bytes, Buffer.alloc(n, n)]);
    }
    case 'zero':
      return rest === 0 ? bytes : Buffer.concat([bytes, Buffer.alloc(16 - rest)]);
    case 'none':
      if (bytes.length !== 16) {
        throw new SerialError(
          `padding none needs exactly 16 bytes to encrypt, but ${JSON.stringify(text)} is ${bytes.length} bytes in ${encoding}`,
        );
      }
      return bytes;
  }
}

function aesKeyFor(p: AesPrepared, test: boolean): KeyObject {
  if (test) {
    if (!p.testKey) throw new SerialError(`test order and no serial.testKey for product ${p.productId}: sent to review`);
    return p.testKey;
  }
  if (!p.key) throw new SerialError(`product ${p.productId} has no serial key: set products[].serial.key`);
  return p.key;
}

/** The bare encoded serial: no prefix or grouping, already truncated to `length`. */
function aesCore(p: AesPrepared, key: KeyObject, input: string): string {
  const s = p.settings;
  const plain = pad(encodeText(input, s.encoding), s.padding, input, s.encoding);
  const cipher = createCipheriv(p.cipher, key, p.iv);
  cipher.setAutoPadding(false);
  // Whole blocks and no auto padding: update() returns everything and final() would add nothing.
  const encrypted = cipher.update(plain);
  const encoded = encodeOutput(encrypted, s.output);
  return s.length === undefined ? encoded : encoded.slice(0, s.length);
}

function present(core: string, s: AesSerialSettings): string {
  if (s.group <= 0) return s.prefix + core;
  const groups: string[] = [];
  for (let i = 0; i < core.length; i += s.group) groups.push(core.slice(i, i + s.group));
  return s.prefix + groups.join(s.separator);
}

const BASE32 = OUTPUT_ALPHABETS.base32;
const CROCKFORD = OUTPUT_ALPHABETS['base32-crockford'];

function base32(bytes: Buffer, alphabet: string): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

function encodeOutput(bytes: Buffer, output: OutputEncoding): string {
  switch (output) {
    case 'hex-upper':
      return bytes.toString('hex').toUpperCase();
    case 'hex-lower':
      return bytes.toString('hex');
    case 'base32':
      return base32(bytes, BASE32);
    case 'base32-crockford':
      return base32(bytes, CROCKFORD);
    case 'base64':
      return bytes.toString('base64');
    case 'base64url':
      return bytes.toString('base64url');
  }
}

const escapeRegExp = (s: string): string => s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');

/** What verify drops from both sides: spaces, the separator, and dashes when the output has none. */
function stripPattern(s: AesSerialSettings): RegExp {
  const chars = new Set([...s.separator]);
  if (!OUTPUT_ALPHABETS[s.output].includes('-')) chars.add('-');
  return new RegExp(`[\\s${[...chars].map(escapeRegExp).join('')}]+`, 'g');
}

/** Base64 keeps its case, since there case is information; the other outputs compare caselessly. */
function canonicalAes(p: AesPrepared, serial: string): string {
  const s = p.settings;
  const caseless = s.output !== 'base64' && s.output !== 'base64url';
  let text = serial.trim();
  if (s.prefix && (caseless ? text.toUpperCase().startsWith(s.prefix.toUpperCase()) : text.startsWith(s.prefix))) {
    text = text.slice(s.prefix.length);
  }
  text = text.replace(p.strip, '');
  if (caseless) text = text.toUpperCase();
  // Crockford's base32 reads the look-alikes O as 0 and I, L as 1.
  if (s.output === 'base32-crockford') text = text.replace(/O/g, '0').replace(/[IL]/g, '1');
  return text;
}

// ---------------------------------------------------------------------------------------------
// ed25519

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

function base58Encode(bytes: Buffer): string {
  let zeros = 0;
  while (zeros < bytes.length && bytes[zeros] === 0) zeros++;
  let n = bytes.length > zeros ? BigInt('0x' + bytes.toString('hex')) : 0n;
  let out = '';
  while (n > 0n) {
    out = BASE58[Number(n % 58n)] + out;
    n /= 58n;
  }
  return '1'.repeat(zeros) + out;
}

function base58Decode(text: string): Buffer | null {
  let n = 0n;
  let zeros = 0;
  while (zeros < text.length && text[zeros] === '1') zeros++;
  for (const c of text) {
    const digit = BASE58.indexOf(c);
    if (digit < 0) return null;
    n = n * 58n + BigInt(digit);
  }
  let hex = n > 0n ? n.toString(16) : '';
  if (hex.length % 2) hex = '0' + hex;
  return Buffer.concat([Buffer.alloc(zeros), Buffer.from(hex, 'hex')]);
}

interface Ed25519Payload {
  version: number;
  test: boolean;
  issuedAt: string;
  seats: number;
  product: string;
  order: string;
  licensee: string;
}

function daysSinceEpoch(date: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  const ms = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : NaN;
  if (!m || Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== date || ms < 0 || ms / 86_400_000 > 0xffff) {
    throw new SerialError(`issue date ${JSON.stringify(date)} is not a YYYY-MM-DD date between 1970 and 2149`);
  }
  return ms / 86_400_000;
}

function encodePayload(payload: Ed25519Payload): Buffer {
  const field = (text: string, what: string): Buffer => {
    const bytes = Buffer.from(text, 'utf8');
    if (bytes.length > 255) throw new SerialError(`the ${what} is longer than 255 bytes, too long for an ed25519 serial`);
    return Buffer.concat([Buffer.from([bytes.length]), bytes]);
  };
  if (payload.seats > 0xffff) throw new SerialError(`${payload.seats} seats is more than an ed25519 serial holds (65535)`);
  const head = Buffer.alloc(6);
  head.writeUInt8(payload.version, 0);
  head.writeUInt8(payload.test ? 1 : 0, 1);
  head.writeUInt16BE(daysSinceEpoch(payload.issuedAt), 2);
  head.writeUInt16BE(payload.seats, 4);
  return Buffer.concat([
    head,
    field(payload.product, 'product id'),
    field(payload.order, 'order id'),
    field(payload.licensee, 'name to license'),
  ]);
}

function decodePayload(bytes: Buffer): Ed25519Payload | null {
  if (bytes.length < 9) return null;
  let at = 6;
  const field = (): string | null => {
    const length = bytes[at];
    if (length === undefined || at + 1 + length > bytes.length) return null;
    const text = bytes.subarray(at + 1, at + 1 + length).toString('utf8');
    at += 1 + length;
    return text;
  };
  const product = field();
  const order = field();
  const licensee = field();
  if (product === null || order === null || licensee === null || at !== bytes.length) return null;
  return {
    version: bytes.readUInt8(0),
    test: (bytes.readUInt8(1) & 1) === 1,
    issuedAt: new Date(bytes.readUInt16BE(2) * 86_400_000).toISOString().slice(0, 10),
    seats: bytes.readUInt16BE(4),
    product,
    order,
    licensee,
  };
}

function ed25519Serials(p: Ed25519Prepared, req: SerialRequest): string[] {
  const key = req.test ? p.testPrivateKey : p.privateKey;
  if (!key) {
    throw new SerialError(
      req.test
        ? `test order and no serial.testPrivateKey for product ${p.productId}: sent to review`
        : `product ${p.productId} has no serial.privateKey to sign serials with`,
    );
  }
  return renderInputs(p, req).map((licensee) => {
    const payload = encodePayload({
      version: ED25519_VERSION,
      test: req.test,
      issuedAt: req.issuedAt,
      seats: p.perUnit ? 1 : req.quantity,
      product: p.productId,
      order: req.orderId,
      licensee,
    });
    return p.settings.prefix + base58Encode(Buffer.concat([payload, sign(null, payload, key)]));
  });
}

/** The payload of an ed25519 serial whose signature holds under the product's (test) public key; else null. */
function readEd25519(p: Ed25519Prepared, candidate: string, test: boolean): Ed25519Payload | null {
  const key = test ? p.testPublicKey : p.publicKey;
  if (!key) {
    throw new SerialError(
      `product ${p.productId} has no serial.${test ? 'testPublicKey' : 'publicKey'} (nor the private key) to verify with`,
    );
  }
  let text = candidate.trim();
  if (p.settings.prefix && text.startsWith(p.settings.prefix)) text = text.slice(p.settings.prefix.length);
  const bytes = base58Decode(text.replace(/[\s-]+/g, ''));
  if (!bytes || bytes.length <= SIGNATURE_BYTES) return null;
  const payload = bytes.subarray(0, bytes.length - SIGNATURE_BYTES);
  const signature = bytes.subarray(bytes.length - SIGNATURE_BYTES);
  if (!verify(null, payload, key, signature)) return null;
  const decoded = decodePayload(payload);
  return decoded && decoded.version === ED25519_VERSION ? decoded : null;
}

// ---------------------------------------------------------------------------------------------
// Public API

/** The serial(s) for an order: one, or one per unit with perUnit. Throws SerialError. */
export function makeSerials(product: SerialProduct, req: SerialRequest): string[] {
  const p = prepare(product);
  if (p.scheme === 'ed25519') return ed25519Serials(p, req);
  const key = aesKeyFor(p, req.test);
  return renderInputs(p, req).map((input) => present(aesCore(p, key, input), p.settings));
}

/**
 * Whether candidate is a serial for this request. aes: recomputed, and compared with case (except
 * base64), grouping and separators ignored; with perUnit any unit 1..quantity matches. ed25519: the
 * signature must hold and the payload name product and test flag match. Throws SerialError for
 * settings that cannot verify or a request that could not have had a serial.
 */
export function verifySerial(product: SerialProduct, req: SerialRequest, candidate: string): boolean {
  const p = prepare(product);
  if (p.scheme === 'ed25519') {
    const wanted = renderInputs(p, req);
    const payload = readEd25519(p, candidate, req.test);
    return (
      payload !== null && payload.product === p.productId && payload.test === req.test && wanted.includes(payload.licensee)
    );
  }
  const key = aesKeyFor(p, req.test);
  const given = Buffer.from(canonicalAes(p, candidate));
  return renderInputs(p, req).some((input) => {
    const expected = Buffer.from(canonicalAes(p, aesCore(p, key, input)));
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
}

/** A new Ed25519 key pair as PEM: PKCS#8 private, SPKI public. */
export function generateKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Throws SerialError when the product cannot make serials: bad or missing keys, unreadable key files. */
export function checkSerialSettings(product: SerialProduct): void {
  const p = prepare(product);
  if (p.scheme === 'aes') {
    if (!p.key) throw new SerialError(`product ${p.productId} has no serial key: set products[].serial.key`);
    return;
  }
  if (!p.privateKey) throw new SerialError(`product ${p.productId} has no serial.privateKey to sign serials with`);
  if (p.settings.testPublicKey !== undefined && !p.testPrivateKey) {
    throw new SerialError(`product ${p.productId} has serial.testPublicKey but no serial.testPrivateKey to sign test orders with`);
  }
}

/** The decoded payload of an ed25519 serial with a valid signature, for `keymailer verify` to show; else null. */
export function readEd25519Serial(product: SerialProduct, candidate: string, test = false): Ed25519Payload | null {
  const p = prepare(product);
  return p.scheme === 'ed25519' ? readEd25519(p, candidate, test) : null;
}
export type { Ed25519Payload };
