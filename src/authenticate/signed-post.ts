/**
 * Avangate-style signed POSTs: the order fields Avangate (2Checkout) sends to a key generator, and
 * their HASH (HMAC-MD5 of every value but HASH's, each preceded by its byte length, in the order
 * PHP's `$_POST` holds them). See shared/notes/avangate.md for the protocol.
 *
 * Avangate's reference verifier is PHP walking `$_POST`, so the order and grouping of values is
 * whatever PHP's form parser makes of the body, and a HASH that PHP would accept must be accepted
 * here. `parsePostedFields` therefore rebuilds `$_POST` the way PHP 8 does
 * (main/php_variables.c: add_post_var + php_register_variable_ex):
 *
 * - The body is split on `&` only (`;` is data). Each piece is `name=value`; a piece without `=`
 *   is a name with an empty value. `+` is a space; `%XX` is one byte; the bytes are then UTF-8.
 * - A name is cut at its first NUL byte (PHP handles names as C strings); leading spaces are
 *   dropped; spaces and dots before the first `[` become `_` (`a.b` and `a_b` are one field).
 *   A name that ends up empty (`=x`, `[]=x`, an empty piece between `&&`) registers nothing.
 * - `X[]` appends to array X, `X[k]` sets key k of it (`X[0]` is integer key 0, as PHP turns a
 *   canonical decimal key into an integer), `X[a][b]` nests. The array takes the place of the
 *   FIRST appearance of X; later `X[...]` add to it; a repeated `X[k]` replaces its value in
 *   place. Text after a `]` that does not open another `[` is ignored (`X[a]b` is `X[a]`). A `[`
 *   that is never closed is no array: `X[a` is the plain field `X_a` (PHP 8).
 * - A repeated plain name keeps the LAST value at the position of the FIRST appearance (PHP's
 *   hash update keeps the slot). A plain name after an array of that name replaces the array in
 *   place, and an array after a plain value replaces the value in place, exactly like PHP.
 * - Appending after integer keys uses the largest integer key + 1 (PHP 8: also after a negative
 *   key, `X[-5]` then `X[]` gives key -4).
 *
 * Where PHP is lenient and we are not (each throws MalformedPostError, so the caller answers 400
 * instead of computing a HASH over data PHP and we might read differently):
 * - a `%` not followed by two hex digits (PHP keeps it literally; Avangate always encodes `%`);
 * - bytes that are not valid UTF-8 after decoding, in a name or a value (PHP does not look; but
 *   our values are strings, and a lossy decode would silently change the byte lengths that the
 *   HASH covers; Avangate posts UTF-8). A leading byte-order mark is kept as data, not stripped;
 * - an empty body, or a body in which no field registers (PHP would give an empty `$_POST`);
 * - more than 1000 `&`-separated pieces (PHP's default max_input_vars: PHP would stop parsing
 *   there and sign only part of the fields) or array nesting deeper than 64 (PHP's default
 *   max_input_nesting_level: PHP drops the whole variable);
 * - `X[]` after integer key 9223372036854775807 (PHP drops the value with a warning).
 * Checked against PHP 8.2's real `$_POST` (php -S) on a few hundred tricky and random bodies: the
 * same fields, values, order and HASH for every body not rejected above.
 * A body without HASH is NOT malformed: `verifyHash` reports it and the caller decides.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { isUtf8 } from 'node:buffer';

/**
 * One top-level entry of `$_POST`, in PHP's order. `name` is PHP's key (`X` for fields posted as
 * `X[]`); `values` is the value of a plain field as a one-element list, or an array's values
 * flattened in PHP's iteration order (nested arrays depth-first).
 */
export type PostedField = { name: string; values: string[]; isArray: boolean };

/** The body is not a form PHP and keymailer would read alike: answer 400, never 200. */
export class MalformedPostError extends Error {
  override readonly name = 'MalformedPostError';
  /** Stable code for callers that branch on it. */
  readonly code = 'AVANGATE_MALFORMED_POST';
}

/** PHP's default max_input_vars. */
const MAX_PIECES = 1000;
/** PHP's default max_input_nesting_level. */
const MAX_NESTING = 64;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

type PhpValue = string | PhpArray;

/** A PHP array as `$_POST` uses it: insertion-ordered keys; `Map.set` on a key keeps its slot, like PHP. */
class PhpArray {
  readonly entries = new Map<string, PhpValue>();
  /** PHP's nNextFreeElement; null until an integer key is used (then `[]` starts at 0). */
  private nextFree: bigint | null = null;

