/**
 * What a seller observes of Avangate's signed POSTs: which requests keymailer accepts as Avangate's,
 * which it refuses, and that it reads the fields as PHP (Avangate's reference verifier) does.
 *
 * Expected HASHes never come from the module under test: each test lists its own [name, value]
 * pairs in the order PHP's $_POST holds them, builds the source string itself and asks
 * `openssl dgst -md5 -hmac` for the HMAC.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto = require('node:crypto');
import {
  computeHash,
  fieldsFromPairs,
  fieldValue,
  fieldValues,
  hashSource,
  MalformedPostError,
  parsePostedFields,
  signFields,
  verifyHash,
  type PostedField,
} from '../src/authenticate/signed-post';

const SECRET = 'SECRETKEY';

type Pair = [string, string];

/** The test's own source string: each value but HASH's preceded by its UTF-8 byte length. */
function sourceOf(pairs: readonly Pair[]): string {
  return pairs
    .filter(([name]) => name !== 'HASH')
    .map(([, value]) => `${Buffer.byteLength(value, 'utf8')}${value}`)
    .join('');
}

/** HMAC-MD5 by openssl, not by node:crypto. */
function opensslHmac(secret: string, source: string): string {
  const output = execFileSync('/usr/bin/openssl', ['dgst', '-md5', '-hmac', secret], {
    input: Buffer.from(source, 'utf8'),
  }).toString('latin1');
  const hex = /([0-9a-f]{32})\s*$/.exec(output)?.[1];
  assert.ok(hex, `unexpected openssl output: ${output}`);
  return hex;
}

/** The urlencoded body of pairs as a form would post them (URLSearchParams, not the module). */
function bodyOf(pairs: readonly Pair[]): string {
  return new URLSearchParams(pairs.map(([name, value]): [string, string] => [name, value])).toString();
}

function names(fields: readonly PostedField[]): string[] {
  return fields.map((field) => field.name);
}

const DOCUMENTED: Pair[] = [
  ['PID', '189645'],
  ['PCODE', '123'],
  ['REFNO', '1250747'],
  ['REFNOEXT', ''],
  ['TESTORDER', 'YES'],
  ['QUANTITY', '1'],
  ['FIRSTNAME', 'John'],
  ['LASTNAME', 'Doe'],
  ['COMPANY', ''],
  ['EMAIL', 'info@avangate.com'],
  ['LANG', 'en'],
  ['COUNTRY', 'Netherlands'],
  ['COUNTRY_CODE', 'nl'],
  ['CITY', 'Amstelveen'],
  ['ZIPCODE', '1181'],
];
const DOCUMENTED_SOURCE =
  '618964531237125074703YES114John3Doe017info@avangate.com2en11Netherlands2nl10Amstelveen41181';
const DOCUMENTED_HASH = '364b47f4a21def26ee7758f697ca4bd9';

/** Post `posted` (in wire order) and check keymailer signs exactly `phpOrder` (in $_POST order). */
function assertSignsLikePhp(posted: readonly Pair[], phpOrder: readonly Pair[]): PostedField[] {
  const expectedHash = opensslHmac(SECRET, sourceOf(phpOrder));
  const fields = parsePostedFields(`${bodyOf(posted)}&HASH=${expectedHash}`);
  assert.equal(hashSource(fields).toString('utf8'), sourceOf(phpOrder));
  assert.equal(computeHash(fields, SECRET), expectedHash);
  assert.deepEqual(verifyHash(fields, SECRET), { ok: true });
  return fields;
}

test("Avangate's documented example gives its documented source string and HASH", () => {
  assert.equal(sourceOf(DOCUMENTED), DOCUMENTED_SOURCE);
  assert.equal(opensslHmac(SECRET, DOCUMENTED_SOURCE), DOCUMENTED_HASH);

  const fields = parsePostedFields(`${bodyOf(DOCUMENTED)}&HASH=${DOCUMENTED_HASH}`);
  assert.equal(hashSource(fields).toString('latin1'), DOCUMENTED_SOURCE);
  assert.equal(computeHash(fields, SECRET), DOCUMENTED_HASH);
  assert.deepEqual(verifyHash(fields, SECRET), { ok: true });
  assert.equal(fieldValue(fields, 'REFNO'), '1250747');
  assert.equal(fieldValue(fields, 'HASH'), DOCUMENTED_HASH);
});

