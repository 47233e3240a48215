/**
 * Reading labelled values in the layouts vendors use:
 *   `Label: value` on one line;
 *   a label line followed by value line(s) (PayPal's `Buyer` / name / email), or `Label:` with the
 *   value on the following lines (older layouts);
 *   HTML table rows, which html-text.ts turns into `Label: value` lines.
 */
import { ParseError } from '../errors';

export interface LabelLine {
  /** The label, lower-cased, inner whitespace collapsed, without a trailing colon. */
  readonly label: string;
  /** The first value line; '' when the label has none. */
  readonly value: string;
  /** Every value line, in order: one for `Label: value`, several for a label line above its values. */
  readonly values: readonly string[];
  /** Line number in the text, so callers can split a notification into item blocks. */
  readonly line: number;
}

// The colon must not start "://" (a URL) nor sit between digits (a time, 10:14): neither is a label.
// The value is trimmed in code: a lazy group before `\s*$` would make a long line of spaces cost
// quadratic time.
const LABEL_LINE = /^\s*([A-Za-z][A-Za-z0-9 #()/_.'-]{0,60}?)\s*:(?!\/\/)(?!(?<=\d:)\d)(.*)$/;

export function normaliseLabel(label: string): string {
  return label.trim().replace(/:$/, '').replace(/\s+/g, ' ').toLowerCase();
}

/**
 * Every labelled value in order. `known` lists the labels the caller looks for: a line that is only
 * such a label (with or without a colon) takes the lines below it, up to a blank line or the next
 * label, as its values. Unknown bare lines are never taken as labels: a product blurb is no label.
 */
export function labelLines(text: string, known: readonly string[] = []): LabelLine[] {
  const wanted = new Set(known.map(normaliseLabel));
  const rows = text.split(/\r?\n/);
  const out: LabelLine[] = [];
  const isLabelLine = (raw: string): boolean =>
    LABEL_LINE.test(raw) || (raw.trim() !== '' && wanted.has(normaliseLabel(raw)));
  for (let i = 0; i < rows.length; i++) {
    const raw = rows[i] ?? '';
    const match = LABEL_LINE.exec(raw);
    const inline = match?.[2]?.trim() ?? '';
    if (match?.[1] !== undefined && inline !== '') {
      out.push({ label: normaliseLabel(match[1]), value: inline, values: [inline], line: i });
      continue;
    }
    const label = normaliseLabel(match?.[1] ?? raw);
    if (!match && !wanted.has(label)) continue;
    const values: string[] = [];
    if (wanted.has(label)) {
      for (let j = i + 1; j < rows.length; j++) {
        const next = rows[j] ?? '';
        if (next.trim() === '' || isLabelLine(next)) break;
        values.push(next.trim());
      }
    }
    out.push({ label, value: values[0] ?? '', values, line: i });
  }
  return out;
}

/** The first value for any of the labels, or null when none is present or all are empty. */
export function firstValue(lines: readonly LabelLine[], ...labels: string[]): string | null {
  return firstLine(lines, ...labels)?.value ?? null;
}

/** The first label line, with a value, among the labels. */
export function firstLine(lines: readonly LabelLine[], ...labels: string[]): LabelLine | null {
  const wanted = new Set(labels.map(normaliseLabel));
  for (const l of lines) if (wanted.has(l.label) && l.value !== '') return l;
  return null;
}

/** Like firstValue, but a missing value is a ParseError naming what is missing. */
export function requireValue(lines: readonly LabelLine[], what: string, ...labels: string[]): string {
  const value = firstValue(lines, ...labels);
  if (value === null) throw new ParseError(`${what}: no ${labels.map((l) => `"${l}"`).join(' or ')} line`);
  return value;
}

/**
 * Splits label lines into blocks, each starting at a line with the given label (one block per
 * item of a multi-item order). Lines before the first such label form the order's header.
 */
export function splitBlocks(
  lines: readonly LabelLine[],
  startLabel: string,
): { header: LabelLine[]; blocks: LabelLine[][] } {
  const start = normaliseLabel(startLabel);
  const header: LabelLine[] = [];
  const blocks: LabelLine[][] = [];
  for (const l of lines) {
    if (l.label === start) blocks.push([l]);
    else if (blocks.length === 0) header.push(l);
    else blocks[blocks.length - 1]?.push(l);
  }
  return { header, blocks };
}

export interface TextBlock {
  /** The match of the start pattern on the block's first line (its heading, e.g. `1) Widget Pro`). */
  readonly heading: RegExpExecArray;
  /** The block's lines after the heading, up to the next heading. */
  readonly text: string;
}

/**
 * Splits a text at every line matching `start` (item blocks whose heading is no label, such as
 * FastSpring's `1) Widget Pro`). The text before the first heading is the header.
 */
export function textBlocks(text: string, start: RegExp): { header: string; blocks: TextBlock[] } {
  const header: string[] = [];
  const blocks: { heading: RegExpExecArray; lines: string[] }[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const heading = start.exec(raw);
    if (heading) blocks.push({ heading, lines: [] });
    else (blocks[blocks.length - 1]?.lines ?? header).push(raw);
  }
  return { header: header.join('\n'), blocks: blocks.map((b) => ({ heading: b.heading, text: b.lines.join('\n') })) };
}

const EMAIL = /[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+/;

/** The one email address in a value such as `jane@example.com` or `Jane Doe <jane@example.com>`, lower-cased; else null. */
export function emailIn(value: string | null | undefined): string | null {
  // No field holding an address is this long; the cap keeps a garbled line from costing seconds.
  if (!value || value.length > 1000) return null;
  const all = value.match(new RegExp(EMAIL.source, 'g')) ?? [];
  // Two addresses in one field: which one is the buyer's would be a guess.
  return all.length === 1 && all[0] !== undefined ? all[0].toLowerCase() : null;
}

/** A quantity as written (`3`, `3 x`, `x3`); anything but a whole number from 1 up is a ParseError. */
export function quantityOf(value: string | null, what: string): number {
  if (value === null) return 1;
  const digits = /^\s*x?\s*(\d{1,6})\s*x?\s*$/i.exec(value)?.[1];
  const quantity = digits === undefined ? NaN : Number(digits);
  if (!Number.isInteger(quantity) || quantity < 1) {
    throw new ParseError(`${what}: quantity "${value}" is not a whole number of 1 or more`);
  }
  return quantity;
}

/** `Yes`/`No` style flags; null for anything else, so a caller never reads an unknown word as "no". */
export function yesNo(value: string | null): boolean | null {
  if (value === null) return null;
  const v = value.trim().toLowerCase();
  if (['yes', 'true', '1', 'y', 'on'].includes(v)) return true;
  if (['no', 'false', '0', 'n', 'off'].includes(v)) return false;
  return null;
}

export interface Money {
  readonly amount: string;
  readonly currency: string | null;
}

const CURRENCY_SYMBOLS: Readonly<Record<string, string>> = { $: 'USD', '€': 'EUR', '£': 'GBP', '¥': 'JPY' };

/** Dollars other than the US one, as vendors write them before the sign (CA$29). */
const DOLLAR_PREFIXES: Readonly<Record<string, string>> = { US: 'USD', CA: 'CAD', C: 'CAD', A: 'AUD', AU: 'AUD', NZ: 'NZD', HK: 'HKD', S: 'SGD', SG: 'SGD', MX: 'MXN' };

/**
 * "$1,234.50 USD", "29.00 USD", "EUR 25,00", "25,00 €", "CA$29" → decimal string and ISO currency.
 * A currency that cannot be told (an unknown prefix before $) is null, never a guess.
 */
export function parseMoney(text: string): Money | null {
  const code = /(?:^|[^A-Za-z])([A-Z]{3})(?![A-Za-z])/.exec(text)?.[1] ?? null;
  const symbol = /([A-Z]{0,2})([$€£¥])/.exec(text);
  const number = /\d[\d.,' \u00a0\u202f]*/.exec(text)?.[0]?.trim();
  if (!number) return null;
  let currency = code;
  if (currency === null && symbol?.[2] !== undefined) {
    const prefix = symbol[1] ?? '';
    currency = prefix === '' ? (CURRENCY_SYMBOLS[symbol[2]] ?? null) : symbol[2] === '$' ? (DOLLAR_PREFIXES[prefix] ?? null) : null;
  }
  return { amount: decimal(number), currency };
}

/** Reads both 1,234.50 and 1.234,50: a comma followed by one or two digits at the end is the decimal mark. */
function decimal(number: string): string {
  const compact = number.replace(/[ '\u00a0\u202f]/g, '');
  const european = /,\d{1,2}$/.test(compact);
  const digits = european ? compact.replace(/\./g, '').replace(',', '.') : compact.replace(/,/g, '');
  const [whole = '0', fraction] = digits.split('.');
  return fraction === undefined ? whole : `${whole}.${fraction}`;
}

/**
 * A line total divided by the quantity, exactly, with the total's decimals; null when it does not
 * divide exactly (a rounded unit price would be a guess).
 */
export function unitPrice(total: string, quantity: number): string | null {
  const [whole = '0', fraction = ''] = total.split('.');
  const minor = BigInt(`${whole}${fraction}`);
  const q = BigInt(quantity);
  if (minor % q !== 0n) return null;
  const unit = (minor / q).toString().padStart(fraction.length + 1, '0');
  return fraction.length === 0 ? unit : `${unit.slice(0, -fraction.length)}.${unit.slice(-fraction.length)}`;
}

const FAMILY_NAME_FIRST = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;

/**
 * A full name from first and last name fields. Names in Chinese, Japanese or Korean script are
 * written family name first (山田 太郎), as their owners write them; others first name first.
 */
export function fullName(first: string | null, last: string | null): string | null {
  const parts = [first?.trim(), last?.trim()].filter((p): p is string => !!p);
  if (parts.length === 0) return null;
  if (parts.length === 2 && parts.every((p) => FAMILY_NAME_FIRST.test(p))) parts.reverse();
  return parts.join(' ');
}
