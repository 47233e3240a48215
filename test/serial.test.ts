/**
 * Serials: known answers, every AES option against openssl run by the test (not our code path),
 * output encodings against a reference written here (itself checked against coreutils basenc),
 * verify round trips, ed25519 serials and the example verifier, errors.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { serialSettingsSchema, type SerialSettings } from '../src/fulfil/serial-settings';
import {
  SerialError,
  checkSerialSettings,
  generateKeyPair,
  makeSerials,
  readEd25519Serial,
  verifySerial,
  type SerialProduct,
  type SerialRequest,
} from '../src/fulfil/serial';
import { seededRandom } from './support/random';

// ---------------------------------------------------------------------------------------------
// Random buyers' names, reproducible

const rng = seededRandom(20250314);
const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T;
const between = (lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
const ACCENTED = [...'áàâäãåæçéèêëíìîïñóòôöõøœßúùûüýÿčćđěłńřśšťůźżžğışÁÂÄÅÆÇÉÈÊÍÎÑÓÔÖØŒÚÜÝČĆĐŁŘŠŽĞİŞÞð'];
const CJK = ['山田', '太郎', '李', '小龙', '王', '伟', '張', '偉', '김', '민수', 'さくら', 'タロウ', '陳', '美玲', '鈴木'];
const EMOJI = ['😀', '🎉', '👍🏽', '🇯🇵', '👨‍👩‍👧', '❤️', '🦄', '☕', '🚀'];
const SPACES = [' ', '  ', '\t', '\u00a0', '\u3000', ' \t '];

function asciiWord(): string {
  let w = pick([...LETTERS]).toUpperCase();
  for (let i = between(1, 8); i > 0; i--) w += pick([...LETTERS]);
  return pick(['', '', '', "O'", 'Mc']) + w + pick(['', '', '', '-Smith', '.']);
}

function accentedWord(): string {
  let w = '';
  for (let i = between(3, 9); i > 0; i--) w += rng() < 0.35 ? pick(ACCENTED) : pick([...LETTERS]);
  return w.charAt(0).toUpperCase() + w.slice(1);
}

type Kind = 'ascii' | 'accented' | 'cjk' | 'emoji' | 'spaces' | 'decomposed';
const KINDS: readonly Kind[] = ['ascii', 'accented', 'cjk', 'emoji', 'spaces', 'decomposed'];

function randomName(kind: Kind): string {
  const words = (make: () => string, n: number) => Array.from({ length: n }, make).join(' ');
  switch (kind) {
    case 'ascii':
      return words(asciiWord, between(1, 3));
    case 'accented':
      return words(accentedWord, between(1, 3));
    case 'cjk':
      return Array.from({ length: between(1, 3) }, () => pick(CJK)).join(pick(['', ' ']));
    case 'emoji':
      return `${rng() < 0.5 ? asciiWord() : accentedWord()} ${pick(EMOJI)}${rng() < 0.3 ? pick(EMOJI) : ''}`;
    case 'spaces':
      return `${pick(SPACES)}${pick([asciiWord, accentedWord, () => pick(CJK)])()}${pick(SPACES)}${accentedWord()}${pick(SPACES)}`;
    case 'decomposed':
      return `${rng() < 0.5 ? pick(SPACES) : ''}${words(accentedWord, between(1, 2))}  ${accentedWord()}`.normalize('NFD');
  }
}

/** 264 names, 44 of each kind, plus the seller's favourite example. */
const NAMES: readonly string[] = [
  'José Müller',
  ...Array.from({ length: 264 }, (_, i) => randomName(KINDS[i % KINDS.length] as Kind)),
];

/** Names made only of characters latin1 can encode. */
const LATIN1_NAMES: readonly string[] = NAMES.map((n) => [...n].filter((c) => c.codePointAt(0)! <= 0xff).join('')).filter(
  (n) => n.trim() !== '',
);

/** Names exactly 16 bytes in UTF-8, for padding none: ASCII, accents (2 bytes), CJK (3), emoji (4). */
const SIXTEEN_BYTE_NAMES: readonly string[] = Array.from({ length: 220 }, () => {
  let name = rng() < 0.2 ? ' ' : '';
  const pools = [[...LETTERS], ACCENTED, CJK.flatMap((w) => [...w]), EMOJI.filter((e) => [...e].length === 1)];
  while (Buffer.byteLength(name) < 12) name += pick(pick(pools));
  while (Buffer.byteLength(name) < 16) name += pick([...LETTERS, ' ']);
  return name.trim() === '' ? 'x'.repeat(16) : name;
}).filter((n) => Buffer.byteLength(n) === 16);

// ---------------------------------------------------------------------------------------------
// Independent references: openssl for AES, hand-written encoders, hand-written text handling