test("the same order is accepted whether the body arrives as bytes or as a string", () => {
  const body = `${bodyOf(DOCUMENTED)}&HASH=${DOCUMENTED_HASH}`;
  assert.deepEqual(parsePostedFields(Buffer.from(body, 'latin1')), parsePostedFields(body));
});

test('a buyer named in UTF-8 is signed over byte lengths, as PHP strlen counts them', () => {
  const pairs: Pair[] = [
    ['PID', '189645'],
    ['FIRSTNAME', 'Jörg Müller'],
    ['LASTNAME', '李小龍'],
    ['COMPANY', 'Café 🎉 GmbH'],
    ['CITY', 'Zürich'],
    ['INFO', '👨‍👩‍👧 family pack'],
  ];
  const fields = assertSignsLikePhp(pairs, pairs);
  const source = hashSource(fields).toString('utf8');
  assert.ok(source.includes('13Jörg Müller'), source); // 11 characters, 13 bytes
  assert.ok(source.includes('9李小龍'), source); // 3 characters, 9 bytes
  assert.ok(source.includes('15Café 🎉 GmbH'), source); // 11 characters: é is 2 bytes, the emoji 4
  assert.equal(fieldValue(fields, 'LASTNAME'), '李小龍');
});

test('raw (unencoded) UTF-8 bytes in the body are read like percent-encoded ones', () => {
  const raw = Buffer.from('FIRSTNAME=Jörg&LASTNAME=李小龍', 'utf8');
  const encoded = bodyOf([
    ['FIRSTNAME', 'Jörg'],
    ['LASTNAME', '李小龍'],
  ]);
  assert.deepEqual(parsePostedFields(raw), parsePostedFields(encoded));
});

test('empty fields are signed as a 0 length, including a field posted without "="', () => {
  const pairs: Pair[] = [
    ['REFNOEXT', ''],
    ['COMPANY', ''],
    ['PARTNER_CODE', ''],
    ['EMAIL', 'a@b.c'],
  ];
  const fields = assertSignsLikePhp(pairs, pairs);
  assert.equal(hashSource(fields).toString('utf8'), '0005a@b.c');

  const withoutEquals = parsePostedFields('REFNOEXT&COMPANY=&EMAIL=a%40b.c');
  assert.deepEqual(withoutEquals, [
    { name: 'REFNOEXT', values: [''], isArray: false },
    { name: 'COMPANY', values: [''], isArray: false },
    { name: 'EMAIL', values: ['a@b.c'], isArray: false },
  ]);
});

test('"+" is a space and "%2B" a plus sign', () => {
  const fields = parsePostedFields('INFO=one+two%2Bthree&CITY=New%20York');
  assert.equal(fieldValue(fields, 'INFO'), 'one two+three');
  assert.equal(fieldValue(fields, 'CITY'), 'New York');
});

