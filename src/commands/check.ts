/**
 * `keymailer check`: everything keymailer needs, tried once, one line per check with ✓ or ✗ and
 * the reason, so a seller finds a wrong password or a broken template before the first sale does.
 *
 * It does what the daemon would do at start and nothing more: it may create the database (and
 * migrate it) and the IMAP Processed/Review folders, which the daemon creates anyway; it sends no
 * mail and moves no message. Every printed reason passes the log redactor, so no configured
 * secret is ever echoed, whatever a server puts into its error message.
 *
 * Exit codes: 0 every check passed; 1 any ✗; 3 the config itself is invalid (nothing else is tried).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { ImapFlowError } from 'imapflow';
import { loadConfig, type LoadedConfig, type ProductConfig } from '../config';
import { smtpMailer, fileMailer, type Mailer } from '../deliver/mailer';
import { Renderer } from '../deliver/render';
import { ConfigError, coerceError } from '../errors';
import { checkSerialSettings, makeSerials } from '../fulfil/serial';
import { redactor } from '../log';
import { openDatabase } from '../record/db';
import { newImapClient } from '../source/imap';
import { CONFIG_OPTION_HELP, SELLER_EXIT, TEST_BUYER, out, printable } from './seller-support';

const SERVER_TIMEOUT_MS = 10_000;
/** Stands in for the serial when the product cannot make one, so the template is still tried. */
const PLACEHOLDER_SERIAL = 'CHECK-SERIAL-0000';

class Report {
  failures = 0;

  constructor(private readonly redact: (text: string) => string) {}

  /** Printed at once, not at the end: the seller sees which check is waiting on a slow server. */
  pass(text: string): void {
    out(`✓ ${this.redact(printable(text))}\n`);
  }

  fail(text: string, reason: string): void {
    this.failures++;
    out(`✗ ${this.redact(printable(`${text}: ${reason}`))}\n`);
  }
}

/** Rejects after ms; the work's own late rejection is swallowed so it cannot crash the process. */
async function within<T>(ms: number, work: Promise<T>, onTimeout: () => void = () => undefined): Promise<T> {
  work.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Error(`no answer within ${ms / 1000} s`));
    }, ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Proves a folder can take files the way keymailer writes them, not just that access() says so. */
async function checkWritableFolder(folder: string): Promise<void> {
  await fs.promises.mkdir(folder, { recursive: true });
  // Not an .eml: a running daemon watching this folder ignores it.
  const probe = path.join(folder, `.keymailer-check-${process.pid}`);
  await fs.promises.writeFile(probe, 'keymailer check\n');
  await fs.promises.unlink(probe);
}

function checkDatabase(loaded: LoadedConfig, report: Report): void {
  const file = loaded.config.database;
  const existed = fs.existsSync(file);
  try {
    const db = openDatabase(file);
    try {
      // BEGIN IMMEDIATE takes the write lock: a read-only file or a stuck writer shows up here.
      db.exec('BEGIN IMMEDIATE');
      db.exec('ROLLBACK');
      const version = db.pragma('user_version', { simple: true }) as number;
      report.pass(`database ${file} ${existed ? 'opens' : 'created'}, writable, schema up to date (version ${version})`);
    } finally {
      db.close();
    }
  } catch (thrown) {
    report.fail(`database ${file}`, coerceError(thrown).message);
  }
}

/** The serial for the test buyer, or null after reporting why this product cannot make one. */
function checkSerial(product: ProductConfig, report: Report): string | null {
  try {
    checkSerialSettings(product);
    const serials = makeSerials(product, {
      name: TEST_BUYER.name,
      email: TEST_BUYER.email,
      productId: product.id,
      orderId: 'CHECK-1',
      quantity: 1,
      test: false,
      issuedAt: new Date().toISOString().slice(0, 10),
    });
    const first = serials[0];
    if (first === undefined) throw new Error('no serial was made');
    report.pass(`serial settings of ${product.id}: made a serial for "${TEST_BUYER.name}"`);
    return first;
  } catch (thrown) {
    report.fail(`serial settings of ${product.id}`, coerceError(thrown).message);
    return null;
  }
}

