/**
 * What Avangate receives from keymailer's key generator: XML it can read back to exactly the codes
 * and descriptions we meant, and binary keys with a safe download name.
 *
 * When fast-xml-parser is installed, the XML is parsed back with it; otherwise a structural check
 * stands in (no dependency is added for a test). Exact expected strings cover escaping either way.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { advancedXml, basicXml, binaryAnswer, contentDisposition } from '../src/http/avangate-answer';

const ALL_FIVE = `Tom & Jerry <"quoted"> 'single'`;
const ALL_FIVE_ESCAPED = 'Tom &amp; Jerry &lt;&quot;quoted&quot;&gt; &apos;single&apos;';
const DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';

type XmlParser = { parse(xml: string): unknown };
type FastXmlParser = {
  XMLParser: new (options: Record<string, unknown>) => XmlParser;
  XMLValidator: { validate(xml: string): true | { err: unknown } };
};

function loadFastXmlParser(): FastXmlParser | null {
  try {
    return createRequire(__filename)('fast-xml-parser') as FastXmlParser;
  } catch {
    return null;
  }
}

const fxp = loadFastXmlParser();

/** Parse with fast-xml-parser: attributes as @_name, every value a string, <code> always a list. */
function parseBack(xml: string): unknown {
  assert.ok(fxp);
  assert.equal(fxp.XMLValidator.validate(xml), true, 'fast-xml-parser finds the XML well-formed');
  return new fxp.XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@_',
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: false,
    // fast-xml-parser decodes numeric character references (&#13;) only with this on.
    htmlEntities: true,
    isArray: (name: string) => name === 'code',
  }).parse(xml);
}

const ENTITY = '&(?:amp|lt|gt|quot|apos|#[0-9]+);';
const TAG = new RegExp(`<(/?)([A-Za-z_]+)((?:\\s+[a-z_]+="(?:[^"<>&']|${ENTITY})*")*)>`, 'g');

/**
 * Without a parser: the XML is the declaration followed by tags (quoted attributes only) and text
 * in which <, >, ", ' never appear raw and every & starts one of the entities we emit; the tags
 * nest properly; the element names, in document order, are `expectedTags`.
 */
function assertStructure(xml: string, expectedTags: string[]): void {
  assert.ok(xml.startsWith(DECLARATION), 'starts with the XML declaration');
  const rest = xml.slice(DECLARATION.length);
  const stack: string[] = [];
  const opened: string[] = [];
  let last = 0;
  for (const match of rest.matchAll(TAG)) {
    const text = rest.slice(last, match.index);
    assert.match(text, new RegExp(`^(?:[^<>&"']|${ENTITY})*$`), `text is escaped: ${text}`);
    const [, closing, name = ''] = match;
    if (closing === '/') {
      assert.equal(stack.pop(), name, `</${name}> closes the open element`);
    } else {
      stack.push(name);
      opened.push(name);
    }
    last = match.index + match[0].length;
  }
  assert.equal(rest.slice(last), '', 'nothing after the root element');
  assert.deepEqual(stack, [], 'every element is closed');
  assert.deepEqual(opened, expectedTags);
}

function checkBack(t: TestContext, xml: string, expectedTags: string[], expectedParsed: unknown): void {
  assertStructure(xml, expectedTags);
  if (fxp === null) {
    t.diagnostic('fast-xml-parser is not installed: structural check only');
    return;
  }
  assert.deepEqual(parseBack(xml), expectedParsed);
}

const XML_HEAD = { '?xml': { '@_version': '1.0', '@_encoding': 'UTF-8' } };

test('Basic XML lists the codes in order, as Avangate documents it', () => {
  assert.equal(
    basicXml(['CODE 1', 'CODE 2']),
    '<?xml version="1.0" encoding="UTF-8"?><Data><code>CODE 1</code><code>CODE 2</code></Data>',
  );
});

test('Basic XML escapes all five special characters in codes and the description', (t) => {
  const xml = basicXml([ALL_FIVE, 'ÄÖÜ-李-🎉'], `note: ${ALL_FIVE}`);
  assert.equal(
    xml,
    `${DECLARATION}<Data><description>note: ${ALL_FIVE_ESCAPED}</description>` +
      `<code>${ALL_FIVE_ESCAPED}</code><code>ÄÖÜ-李-🎉</code></Data>`,
  );
  checkBack(t, xml, ['Data', 'description', 'code', 'code'], {
    ...XML_HEAD,
    Data: { description: `note: ${ALL_FIVE}`, code: [ALL_FIVE, 'ÄÖÜ-李-🎉'] },
  });
});

test('a carriage return in a code survives as a character reference', (t) => {
  const xml = basicXml(['line1\r\nline2']);
  assert.equal(xml, `${DECLARATION}<Data><code>line1&#13;\nline2</code></Data>`);
  checkBack(t, xml, ['Data', 'code'], { ...XML_HEAD, Data: { code: ['line1\r\nline2'] } });
});