test('custom fields and price options posted interleaved are signed grouped at their first appearance', () => {
  const posted: Pair[] = [
    ['PID', '189645'],
    ['CUSTOM_FIELD_TEXT[]', 'Seats'],
    ['PCODE', 'PRO'],
    ['CUSTOM_FIELD_VALUE[]', '5'],
    ['PRODUCT_OPTIONS_189645_TEXT[]', 'Colour'],
    ['CUSTOM_FIELD_TEXT[]', 'Department'],
    ['REFNO', '1250747'],
    ['CUSTOM_FIELD_VALUE[]', 'Sales & Marketing'],
    ['PRODUCT_OPTIONS_189645_TEXT[]', 'Größe'],
    ['PRODUCT_OPTIONS_189645_VALUE[]', 'blue'],
    ['QUANTITY', '2'],
    ['PRODUCT_OPTIONS_189645_VALUE[]', ''],
    ['PRODUCT_OPTIONS_189645_OPERATOR[]', 'SUBSTRACT'],
  ];
  const phpOrder: Pair[] = [
    ['PID', '189645'],
    ['CUSTOM_FIELD_TEXT[]', 'Seats'],
    ['CUSTOM_FIELD_TEXT[]', 'Department'],
    ['PCODE', 'PRO'],
    ['CUSTOM_FIELD_VALUE[]', '5'],
    ['CUSTOM_FIELD_VALUE[]', 'Sales & Marketing'],
    ['PRODUCT_OPTIONS_189645_TEXT[]', 'Colour'],
    ['PRODUCT_OPTIONS_189645_TEXT[]', 'Größe'],
    ['REFNO', '1250747'],
    ['PRODUCT_OPTIONS_189645_VALUE[]', 'blue'],
    ['PRODUCT_OPTIONS_189645_VALUE[]', ''],
    ['QUANTITY', '2'],
    ['PRODUCT_OPTIONS_189645_OPERATOR[]', 'SUBSTRACT'],
  ];
  const fields = assertSignsLikePhp(posted, phpOrder);
  assert.deepEqual(names(fields), [
    'PID',
    'CUSTOM_FIELD_TEXT',
    'PCODE',
    'CUSTOM_FIELD_VALUE',
    'PRODUCT_OPTIONS_189645_TEXT',
    'REFNO',
    'PRODUCT_OPTIONS_189645_VALUE',
    'QUANTITY',
    'PRODUCT_OPTIONS_189645_OPERATOR',
    'HASH',
  ]);
  assert.deepEqual(fieldValues(fields, 'CUSTOM_FIELD_TEXT'), ['Seats', 'Department']);
  assert.deepEqual(fieldValues(fields, 'CUSTOM_FIELD_TEXT[]'), ['Seats', 'Department']);
  assert.equal(fieldValue(fields, 'CUSTOM_FIELD_TEXT'), undefined, 'an array has no single value');
  assert.deepEqual(fieldValues(fields, 'PCODE'), ['PRO']);
  assert.deepEqual(fieldValues(fields, 'NOT_POSTED'), []);
  assert.equal(fieldValue(fields, 'NOT_POSTED'), undefined);
});

test('array brackets sent percent-encoded are still arrays', () => {
  const fields = parsePostedFields('A%5B%5D=1&B=2&A%5B%5D=3');
  assert.deepEqual(fields, [
    { name: 'A', values: ['1', '3'], isArray: true },
    { name: 'B', values: ['2'], isArray: false },
  ]);
});

test('fields named like numbers keep their place and stay distinct from look-alikes', () => {
  const pairs: Pair[] = [
    ['PID', '1'],
    ['123', 'numeric name'],
    ['0123', 'leading zero'],
    ['0', 'zero'],
    ['-1', 'minus one'],
  ];
  const fields = assertSignsLikePhp(pairs, pairs);
  assert.deepEqual(names(fields), ['PID', '123', '0123', '0', '-1', 'HASH']);
});

test('a plain field posted twice is signed once, with its last value at its first place (as PHP)', () => {
  const posted: Pair[] = [
    ['PID', '1'],
    ['EMAIL', 'first@example.com'],
    ['LANG', 'en'],
    ['EMAIL', 'second@example.com'],
  ];
  const phpOrder: Pair[] = [
    ['PID', '1'],
    ['EMAIL', 'second@example.com'],
    ['LANG', 'en'],
  ];
  const fields = assertSignsLikePhp(posted, phpOrder);
  assert.equal(fieldValue(fields, 'EMAIL'), 'second@example.com');
});

