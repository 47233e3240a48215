/**
 * Decodes a raw message once (mailparser: transfer encodings, charsets, RFC 2047) into the
 * Notification every parser reads. A forwarded notification is unwrapped here, so parsers see the
 * vendor's original and never have to know about forwarding; `forwarded` says it happened.
 */
import type { AddressObject, ParsedMail } from 'mailparser';
import type { Notification } from '../types';
import { htmlToText } from './html-text';
import { emailIn, labelLines, normaliseLabel } from './labels';

/** How a notification reached us second-hand. Its content is only as trustworthy as its forwarder. */
export interface Forwarded {
  readonly how: 'inline' | 'attachment';
  /** The forwarder: the outer message's From address. */
  readonly by: string;
  readonly outerSubject: string;
  readonly outerMessageId: string | null;
  /**
   * The attached original, byte for byte, so authentication can check its own DKIM signature (an
   * intact attachment can still carry a valid one); null for an inline forward, which has none.
   */
  readonly original: Buffer | null;
}

/** A Notification plus how it was forwarded, if it was. */
export interface DecodedNotification extends Notification {
  readonly forwarded: Forwarded | null;
}

/** The forwarding of a notification made by toNotification; null when it arrived first-hand. */
export function forwardedOf(n: Notification): Forwarded | null {
  return 'forwarded' in n ? ((n as DecodedNotification).forwarded ?? null) : null;
}

const PARSE_OPTIONS = {
  // html-text.ts converts HTML itself, with table rows kept as label lines.
  skipHtmlToText: true,
  skipImageLinks: true,
  skipTextLinks: true,
  skipTextToHtml: true,
} as const;

/** A forward of a forward of ... stops here: deeper nesting is no vendor's doing. */
const MAX_FORWARD_DEPTH = 3;

export async function toNotification(raw: Buffer): Promise<DecodedNotification> {
  return decode(raw, 0);
}

/**
 * libqp (mailparser's quoted-printable decoder) strips trailing blanks with /[\t ]+$/gm, which
 * takes time quadratic in a run of blanks: 20,000 spaces cost 2 s, 200,000 several minutes, and
 * the daemon would stall on one crafted mail. A quoted-printable line is at most 76 characters, so
 * a long run is never a vendor's.
 */
const MAX_BLANK_RUN = 1000;

function longestBlankRun(raw: Buffer): number {
  let longest = 0;
  let run = 0;
  for (const byte of raw) {
    run = byte === 0x20 || byte === 0x09 ? run + 1 : 0;
    if (run > longest) longest = run;
  }
  return longest;
}

/**
 * mailparser, loaded on first use: it is the largest package keymailer loads (about 120 ms), and a
 * daemon that starts on an empty mailbox is ready without it. preloadMailParser() loads it once
 * the daemon is ready, so the first notification does not wait for it either.
 */
let loaded: typeof import('mailparser') | null = null;
function mailparser(): typeof import('mailparser') {
  return (loaded ??= require('mailparser') as typeof import('mailparser'));
}

export function preloadMailParser(): void {
  mailparser();
}

async function decode(raw: Buffer, depth: number): Promise<DecodedNotification> {
  if (/quoted-printable/i.test(raw.toString('latin1'))) {
    const run = longestBlankRun(raw);
    if (run > MAX_BLANK_RUN) {
      throw new Error(`a quoted-printable message with a run of ${run} blanks, which no vendor sends and the decoder cannot read in reasonable time`);
    }
  }
  const mail = await mailparser().simpleParser(raw, PARSE_OPTIONS);
  const outer = fromParsed(mail);
  if (depth >= MAX_FORWARD_DEPTH) return outer;
  const attached = mail.attachments.find((a) => a.contentType.toLowerCase() === 'message/rfc822');
  if (attached) {
    const inner = await decode(attached.content, depth + 1);
    return {
      ...inner,
      forwarded: inner.forwarded ?? {
        how: 'attachment',
        by: outer.fromAddress,
        outerSubject: outer.subject,
        outerMessageId: outer.messageId,
        original: attached.content,
      },
    };
  }
  return unwrapInline(outer) ?? outer;
}

