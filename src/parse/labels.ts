/** Reading "Label: value" lines, the layout most vendors' plain-text notifications use. */

export interface LabelLine {
  /** The label, lower-cased, inner whitespace collapsed. */
  readonly label: string;
  readonly value: string;
  /** Line number in the text, so callers can split a notification into item blocks. */
  readonly line: number;
}

const LABEL_LINE = /^\s*([A-Za-z][A-Za-z0-9 #()/_.-]{0,60}?)\s*:\s*(.*?)\s*$/;

export function normaliseLabel(label: string): string {
  return label.trim().replace(/\s+/g, ' ').toLowerCase();
}

/** Every "Label: value" line in order; lines that are not labels are skipped. */
export function labelLines(text: string): LabelLine[] {
  const out: LabelLine[] = [];
  text.split(/\r?\n/).forEach((raw, line) => {
    const match = LABEL_LINE.exec(raw);
    if (match?.[1] !== undefined && match[2] !== undefined) {
      out.push({ label: normaliseLabel(match[1]), value: match[2], line });
    }
  });
  return out;
}

/** The first value for any of the labels, or null when none is present or all are empty. */
export function firstValue(lines: readonly LabelLine[], ...labels: string[]): string | null {
  const wanted = new Set(labels.map(normaliseLabel));
  for (const l of lines) if (wanted.has(l.label) && l.value !== '') return l.value;
  return null;
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

/** "$1,234.50 USD", "29.00 USD", "EUR 25,00", "25,00 €" → decimal string and ISO currency. */
export function parseMoney(text: string): { amount: string; currency: string | null } | null {
  const symbols: Record<string, string> = { $: 'USD', '€': 'EUR', '£': 'GBP', '¥': 'JPY' };
  const code = /\b([A-Z]{3})\b/.exec(text)?.[1] ?? null;
  const symbol = /[$€£¥]/.exec(text)?.[0];
  const number = /\d[\d.,' ]*/.exec(text)?.[0]?.trim();
  if (!number) return null;
  return { amount: decimal(number), currency: code ?? (symbol ? (symbols[symbol] ?? null) : null) };
}

/** Reads both 1,234.50 and 1.234,50 (a comma followed by exactly two digits at the end is decimal). */
function decimal(number: string): string {
  const compact = number.replace(/[ ']/g, '');
  const european = /,\d{1,2}$/.test(compact);
  const digits = european ? compact.replace(/\./g, '').replace(',', '.') : compact.replace(/,/g, '');
  const [whole = '0', fraction] = digits.split('.');
  return fraction === undefined ? whole : `${whole}.${fraction}`;
}
