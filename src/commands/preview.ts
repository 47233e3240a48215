/**
 * `keymailer preview --product ID`: the buyer mail for a product, exactly as keymailer would
 * build it (same serial code, same template, same MIME composer), written as preview-<id>.eml
 * (open it in a mail program) and preview-<id>.html (open it in a browser). Nothing is sent or
 * recorded.
 *
 * Exit codes: 0 written; 1 no serial for these inputs, the template does not render, or the files
 * cannot be written; 2 bad arguments or unknown product; 3 bad configuration (a missing template too).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { ProductConfig } from '../config';
import { Renderer, type BuyerMailData } from '../deliver/render';
import { ConfigError, coerceError } from '../errors';
import { SerialError, makeSerials } from '../fulfil/serial';
import { CONFIG_OPTION_HELP, SELLER_EXIT, TEST_BUYER, err, loadConfigOrReport, out, parseWholeNumber, printable } from './seller-support';

interface PreviewOptions {
  product: string;
  name: string;
  email: string;
  quantity: number;
  test: boolean;
  out: string;
  config?: string;
}

const PREVIEW_ORDER_ID = 'PREVIEW-1001';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** For a template without an HTML part: the text part as a page, so there is still something to open. */
function textAsHtml(subject: string, text: string): string {
  return `<!doctype html>\n<html><head><meta charset="utf-8"><title>${escapeHtml(subject)}</title></head>\n<body><pre style="font-family: inherit; white-space: pre-wrap;">${escapeHtml(text)}</pre></body></html>\n`;
}

async function preview(options: PreviewOptions): Promise<number> {
  const loaded = loadConfigOrReport(options.config);
  if (!loaded) return SELLER_EXIT.config;
  const product: ProductConfig | undefined = loaded.config.products.find((p) => p.id === options.product);
  if (!product) {
    const known = loaded.config.products.map((p) => p.id).join(', ') || 'none';
    err(`keymailer: unknown product ${JSON.stringify(options.product)}; known: ${known}\n`);
    return SELLER_EXIT.usage;
  }
  const renderer = new Renderer(loaded.templatesDir, loaded.config.from);
  try {
    renderer.check(product.template);
  } catch (thrown) {
    if (!(thrown instanceof ConfigError)) throw thrown;
    err(`keymailer: config error: ${thrown.message}\n`);
    return SELLER_EXIT.config;
  }
  let serials: string[];
  try {
    serials = makeSerials(product, {
      name: options.name,
      email: options.email,
      productId: product.id,
      orderId: PREVIEW_ORDER_ID,
      quantity: options.quantity,
      test: options.test,
      issuedAt: new Date().toISOString().slice(0, 10),
    });
  } catch (thrown) {
    if (!(thrown instanceof SerialError)) throw thrown;
    // The same reason an order with these details would go to review with.
    err(`keymailer: no serial for this order: ${thrown.message}\n`);
    return SELLER_EXIT.failed;
  }
  const data: BuyerMailData = {
    buyer: { name: options.name, email: options.email },
    licenseName: options.name,
    product: { id: product.id, name: product.name },
    serials,
    quantity: options.quantity,
    order: { id: PREVIEW_ORDER_ID, vendor: 'preview' },
    test: options.test,
  };
  let eml: Buffer;
  let html: string;
  let htmlFromText: boolean;
  try {
    const rendered = renderer.render(product.template, data);
    eml = (await renderer.buildBuyerMail(product.template, data, `preview:${product.id}`)).raw;
    htmlFromText = rendered.html === null;
    html = rendered.html ?? textAsHtml(rendered.subject, rendered.text);
  } catch (thrown) {
    err(`keymailer: template "${product.template}" does not render: ${coerceError(thrown).message}\n`);
    return SELLER_EXIT.failed;
  }
  const emlPath = path.resolve(options.out, `preview-${product.id}.eml`);
  const htmlPath = path.resolve(options.out, `preview-${product.id}.html`);
  try {
    fs.mkdirSync(path.dirname(emlPath), { recursive: true });
    fs.writeFileSync(emlPath, eml);
    // A byte-order mark: a template without <meta charset> would otherwise show "JosÃ©" in a
    // browser opening the file from disk; the BOM makes every browser read it as UTF-8.
    fs.writeFileSync(htmlPath, `\ufeff${html}`);
  } catch (thrown) {
    err(`keymailer: cannot write the preview: ${coerceError(thrown).message}\n`);
    return SELLER_EXIT.failed;
  }
  out(
    `${emlPath}\n${htmlPath}\n` +
      (htmlFromText ? `(template "${product.template}" has no HTML part: buyers get text only; the .html shows that text)\n` : ''),
  );
  err(`${printable(`preview of ${product.id} for "${options.name}" <${options.email}>, ${serials.length} serial(s)`)}; nothing was sent\n`);
  return SELLER_EXIT.ok;
}

export function registerPreviewCommand(program: Command): void {
  program
    .command('preview')
    .description('write the buyer mail for a product to preview-<product>.eml and .html, to look at before going live')
    .requiredOption('--product <id>', 'product id, as in products[].id of the config')
    .option('--name <name>', 'the name to license (the serial is made for it)', TEST_BUYER.name)
    .option('--email <email>', "buyer's email", TEST_BUYER.email)
    .option('--quantity <n>', 'quantity bought (perUnit products get one serial per unit)', parseWholeNumber, 1)
    .option('--test', 'a test order: the serial is made with the test key', false)
    .option('--out <dir>', 'folder to write the two files to (created if missing)', '.')
    .option('-c, --config <path>', CONFIG_OPTION_HELP)
    .addHelpText(
      'after',
      `
Builds the mail exactly as keymailer would for an order of this product (order id
${PREVIEW_ORDER_ID}) and writes preview-<product>.eml (open it in your mail program: that is
what the buyer receives) and preview-<product>.html (the HTML part, for a browser). Prints the
two paths on standard output. Nothing is sent or recorded; existing preview files are replaced.

Exit codes: 0 written, 1 no serial for these details, the template does not render or the files
cannot be written, 2 bad arguments or unknown product, 3 bad configuration (or missing template).

Examples:
  keymailer preview --product widget-pro
  keymailer preview --product widget-pro --name "José Müller" --quantity 3 --out /tmp`,
    )
    .action(async (options: PreviewOptions) => {
      process.exitCode = await preview(options);
    });
}
