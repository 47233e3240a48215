/**
 * The bytes of a message composed by nodemailer's MailComposer, written in one synchronous pass.
 *
 * MimeNode.build() streams every part through a PassThrough, an encoder stream, a pipeline and a
 * few setImmediate hops: about 400 µs of CPU for a two-part buyer mail, the largest single cost of
 * a backlog after sending itself (bench/RESULTS.md). Nothing here encodes anything: the headers
 * are MimeNode.buildHeaders() and the bodies nodemailer's own quoted-printable and base64 encoders
 * (the functions its encoder streams call); only the walk over the parts, which MimeNode.stream()
 * does with streams, is done with strings. test/mime.test.ts holds the output byte for byte to
 * MimeNode.build() over thousands of generated mails.
 *
 * A tree this walk does not cover (content from a stream, a file or a URL; a body over 64 KiB; raw
 * parts; DKIM or other transforms) is built by MimeNode.build() as before.
 */
import type MimeNode from 'nodemailer/lib/mime-node';

type Encoders = { encode(buffer: Buffer | string): string; wrap(text: string, lineLength?: number): string };

/** nodemailer's encoders, loaded with the first mail and kept: resolving a require() costs a file lookup each time. */
let qpModule: Encoders | null = null;
let base64Module: Encoders | null = null;
const qp = (): Encoders => (qpModule ??= require('nodemailer/lib/qp') as Encoders);
const base64 = (): Encoders => (base64Module ??= require('nodemailer/lib/base64') as Encoders);

/** The fields MimeNode keeps for what this walk cannot do; not part of its typings. */
interface NodeInternals {
  readonly _raw?: unknown;
  readonly _transforms?: readonly unknown[];
  readonly _processFuncs?: readonly unknown[];
  readonly newline?: unknown;
}

/**
 * nodemailer's quoted-printable stream encodes a body in slices of 64 KiB and wraps each slice's
 * lines on their own; over that size this walk would wrap differently, so such a body (no buyer
 * mail is near it) goes through the streams.
 */
const ONE_SLICE = 64 * 1024;

function walkable(node: MimeNode): boolean {
  const internals = node as unknown as NodeInternals;
  if (internals._raw || internals._transforms?.length || internals._processFuncs?.length || internals.newline) return false;
  const content = node.content;
  if (content !== undefined && content !== null) {
    if (typeof content === 'string') {
      if (Buffer.byteLength(content, 'utf8') > ONE_SLICE) return false;
    } else if (!Buffer.isBuffer(content) || content.length > ONE_SLICE) return false;
  }
  return node.childNodes.every(walkable);
}

/**
 * What nodemailer's quoted-printable stream writes for a body of one slice, step for step: it
 * holds back the blanks the body ends with, encodes and wraps the rest keeping its last line
 * (after the last line feed) open, then encodes the blanks onto that line and wraps again. Wrapping
 * the whole at once breaks some lines elsewhere (test/mime.test.ts found such bodies).
 */
function quotedPrintable(bytes: Buffer): string {
  let end = bytes.length;
  while (end > 0 && (bytes[end - 1] === 0x20 || bytes[end - 1] === 0x09)) end--;
  let out = '';
  let line = '';
  const slice = (part: Buffer): void => {
    const wrapped = qp().wrap(line + qp().encode(part), 76);
    const lastLineFeed = wrapped.lastIndexOf('\n');
    line = wrapped.substring(lastLineFeed + 1);
    out += wrapped.substring(0, lastLineFeed + 1);
  };
  if (end > 0) slice(bytes.subarray(0, end));
  if (end < bytes.length) slice(bytes.subarray(end));
  return out + line;
}

/** Output in pieces: text (written as UTF-8, as the streams write strings) and raw bytes. */
type Piece = string | Buffer;

/** What MimeNode.stream() writes for one node, and for its children in turn. */
function write(node: MimeNode, out: Piece[]): void {
  // buildHeaders() also decides the transfer encoding and, for a multipart node, its boundary.
  out.push(`${node.buildHeaders()}\r\n\r\n`);
  const content = node.content as string | Buffer | undefined | null;
  if (content !== undefined && content !== null && content.length > 0) {
    const encoding = node.getTransferEncoding();
    const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    if (encoding === 'quoted-printable') out.push(quotedPrintable(bytes));
    // nodemailer's base64 stream is documented to give wrap(encode(input)) however the input is split.
    else if (encoding === 'base64') out.push(base64().wrap(base64().encode(bytes), 76));
    else out.push(content);
  }
  if (node.multipart) {
    node.childNodes.forEach((child, i) => {
      out.push(`${i > 0 ? '\r\n' : ''}--${String(node.boundary)}\r\n`);
      write(child, out);
    });
    out.push(`\r\n--${String(node.boundary)}--\r\n`);
  }
}

/** The message's bytes, as MimeNode.build() would give them. */
export async function buildMime(root: MimeNode): Promise<Buffer> {
  if (!walkable(root)) return root.build();
  const out: Piece[] = [];
  write(root, out);
  const last = out[out.length - 1];
  const end = last === undefined || last.length === 0 ? undefined : typeof last === 'string' ? last.charCodeAt(last.length - 1) : last[last.length - 1];
  // MimeNode ends every message with a line break (its LastNewline stream).
  if (end !== 0x0a) out.push(end === 0x0d ? '\n' : '\r\n');
  if (out.every((piece) => typeof piece === 'string')) return Buffer.from(out.join(''), 'utf8');
  return Buffer.concat(out.map((piece) => (typeof piece === 'string' ? Buffer.from(piece, 'utf8') : piece)));
}
