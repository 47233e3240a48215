/**
 * `keymailer resend ORDER|EMAIL`: a buyer lost their serial; mail it again. Each resend is a new
 * mail with its own Message-ID (the buyer's client must not hide it as a copy of the first),
 * queued in the outbox as kind "resend" with an event, exactly as `--reprocess … --resend` does
 * (Pipeline.resendOrder).
 *
 * Who sends it: when no daemon holds the database lease, this command takes it and sends the
 * mail now through the configured mailer. When a daemon runs, two senders working one outbox could
 * both pick up the same row and mail it twice, so the resend is only queued for the daemon.
 *
 * Exit codes: 0 every matching order was resent (sent, or queued for the running daemon);
 * 1 nothing matched, or an order could not be resent or its mail not sent yet; 2 bad arguments;
 * 3 bad configuration.
 */
import fs from 'node:fs';
import readline from 'node:readline/promises';
import type { Command } from 'commander';
import { ConfigError, coerceError } from '../errors';
import { createLogger } from '../log';
import { buildApp, type App } from '../main';
import type { OrderRow } from '../record/store';
import { CONFIG_OPTION_HELP, SELLER_EXIT, err, loadConfigOrReport, out, printable } from './seller-support';

interface ResendOptions {
  config?: string;
  yes?: boolean;
}

interface ResendRow {
  readonly sent_at: string | null;
  readonly failed_at: string | null;
  readonly last_error: string | null;
}

function describeOrder(order: OrderRow): string {
  const vendorId = order.vendor_order_id ? `order ${order.vendor_order_id}` : `order #${order.id}`;
  return printable(`${vendorId} (#${order.id}, ${order.vendor}, ${order.product_id ?? order.vendor_product}) of ${order.buyer_name} <${order.buyer_email}>`);
}

/** Asks on the terminal; anything but y/yes is a no. */
async function confirm(question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^(y|yes)$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** The newest resend mail of an order, to tell the seller whether it actually went out. */
function latestResend(app: App, orderId: number): ResendRow | undefined {
  return app.db
    .prepare(`SELECT sent_at, failed_at, last_error FROM outbox WHERE order_id = ? AND kind = 'resend' ORDER BY id DESC LIMIT 1`)
    .get(orderId) as ResendRow | undefined;
}

async function resend(reference: string, options: ResendOptions): Promise<number> {
  const loaded = loadConfigOrReport(options.config);
  if (!loaded) return SELLER_EXIT.config;
  if (!fs.existsSync(loaded.config.database)) {
    // buildApp would create an empty database here, hiding a wrong "database" path behind "no match".
    err(`keymailer: no order database at ${loaded.config.database}: no order was ever recorded there (is "database" in the config right?)\n`);
    return SELLER_EXIT.failed;
  }
  // Warnings and errors only (on stderr): stdout carries the one line per order the seller reads.
  const log = createLogger({ level: 'warn', secrets: loaded.secrets, stderr: true });
  let app: App;
  try {
    app = buildApp(loaded, log);
  } catch (thrown) {
    if (!(thrown instanceof ConfigError)) throw thrown;
    err(`keymailer: config error: ${thrown.message}\n`);
    return SELLER_EXIT.config;
  }
  try {
    return await resendWith(app, reference, options);
  } finally {
    await app.stop();
  }
}

async function resendWith(app: App, reference: string, options: ResendOptions): Promise<number> {
  const orders = app.store.findOrders(reference.trim());
  if (orders.length === 0) {
    err(
      `keymailer: no order matches ${JSON.stringify(reference)}: give keymailer's order number, the vendor's order id ` +
        `or the buyer's email (find it with: keymailer orders --search TEXT)\n`,
    );
    return SELLER_EXIT.failed;
  }
  if (orders.length > 1 && !options.yes && process.stdin.isTTY && process.stderr.isTTY) {
    err(`${orders.length} orders match ${JSON.stringify(reference)}:\n${orders.map((o) => `  ${describeOrder(o)}\n`).join('')}`);
    if (!(await confirm(`Resend all ${orders.length}? [y/N] `))) {
      err('nothing resent\n');
      return SELLER_EXIT.failed;
    }
  }

  // Only the lease holder sends: see the file comment. The lease is released by app.stop().
  const sendHere = app.lease.tryAcquire();
  // Without the lease our outbox must not even start: queueing a mail kicks it on its own.
  if (!sendHere) await app.outbox.stop();

  let exitCode: number = SELLER_EXIT.ok;
  const queued: OrderRow[] = [];
  for (const order of orders) {
    try {
      const result = await app.pipeline.resendOrder(order);
      if (result.queued) queued.push(order);
      else {
        out(`not resent: ${describeOrder(order)}: ${printable(result.reason ?? 'no serial to resend')}\n`);
        exitCode = SELLER_EXIT.failed;
      }
    } catch (thrown) {
      // A template that no longer renders: say so for this order and go on with the others.
      out(`not resent: ${describeOrder(order)}: ${printable(coerceError(thrown).message)}\n`);
      exitCode = SELLER_EXIT.failed;
    }
  }
  if (queued.length === 0) return exitCode;

  if (!sendHere) {
    const holder = app.lease.current()?.holder ?? 'another keymailer';
    for (const order of queued) out(`queued a resend of ${describeOrder(order)}; the running keymailer (${holder}) will send it\n`);
    return exitCode;
  }

  await app.outbox.kick();
  for (const order of queued) {
    const mail = latestResend(app, order.id);
    if (mail?.sent_at) {
      out(`resent ${describeOrder(order)} via ${app.mailer.description}\n`);
    } else if (mail?.failed_at) {
      out(`could not resend ${describeOrder(order)}: ${printable(mail.last_error ?? 'refused')}\n`);
      exitCode = SELLER_EXIT.failed;
    } else {
      out(
        `queued a resend of ${describeOrder(order)} but could not send it yet` +
          `${mail?.last_error ? ` (${printable(mail.last_error)})` : ''}; keymailer retries it when it runs\n`,
      );
      exitCode = SELLER_EXIT.failed;
    }
  }
  return exitCode;
}

export function registerResendCommand(program: Command): void {
  program
    .command('resend')
    .description("mail an order's serial(s) to the buyer again (a buyer lost them), recorded as a resend")
    .argument('<order-or-email>', "keymailer's order number, the vendor's order id, or the buyer's email (every order of that buyer)")
    .option('-y, --yes', 'resend every matching order without asking (asked only on a terminal when several match)')
    .option('-c, --config <path>', CONFIG_OPTION_HELP)
    .addHelpText(
      'after',
      `
The buyer gets the same serial(s) as the first time, in a new mail with its own Message-ID;
the outbox and the event log record it as a resend. Only orders that were fulfilled (have a
serial) can be resent. With an email, every order of that buyer is resent, one line each.
When keymailer is not running, the mail is sent now through the configured SMTP server (or
written to the outbox folder); when it is running, the resend is queued and the running
keymailer sends it, so no mail goes out twice.

Exit codes: 0 every matching order resent, 1 no order matches or one could not be resent or
sent yet, 2 bad arguments, 3 bad configuration.

Examples:
  keymailer resend 8811-2046-5537
  keymailer resend marie.dubois@example.net
  keymailer resend 42 --yes`,
    )
    .action(async (reference: string, options: ResendOptions) => {
      process.exitCode = await resend(reference, options);
    });
}
