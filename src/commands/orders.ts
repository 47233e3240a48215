/**
 * `keymailer orders`: the order log as a table for reading, or as JSON Lines / CSV for scripts and
 * spreadsheets.
 *
 * It opens the database read-only and takes no lease, so it runs while the daemon works (SQLite's
 * WAL lets a reader see the last committed state without blocking the writer). It never migrates:
 * an old database is read as it is, a missing one is reported, never created.
 *
 * Exit codes: 0 listed (also when nothing matched), 1 no database or it cannot be read,
 * 2 bad arguments, 3 bad configuration.
 */
import { once } from 'node:events';
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { coerceError } from '../errors';
import { NO_PROGRESS, createProgress, type Progress } from '../progress';
import { CONFIG_OPTION_HELP, SELLER_EXIT, err, loadConfigOrReport, printable } from './seller-support';

const STATES = ['review', 'fulfilled', 'sent', 'refunded'] as const;

interface OrdersOptions {
  config?: string;
  since?: string;
  status?: (typeof STATES)[number];
  search?: string;
  json?: boolean;
  csv?: boolean;
}

/** One order as the database holds it, with the number of resends from the outbox. */
interface LogRow {
  readonly id: number;
  readonly received_at: string;
  readonly vendor: string;
  readonly vendor_order_id: string | null;
  readonly product_id: string | null;
  readonly vendor_product: string;
  readonly buyer_name: string;
  readonly buyer_email: string;
  readonly license_name: string | null;
  readonly quantity: number;
  readonly price: string | null;
  readonly currency: string | null;
  readonly test: number;
  readonly state: string;
  readonly reason: string | null;
  readonly fulfilled_at: string | null;
  readonly sent_at: string | null;
  readonly resends: number;
}

/**
 * The machine-readable shape, shared by --json and --csv (same names, same order), so a script
 * can switch formats without remapping. Times stay in UTC, ISO 8601, as stored.
 */
function record(row: LogRow): Record<string, string | number | boolean | null> {
  return {
    id: row.id,
    receivedAt: row.received_at,
    vendor: row.vendor,
    orderId: row.vendor_order_id,
    product: row.product_id,
    vendorProduct: row.vendor_product,
    buyerName: row.buyer_name,
    buyerEmail: row.buyer_email,
    licenseName: row.license_name,
    quantity: row.quantity,
    price: row.price,
    currency: row.currency,
    test: row.test === 1,
    state: row.state,
    reason: row.reason,
    fulfilledAt: row.fulfilled_at,
    sentAt: row.sent_at,
    resends: row.resends,
  };
}

const FIELDS = Object.keys(
  record({
    id: 0, received_at: '', vendor: '', vendor_order_id: null, product_id: null, vendor_product: '', buyer_name: '',
    buyer_email: '', license_name: null, quantity: 0, price: null, currency: null, test: 0, state: '', reason: null,
    fulfilled_at: null, sent_at: null, resends: 0,
  }),
);

const AGE_UNITS_MS: Readonly<Record<string, number>> = { h: 3600_000, d: 86_400_000, w: 7 * 86_400_000 };

/**
 * --since as the UTC ISO time orders are stored with: YYYY-MM-DD is local midnight (the seller
 * thinks in their own days), a date-time without offset is local, one with Z or an offset is
 * exact, and 7d / 12h / 2w are ages counted back from now.
 */
export function parseSince(value: string, now: number = Date.now()): string {
  const age = /^(\d+)([hdw])$/.exec(value);
  if (age) return new Date(now - Number(age[1]) * (AGE_UNITS_MS[age[2] ?? 'd'] ?? 0)).toISOString();
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (day) {
    const [y, m, d] = [Number(day[1]), Number(day[2]), Number(day[3])];
    const local = new Date(y, m - 1, d);
    if (local.getFullYear() !== y || local.getMonth() !== m - 1 || local.getDate() !== d) {
      throw new InvalidArgumentError('must be a real calendar date');
    }
    return local.toISOString();
  }
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(value)) {
    const ms = Date.parse(value);
    if (!Number.isNaN(ms)) return new Date(ms).toISOString();
  }
  throw new InvalidArgumentError('must be YYYY-MM-DD, YYYY-MM-DDTHH:MM, or an age such as 7d, 12h or 2w');
}

