/**
 * HTML to text with html-to-text, laid out so the label reader sees what a person sees: a table row
 * `<td>Label</td><td>value</td>` becomes the line `Label: value`.
 */
import type { DomNode, FormatCallback } from 'html-to-text';

type Builder = Parameters<FormatCallback>[2];
type TablePrinter = NonNullable<Parameters<Builder['closeTable']>[0]>['tableToString'];
type TablePrinterCell = Parameters<TablePrinter>[0][number][number];

/** Every table, layout or data, goes through rowsAsLines: vendors use both for their label rows. */
const formatRowTable: FormatCallback = (elem, walk, builder) => {
  builder.openTable();
  const visit = (node: DomNode): void => {
    if (node.type !== 'tag') return;
    switch (node.name) {
      case 'thead':
      case 'tbody':
      case 'tfoot':
        node.children.forEach(visit);
        return;
      case 'tr':
        builder.openTableRow();
        for (const cell of node.children) {
          if (cell.type !== 'tag' || (cell.name !== 'td' && cell.name !== 'th')) continue;
          // No maxColumnWidth: wrapping a long value would cut it across two lines.
          builder.openTableCell();
          walk(cell.children, builder);
          builder.closeTableCell();
        }
        builder.closeTableRow();
        return;
      default:
        return;
    }
  };
  elem.children.forEach(visit);
  builder.closeTable({ tableToString: rowsAsLines, leadingLineBreaks: 1, trailingLineBreaks: 1 });
};

/**
 * One line per row: a two-cell row is `Label: value` (a trailing colon of the label cell is not
 * doubled); a one-cell row is its text; wider rows keep their cells apart with " | ".
 */
function rowsAsLines(rows: TablePrinterCell[][]): string {
  const lines: string[] = [];
  for (const row of rows) {
    const cells = row.map((c) => c.text.trim()).filter((t) => t !== '');
    const [first, second] = cells;
    if (first === undefined) continue;
    if (cells.length === 2 && second !== undefined && !first.includes('\n')) {
      lines.push(`${first.replace(/\s*:$/, '')}: ${second}`);
    } else {
      lines.push(cells.join(cells.some((c) => c.includes('\n')) ? '\n' : ' | '));
    }
  }
  return lines.join('\n');
}

/** Compiled on first use: html-to-text costs ~60 ms at start-up, and many sellers never get HTML-only mail. */
let compiled: ((html: string) => string) | null = null;
const convert = (html: string): string => {
  compiled ??= makeConverter();
  return compiled(html);
};

const makeConverter = (): ((html: string) => string) =>
  (require('html-to-text') as typeof import('html-to-text')).compile({
  // Wrapping would split a long name or address across lines, and the label reader reads lines.
  wordwrap: false,
  formatters: { rowTable: formatRowTable },
  selectors: [
    { selector: 'table', format: 'rowTable' },
    { selector: 'a', options: { ignoreHref: true } },
    { selector: 'img', format: 'skip' },
    // Headings keep their case: a product or buyer name in an <h1> must read as written.
    ...(['h1', 'h2', 'h3', 'h4', 'h5', 'h6'] as const).map((h) => ({ selector: h, options: { uppercase: false } })),
  ],
});

/** The text a reader of this HTML sees, entities decoded, one table row per line. */
export function htmlToText(html: string): string {
  return convert(html)
    .split('\n')
    .map((line) => line.replace(/[ \t\u00a0]+$/, ''))
    .join('\n');
}