test('indexed array names behave as PHP fills $_POST', () => {
  // X[1] then X[] (takes key 2) then X[1] again (replaces in place): [c, b]
  assert.deepEqual(parsePostedFields('X[1]=a&X[]=b&X[1]=c'), [{ name: 'X', values: ['c', 'b'], isArray: true }]);
  // X[] takes key 0, X[0] replaces it.
  assert.deepEqual(parsePostedFields('X[]=a&X[0]=b'), [{ name: 'X', values: ['b'], isArray: true }]);
  // Named keys, nesting flattened depth-first, text after "]" ignored.
  assert.deepEqual(parsePostedFields('X[foo]=1&Y=2&X[bar][]=3&X[bar][]=4&X[foo]x=5'), [
    { name: 'X', values: ['5', '3', '4'], isArray: true },
    { name: 'Y', values: ['2'], isArray: false },
  ]);
  // An unclosed "[" is no array; dots and spaces in names become "_" and merge with "_" names.
  assert.deepEqual(parsePostedFields('X[a=1&a.b=2&a_b=3& c d=4'), [
    { name: 'X_a', values: ['1'], isArray: false },
    { name: 'a_b', values: ['3'], isArray: false },
    { name: 'c_d', values: ['4'], isArray: false },
  ]);
  // A plain value and an array of the same name replace each other in place.
  assert.deepEqual(parsePostedFields('A=1&B=2&A[]=3&A[]=4'), [
    { name: 'A', values: ['3', '4'], isArray: true },
    { name: 'B', values: ['2'], isArray: false },
  ]);
  assert.deepEqual(parsePostedFields('A[]=1&B=2&A=3'), [
    { name: 'A', values: ['3'], isArray: false },
    { name: 'B', values: ['2'], isArray: false },
  ]);
  // PHP 8: after a negative key, [] continues from it.
  assert.deepEqual(parsePostedFields('X[-5]=a&X[]=b&X[-4]=c'), [{ name: 'X', values: ['a', 'c'], isArray: true }]);
});

test('nameless pieces are dropped as PHP drops them', () => {
  assert.deepEqual(parsePostedFields('&PID=1&&=x&[]=y&PCODE=2&'), [
    { name: 'PID', values: ['1'], isArray: false },
    { name: 'PCODE', values: ['2'], isArray: false },
  ]);
});

test('a byte-order mark at the start of a value is signed as its three bytes', () => {
  const pairs: Pair[] = [['INFO', '\uFEFFnote']];
  const fields = assertSignsLikePhp(pairs, pairs);
  assert.equal(fieldValue(fields, 'INFO'), '\uFEFFnote');
  assert.ok(hashSource(fields).toString('utf8').startsWith('7\uFEFF'));
});

test('a HASH off by one character is refused', () => {
  const hash = opensslHmac(SECRET, sourceOf(DOCUMENTED));
  const last = hash.at(-1) === '0' ? '1' : '0';
  for (const tampered of [hash.slice(0, -1) + last, (hash[0] === 'a' ? 'b' : 'a') + hash.slice(1), hash.toUpperCase()]) {
    const fields = parsePostedFields(`${bodyOf(DOCUMENTED)}&HASH=${tampered}`);
    assert.deepEqual(verifyHash(fields, SECRET), { ok: false, reason: 'bad HASH' }, tampered);
  }
});

test('a changed value or a different secret is refused', () => {
  const hash = opensslHmac(SECRET, sourceOf(DOCUMENTED));
  const changed = DOCUMENTED.map(([name, value]): Pair => [name, name === 'QUANTITY' ? '10' : value]);
  assert.deepEqual(verifyHash(parsePostedFields(`${bodyOf(changed)}&HASH=${hash}`), SECRET), {
    ok: false,
    reason: 'bad HASH',
  });
  assert.deepEqual(verifyHash(parsePostedFields(`${bodyOf(DOCUMENTED)}&HASH=${hash}`), 'OTHERKEY'), {
    ok: false,
    reason: 'bad HASH',
  });
});

test('a request without HASH is readable and reported as missing HASH', () => {
  const fields = parsePostedFields(bodyOf(DOCUMENTED));
  assert.equal(fields.length, DOCUMENTED.length);
  assert.deepEqual(verifyHash(fields, SECRET), { ok: false, reason: 'missing HASH' });
});

test('a HASH of the wrong length, or sent as an array, is simply bad (no exception)', () => {
  for (const posted of ['', 'abc', DOCUMENTED_HASH + '0', DOCUMENTED_HASH + DOCUMENTED_HASH, 'é'.repeat(16), 'é'.repeat(32)]) {
    const fields = parsePostedFields(`${bodyOf(DOCUMENTED)}&HASH=${encodeURIComponent(posted)}`);
    assert.deepEqual(verifyHash(fields, SECRET), { ok: false, reason: 'bad HASH' }, JSON.stringify(posted));
  }
  const asArray = parsePostedFields(`${bodyOf(DOCUMENTED)}&HASH[]=${DOCUMENTED_HASH}`);
  assert.deepEqual(verifyHash(asArray, SECRET), { ok: false, reason: 'bad HASH' });
});