test('Advanced XML escapes text and attributes, and carries files as base64', (t) => {
  const content = Buffer.from([0, 1, 2, 250, 251, 252, 253, 254, 255]);
  const fileName = `key "${ALL_FIVE}".bin`;
  const xml = advancedXml(
    [
      { description: `first: ${ALL_FIVE}`, key: `K-${ALL_FIVE}` },
      { file: { name: fileName, contentType: 'application/x-key; a="b\tc"', content } },
      { description: 'both', key: 'K2', file: { name: 'binary.key', contentType: 'text/plain', content: Buffer.from('hello\n') } },
    ],
    `global ${ALL_FIVE}`,
  );
  assert.equal(
    xml,
    `${DECLARATION}<data><description>global ${ALL_FIVE_ESCAPED}</description>` +
      `<code><description>first: ${ALL_FIVE_ESCAPED}</description><key>K-${ALL_FIVE_ESCAPED}</key></code>` +
      `<code><file name="key &quot;${ALL_FIVE_ESCAPED}&quot;.bin" content_type="application/x-key; a=&quot;b&#9;c&quot;">` +
      `${content.toString('base64')}</file></code>` +
      `<code><description>both</description><key>K2</key>` +
      `<file name="binary.key" content_type="text/plain">aGVsbG8K</file></code></data>`,
  );
  checkBack(t, xml, ['data', 'description', 'code', 'description', 'key', 'code', 'file', 'code', 'description', 'key', 'file'], {
    ...XML_HEAD,
    data: {
      description: `global ${ALL_FIVE}`,
      code: [
        { description: `first: ${ALL_FIVE}`, key: `K-${ALL_FIVE}` },
        { file: { '#text': content.toString('base64'), '@_name': fileName, '@_content_type': 'application/x-key; a="b\tc"' } },
        { description: 'both', key: 'K2', file: { '#text': 'aGVsbG8K', '@_name': 'binary.key', '@_content_type': 'text/plain' } },
      ],
    },
  });
});

test('newlines and tabs in an attribute survive as character references', () => {
  const xml = advancedXml([{ file: { name: 'a\tb\nc\rd', contentType: 'text/plain', content: Buffer.from('x') } }]);
  assert.ok(xml.includes('name="a&#9;b&#10;c&#13;d"'), xml);
});

test('an answer Avangate could not use is refused instead of sent', () => {
  assert.throws(() => basicXml([]), TypeError);
  assert.throws(() => basicXml(['']), TypeError);
  assert.throws(() => basicXml(['bell\u0007']), TypeError, 'XML 1.0 cannot carry U+0007 at all');
  assert.throws(() => basicXml(['ok'], 'nul\u0000'), TypeError);
  assert.throws(() => basicXml(['lone \uD800 surrogate']), TypeError);
  assert.throws(() => advancedXml([]), TypeError);
  assert.throws(() => advancedXml([{ description: 'no key, no file' }]), TypeError);
  assert.throws(() => advancedXml([{ key: '' }]), TypeError);
  assert.throws(() => advancedXml([{ file: { name: '', contentType: 'text/plain', content: Buffer.from('x') } }]), TypeError);
});

test('a binary key is a 200 attachment with the plain name Avangate shows', () => {
  const content = Buffer.from([1, 2, 3, 0, 255]);
  const answer = binaryAnswer('key.bin', content);
  assert.equal(answer.status, 200);
  assert.equal(answer.body, content);
  assert.deepEqual(answer.headers, {
    'Content-Type': 'application/octet-stream',
    'Content-Disposition': 'attachment; filename=key.bin',
    'Content-Length': '5',
  });
  assert.equal(binaryAnswer('license.dat', content, 'application/x-license').headers['Content-Type'], 'application/x-license');
});

test('an awkward download name is quoted safely and cannot leave the download folder', () => {
  assert.equal(contentDisposition('my key.bin'), 'attachment; filename="my key.bin"');
  assert.equal(contentDisposition('a"b\\c.bin'), 'attachment; filename="a_b_c.bin"');
  assert.equal(contentDisposition('../../etc/passwd'), 'attachment; filename=.._.._etc_passwd');
  assert.equal(contentDisposition('a;b=c.bin'), 'attachment; filename="a;b=c.bin"');
  assert.equal(
    contentDisposition('Schlüssel 李.bin'),
    "attachment; filename=\"Schl_ssel _.bin\"; filename*=UTF-8''Schl%C3%BCssel%20%E6%9D%8E.bin",
  );
  assert.equal(contentDisposition("it's.bin"), "attachment; filename=\"it's.bin\"");
});

test('a download name or content type that could inject headers is refused', () => {
  const content = Buffer.from('k');
  assert.throws(() => binaryAnswer('key.bin\r\nSet-Cookie: x=1', content), TypeError);
  assert.throws(() => binaryAnswer('', content), TypeError);
  assert.throws(() => binaryAnswer('key.bin', content, 'application/octet-stream\r\nX: y'), TypeError);
  assert.throws(() => binaryAnswer('key.bin', Buffer.alloc(0)), TypeError);
  assert.throws(() => binaryAnswer('key.bin', content, 'text/xml'), TypeError, 'Avangate would read it as codes');
  assert.throws(() => binaryAnswer('key.bin', content, 'text/xml; charset=utf-8'), TypeError);
});