async function checkTemplate(renderer: Renderer, loaded: LoadedConfig, product: ProductConfig, serial: string | null, report: Report): Promise<void> {
  const shown = serial ?? PLACEHOLDER_SERIAL;
  const what = `template "${product.template}" for ${product.id}`;
  try {
    const data = {
      buyer: TEST_BUYER,
      licenseName: TEST_BUYER.name,
      product: { id: product.id, name: product.name },
      serials: [shown],
      quantity: 1,
      order: { id: 'CHECK-1', vendor: 'check' },
      test: false,
    };
    const { text, html } = renderer.render(product.template, data);
    // The whole MIME message too: a subject or address that cannot be encoded fails here, not at a sale.
    await renderer.buildBuyerMail(product.template, data, 'keymailer-check');
    if (!text.includes(shown) && !(html ?? '').includes(shown)) {
      report.fail(what, 'renders, but the mail does not show the serial (use {{serial}} or {{#each serials}})');
      return;
    }
    report.pass(`${what} renders (${path.join(loaded.templatesDir, product.template)}.*.hbs)`);
  } catch (thrown) {
    report.fail(what, coerceError(thrown).message);
  }
}

function imapReason(thrown: unknown): string {
  const e = coerceError(thrown) as ImapFlowError;
  if (e.authenticationFailed) return `login refused${e.responseText ? ` (${e.responseText})` : ''}: check imap.user and imap.pass`;
  if (e.code === 'ECONNREFUSED') return `connection refused: check imap.host and imap.port (${e.message})`;
  if (e.tlsFailed) return `TLS failed: ${e.message} (imap.secure, imap.allowSelfSigned)`;
  return e.responseText ?? e.message;
}

async function checkImap(loaded: LoadedConfig, report: Report): Promise<void> {
  const imap = loaded.config.imap;
  if (!imap) return;
  const where = `IMAP ${imap.user}@${imap.host}:${imap.port}`;
  const client = newImapClient(imap, {
    connectionTimeout: SERVER_TIMEOUT_MS,
    greetingTimeout: SERVER_TIMEOUT_MS,
    socketTimeout: SERVER_TIMEOUT_MS,
  });
  // Before connect(): an 'error' event without a listener would end the whole process.
  client.on('error', () => undefined);
  try {
    await within(SERVER_TIMEOUT_MS, client.connect(), () => client.close());
  } catch (thrown) {
    client.close();
    report.fail(`${where} login`, imapReason(thrown));
    return;
  }
  report.pass(`${where} login`);
  try {
    await within(
      SERVER_TIMEOUT_MS,
      (async () => {
        const names = new Set((await client.list()).map((box) => box.path));
        const exists = (name: string): boolean =>
          name.toUpperCase() === 'INBOX' ? [...names].some((n) => n.toUpperCase() === 'INBOX') : names.has(name);
        if (exists(imap.mailbox)) report.pass(`IMAP mailbox "${imap.mailbox}" exists`);
        else report.fail(`IMAP mailbox "${imap.mailbox}"`, 'does not exist (imap.mailbox): keymailer reads notifications from it');
        for (const folder of [imap.processed, imap.review]) {
          if (exists(folder)) {
            report.pass(`IMAP folder "${folder}" exists`);
            continue;
          }
          try {
            await client.mailboxCreate(folder);
            report.pass(`IMAP folder "${folder}" created`);
          } catch (thrown) {
            report.fail(`IMAP folder "${folder}"`, `does not exist and cannot be created: ${imapReason(thrown)}`);
          }
        }
      })(),
      () => client.close(),
    );
  } catch (thrown) {
    report.fail(`${where} folders`, imapReason(thrown));
  } finally {
    await within(SERVER_TIMEOUT_MS, client.logout()).catch(() => client.close());
  }
}