function run(cmd: string, args: readonly string[], input: Buffer): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString() ?? r.error}`);
  return r.stdout;
}

/** openssl AES-128-ECB of whole blocks, no padding: many names' blocks in one call. */
const opensslEcb = (keyHex: string, blocks: Buffer): Buffer =>
  blocks.length === 0 ? Buffer.alloc(0) : run('openssl', ['enc', '-aes-128-ecb', '-K', keyHex, '-nopad'], blocks);

/** One openssl call per name, letting openssl do PKCS#7 padding itself when asked. */
function opensslDirect(keyHex: string, mode: 'ecb' | 'cbc', ivHex: string, plain: Buffer, opensslPads: boolean): Buffer {
  const args = ['enc', `-aes-128-${mode}`, '-K', keyHex];
  if (mode === 'cbc') args.push('-iv', ivHex);
  if (!opensslPads) args.push('-nopad');
  return run('openssl', args, plain);
}

function xor16(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
  return out;
}

/** CBC for many messages: block k of every message in one openssl ECB call, chained here. */
function cbcBatch(keyHex: string, ivHex: string, plains: readonly Buffer[]): Buffer[] {
  const outs = plains.map((p) => Buffer.alloc(p.length));
  const prev = plains.map(() => Buffer.from(ivHex, 'hex'));
  const rounds = Math.max(0, ...plains.map((p) => p.length / 16));
  for (let b = 0; b < rounds; b++) {
    const idx = plains.flatMap((p, i) => (p.length / 16 > b ? [i] : []));
    const enc = opensslEcb(keyHex, Buffer.concat(idx.map((i) => xor16(plains[i]!.subarray(b * 16, b * 16 + 16), prev[i]!))));
    idx.forEach((i, k) => {
      const block = Buffer.from(enc.subarray(k * 16, k * 16 + 16));
      block.copy(outs[i]!, b * 16);
      prev[i] = block;
    });
  }
  return outs;
}

function ecbBatch(keyHex: string, plains: readonly Buffer[]): Buffer[] {
  const all = opensslEcb(keyHex, Buffer.concat(plains));
  let at = 0;
  return plains.map((p) => all.subarray(at, (at += p.length)));
}

/** Bits, 5 or 6 at a time, looked up in the alphabet: a different algorithm from the implementation's. */
function refBits(bytes: Buffer, width: number, alphabet: string): string {
  const bits = [...bytes].map((b) => b.toString(2).padStart(8, '0')).join('');
  let out = '';
  for (let i = 0; i < bits.length; i += width) out += alphabet[parseInt(bits.slice(i, i + width).padEnd(width, '0'), 2)];
  return out;
}

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const B32HEX = '0123456789ABCDEFGHIJKLMNOPQRSTUV';
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const HEX = '0123456789ABCDEF';

type Output = 'hex-upper' | 'hex-lower' | 'base32' | 'base32-crockford' | 'base64' | 'base64url';

function refEncode(bytes: Buffer, output: Output): string {
  switch (output) {
    case 'hex-upper':
      return refBits(bytes, 4, HEX);
    case 'hex-lower':
      return refBits(bytes, 4, HEX).toLowerCase();
    case 'base32':
      return refBits(bytes, 5, B32);
    case 'base32-crockford':
      return refBits(bytes, 5, CROCKFORD);
    case 'base64': {
      const s = refBits(bytes, 6, B64);
      return s + '='.repeat((4 - (s.length % 4)) % 4);
    }
    case 'base64url':
      return refBits(bytes, 6, B64URL);
  }
}

/** coreutils basenc, for the spot checks; crockford is base32hex with its alphabet swapped. */
function basencEncode(bytes: Buffer, output: Output): string {
  const flag = { 'hex-upper': 'base16', 'hex-lower': 'base16', base32: 'base32', 'base32-crockford': 'base32hex', base64: 'base64', base64url: 'base64url' }[output];
  const text = run('basenc', [`--${flag}`, '-w', '0'], bytes).toString().trim();
  switch (output) {
    case 'hex-lower':
      return text.toLowerCase();
    case 'base32':
    case 'base64url':
      return text.replace(/=+$/, '');
    case 'base32-crockford':
      return [...text.replace(/=+$/, '')].map((c) => CROCKFORD[B32HEX.indexOf(c)]).join('');
    default:
      return text;
  }
}

type Step = 'trim' | 'collapse-spaces' | 'lowercase' | 'uppercase' | 'nfc' | 'nfkd-ascii';
const SPELLED: Record<string, string> = { ß: 'ss', Ð: 'D', þ: 'th', æ: 'ae', Æ: 'AE', œ: 'oe', Œ: 'OE', ø: 'o', Ø: 'O', ł: 'l', Ł: 'L', đ: 'd', Đ: 'D', ð: 'd', Þ: 'TH', ı: 'i' };

function refNormalize(steps: readonly Step[], text: string): string {
  let t = text;
  for (const step of steps) {
    if (step === 'trim') t = t.replace(/^\s+|\s+$/g, '');
    if (step === 'collapse-spaces') t = t.split(/\s+/).join(' ');
    if (step === 'lowercase') t = t.toLowerCase();
    if (step === 'uppercase') t = t.toUpperCase();
    if (step === 'nfc') t = t.normalize('NFC');
    if (step === 'nfkd-ascii') {
      t = [...t.normalize('NFKD')].map((c) => (c.charCodeAt(0) < 128 ? c : (SPELLED[c] ?? ''))).join('');
    }
  }
  return t;
}

function refBytes(text: string, encoding: 'utf-8' | 'latin1' | 'utf-16le'): Buffer {
  if (encoding === 'utf-8') return Buffer.from(new TextEncoder().encode(text));
  const units = [...Array(text.length).keys()].map((i) => text.charCodeAt(i));
  if (encoding === 'latin1') return Buffer.from(units);
  return Buffer.from(units.flatMap((u) => [u & 0xff, u >> 8]));
}

function refPad(bytes: Buffer, padding: 'pkcs7' | 'zero' | 'none'): Buffer {
  if (padding === 'pkcs7') {
    const n = 16 - (bytes.length % 16);
    return Buffer.concat([bytes, Buffer.from(Array(n).fill(n))]);
  }
  if (padding === 'zero' && bytes.length % 16) return Buffer.concat([bytes, Buffer.alloc(16 - (bytes.length % 16))]);
  return bytes;
}

function refPresent(core: string, r: Ref): string {
  const cut = r.length === undefined ? core : core.slice(0, r.length);
  return r.prefix + (r.group > 0 ? (cut.match(new RegExp(`[^]{1,${r.group}}`, 'g')) ?? []).join(r.separator) : cut);
}

// ---------------------------------------------------------------------------------------------
// The option cases

const KEY_TEXT = 'Sup3r$ecret Key!';
const KEY_HEX = Buffer.from(KEY_TEXT, 'latin1').toString('hex');
const OTHER_KEY = 'hex:00112233445566778899aabbccddeeff';

const BASE_REQ: SerialRequest = {
  name: 'José Müller',
  email: 'jose@example.com',
  productId: 'myapp',
  orderId: 'ORD-1001',
  quantity: 1,
  test: false,
  issuedAt: '2025-03-14',
};

interface Ref {
  keyHex: string;
  mode: 'ecb' | 'cbc';
  ivHex: string;
  padding: 'pkcs7' | 'zero' | 'none';
  encoding: 'utf-8' | 'latin1' | 'utf-16le';
  output: Output;
  group: number;
  separator: string;
  prefix: string;
  length: number | undefined;
  /** The text to encrypt, per unit; null when the order must go to review instead. */
  input: (req: SerialRequest, unit: number) => string | null;
  units: (req: SerialRequest) => number;
}

const REF_DEFAULT: Ref = {
  keyHex: KEY_HEX,
  mode: 'ecb',
  ivHex: '00'.repeat(16),
  padding: 'pkcs7',
  encoding: 'utf-8',
  output: 'hex-upper',
  group: 4,
  separator: '-',
  prefix: '',
  length: undefined,
  input: (req) => req.name,
  units: () => 1,
};

interface Case {
  title: string;
  serial: Record<string, unknown>;
  legacyKey?: string;
  ref: Partial<Ref>;
  names?: readonly string[];
  request?: (name: string, i: number) => Partial<SerialRequest>;
}

const normalized = (steps: readonly Step[]) => (req: SerialRequest) => {
  const t = refNormalize(steps, req.name);
  return t.trim() === '' ? null : t;
};

const CASES: readonly Case[] = [
  {
    title: "a serial for each buyer (José Müller, accents, CJK, emoji, spaces kept) is openssl's AES-128-ECB of the UTF-8 name, PKCS#7 padded, as upper-case hex in dashed groups of 4",
    serial: { key: KEY_TEXT },
    ref: {},
  },
  {
    title: 'the older products[].key makes the same serials as serial.key',
    serial: {},
    legacyKey: KEY_TEXT,
    ref: {},
  },
  {
    title: 'a key given as hex: plus 32 hex digits is used as those 16 bytes',
    serial: { key: 'hex:000102030405060708090A0B0C0D0E0F' },
    ref: { keyHex: '000102030405060708090a0b0c0d0e0f' },
  },
  {
    title: "mode cbc without iv matches openssl's AES-128-CBC with an all-zero iv",
    serial: { key: KEY_TEXT, mode: 'cbc' },
    ref: { mode: 'cbc' },
  },
  {
    title: "mode cbc with a 16-character iv matches openssl's AES-128-CBC with that iv",
    serial: { key: KEY_TEXT, mode: 'cbc', iv: 'InitVector#2009!' },
    ref: { mode: 'cbc', ivHex: Buffer.from('InitVector#2009!').toString('hex') },
  },
  {
    title: 'mode cbc with a hex: iv and a hex: key',
    serial: { key: 'hex:2b7e151628aed2a6abf7158809cf4f3c', mode: 'cbc', iv: 'hex:f0e1d2c3b4a5968778695a4b3c2d1e0f' },
    ref: { mode: 'cbc', keyHex: '2b7e151628aed2a6abf7158809cf4f3c', ivHex: 'f0e1d2c3b4a5968778695a4b3c2d1e0f' },
  },
  {
    title: 'padding zero fills the last block with zero bytes (and adds none to a full block)',
    serial: { key: KEY_TEXT, padding: 'zero' },
    ref: { padding: 'zero' },
    names: [...NAMES, ...SIXTEEN_BYTE_NAMES.slice(0, 20)],
  },
  {
    title: 'padding zero with mode cbc',
    serial: { key: KEY_TEXT, padding: 'zero', mode: 'cbc', iv: 'hex:0f0e0d0c0b0a09080706050403020100' },
    ref: { padding: 'zero', mode: 'cbc', ivHex: '0f0e0d0c0b0a09080706050403020100' },
  },
  {
    title: 'padding none encrypts a name of exactly 16 bytes as one block',
    serial: { key: KEY_TEXT, padding: 'none' },
    ref: { padding: 'none' },
    names: SIXTEEN_BYTE_NAMES,
  },
  {
    title: 'padding none with mode cbc',
    serial: { key: KEY_TEXT, padding: 'none', mode: 'cbc', iv: 'abcdefghijklmnop' },
    ref: { padding: 'none', mode: 'cbc', ivHex: Buffer.from('abcdefghijklmnop').toString('hex') },
    names: SIXTEEN_BYTE_NAMES,
  },
  {
    title: "input {email} encrypts the buyer's email instead of the name",
    serial: { key: KEY_TEXT, input: '{email}' },
    ref: { input: (req) => req.email },
    request: (name, i) => ({ email: `${refNormalize(['nfkd-ascii'], name).replace(/\W+/g, '.').toLowerCase() || 'buyer'}${i}@example.com` }),
  },
  {
    title: 'input {name}|{product} encrypts the name, a bar and the product id',
    serial: { key: KEY_TEXT, input: '{name}|{product}' },
    ref: { input: (req) => `${req.name}|${req.productId}` },
  },
  {
    title: 'input with literal braces and the order id and quantity: {{{order}}}:{name}:{quantity}',
    serial: { key: KEY_TEXT, input: '{{{order}}}:{name}:{quantity}' },
    ref: { input: (req) => `{${req.orderId}}:${req.name}:${req.quantity}` },
    request: (_, i) => ({ orderId: `ORD-${7000 + i}`, quantity: 1 + (i % 4) }),
  },
  {
    title: 'perUnit with {name}#{unit} makes one serial per unit, units numbered from 1',
    serial: { key: KEY_TEXT, input: '{name}#{unit}', perUnit: true },
    ref: { input: (req, unit) => `${req.name}#${unit}`, units: (req) => req.quantity },
    request: (_, i) => ({ quantity: 1 + (i % 3) }),
  },
  ...(['trim', 'collapse-spaces', 'lowercase', 'uppercase', 'nfc', 'nfkd-ascii'] as const).map(
    (step): Case => ({
      title: `normalize ${step} is applied to the name before encryption`,
      serial: { key: KEY_TEXT, normalize: [step] },
      ref: { input: normalized([step]) },
    }),
  ),
  {
    title: 'normalize steps apply in order: trim, collapse-spaces, nfkd-ascii, uppercase',
    serial: { key: KEY_TEXT, normalize: ['trim', 'collapse-spaces', 'nfkd-ascii', 'uppercase'] },
    ref: { input: normalized(['trim', 'collapse-spaces', 'nfkd-ascii', 'uppercase']) },
  },
  {
    title: 'encoding latin1 encrypts one byte per character (names latin1 can write)',
    serial: { key: KEY_TEXT, encoding: 'latin1' },
    ref: { encoding: 'latin1' },
    names: LATIN1_NAMES,
  },
  {
    title: 'encoding utf-16le encrypts two bytes per UTF-16 unit (CJK and emoji too)',
    serial: { key: KEY_TEXT, encoding: 'utf-16le' },
    ref: { encoding: 'utf-16le' },
  },
  ...(['hex-lower', 'base32', 'base32-crockford', 'base64', 'base64url'] as const).map(
    (output): Case => ({
      title: `output ${output} writes the ciphertext in ${output}`,
      serial: { key: KEY_TEXT, output, ...(output === 'base64url' ? { separator: '.' } : {}) },
      ref: { output, ...(output === 'base64url' ? { separator: '.' } : {}) },
    }),
  ),
  {
    title: 'group 0 writes the serial in one piece',
    serial: { key: KEY_TEXT, group: 0 },
    ref: { group: 0 },
  },
  {
    title: 'group 5 with a space separator, a prefix, and base32',
    serial: { key: KEY_TEXT, group: 5, separator: ' ', prefix: 'MYAPP-', output: 'base32' },
    ref: { group: 5, separator: ' ', prefix: 'MYAPP-', output: 'base32' },
  },
  {
    title: 'length 20 keeps the first 20 characters, then groups them',
    serial: { key: KEY_TEXT, length: 20 },
    ref: { length: 20 },
  },
  {
    title: 'length 13 with group 5 and crockford base32',
    serial: { key: KEY_TEXT, length: 13, group: 5, output: 'base32-crockford' },
    ref: { length: 13, group: 5, output: 'base32-crockford' },
  },
  {
    title: 'a test order is encrypted with testKey, not the real key',
    serial: { key: KEY_TEXT, testKey: 'TestKeyForOrders' },
    ref: { keyHex: Buffer.from('TestKeyForOrders').toString('hex') },
    request: () => ({ test: true }),
  },
];