test('the HASH comparison goes through crypto.timingSafeEqual', (t) => {
  const spy = t.mock.method(crypto, 'timingSafeEqual');
  const good = parsePostedFields(`${bodyOf(DOCUMENTED)}&HASH=${DOCUMENTED_HASH}`);
  assert.deepEqual(verifyHash(good, SECRET), { ok: true });
  const bad = parsePostedFields(`${bodyOf(DOCUMENTED)}&HASH=${'0'.repeat(32)}`);
  assert.deepEqual(verifyHash(bad, SECRET), { ok: false, reason: 'bad HASH' });
  assert.equal(spy.mock.callCount(), 2);
});

test('malformed bodies are refused with MalformedPostError', () => {
  const malformed: [string, string | Buffer][] = [
    ['empty body', ''],
    ['empty buffer', Buffer.alloc(0)],
    ['lone %', 'PID=1&INFO=100%'],
    ['short escape', 'PID=1&INFO=%4'],
    ['non-hex escape', 'PID=1&INFO=%zz'],
    ['bad escape in a name', 'P%G1D=1'],
    ['truncated UTF-8', 'FIRSTNAME=J%C3'],
    ['Latin-1 byte', 'FIRSTNAME=J%F6rg'],
    ['raw Latin-1 byte', Buffer.from([0x41, 0x3d, 0xf6])],
    ['overlong UTF-8', 'INFO=%C0%AF'],
    ['UTF-8 surrogate', 'INFO=%ED%A0%80'],
    ['invalid UTF-8 in a name', 'N%FF=1'],
    ['no field at all', '&&&'],
    ['only nameless pieces', '=1&[]=2'],
    ['unpaired surrogate in a string body', 'INFO=\uD800'],
    ['more than 1000 fields', Array.from({ length: 1001 }, (_, i) => `F${i}=1`).join('&')],
    ['nesting deeper than 64', `X${'[a]'.repeat(65)}=1`],
  ];
  for (const [what, body] of malformed) {
    assert.throws(
      () => parsePostedFields(body),
      (thrown: unknown) => thrown instanceof MalformedPostError && thrown.code === 'AVANGATE_MALFORMED_POST',
      what,
    );
  }
  // The limits themselves are fine.
  assert.equal(parsePostedFields(Array.from({ length: 1000 }, (_, i) => `F${i}=1`).join('&')).length, 1000);
  assert.deepEqual(parsePostedFields(`X${'[a]'.repeat(64)}=1`), [{ name: 'X', values: ['1'], isArray: true }]);
});

test('a body made by signFields is accepted, with the HASH openssl computes', () => {
  const fields = fieldsFromPairs([
    ['PID', '189645'],
    ['CUSTOM_FIELD_TEXT[]', 'Seats'],
    ['FIRSTNAME', 'Jörg Müller & Co; 100% "real"'],
    ['CUSTOM_FIELD_TEXT[]', "O'Brien"],
    ['COMPANY', ''],
    ['HASH', 'stale, replaced'],
  ]);
  const phpOrder: Pair[] = [
    ['PID', '189645'],
    ['CUSTOM_FIELD_TEXT[]', 'Seats'],
    ['CUSTOM_FIELD_TEXT[]', "O'Brien"],
    ['FIRSTNAME', 'Jörg Müller & Co; 100% "real"'],
    ['COMPANY', ''],
  ];
  const body = signFields(fields, SECRET);
  assert.ok(body.endsWith(`&HASH=${opensslHmac(SECRET, sourceOf(phpOrder))}`), body);
  assert.ok(!body.includes('stale'));
  const received = parsePostedFields(body);
  assert.deepEqual(verifyHash(received, SECRET), { ok: true });
  assert.deepEqual(received.slice(0, -1), fields.slice(0, -1));
});

test('signFields refuses fields PHP would merge, rather than sign a form read differently', () => {
  const merged: PostedField[] = [
    { name: 'a.b', values: ['1'], isArray: false },
    { name: 'a_b', values: ['2'], isArray: false },
  ];
  assert.throws(() => signFields(merged, SECRET), TypeError);
  assert.throws(() => signFields([{ name: '', values: ['1'], isArray: false }], SECRET), TypeError);
});