function fromParsed(mail: ParsedMail): DecodedNotification {
  const from = firstAddress(mail.from);
  const headers = new Map<string, string[]>();
  for (const line of mail.headerLines) {
    const name = line.key.toLowerCase();
    const value = line.line.slice(line.line.indexOf(':') + 1).trim();
    const list = headers.get(name);
    if (list) list.push(value);
    else headers.set(name, [value]);
  }
  const html = typeof mail.html === 'string' ? mail.html : null;
  return {
    fromAddress: (from?.address ?? '').toLowerCase(),
    fromName: from?.name ?? '',
    subject: mail.subject ?? '',
    messageId: mail.messageId ?? null,
    date: mail.date ?? null,
    // mailparser gives '' when there is no text part; an empty text part is no better.
    text: html !== null && !mail.text?.trim() ? htmlToText(html) : (mail.text ?? ''),
    html,
    headers,
    forwarded: null,
  };
}

function firstAddress(value: AddressObject | AddressObject[] | undefined): { address?: string; name: string } | null {
  const object = Array.isArray(value) ? value[0] : value;
  return object?.value[0] ?? null;
}

/**
 * The lines mail programs put above an inline forward: Gmail's "---------- Forwarded message
 * ---------", Thunderbird's and Outlook's "-------- Original Message --------", Apple Mail's
 * "Begin forwarded message:".
 */
const FORWARD_MARKER = /^\s*(?:-{3,}\s*(?:Forwarded message|Original Message)\s*-{3,}|Begin forwarded message:)\s*$/i;
const PSEUDO_HEADER = /^\s*\**\s*(From|Date|Sent|Subject|To|Cc|Reply-To)\s*:\s*\**(.*)$/i;

/** The original inside an inline forward, from the text the forwarder's program quoted; null when there is none. */
function unwrapInline(outer: DecodedNotification): DecodedNotification | null {
  const lines = outer.text.split(/\r?\n/);
  const marker = lines.findIndex((l) => FORWARD_MARKER.test(l));
  if (marker < 0) return null;
  const headers = new Map<string, string[]>();
  let i = marker + 1;
  while (i < lines.length && (lines[i] ?? '').trim() === '') i++;
  for (; i < lines.length; i++) {
    const header = PSEUDO_HEADER.exec(lines[i] ?? '');
    if (!header?.[1]) break;
    headers.set(header[1].toLowerCase(), [(header[2] ?? '').trim()]);
  }
  const fromValue = headers.get('from')?.[0];
  if (fromValue === undefined) return null;
  const fromAddress = emailIn(fromValue) ?? '';
  const named = /^(.*?)\s*(?:<[^>]*>|\[mailto:[^\]]*\])\s*$/i.exec(fromValue);
  const fromName = (named?.[1] ?? '').replace(/["*]/g, '').trim();
  const dateText = headers.get('date')?.[0] ?? headers.get('sent')?.[0];
  // Without a zone the date would depend on this machine's time zone: better none.
  const zoned = dateText !== undefined && /[+-]\d{4}\b|\b(?:GMT|UTC)\b/.test(dateText);
  const date = zoned ? new Date(dateText.replace(/ at /, ' ')) : null;
  return {
    fromAddress,
    fromName,
    subject: headers.get('subject')?.[0] ?? '',
    messageId: null,
    date: date !== null && !Number.isNaN(date.getTime()) ? date : null,
    text: lines.slice(i).join('\n').replace(/^\s*\n/, ''),
    html: null,
    headers,
    forwarded: {
      how: 'inline',
      by: outer.fromAddress,
      outerSubject: outer.subject,
      outerMessageId: outer.messageId,
      original: null,
    },
  };
}

/**
 * The text to read labels from: the text part, unless it is a stub that carries none of `labels`
 * ("view this email in your browser"), in which case the HTML part as text.
 */
export function bodyText(n: Notification, ...labels: string[]): string {
  if (n.html === null || labels.length === 0) return n.text;
  const wanted = new Set(labels.map(normaliseLabel));
  const hasLabels = labelLines(n.text, labels).some((l) => wanted.has(l.label) && l.value !== '');
  return hasLabels ? n.text : htmlToText(n.html);
}