  set(key: string, value: PhpValue): void {
    const n = integerKey(key);
    if (n !== null && (this.nextFree === null || n >= this.nextFree)) {
      this.nextFree = n < INT64_MAX ? n + 1n : INT64_MAX;
    }
    this.entries.set(key, value);
  }

  /** `$a[] = value`; false when PHP would refuse (the next key is already taken at INT64_MAX). */
  append(value: PhpValue): boolean {
    const key = String(this.nextFree ?? 0n);
    if (this.entries.has(key)) return false;
    this.set(key, value);
    return true;
  }
}

/**
 * PHP turns a key that is a canonical decimal integer within 64 bits into an integer key. Keys
 * compare equal exactly when their strings do either way; the integer matters only for `[]`.
 */
function integerKey(key: string): bigint | null {
  const first = key.charCodeAt(0);
  if (first !== 0x2d && (first < 0x30 || first > 0x39)) return null;
  if (!/^(?:0|-?[1-9][0-9]{0,19})$/.test(key)) return null;
  const n = BigInt(key);
  return n >= INT64_MIN && n <= INT64_MAX ? n : null;
}

/**
 * Decode one name or value. `raw` is the component's bytes as a latin1 string (one character per
 * byte): percent-decode it (`+` is a space), then read the bytes as strict UTF-8 (no overlong
 * forms, no surrogates), since a lossy decode to U+FFFD would change the byte lengths the HASH
 * covers. A leading byte-order mark is kept as data.
 */