/** Lowercase without accents, so "muller" finds "Müller" and "MARIE" finds "marie". */
function fold(text: string): string {
  return text.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase();
}

function matchesSearch(row: LogRow, needle: string): boolean {
  return [row.vendor_order_id, row.buyer_name, row.buyer_email, row.license_name, row.product_id, row.vendor_product].some(
    (field) => field !== null && fold(field).includes(needle),
  );
}

/** A spreadsheet runs a cell starting with one of these as a formula; a buyer name must never be one. */
const FORMULA_START = /^[=+\-@\t\r]/;
const PLAIN_NUMBER = /^[+-]?\d+(\.\d+)?$/;

/** One CSV field per RFC 4180: quoted when it holds a comma, a quote or a line break; quotes doubled. */
export function csvField(value: string | number | boolean | null): string {
  if (value === null) return '';
  let text = String(value);
  if (typeof value === 'string' && FORMULA_START.test(text) && !PLAIN_NUMBER.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function csvLine(values: readonly (string | number | boolean | null)[]): string {
  return `${values.map(csvField).join(',')}\r\n`;
}

/** Batches small writes and waits for the pipe to drain, so a big log never piles up in memory. */
class Output {
  private buffer = '';

  constructor(private readonly stream: NodeJS.WritableStream) {}

  async write(text: string): Promise<void> {
    this.buffer += text;
    if (this.buffer.length >= 64 * 1024) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.buffer === '') return;
    const chunk = this.buffer;
    this.buffer = '';
    if (!this.stream.write(chunk)) await once(this.stream, 'drain');
  }
}

interface Column {
  readonly title: string;
  readonly max: number;
  readonly right?: boolean;
  readonly value: (row: LogRow) => string;
}

function localTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

const COLUMNS: readonly Column[] = [
  { title: 'ID', max: 8, right: true, value: (r) => String(r.id) },
  { title: 'RECEIVED', max: 16, value: (r) => localTime(r.received_at) },
  { title: 'VENDOR', max: 12, value: (r) => r.vendor },
  { title: 'ORDER', max: 22, value: (r) => r.vendor_order_id ?? '' },
  { title: 'PRODUCT', max: 16, value: (r) => r.product_id ?? r.vendor_product },
  { title: 'BUYER', max: 24, value: (r) => r.buyer_name },
  { title: 'EMAIL', max: 32, value: (r) => r.buyer_email },
  { title: 'QTY', max: 5, right: true, value: (r) => String(r.quantity) },
  { title: 'STATE', max: 16, value: (r) => `${r.state}${r.test === 1 ? ' (test)' : ''}${r.resends > 0 ? ` +${r.resends} resent` : ''}` },
  { title: 'REASON', max: 40, value: (r) => r.reason ?? '' },
];

/** Code points, not UTF-16 units, so "Müller" is six wide like it looks. */
function width(text: string): number {
  return [...text].length;
}

function shorten(text: string, max: number): string {
  const chars = [...printable(text).trim()];
  return chars.length <= max ? chars.join('') : `${chars.slice(0, max - 1).join('')}…`;
}

function table(rows: readonly LogRow[]): string {
  const cells = rows.map((row) => COLUMNS.map((c) => shorten(c.value(row), c.max)));
  const widths = COLUMNS.map((c, i) => Math.max(width(c.title), ...cells.map((line) => width(line[i] ?? ''))));
  const format = (line: readonly string[]): string =>
    `${line
      .map((cell, i) => {
        const pad = ' '.repeat(Math.max(0, (widths[i] ?? 0) - width(cell)));
        return COLUMNS[i]?.right ? pad + cell : cell + pad;
      })
      .join('  ')
      .trimEnd()}\n`;
  return format(COLUMNS.map((c) => c.title)) + cells.map(format).join('');
}

async function listOrders(options: OrdersOptions): Promise<number> {
  const loaded = loadConfigOrReport(options.config);
  if (!loaded) return SELLER_EXIT.config;
  const file = loaded.config.database;
  if (!fs.existsSync(file)) {
    err(`keymailer: no order database at ${file} yet: keymailer creates it on its first run (is "database" in the config right?)\n`);
    return SELLER_EXIT.failed;
  }
  let db: Database.Database;
  try {
    // Read-only and no migrations: this must never change, lock or upgrade the daemon's database.
    db = new Database(file, { readonly: true, fileMustExist: true });
    // The daemon may hold the write lock for a moment while checkpointing; wait rather than fail.
    db.pragma('busy_timeout = 5000');
  } catch (thrown) {
    err(`keymailer: cannot open the order database ${file}: ${coerceError(thrown).message}\n`);
    return SELLER_EXIT.failed;
  }
  try {
    return await writeOrders(db, file, options);
  } catch (thrown) {
    const e = coerceError(thrown);
    // A file that is not ours reads as "no such table" or "not a database", not as a crash.
    const hint = /no such table|not a database/.test(e.message) ? ' (is this a keymailer database?)' : '';
    err(`keymailer: cannot read orders from ${file}: ${e.message}${hint}\n`);
    return SELLER_EXIT.failed;
  } finally {
    db.close();
  }
}

/** Rows per query: each batch is its own short read, so a slow reader (`| less`) never pins the WAL. */
const BATCH = 1000;

/**
 * The matching orders, oldest first, fetched in batches by id (keyset paging): a snapshot held for
 * the whole listing would keep the daemon's WAL from being checkpointed while, say, the output
 * sits in a pager for an hour.
 */
function* readOrders(db: Database.Database, where: readonly string[], params: readonly string[]): Generator<LogRow> {
  // Resends are few: counted once up front, not joined into every batch (no index on order_id).
  const resends = new Map<number, number>();
  const counted = db
    .prepare(`SELECT order_id AS id, count(*) AS n FROM outbox WHERE kind = 'resend' AND order_id IS NOT NULL GROUP BY order_id`)
    .all() as { id: number; n: number }[];
  for (const { id, n } of counted) resends.set(id, n);
  const select = db.prepare(
    `SELECT id, received_at, vendor, vendor_order_id, product_id, vendor_product, buyer_name, buyer_email, license_name,
            quantity, price, currency, test, state, reason, fulfilled_at, sent_at
     FROM orders o WHERE ${[...where, 'o.id > ?'].join(' AND ')} ORDER BY o.id LIMIT ${BATCH}`,
  );
  let after = 0;
  for (;;) {
    const rows = select.all(...params, after) as Omit<LogRow, 'resends'>[];
    for (const row of rows) yield { ...row, resends: resends.get(row.id) ?? 0 };
    const last = rows[rows.length - 1];
    if (last === undefined || rows.length < BATCH) return;
    after = last.id;
  }
}

async function writeOrders(db: Database.Database, file: string, options: OrdersOptions): Promise<number> {
  const where: string[] = [];
  const params: string[] = [];
  if (options.since !== undefined) {
    where.push('o.received_at >= ?');
    params.push(options.since);
  }
  if (options.status !== undefined) {
    where.push('o.state = ?');
    params.push(options.status);
  }
  const rows = (): Generator<LogRow> => readOrders(db, where, params);
  const needle = options.search !== undefined ? fold(options.search) : null;
  const keep = (row: LogRow): boolean => needle === null || matchesSearch(row, needle);

  if (!options.json && !options.csv) {
    const shown: LogRow[] = [];
    for (const row of rows()) if (keep(row)) shown.push(row);
    const stdout = new Output(process.stdout);
    if (shown.length === 0) await stdout.write(`no orders match (database ${file})\n`);
    else await stdout.write(`${table(shown)}${shown.length} order${shown.length === 1 ? '' : 's'}\n`);
    await stdout.flush();
    return SELLER_EXIT.ok;
  }

  // Progress only when the output goes elsewhere (a file, a pipe): drawn on the same terminal as
  // the CSV itself, the bar would be torn up by the lines it is counting. Counting costs a scan,
  // so it is done only when there is a terminal to draw on.
  let progress: Progress = NO_PROGRESS;
  if (!process.stdout.isTTY && process.stderr.isTTY) {
    const filter = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
    const count = db.prepare(`SELECT count(*) AS n FROM orders o ${filter}`).get(...params) as { n: number };
    progress = createProgress(count.n, options.csv ? 'orders → CSV' : 'orders → JSON');
  }
  const stdout = new Output(process.stdout);
  try {
    if (options.csv) await stdout.write(csvLine(FIELDS));
    for (const row of rows()) {
      progress.tick();
      if (!keep(row)) continue;
      const fields = record(row);
      await stdout.write(options.csv ? csvLine(Object.values(fields)) : `${JSON.stringify(fields)}\n`);
    }
    await stdout.flush();
  } finally {
    progress.done();
  }
  return SELLER_EXIT.ok;
}

/** The field names as help text lines no wider than width. */
function wrapList(items: readonly string[], indent: string, width: number): string {
  const lines: string[] = [];
  let line = indent;
  for (const [i, item] of items.entries()) {
    const piece = `${item}${i < items.length - 1 ? ',' : ''}`;
    if (line.length + piece.length + 1 > width && line.trim() !== '') {
      lines.push(line.trimEnd());
      line = indent;
    }
    line += `${piece} `;
  }
  lines.push(line.trimEnd());
  return lines.join('\n');
}

export function registerOrdersCommand(program: Command): void {
  program
    .command('orders')
    .description('list the order log: a table to read, or JSON Lines / CSV for scripts and spreadsheets')
    .addOption(
      new Option('--since <when>', 'only orders received since: YYYY-MM-DD (local midnight), YYYY-MM-DDTHH:MM, or an age: 7d, 12h, 2w').argParser(
        (value: string) => parseSince(value),
      ),
    )
    .addOption(new Option('--status <state>', 'only orders in this state').choices(STATES))
    .option('--search <text>', "only orders whose order id, buyer name, email, license name or product contains this (case and accents ignored)")
    .addOption(new Option('--json', 'JSON Lines: one JSON object per order per line').conflicts('csv'))
    .addOption(new Option('--csv', 'CSV (RFC 4180) with a header row').conflicts('json'))
    .option('-c, --config <path>', CONFIG_OPTION_HELP)
    .addHelpText(
      'after',
      `
Oldest first. Reads the database only and takes no lock: safe to run while keymailer runs.
The table shows received times in local time and shortens long fields; --json and --csv give
every field in full, times in UTC (ISO 8601), with the same field names in the same order:
${wrapList(FIELDS, '  ', 92)}
--json writes JSON Lines (one object per line, not one big array) so a big log streams: read it
line by line, e.g. with jq. --csv quotes per RFC 4180 and ends lines with CRLF; a text field that
starts with = + - or @ gets a leading ' so a spreadsheet never runs a buyer's name as a formula.
Serials are not listed: \`keymailer serial\` makes one again, \`keymailer resend\` mails it again.
With --json or --csv into a file or pipe, a progress bar shows on the terminal (stderr) for a
big log; nothing is printed to stderr when it is not a terminal.

Exit codes: 0 listed (also when nothing matched), 1 no database or it cannot be read,
2 bad arguments, 3 bad configuration.

Examples:
  keymailer orders
  keymailer orders --status review
  keymailer orders --since 7d --search dubois
  keymailer orders --since 2026-01-01 --csv > orders-2026.csv
  keymailer orders --json | jq -r 'select(.state == "sent") | .buyerEmail'`,
    )
    .action(async (options: OrdersOptions) => {
      process.exitCode = await listOrders(options);
    });
}