function smtpReason(thrown: unknown): string {
  const e = coerceError(thrown) as Error & { code?: string };
  if (e.code === 'EAUTH') return `login refused: check smtp.user and smtp.pass (${e.message})`;
  if (/ECONNREFUSED/.test(e.message)) return `connection refused: check smtp.host and smtp.port (${e.message})`;
  return e.message;
}

async function checkDelivery(loaded: LoadedConfig, report: Report): Promise<void> {
  const smtp = loaded.config.smtp;
  if (!smtp) {
    const mailer = fileMailer(loaded.config.outbox);
    try {
      await mailer.verify();
      await checkWritableFolder(loaded.config.outbox);
      report.pass(`outbox folder ${loaded.config.outbox} is writable (no smtp configured: buyer mails are written there)`);
    } catch (thrown) {
      report.fail(`outbox folder ${loaded.config.outbox}`, coerceError(thrown).message);
    }
    return;
  }
  const what = `SMTP ${smtp.user ? `${smtp.user}@` : ''}${smtp.host}:${smtp.port} ${smtp.user ? 'login' : 'connection (no smtp.user: no login)'}`;
  const mailer: Mailer = smtpMailer(smtp);
  try {
    await within(SERVER_TIMEOUT_MS, mailer.verify());
    report.pass(what);
  } catch (thrown) {
    report.fail(what, smtpReason(thrown));
  } finally {
    mailer.close();
  }
}

async function checkSource(loaded: LoadedConfig, report: Report): Promise<void> {
  if (loaded.config.imap) {
    await checkImap(loaded, report);
    return;
  }
  const folder = loaded.config.dropFolder;
  try {
    await checkWritableFolder(folder);
    report.pass(`drop folder ${folder} is writable (no imap configured: notifications are read from there)`);
  } catch (thrown) {
    report.fail(`drop folder ${folder}`, coerceError(thrown).message);
  }
}

async function check(options: { config?: string }): Promise<number> {
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig(options.config);
  } catch (thrown) {
    if (!(thrown instanceof ConfigError)) throw thrown;
    // A ConfigError names the key and never holds its value, so it is safe to print as it is.
    out(`✗ config: ${printable(thrown.message)}\nnothing else checked: fix the config first\n`);
    return SELLER_EXIT.config;
  }
  const report = new Report(redactor(loaded.secrets));
  report.pass(`config ${loaded.file ?? '(built-in demo)'} is valid`);
  checkDatabase(loaded, report);
  const renderer = new Renderer(loaded.templatesDir, loaded.config.from);
  for (const product of loaded.config.products) {
    const serial = checkSerial(product, report);
    await checkTemplate(renderer, loaded, product, serial, report);
  }
  await checkSource(loaded, report);
  await checkDelivery(loaded, report);
  out(report.failures === 0 ? 'all checks passed\n' : `${report.failures} check${report.failures === 1 ? '' : 's'} failed\n`);
  return report.failures === 0 ? SELLER_EXIT.ok : SELLER_EXIT.failed;
}

export function registerCheckCommand(program: Command): void {
  program
    .command('check')
    .description('check the config, database, templates, serial settings, mailbox and mail server; one line per check')
    .option('-c, --config <path>', CONFIG_OPTION_HELP)
    .addHelpText(
      'after',
      `
Prints one line per check, ✓ or ✗ with the reason:
  the config is valid; the database opens, is writable and its schema is up to date;
  for each product: its serial settings make a serial for a test name, and its template renders
  a mail that shows the serial;
  with imap: login, the mailbox exists, the Processed and Review folders exist (created if
  missing, as keymailer would at start); without imap: the drop folder is writable;
  with smtp: login (or connection); without smtp: the outbox folder is writable.
Servers get ${SERVER_TIMEOUT_MS / 1000} s each. No mail is sent, no message moved, no secret printed.

Exit codes: 0 every check passed, 1 any check failed, 3 the config is invalid.

Examples:
  keymailer check
  keymailer check --config /etc/keymailer/config.yaml`,
    )
    .action(async (options: { config?: string }) => {
      process.exitCode = await check(options);
    });
}