function decodeComponent(raw: string, offset: number, what: string): string {
  // Most of Avangate's fields are plain ASCII: nothing to do.
  if (!/[%+\x80-\xff]/.test(raw)) return raw;
  const bad = /%(?![0-9A-Fa-f]{2})/.exec(raw);
  if (bad !== null) {
    const shown = raw
      .slice(bad.index, bad.index + 3)
      .replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
    throw new MalformedPostError(`bad percent escape "${shown}" in ${what} at byte ${offset + bad.index}`);
  }
  const spaced = raw.includes('+') ? raw.replace(/\+/g, ' ') : raw;
  if (!/[\x80-\xff]/.test(spaced)) {
    // Only escapes: decodeURIComponent is strict UTF-8 and fast.
    try {
      return decodeURIComponent(spaced);
    } catch {
      throw new MalformedPostError(`invalid UTF-8 in ${what} at byte ${offset}`);
    }
  }
  // Raw bytes above 0x7F (an unencoded UTF-8 body): decode escapes into bytes, then validate.
  const bytes = Buffer.from(spaced.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1');
  if (!isUtf8(bytes)) throw new MalformedPostError(`invalid UTF-8 in ${what} at byte ${offset}`);
  return bytes.toString('utf8');
}

/**
 * Register one decoded name/value pair into `$_POST`, as php_register_variable_ex does.
 * Returns false when PHP registers nothing (empty name).
 */
function register(post: PhpArray, rawName: string, value: string): boolean {
  if (rawName !== '' && !/[\0 .[]/.test(rawName)) {
    post.set(rawName, value); // the usual case: a plain name PHP keeps as it is
    return true;
  }
  let name = rawName;
  const nul = name.indexOf('\0');
  if (nul >= 0) name = name.slice(0, nul);
  name = name.replace(/^ +/, '');

  const bracket = name.indexOf('[');
  const base = (bracket < 0 ? name : name.slice(0, bracket)).replace(/[ .]/g, '_');
  if (base === '') return false;
  if (bracket < 0) {
    post.set(base, value);
    return true;
  }

  // Walk the `[index]` parts. `keys` holds one entry per level; null means `[]` (append).
  const keys: (string | null)[] = [];
  let pos = bracket; // at a '['
  for (;;) {
    const close = name.indexOf(']', pos + 1);
    if (close < 0) {
      if (keys.length === 0) {
        // Never closed at the first level: PHP 8 un-terminates the name and makes it plain,
        // turning that '[' and any later ' ', '.', '[' into '_'.
        post.set(base + '_' + name.slice(pos + 1).replace(/[ .[]/g, '_'), value);
        return true;
      }
      break; // deeper: PHP stops at the levels it has (`X[a][b` is `X[a]`)
    }
    keys.push(close === pos + 1 ? null : name.slice(pos + 1, close));
    if (keys.length > MAX_NESTING) {
      throw new MalformedPostError(`field ${JSON.stringify(base)} nests arrays deeper than ${MAX_NESTING} levels`);
    }
    if (name[close + 1] !== '[') break; // anything else after ']' is ignored
    pos = close + 1;
  }

  // Create or convert the containers level by level; a non-array in the way becomes an empty
  // array in the same slot (PHP drops the old value).
  let container = post;
  let key: string | null = base;
  for (const next of keys) {
    let child: PhpArray;
    if (key === null) {
      child = new PhpArray();
      if (!container.append(child)) throw new MalformedPostError(`field ${JSON.stringify(base)} has no free array index`);
    } else {
      const existing = container.entries.get(key);
      if (existing instanceof PhpArray) {
        child = existing;
      } else {
        child = new PhpArray();
        container.set(key, child);
      }
    }
    container = child;
    key = next;
  }
  if (key === null) {
    if (!container.append(value)) throw new MalformedPostError(`field ${JSON.stringify(base)} has no free array index`);
  } else {
    container.set(key, value);
  }
  return true;
}

function flatten(value: PhpValue, into: string[]): void {
  if (typeof value === 'string') {
    into.push(value);
    return;
  }
  for (const inner of value.entries.values()) flatten(inner, into);
}

function toFields(post: PhpArray): PostedField[] {
  const fields: PostedField[] = [];
  for (const [name, value] of post.entries) {
    const values: string[] = [];
    flatten(value, values);
    fields.push({ name, values, isArray: typeof value !== 'string' });
  }
  return fields;
}

/**
 * Parse an application/x-www-form-urlencoded body into `$_POST`'s entries, in PHP's order (see the
 * module comment for every rule). A string body is taken as its UTF-8 bytes.
 * @throws MalformedPostError for a bad `%` escape, invalid UTF-8, an empty body or one that
 *   registers no field, too many pieces or too deep nesting.
 */
export function parsePostedFields(body: Buffer | string): PostedField[] {
  if (typeof body === 'string' && /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(body)) {
    throw new MalformedPostError('body holds an unpaired UTF-16 surrogate');
  }
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  if (bytes.length === 0) throw new MalformedPostError('empty body');

  // One character per byte: string search and slicing are much faster than Buffer's here.
  const text = bytes.toString('latin1');
  const post = new PhpArray();
  let pieces = 0;
  let registered = 0;
  let start = 0;
  let nextEq = text.indexOf('='); // the first '=' not before `start`, -1 when none is left
  // A trailing '&' ends the body without another piece (PHP stops when nothing is left).
  while (start < text.length) {
    let end = text.indexOf('&', start);
    if (end < 0) end = text.length;
    if (++pieces > MAX_PIECES) {
      throw new MalformedPostError(`more than ${MAX_PIECES} fields (PHP's max_input_vars: PHP stops reading the form there)`);
    }
    // Searched again only once passed, so a body of many '='-less pieces stays linear.
    if (nextEq >= 0 && nextEq < start) nextEq = text.indexOf('=', start);
    const eq = nextEq >= 0 && nextEq < end ? nextEq : -1;
    const name = decodeComponent(text.slice(start, eq < 0 ? end : eq), start, `the name of field ${pieces}`);
    const value = eq < 0 ? '' : decodeComponent(text.slice(eq + 1, end), eq + 1, `the value of field ${pieces}`);
    if (register(post, name, value)) registered++;
    start = end + 1;
  }
  if (registered === 0) throw new MalformedPostError('no fields in the body');
  return toFields(post);
}

/**
 * Build the fields from already-decoded `[name, value]` pairs with the same PHP rules as
 * `parsePostedFields` (names like `X[]` group into arrays, a repeated plain name keeps its last
 * value at its first place). Pairs with an empty name are dropped, as PHP drops them.
 */
export function fieldsFromPairs(pairs: Iterable<readonly [string, string]>): PostedField[] {
  const post = new PhpArray();
  for (const [name, value] of pairs) register(post, name, value);
  return toFields(post);
}

/**
 * The bytes that HASH signs: every value of every field but HASH, in order, arrays flattened in
 * place, each value preceded by its length in bytes (PHP strlen) in decimal.
 */
export function hashSource(fields: readonly PostedField[]): Buffer {
  return Buffer.from(sourceText(fields), 'utf8');
}

/** hashSource as a string (its UTF-8 encoding is the source); one allocation instead of two per value. */
function sourceText(fields: readonly PostedField[]): string {
  let source = '';
  for (const field of fields) {
    if (field.name === 'HASH') continue;
    for (const value of field.values) source += `${Buffer.byteLength(value, 'utf8')}${value}`;
  }
  return source;
}

/** The HASH Avangate would send for these fields: lower-case hex HMAC-MD5 keyed with the secret (UTF-8). */
export function computeHash(fields: readonly PostedField[], secret: string): string {
  return createHmac('md5', secret).update(sourceText(fields), 'utf8').digest('hex');
}

export type HashVerdict = { ok: true } | { ok: false; reason: 'missing HASH' | 'bad HASH' };

/**
 * Check the posted HASH against the one computed with the secret, in constant time. The posted
 * HASH must equal the lower-case hex exactly (as PHP's string comparison of Avangate's reference
 * code needs); a HASH of the wrong length, an upper-case one or a `HASH[]` array is 'bad HASH'.
 * 'missing HASH' only when no field is named HASH at all.
 */
export function verifyHash(fields: readonly PostedField[], secret: string): HashVerdict {
  const posted = fields.find((field) => field.name === 'HASH');
  if (posted === undefined) return { ok: false, reason: 'missing HASH' };
  const expected = Buffer.from(computeHash(fields, secret), 'latin1');
  const got = posted.isArray ? undefined : posted.values[0];
  if (got === undefined) return { ok: false, reason: 'bad HASH' };
  const gotBytes = Buffer.from(got, 'utf8');
  // timingSafeEqual throws on unequal lengths; the length of a valid HASH is public anyway.
  if (gotBytes.length !== expected.length) return { ok: false, reason: 'bad HASH' };
  return timingSafeEqual(gotBytes, expected) ? { ok: true } : { ok: false, reason: 'bad HASH' };
}

/**
 * Strip one trailing `[]` so `fieldValues(fields, 'CUSTOM_FIELD_TEXT[]')` finds PHP's key
 * `CUSTOM_FIELD_TEXT`.
 */
function lookupName(name: string): string {
  return name.endsWith('[]') ? name.slice(0, -2) : name;
}

/** The value of a plain field; undefined when it is absent or an array. */
export function fieldValue(fields: readonly PostedField[], name: string): string | undefined {
  const field = fields.find((candidate) => candidate.name === name);
  return field === undefined || field.isArray ? undefined : field.values[0];
}

/** Every value of a field: an array's values, a plain field's one value, or [] when absent. */
export function fieldValues(fields: readonly PostedField[], name: string): string[] {
  const key = lookupName(name);
  const field = fields.find((candidate) => candidate.name === key);
  return field === undefined ? [] : [...field.values];
}

/** PHP urlencode-style: everything but A-Z a-z 0-9 - _ . is escaped, space as `+`. */
function formEncode(text: string): string {
  let encoded: string;
  try {
    encoded = encodeURIComponent(text);
  } catch {
    throw new TypeError('a field name or value holds an unpaired UTF-16 surrogate');
  }
  return encoded
    .replace(/[!'()*~]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
    .replace(/%20/g, '+');
}

/**
 * The urlencoded body Avangate would post for these fields: the fields in order (arrays as
 * repeated `NAME[]=value`), any HASH field left out, and `HASH=<computeHash>` appended.
 * @throws TypeError when the body would not parse back to the same signed values (two fields
 *   PHP would merge, like `a.b` and `a_b`, or an empty name), so a signature is never handed out
 *   for a form the receiver reads differently.
 */
export function signFields(fields: readonly PostedField[], secret: string): string {
  const unsigned = fields.filter((field) => field.name !== 'HASH');
  const pieces: string[] = [];
  for (const field of unsigned) {
    const name = formEncode(field.name);
    if (field.isArray) {
      for (const value of field.values) pieces.push(`${name}[]=${formEncode(value)}`);
    } else {
      pieces.push(`${name}=${formEncode(field.values[0] ?? '')}`);
    }
  }
  const hash = computeHash(unsigned, secret);
  const body = [...pieces, `HASH=${hash}`].join('&');

  const reparsed = parsePostedFields(body);
  if (!hashSource(reparsed).equals(hashSource(unsigned)) || fieldValue(reparsed, 'HASH') !== hash) {
    throw new TypeError('these fields do not survive PHP form parsing unchanged (duplicate or empty names?)');
  }
  return body;
}
