/**
 * The answers a key generator gives Avangate (shared/notes/avangate.md, "The answer"): Basic XML
 * for alphanumeric codes, Advanced XML for codes with descriptions or files, or a binary key.
 * These builders refuse (throw TypeError) what Avangate could not use, rather than answer 200 with
 * a body Avangate would fail on: a 200 is taken as delivered, and the buyer would get nothing.
 */

/** Control characters XML 1.0 cannot carry at all, not even as a character reference. */
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const TEXT_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  // A parser turns a literal CR (or CR LF) into LF; a reference keeps it.
  '\r': '&#13;',
};

const ATTRIBUTE_ESCAPES: Record<string, string> = {
  ...TEXT_ESCAPES,
  // Attribute-value normalization turns literal tab and newlines into spaces; references survive.
  '\t': '&#9;',
  '\n': '&#10;',
};

function checkXmlChars(text: string, what: string): void {
  const bad = NOT_XML.exec(text);
  if (bad !== null) {
    const code = bad[0].codePointAt(0) ?? 0;
    throw new TypeError(`${what} holds U+${code.toString(16).toUpperCase().padStart(4, '0')}, which XML cannot carry`);
  }
}

/** Escape text content: & < > " ' (and CR, so it survives parsing). */
export function escapeXmlText(text: string, what = 'text'): string {
  checkXmlChars(text, what);
  return text.replace(/[&<>"'\r]/g, (c) => TEXT_ESCAPES[c] ?? c);
}

/** Escape an attribute value for use inside double quotes: & < > " ' and tab, CR, LF. */
export function escapeXmlAttribute(text: string, what = 'attribute'): string {
  checkXmlChars(text, what);
  return text.replace(/[&<>"'\t\n\r]/g, (c) => ATTRIBUTE_ESCAPES[c] ?? c);
}

const DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';

function descriptionElement(description: string | undefined, what: string): string {
  return description === undefined ? '' : `<description>${escapeXmlText(description, what)}</description>`;
}

/**
 * Basic XML: `<?xml version="1.0" encoding="UTF-8"?><Data><description>…</description><code>…</code>…</Data>`,
 * the optional global description first. Serve with `Content-Type: text/xml; charset=utf-8`.
 * @throws TypeError for no codes, an empty code, or a character XML cannot carry.
 */
export function basicXml(codes: readonly string[], description?: string): string {
  if (codes.length === 0) throw new TypeError('an answer needs at least one code');
  const body = codes
    .map((code, i) => {
      if (code === '') throw new TypeError(`code ${i + 1} is empty`);
      return `<code>${escapeXmlText(code, `code ${i + 1}`)}</code>`;
    })
    .join('');
  return `${DECLARATION}<Data>${descriptionElement(description, 'the description')}${body}</Data>`;
}

export type AdvancedItem = {
  description?: string;
  key?: string;
  file?: { name: string; contentType: string; content: Buffer };
};

/**
 * Advanced XML: `<data>` with the optional global `<description>`, then one `<code>` per item
 * holding its optional `<description>`, its `<key>` and/or its
 * `<file name="…" content_type="…">base64</file>`. Begins with the same XML declaration as
 * `basicXml`, since the text may hold non-ASCII characters.
 * @throws TypeError for no items, an item with neither key nor file, an empty key or file name,
 *   or a character XML cannot carry.
 */
export function advancedXml(items: readonly AdvancedItem[], description?: string): string {
  if (items.length === 0) throw new TypeError('an answer needs at least one code');
  const codes = items
    .map((item, i) => {
      const what = `code ${i + 1}`;
      if (item.key === undefined && item.file === undefined) {
        throw new TypeError(`${what} has neither a key nor a file`);
      }
      let inner = descriptionElement(item.description, `the description of ${what}`);
      if (item.key !== undefined) {
        if (item.key === '') throw new TypeError(`the key of ${what} is empty`);
        inner += `<key>${escapeXmlText(item.key, `the key of ${what}`)}</key>`;
      }
      if (item.file !== undefined) {
        const { name, contentType, content } = item.file;
        if (name === '') throw new TypeError(`the file of ${what} has no name`);
        if (contentType === '') throw new TypeError(`the file of ${what} has no content type`);
        inner +=
          `<file name="${escapeXmlAttribute(name, `the file name of ${what}`)}"` +
          ` content_type="${escapeXmlAttribute(contentType, `the content type of ${what}`)}">` +
          `${content.toString('base64')}</file>`;
      }
      return `<code>${inner}</code>`;
    })
    .join('');
  return `${DECLARATION}<data>${descriptionElement(description, 'the description')}${codes}</data>`;
}

export type BinaryAnswer = {
  status: 200;
  headers: Record<string, string>;
  body: Buffer;
};

/** Characters that may stand unquoted as a filename token. */
const TOKEN = /^[A-Za-z0-9!#$&+.^_`|~-]+$/;

/**
 * The Content-Disposition for a download named `name`: `attachment; filename=key.bin` when the
 * name is a plain token (as Avangate's example), else a quoted ASCII fallback in which `"`, `\`
 * and anything not printable ASCII is `_`, plus RFC 5987 `filename*=UTF-8''…` when the name is not
 * ASCII. Path separators become `_` in both, so no client can be led outside its download folder.
 * @throws TypeError for an empty name or one with control characters (header injection).
 */
export function contentDisposition(name: string): string {
  if (name === '') throw new TypeError('the file name is empty');
  if (/[\u0000-\u001F\u007F]/.test(name)) throw new TypeError('the file name holds a control character');
  const safe = name.replace(/[/\\]/g, '_');
  if (TOKEN.test(safe)) return `attachment; filename=${safe}`;
  const fallback = safe.replace(/[^\x20-\x7E]|["\\]/gu, '_');
  let header = `attachment; filename="${fallback}"`;
  if (/[^\x20-\x7E]/u.test(safe)) {
    let encoded: string;
    try {
      encoded = encodeURIComponent(safe);
    } catch {
      throw new TypeError('the file name holds an unpaired UTF-16 surrogate');
    }
    header += `; filename*=UTF-8''${encoded.replace(/['()*!]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())}`;
  }
  return header;
}

/**
 * A binary key: status 200, the file as the body, `Content-Disposition: attachment; filename=…`.
 * `contentType` defaults to application/octet-stream; text/xml and application/xml are refused,
 * since Avangate reads a text/xml answer as codes, not as a file.
 */
export function binaryAnswer(name: string, content: Buffer, contentType = 'application/octet-stream'): BinaryAnswer {
  if (/^\s*(?:text|application)\/xml\s*(?:;|$)/i.test(contentType)) throw new TypeError(`a binary key cannot be sent as ${contentType}`);
  if (/[\u0000-\u001F\u007F]/.test(contentType)) throw new TypeError('the content type holds a control character');
  if (content.length === 0) throw new TypeError('the binary key is empty');
  return {
    status: 200,
    headers: {
      'Content-Type': contentType,
      'Content-Disposition': contentDisposition(name),
      'Content-Length': String(content.length),
    },
    body: content,
  };
}