function productOf(c: Case, id = 'myapp'): SerialProduct {
  return { id, ...(c.legacyKey === undefined ? {} : { key: c.legacyKey }), serial: serialSettingsSchema.parse(c.serial) };
}

function requestsOf(c: Case): SerialRequest[] {
  return (c.names ?? NAMES).map((name, i) => ({ ...BASE_REQ, name, ...c.request?.(name, i) }));
}

/** Expected serials for every request (null: must be refused), from openssl and the references. */
function expectedSerials(r: Ref, reqs: readonly SerialRequest[]): (string[] | null)[] {
  const inputs = reqs.map((req) => Array.from({ length: r.units(req) }, (_, u) => r.input(req, u + 1)));
  const plains: Buffer[] = [];
  for (const list of inputs) for (const text of list) if (text !== null) plains.push(refPad(refBytes(text, r.encoding), r.padding));
  const cipher = r.mode === 'ecb' ? ecbBatch(r.keyHex, plains) : cbcBatch(r.keyHex, r.ivHex, plains);
  let k = 0;
  return inputs.map((list) => {
    if (list.some((t) => t === null)) return null;
    return list.map(() => refPresent(refEncode(cipher[k++]!, r.output), r));
  });
}

describe('AES serials match openssl for every option', () => {
  for (const c of CASES) {
    test(c.title, () => {
      const r: Ref = { ...REF_DEFAULT, ...c.ref };
      const product = productOf(c);
      const reqs = requestsOf(c);
      const expected = expectedSerials(r, reqs);
      let compared = 0;
      reqs.forEach((req, i) => {
        const want = expected[i];
        if (want === null || want === undefined) {
          assert.throws(() => makeSerials(product, req), SerialError, `a review for ${JSON.stringify(req.name)}`);
          return;
        }
        assert.deepEqual(makeSerials(product, req), want, `serial for ${JSON.stringify(req.name)}`);
        compared += want.length;
      });
      assert.ok(compared >= 200, `only ${compared} serials compared`);

      // A few names through openssl directly (its own PKCS#7 padding and CBC chaining) and basenc.
      for (const req of reqs.filter((_, i) => expected[i]).slice(0, 8)) {
        const text = r.input(req, 1)!;
        const bytes = refBytes(text, r.encoding);
        const opensslPads = r.padding === 'pkcs7';
        const cipher = opensslDirect(r.keyHex, r.mode, r.ivHex, opensslPads ? bytes : refPad(bytes, r.padding), opensslPads);
        assert.equal(makeSerials(product, req)[0], refPresent(basencEncode(cipher, r.output), r), `direct: ${JSON.stringify(text)}`);
      }
    });
  }
});

test('the encoders written in this test agree with coreutils basenc', () => {
  for (let n = 1; n <= 40; n += 3) {
    const bytes = Buffer.from(Array.from({ length: n }, () => between(0, 255)));
    for (const output of ['hex-upper', 'base32', 'base32-crockford', 'base64', 'base64url'] as const) {
      assert.equal(refEncode(bytes, output), basencEncode(bytes, output), `${output} of ${bytes.toString('hex')}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Known answers

function bytesName(hex: string): string {
  return Buffer.from(hex, 'hex').toString('latin1');
}

function rawSerial(settings: Record<string, unknown>, plaintextHex: string): string {
  const product: SerialProduct = {
    id: 'kat',
    serial: serialSettingsSchema.parse({ encoding: 'latin1', output: 'hex-lower', group: 0, ...settings }),
  };
  const [serial] = makeSerials(product, { ...BASE_REQ, productId: 'kat', name: bytesName(plaintextHex) });
  return serial ?? '';
}

const SP800_38A_KEY = 'hex:2b7e151628aed2a6abf7158809cf4f3c';
const SP800_38A_PLAIN =
  '6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710';

test('known answer: FIPS-197 appendix C.1 (AES-128)', () => {
  const key = 'hex:000102030405060708090a0b0c0d0e0f';
  assert.equal(rawSerial({ key, padding: 'none' }, '00112233445566778899aabbccddeeff'), '69c4e0d86a7b0430d8cdb78070b4c55a');
  // The test's openssl helper gives the same, so the openssl comparisons compare against real AES.
  assert.equal(
    opensslEcb('000102030405060708090a0b0c0d0e0f', Buffer.from('00112233445566778899aabbccddeeff', 'hex')).toString('hex'),
    '69c4e0d86a7b0430d8cdb78070b4c55a',
  );
});

test('known answer: NIST SP 800-38A F.1.1 ECB-AES128 (4 blocks; zero padding adds nothing to whole blocks)', () => {
  assert.equal(
    rawSerial({ key: SP800_38A_KEY, padding: 'zero' }, SP800_38A_PLAIN),
    '3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4',
  );
  assert.equal(rawSerial({ key: SP800_38A_KEY, padding: 'none' }, SP800_38A_PLAIN.slice(0, 32)), '3ad77bb40d7a3660a89ecaf32466ef97');
});

test('known answer: NIST SP 800-38A F.2.1 CBC-AES128', () => {
  const cbc = { key: SP800_38A_KEY, mode: 'cbc', iv: 'hex:000102030405060708090a0b0c0d0e0f' };
  assert.equal(
    rawSerial({ ...cbc, padding: 'zero' }, SP800_38A_PLAIN),
    '7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7',
  );
  assert.equal(rawSerial({ ...cbc, padding: 'none' }, SP800_38A_PLAIN.slice(0, 32)), '7649abac8119b246cee98e9b12e9197d');
  assert.equal(
    cbcBatch('2b7e151628aed2a6abf7158809cf4f3c', '000102030405060708090a0b0c0d0e0f', [Buffer.from(SP800_38A_PLAIN, 'hex')])[0]!.toString('hex').slice(0, 32),
    '7649abac8119b246cee98e9b12e9197d',
  );
});

test('a serial for José Müller is openssl AES-128-ECB of his UTF-8 name (a worked example)', () => {
  const product: SerialProduct = { id: 'myapp', key: '0123456789abcdef' };
  const cipher = opensslDirect(Buffer.from('0123456789abcdef').toString('hex'), 'ecb', '', Buffer.from('José Müller'), true);
  assert.equal(cipher.toString('hex'), '5e50bb644a00798c388cfdf102d72332');
  assert.deepEqual(makeSerials(product, BASE_REQ), ['5E50-BB64-4A00-798C-388C-FDF1-02D7-2332']);
});

test('nfkd-ascii strips accents and spells out ø, ß, æ: "  Søren Æbelø-Straße " gives the serial of "  Soren AEbelo-Strasse "', () => {
  const product: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, normalize: ['nfkd-ascii'] }) };
  const plain: SerialProduct = { id: 'myapp', key: KEY_TEXT };
  assert.deepEqual(
    makeSerials(product, { ...BASE_REQ, name: '  Søren Æbelø-Straße ' }),
    makeSerials(plain, { ...BASE_REQ, name: '  Soren AEbelo-Strasse ' }),
  );
  assert.deepEqual(makeSerials(product, { ...BASE_REQ, name: 'José Müller' }), makeSerials(plain, { ...BASE_REQ, name: 'Jose Muller' }));
});

// ---------------------------------------------------------------------------------------------
// Round trips

const ALPHABETS: Record<Output, string> = {
  'hex-upper': HEX,
  'hex-lower': HEX.toLowerCase(),
  base32: B32,
  'base32-crockford': CROCKFORD,
  base64: B64,
  base64url: B64URL,
};

/** The serial with one character of the code (not prefix, separator or '=') replaced by another. */
function oneCharChanged(serial: string, output: Output, prefix: string, seed: number): string {
  const alphabet = ALPHABETS[output];
  const caseless = !output.startsWith('base64');
  const positions = [...serial].flatMap((c, i) => (i >= prefix.length && alphabet.includes(c) ? [i] : []));
  const at = positions[seed % positions.length]!;
  const old = serial[at]!;
  const choices = [...alphabet].filter((c) => (caseless ? c.toUpperCase() !== old.toUpperCase() : c !== old));
  return serial.slice(0, at) + choices[seed % choices.length] + serial.slice(at + 1);
}

describe('verify accepts the serial it made and nothing else', () => {
  for (const c of CASES) {
    test(`round trip: ${c.title}`, () => {
      const r: Ref = { ...REF_DEFAULT, ...c.ref };
      const product = productOf(c);
      const otherProduct: SerialProduct = {
        id: 'otherapp',
        serial: serialSettingsSchema.parse({ ...c.serial, key: OTHER_KEY, testKey: 'hex:ffeeddccbbaa99887766554433221100' }),
      };
      const reqs = requestsOf(c).filter((req) => r.input(req, 1) !== null).slice(0, 30);
      reqs.forEach((req, i) => {
        const serials = makeSerials(product, req);
        for (const serial of serials) {
          assert.ok(verifySerial(product, req, serial), `accepts ${serial}`);
          const bare = serial.slice(r.prefix.length).split(r.separator).join('');
          assert.ok(verifySerial(product, req, ` ${bare.replace(/(.{3})/g, '$1 ')} `), `accepts ${bare} regrouped`);
          if (!r.output.startsWith('base64')) {
            assert.ok(verifySerial(product, req, serial.toLowerCase()), `accepts ${serial} in lower case`);
            assert.ok(verifySerial(product, req, serial.toUpperCase()), `accepts ${serial} in upper case`);
          }
          assert.ok(!verifySerial(product, req, oneCharChanged(serial, r.output, r.prefix, i)), `rejects ${serial} changed`);
          assert.ok(!verifySerial(otherProduct, { ...req, productId: 'otherapp' }, serial), `other product rejects ${serial}`);
        }
        const other = reqs[(i + 1) % reqs.length]!;
        if (r.input(other, 1) !== r.input(req, 1)) {
          assert.ok(!verifySerial(product, { ...req, name: other.name, email: other.email }, serials[0]!), 'rejects the serial of another name');
        }
      });
    });
  }

  test('base64 serials keep their case: a serial with one letter in the other case is rejected', () => {
    const product: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, output: 'base64', group: 0 }) };
    const [serial] = makeSerials(product, BASE_REQ);
    const at = [...serial!].findIndex((c) => /[a-zA-Z]/.test(c));
    const flipped = serial!.slice(0, at) + (serial![at] === serial![at]!.toLowerCase() ? serial![at]!.toUpperCase() : serial![at]!.toLowerCase()) + serial!.slice(at + 1);
    assert.ok(verifySerial(product, BASE_REQ, serial!));
    assert.ok(!verifySerial(product, BASE_REQ, flipped));
  });

  test('crockford serials read O as 0 and I or L as 1, as buyers type them', () => {
    const product: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, output: 'base32-crockford' }) };
    const req = NAMES.map((name) => ({ ...BASE_REQ, name })).find((q) => /[01]/.test(makeSerials(product, q)[0]!))!;
    const [serial] = makeSerials(product, req);
    const typed = serial!.replace(/0/g, 'o').replace(/1/g, 'l');
    assert.notEqual(typed, serial);
    assert.ok(verifySerial(product, req, typed));
  });

  test('a perUnit serial is accepted for an order of that many units, and unit 2 is not a serial of a 1-unit order', () => {
    const product: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, input: '{name}#{unit}', perUnit: true }) };
    const serials = makeSerials(product, { ...BASE_REQ, quantity: 3 });
    assert.equal(new Set(serials).size, 3);
    assert.ok(verifySerial(product, { ...BASE_REQ, quantity: 3 }, serials[2]!));
    assert.ok(verifySerial(product, { ...BASE_REQ, quantity: 1 }, serials[0]!));
    assert.ok(!verifySerial(product, { ...BASE_REQ, quantity: 1 }, serials[1]!));
  });

  test('one serial for an order whatever the quantity, unless perUnit', () => {
    const product: SerialProduct = { id: 'myapp', key: KEY_TEXT };
    assert.deepEqual(makeSerials(product, { ...BASE_REQ, quantity: 5 }), makeSerials(product, BASE_REQ));
  });

  test('a serial made with the test key does not verify as a real serial, and the other way round', () => {
    const product: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, testKey: 'TestKeyForOrders' }) };
    const [real] = makeSerials(product, BASE_REQ);
    const [fake] = makeSerials(product, { ...BASE_REQ, test: true });
    assert.notEqual(real, fake);
    assert.ok(!verifySerial(product, BASE_REQ, fake!));
    assert.ok(!verifySerial(product, { ...BASE_REQ, test: true }, real!));
  });
});

// ---------------------------------------------------------------------------------------------
// Orders that go to review instead, and settings that are refused

function serialError(fn: () => unknown): SerialError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SerialError) return err;
    throw err;
  }
  assert.fail('expected a SerialError');
}

describe('orders that cannot get a serial go to review with a clear reason', () => {
  const product: SerialProduct = { id: 'myapp', key: KEY_TEXT };

  test('a name that is empty after trimming', () => {
    for (const name of ['', '   ', '\t\n', '\u00a0\u3000']) {
      assert.match(serialError(() => makeSerials(product, { ...BASE_REQ, name })).message, /name to license is empty/);
    }
  });

  test('a test order when the product has no testKey: sent to review, no serial made with the real key', () => {
    const err = serialError(() => makeSerials(product, { ...BASE_REQ, test: true }));
    assert.equal(err.message, 'test order and no serial.testKey for product myapp: sent to review');
  });

  test('padding none and a name shorter or longer than 16 bytes', () => {
    const none: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, padding: 'none' }) };
    assert.match(serialError(() => makeSerials(none, BASE_REQ)).message, /padding none needs exactly 16 bytes.*"José Müller" is 13 bytes in utf-8/);
    assert.match(serialError(() => makeSerials(none, { ...BASE_REQ, name: 'Maximiliane Oberhuber' })).message, /is 21 bytes/);
  });

  test('encoding latin1 and a name latin1 cannot write', () => {
    const latin1: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, encoding: 'latin1' }) };
    assert.match(serialError(() => makeSerials(latin1, { ...BASE_REQ, name: '山田 太郎' })).message, /has "山", which latin1 cannot encode/);
    assert.match(serialError(() => makeSerials(latin1, { ...BASE_REQ, name: 'Anna 🎉' })).message, /latin1 cannot encode/);
  });

  test('nfkd-ascii and a name with no Latin letters', () => {
    const ascii: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, normalize: ['nfkd-ascii'] }) };
    assert.match(serialError(() => makeSerials(ascii, { ...BASE_REQ, name: '山田 太郎' })).message, /empty after normalize/);
  });

  test('input {email} and an order without email; {order} and no order id', () => {
    const byEmail: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, input: '{email}' }) };
    assert.match(serialError(() => makeSerials(byEmail, { ...BASE_REQ, email: '' })).message, /uses \{email\}, but the order has no email/);
    const byOrder: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, input: '{order}' }) };
    assert.match(serialError(() => makeSerials(byOrder, { ...BASE_REQ, orderId: ' ' })).message, /no order id/);
  });

  test('a broken character (lone surrogate) in the name', () => {
    assert.match(serialError(() => makeSerials(product, { ...BASE_REQ, name: 'Ann\ud800a' })).message, /lone UTF-16 surrogate/);
  });

  test('a quantity of 0, or far too many per-unit serials', () => {
    assert.match(serialError(() => makeSerials(product, { ...BASE_REQ, quantity: 0 })).message, /quantity 0/);
    const perUnit: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ key: KEY_TEXT, input: '{name}#{unit}', perUnit: true }) };
    assert.match(serialError(() => makeSerials(perUnit, { ...BASE_REQ, quantity: 5000 })).message, /more than 1000/);
  });

  test('a product without any key', () => {
    assert.match(serialError(() => makeSerials({ id: 'nokey' }, BASE_REQ)).message, /product nokey has no serial key/);
    assert.throws(() => checkSerialSettings({ id: 'nokey' }), SerialError);
    assert.doesNotThrow(() => checkSerialSettings(product));
  });

  test('two different keys, products[].key and serial.key', () => {
    const both: SerialProduct = { id: 'myapp', key: KEY_TEXT, serial: serialSettingsSchema.parse({ key: OTHER_KEY }) };
    assert.match(serialError(() => checkSerialSettings(both)).message, /two different keys/);
    const same: SerialProduct = { id: 'myapp', key: KEY_TEXT, serial: serialSettingsSchema.parse({ key: `hex:${KEY_HEX}` }) };
    assert.doesNotThrow(() => checkSerialSettings(same));
  });

  test('a bad legacy products[].key is refused without showing it', () => {
    const err = serialError(() => makeSerials({ id: 'myapp', key: 'tooShortSecret' }, BASE_REQ));
    assert.match(err.message, /products\[\]\.key must be 16 characters/);
    assert.ok(!err.message.includes('tooShortSecret'));
  });

  test('raw (unparsed) bad settings handed to makeSerials are refused as a SerialError', () => {
    const raw = { id: 'myapp', serial: { key: KEY_TEXT, mode: 'ofb' } } as unknown as SerialProduct;
    assert.match(serialError(() => makeSerials(raw, BASE_REQ)).message, /mode must be ecb or cbc/);
  });
});

describe('serial settings are checked when the config is loaded, without showing keys', () => {
  const issues = (raw: unknown): string[] => {
    const r = serialSettingsSchema.safeParse(raw);
    assert.ok(!r.success, 'expected the settings to be refused');
    for (const secret of ['tooShortSecret', 'abcdefabcdefabcdefabcdefabcdefab1', 'Sup3r$ecretKéy!!', KEY_TEXT]) {
      assert.ok(!JSON.stringify(r.error).includes(secret), 'the error shows a key');
    }
    return r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  test('defaults are the common case', () => {
    assert.deepEqual(serialSettingsSchema.parse({}), {
      scheme: 'aes',
      mode: 'ecb',
      padding: 'pkcs7',
      input: '{name}',
      normalize: [],
      encoding: 'utf-8',
      output: 'hex-upper',
      group: 4,
      separator: '-',
      prefix: '',
      perUnit: false,
    });
  });

  test('a key that is not 16 characters or hex: + 32 hex digits', () => {
    assert.match(issues({ key: 'tooShortSecret' }).join(), /key: key must be 16 characters .* or hex: followed by 32 hex digits; it has 14 characters/);
    assert.match(issues({ key: 'hex:abcdefabcdefabcdefabcdefabcdefab1' }).join(), /after hex: it has 33 characters/);
    assert.match(issues({ testKey: 'Sup3r$ecretKéy!!' }).join(), /testKey .* not all are printable ASCII/);
    assert.match(issues({ mode: 'cbc', iv: 'short' }).join(), /iv: iv must be 16 characters/);
    assert.match(issues({ key: 1234567890123456 }).join(), /key must be a text/);
  });

  test('the same key as testKey, an iv without cbc, unknown settings and values', () => {
    assert.match(issues({ key: KEY_TEXT, testKey: `hex:${KEY_HEX}` }).join(), /testKey must differ from key/);
    assert.match(issues({ iv: 'abcdefghijklmnop' }).join(), /iv is only used with mode: cbc/);
    assert.match(issues({ keys: KEY_TEXT }).join(), /unknown setting keys for serial scheme aes/);
    assert.match(issues({ padding: 'iso10126' }).join(), /padding must be pkcs7, zero or none/);
    assert.match(issues({ output: 'base58' }).join(), /output must be one of/);
    assert.match(issues({ normalize: ['trim', 'titlecase'] }).join(), /normalize steps must be among/);
    assert.match(issues({ encoding: 'utf8mb4' }).join(), /encoding must be utf-8, latin1 or utf-16le/);
    assert.match(issues({ group: -1 }).join(), /group must be 0/);
    assert.match(issues({ length: 0 }).join(), /length must be 1 or more/);
    assert.match(issues({ scheme: 'rsa' }).join(), /scheme must be aes \(the default\) or ed25519/);
    assert.match(issues({ scheme: 'ed25519', mode: 'cbc' }).join(), /unknown setting mode for serial scheme ed25519/);
  });

  test('input templates: unknown placeholders, stray braces, {unit} without perUnit and the reverse', () => {
    assert.match(issues({ input: '{name}/{country}' }).join(), /unknown placeholder \{country\}/);
    assert.match(issues({ input: '{name' }).join(), /without its closing \}/);
    assert.match(issues({ input: 'name}' }).join(), /without its opening \{/);
    assert.match(issues({ input: '' }).join(), /input must not be empty/);
    assert.match(issues({ input: '{name}#{unit}' }).join(), /perUnit: input uses \{unit\}, which needs perUnit: true/);
    assert.match(issues({ perUnit: true }).join(), /perUnit: true needs \{unit\} in input/);
  });

  test('a separator that could be part of the serial', () => {
    assert.match(issues({ output: 'hex-upper', separator: 'a' }).join(), /separator must not use characters of the hex-upper output/);
    assert.match(issues({ output: 'base64url', separator: '-' }).join(), /separator must not use/);
  });

  test('every SerialError from bad keys hides the key', () => {
    const keyed: SerialProduct[] = [
      { id: 'a', key: 'Secret-Key-17chr' + 'x' },
      { id: 'b', key: 'Sup3r$ecretKéy!!' },
      { id: 'c', serial: { key: 'hex:zz0102030405060708090a0b0c0d0e0f' } as unknown as SerialSettings },
    ];
    for (const product of keyed) {
      const message = serialError(() => makeSerials(product, BASE_REQ)).message;
      assert.ok(!/Secret-Key|Sup3r|zz0102/.test(message), message);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// ed25519

describe('ed25519 serials', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'keymailer-serial-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const real = generateKeyPair();
  const testPair = generateKeyPair();
  const stranger = generateKeyPair();
  const publicFile = path.join(dir, 'public.pem');
  writeFileSync(publicFile, real.publicKeyPem);
  const example = path.resolve(__dirname, '../../examples/verify-ed25519.js');
  const exampleSays = (serial: string, name: string, ...rest: string[]) =>
    spawnSync(process.execPath, [example, publicFile, serial, name, ...rest], { encoding: 'utf8' }).status;

  const ed = (extra: Record<string, unknown> = {}, id = 'myapp'): SerialProduct => ({
    id,
    serial: serialSettingsSchema.parse({ scheme: 'ed25519', privateKey: real.privateKeyPem, testPrivateKey: testPair.privateKeyPem, ...extra }),
  });
  const REQ: SerialRequest = { ...BASE_REQ, orderId: 'ORD-12345', quantity: 2 };

  test('a serial for José Müller carries product, name, order, date and seats, signed', () => {
    const [serial] = makeSerials(ed(), REQ);
    assert.match(serial!, /^[1-9A-HJ-NP-Za-km-z]+$/);
    assert.ok(serial!.length < 150, `${serial!.length} characters`);
    assert.deepEqual(readEd25519Serial(ed(), serial!), {
      version: 1,
      test: false,
      issuedAt: '2025-03-14',
      seats: 2,
      product: 'myapp',
      order: 'ORD-12345',
      licensee: 'José Müller',
    });
  });

  test('the README example (examples/verify-ed25519.js) accepts it with the public key alone, and rejects tampering', () => {
    const [serial] = makeSerials(ed(), REQ);
    assert.equal(exampleSays(serial!, 'José Müller'), 0);
    assert.equal(exampleSays(serial!, '  José   Müller '), 0, 'the typed name is tidied as keymailer tidies it');
    assert.equal(exampleSays(serial!, 'José Müller', 'myapp'), 0);
    assert.equal(exampleSays(serial!, 'José Müller', 'otherapp'), 1);
    assert.equal(exampleSays(serial!, 'Jose Muller'), 1);
    assert.equal(exampleSays(oneBase58CharChanged(serial!, 7), 'José Müller'), 1);
    assert.equal(exampleSays(serial!.slice(0, -1), 'José Müller'), 1);
    assert.equal(exampleSays(serial! + '0', 'José Müller'), 1, 'a character outside base58');
    const [foreign] = makeSerials({ id: 'myapp', serial: serialSettingsSchema.parse({ scheme: 'ed25519', privateKey: stranger.privateKeyPem }) }, REQ);
    assert.equal(exampleSays(foreign!, 'José Müller'), 1, 'signed by another key');
  });

  const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
  function oneBase58CharChanged(serial: string, seed: number): string {
    const at = seed % serial.length;
    const choices = [...B58].filter((c) => c !== serial[at]);
    return serial.slice(0, at) + choices[seed % choices.length] + serial.slice(at + 1);
  }

  const ED_CASES: readonly { title: string; settings: Record<string, unknown>; request?: Partial<SerialRequest> }[] = [
    { title: 'defaults', settings: {} },
    { title: 'a prefix', settings: { prefix: 'MYAPP-' } },
    { title: 'input {email}', settings: { input: '{email}' } },
    { title: 'perUnit with {name}#{unit}', settings: { input: '{name}#{unit}', perUnit: true }, request: { quantity: 3 } },
    { title: 'normalize nfkd-ascii, uppercase', settings: { normalize: ['trim', 'nfkd-ascii', 'uppercase'] } },
    { title: 'a test order, signed with the test key', settings: {}, request: { test: true } },
    { title: 'only the public key configured besides the private key file', settings: { publicKey: `file:${publicFile}` } },
  ];

  for (const c of ED_CASES) {
    test(`round trip (${c.title}): verify accepts each serial and rejects one changed character, another name or product`, () => {
      const product = ed(c.settings);
      const otherProduct = ed(c.settings, 'otherapp');
      // Names that nfkd-ascii leaves empty go to review; that is tested elsewhere.
      const orders = NAMES.slice(0, 45)
        .map((name, i) => ({ ...BASE_REQ, name, email: `buyer${i}@example.com`, ...c.request }))
        .flatMap((req) => {
          try {
            return [{ req, serials: makeSerials(product, req) }];
          } catch (err) {
            assert.ok(err instanceof SerialError && /empty after normalize/.test(err.message), String(err));
            return [];
          }
        });
      assert.ok(orders.length >= 35);
      orders.forEach(({ req, serials }, i) => {
        for (const serial of serials) {
          assert.ok(verifySerial(product, req, serial), `accepts the serial of ${JSON.stringify(req.name)}`);
          assert.ok(!verifySerial(product, req, oneBase58CharChanged(serial, i + 11)), 'rejects one character changed');
          assert.ok(!verifySerial(otherProduct, { ...req, productId: 'otherapp' }, serial), 'rejects it for another product');
          assert.ok(!verifySerial(product, { ...req, test: !req.test }, serial), 'real and test serials do not mix');
          const other = orders[(i + 7) % orders.length]!.req;
          assert.ok(!verifySerial(product, { ...req, name: other.name, email: other.email }, serial), 'rejects another name');
        }
      });
    });
  }

  test('perUnit gives each unit its own serial, one seat each; otherwise one serial with all the seats', () => {
    const perUnit = makeSerials(ed({ input: '{name}#{unit}', perUnit: true }), { ...REQ, quantity: 3 });
    assert.equal(new Set(perUnit).size, 3);
    assert.deepEqual(perUnit.map((s) => readEd25519Serial(ed({ input: '{name}#{unit}', perUnit: true }), s)?.seats), [1, 1, 1]);
    const whole = makeSerials(ed(), { ...REQ, quantity: 3 });
    assert.equal(whole.length, 1);
    assert.equal(readEd25519Serial(ed(), whole[0]!)?.seats, 3);
  });

  test('a test order is signed with testPrivateKey and flagged; the real public key and the example reject it', () => {
    const [serial] = makeSerials(ed(), { ...REQ, test: true });
    assert.equal(readEd25519Serial(ed(), serial!), null, 'not valid under the real public key');
    assert.equal(readEd25519Serial(ed(), serial!, true)?.test, true);
    assert.equal(exampleSays(serial!, 'José Müller'), 1);
  });

  test('a test order without testPrivateKey goes to review', () => {
    const product: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ scheme: 'ed25519', privateKey: real.privateKeyPem }) };
    assert.equal(serialError(() => makeSerials(product, { ...REQ, test: true })).message, 'test order and no serial.testPrivateKey for product myapp: sent to review');
  });

  test('keys: from a file:, from an environment variable with \\n for newlines, and cached once read', () => {
    const file = path.join(dir, 'private.pem');
    writeFileSync(file, real.privateKeyPem, { mode: 0o600 });
    const fromFile: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ scheme: 'ed25519', privateKey: `file:${file}` }) };
    const [serial] = makeSerials(fromFile, BASE_REQ);
    rmSync(file);
    assert.deepEqual(makeSerials(fromFile, BASE_REQ), [serial], 'the key was read once and kept');
    const fromEnv: SerialProduct = {
      id: 'myapp',
      serial: serialSettingsSchema.parse({ scheme: 'ed25519', privateKey: real.privateKeyPem.trim().replace(/\n/g, '\\n') }),
    };
    assert.deepEqual(makeSerials(fromEnv, BASE_REQ), [serial], 'ed25519 signatures are deterministic');
    const verifyOnly: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ scheme: 'ed25519', publicKey: real.publicKeyPem }) };
    assert.ok(verifySerial(verifyOnly, BASE_REQ, serial!), 'the public key alone verifies');
    assert.match(serialError(() => makeSerials(verifyOnly, BASE_REQ)).message, /no serial.privateKey/);
  });

  test('unusable key settings are refused by checkSerialSettings, without showing key material', () => {
    const rsa = generateRsaPem();
    const bad: [Record<string, unknown>, RegExp][] = [
      [{}, /has no serial.privateKey/],
      [{ privateKey: 'file:/nonexistent/key.pem' }, /cannot read privateKey file \/nonexistent\/key.pem \(ENOENT\)/],
      [{ privateKey: '-----BEGIN PRIVATE KEY-----\nAAAAsecretish\n-----END PRIVATE KEY-----' }, /privateKey is not a readable PEM private key/],
      [{ privateKey: rsa }, /privateKey is a rsa key, not an Ed25519 key/],
      [{ privateKey: real.privateKeyPem, publicKey: stranger.publicKeyPem }, /publicKey does not belong to privateKey/],
      [{ privateKey: real.privateKeyPem, publicKey: stranger.privateKeyPem }, /publicKey holds a private key/],
      [{ privateKey: real.privateKeyPem, testPrivateKey: real.privateKeyPem }, /test key pair must differ/],
      [{ privateKey: real.privateKeyPem, testPublicKey: testPair.publicKeyPem }, /testPublicKey but no serial.testPrivateKey/],
    ];
    for (const [settings, reason] of bad) {
      const product: SerialProduct = { id: 'myapp', serial: serialSettingsSchema.parse({ scheme: 'ed25519', ...settings }) };
      const message = serialError(() => checkSerialSettings(product)).message;
      assert.match(message, reason);
      assert.ok(!/BEGIN|AAAA|MC4C|MCow/.test(message), message);
    }
    assert.doesNotThrow(() => checkSerialSettings(ed()));
    assert.match(serialError(() => makeSerials({ id: 'myapp', key: KEY_TEXT, serial: ed().serial! }, BASE_REQ)).message, /products\[\]\.key is an AES key/);
  });

  test('a bad issue date is refused', () => {
    assert.match(serialError(() => makeSerials(ed(), { ...REQ, issuedAt: '2025-02-30' })).message, /issue date "2025-02-30"/);
  });

  test('generateKeyPair gives PEM texts of a matching Ed25519 pair', () => {
    assert.match(real.privateKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(real.publicKeyPem, /^-----BEGIN PUBLIC KEY-----\n/);
    const product: SerialProduct = {
      id: 'myapp',
      serial: serialSettingsSchema.parse({ scheme: 'ed25519', privateKey: real.privateKeyPem, publicKey: real.publicKeyPem }),
    };
    assert.doesNotThrow(() => checkSerialSettings(product));
  });
});

function generateRsaPem(): string {
  // Generated here so the test needs no fixture; 1024 bits is enough to be refused quickly.
  return generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

// ---------------------------------------------------------------------------------------------
// Speed

test('AES-ECB serials for short names are made at 50,000 a second or more (target ~100k)', (t) => {
  const product: SerialProduct = { id: 'myapp', key: KEY_TEXT };
  const req = { ...BASE_REQ };
  for (let i = 0; i < 5000; i++) makeSerials(product, req);
  // The best of several short windows, so a busy machine does not fail the test by itself.
  let best = 0;
  for (let window = 0; window < 6; window++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < 5000; i++) makeSerials(product, req);
    best = Math.max(best, Math.round(5000 / (Number(process.hrtime.bigint() - start) / 1e9)));
  }
  t.diagnostic(`${best} AES serials per second`);
  assert.ok(best >= 50_000, `${best} per second`);
});
