/**
 * The Avangate (2Checkout) dynamic key generator: Avangate POSTs each approved order here and
 * delivers the codes in our answer to the buyer (shared/notes/avangate.md).
 *
 * Statuses, in the order they are decided (each counted in keymailer_signed_posts_total):
 *   403 forbidden       the peer is outside vendors.avangate.allowFrom (checked before anything
 *                       is read, so a prober learns nothing else)
 *   405 wrong_method    anything but POST (Allow: POST)
 *   413 too_large       a body over 64 KiB: refused on Content-Length alone, or as soon as the
 *                       stream passes the limit; the rest is never buffered
 *   400 malformed       not a form PHP and keymailer would read alike, no REFNO, a bad QUANTITY
 *   400 bad_hash        HASH missing or wrong: logged with REFNO and the peer's address, never the
 *                       secret or the HASH; the owner is alerted (at most once per 15 minutes)
 *   404 unknown_product no product matches PCODE, PSKU or PID
 *   503 review          the order is recorded but has no codes (a test order for a product
 *                       without serial.testKey, a name the serial cannot be made from): a non-200
 *                       makes Avangate retry, and once the seller fixed the product the retry
 *                       gets codes
 *   200 fulfilled       codes made now; replay: the codes of the first time, no second order row
 *   500 error           a bug or a code the answer cannot carry; the owner is alerted
 *
 * Every order that verifies and matches a product is in the orders table (vendor "avangate",
 * REFNO as the vendor's order id, PCODE (else PSKU, else PID) as the vendor's product, the buyer,
 * the codes, the state), whether answered 200 or 503.
 *
 * Which name is licensed: FIRSTNAME LASTNAME (COMPANY when both are empty) is the buyer's name and
 * the name the serial is made for, unless the product's `avangate.licenseField` names a custom
 * field whose value is non-empty: then that value is the license name. COMPANY is never preferred
 * over a person's name: Avangate sends it for business buyers too, and a serial must match what
 * the buyer will type from the name on their receipt.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LoadedConfig, ProductConfig } from '../config';
import type { RaiseAlert } from '../alerts';
import { coerceError } from '../errors';
import { matchProduct } from '../fulfil/products';
import type { Logger } from '../log';
import type { Pipeline } from '../pipeline';
import type { ParsedOrder } from '../types';
import {
  MalformedPostError,
  fieldValue,
  fieldValues,
  parsePostedFields,
  verifyHash,
  type PostedField,
} from '../authenticate/signed-post';
import { advancedXml, basicXml, binaryAnswer } from './avangate-answer';
import { addressAllowed, productAnswerPlan, type AvangateAnswerPlan, type AvangateVendor } from './avangate-settings';
import type { HttpMetrics, SignedPostResult } from './metrics';

/** The vendor id of these orders in the database and in metrics. */
export const AVANGATE_VENDOR = 'avangate';

/** Avangate's forms are a few hundred bytes; 64 KiB leaves room for many custom fields and options. */
export const BODY_LIMIT = 64 * 1024;

/** Bad HASHes come in floods when someone probes: the owner hears once per window, with a count. */
const FORGERY_ALERT_WINDOW_MS = 15 * 60_000;

export interface AvangateDeps {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly pipeline: Pick<Pipeline, 'recordSignedOrder'>;
  readonly alerts?: { readonly raise: RaiseAlert };
  readonly metrics: HttpMetrics;
}

export interface AvangateHandler {
  /** The URL path this handler owns (every method on it). */
  readonly path: string;
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

/** An answer ready to write. */
interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string | Buffer;
  readonly result: SignedPostResult;
}

const text = (status: number, body: string, result: SignedPostResult, headers: Record<string, string> = {}): Answer => ({
  status,
  headers: { 'Content-Type': 'text/plain; charset=utf-8', ...headers },
  body: `${body}\n`,
  result,
});

/** A value from the unverified form, fit for one log field: bounded, so a forger cannot flood the log. */
const forLog = (value: string | undefined): string | undefined => (value === undefined ? undefined : value.slice(0, 40));

/** The vendor's product code of an order: the same on every retry, whatever the config says. */
function productCodeOf(fields: readonly PostedField[]): string | null {
  for (const name of ['PCODE', 'PSKU', 'PID']) {
    const value = fieldValue(fields, name)?.trim();
    if (value) return value;
  }
  return null;
}

/** The product posted, tried by PCODE, then PSKU, then PID against each product's match list. */
function findProduct(products: readonly ProductConfig[], fields: readonly PostedField[]): ProductConfig | null {
  for (const name of ['PCODE', 'PSKU', 'PID']) {
    const value = fieldValue(fields, name)?.trim();
    if (!value) continue;
    const product = matchProduct(products, value, null);
    if (product) return product;
  }
  return null;
}

/**
 * The value of the custom field labelled `label`: product custom fields
 * (CUSTOM_FIELD_<PID>_TEXT[] / _VALUE[]) first, then order custom fields
 * (CUSTOM_FIELD_TEXT[] / CUSTOM_FIELD_VALUE[]). Labels compare case-insensitively, trimmed.
 */
export function customFieldValue(fields: readonly PostedField[], label: string): string | null {
  const wanted = label.trim().toLowerCase();
  const pid = fieldValue(fields, 'PID')?.trim();
  const prefixes = pid ? [`CUSTOM_FIELD_${pid}_`, 'CUSTOM_FIELD_'] : ['CUSTOM_FIELD_'];
  for (const prefix of prefixes) {
    const labels = fieldValues(fields, `${prefix}TEXT`);
    const values = fieldValues(fields, `${prefix}VALUE`);
    const index = labels.findIndex((l) => l.trim().toLowerCase() === wanted);
    const value = index < 0 ? undefined : values[index]?.trim();
    if (value) return value;
  }
  return null;
}

/** The order Avangate posted, or why it cannot be one (answered 400). */
export function orderFromFields(fields: readonly PostedField[], licenseField?: string): ParsedOrder | string {
  const refno = fieldValue(fields, 'REFNO')?.trim();
  if (!refno) return 'REFNO is missing';
  const code = productCodeOf(fields);
  if (code === null) return 'PCODE, PSKU and PID are all missing';
  const quantityText = fieldValue(fields, 'QUANTITY')?.trim() ?? '1';
  if (!/^[1-9][0-9]{0,5}$/.test(quantityText)) return 'QUANTITY is not a whole number of 1 or more';
  const person = [fieldValue(fields, 'FIRSTNAME'), fieldValue(fields, 'LASTNAME')]
    .map((part) => part?.trim() ?? '')
    .filter((part) => part !== '')
    .join(' ');
  const buyerName = person || (fieldValue(fields, 'COMPANY')?.trim() ?? '');
  return {
    vendorOrderId: refno,
    buyerName,
    buyerEmail: (fieldValue(fields, 'EMAIL') ?? '').trim().toLowerCase(),
    licenseName: licenseField === undefined ? null : customFieldValue(fields, licenseField),
    // Avangate posts no product name; its code is what the seller recognises in the order log.
    product: code,
    productCode: code,
    quantity: Number(quantityText),
    price: null,
    currency: null,
    test: fieldValue(fields, 'TESTORDER')?.trim().toUpperCase() === 'YES',
  };
}

/** The 200 answer carrying the codes, shaped as the product says. */
export function codesAnswer(plan: AvangateAnswerPlan, serials: readonly string[]): Omit<Answer, 'result'> {
  const xml = (body: string): Omit<Answer, 'result'> => ({ status: 200, headers: { 'Content-Type': 'text/xml; charset=utf-8' }, body });
  switch (plan.answer) {
    case 'basic':
      return xml(basicXml(serials, plan.description));
    case 'advanced':
      return xml(
        advancedXml(
          serials.map((key) => ({
            description: plan.codeDescription,
            key,
            file: plan.file && { name: plan.file.name, contentType: plan.file.contentType, content: Buffer.from(key, 'utf8') },
          })),
          plan.description,
        ),
      );
    case 'binary': {
      // One file: the code, or one code per line when the product makes one per unit.
      const answer = binaryAnswer(plan.filename, Buffer.from(serials.join('\n'), 'utf8'), plan.contentType);
      return { status: answer.status, headers: answer.headers, body: answer.body };
    }
  }
}

type BodyRead = { kind: 'body'; body: Buffer } | { kind: 'too-large' };

/** Reads the body up to `limit` bytes; stops collecting (and says so) the moment it passes. */
function readBody(req: IncomingMessage, limit: number): Promise<BodyRead> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        // Paused, the rest stays in the socket: node discards it after the answer, or the
        // connection closes (the answer says Connection: close).
        req.pause();
        resolve({ kind: 'too-large' });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve({ kind: 'body', body: Buffer.concat(chunks, size) });
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    // 'close' before 'end': the client went away mid-body (cleanup removed this after a normal end).
    const onClose = (): void => onError(new Error('the client closed the connection before the body ended'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

function write(res: ServerResponse, answer: Omit<Answer, 'result'>): void {
  if (res.headersSent || res.destroyed) return;
  // The codes are licenses: no proxy or client cache keeps them.
  res.writeHead(answer.status, { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', ...answer.headers });
  res.end(answer.body);
}

/**
 * The handler for POSTs at `vendor.path`. Validates every product's `avangate` settings now, so a
 * mistake stops start-up instead of failing an order.
 * @throws ConfigError naming `products.<index>.avangate.<key>`.
 */
export function createAvangateHandler(deps: AvangateDeps, vendor: AvangateVendor): AvangateHandler {
  const { loaded, log, pipeline, metrics } = deps;
  const products = loaded.config.products;
  const plans = new Map<string, AvangateAnswerPlan>(products.map((product, index) => [product.id, productAnswerPlan(product, index, loaded.file)]));

  let forgeryWindowStart: number | null = null;
  let forgeriesSinceAlert = 0;
  const noteForgery = (reason: string, refno: string | undefined, remote: string | undefined): void => {
    forgeriesSinceAlert++;
    const now = Date.now();
    if (forgeryWindowStart !== null && now - forgeryWindowStart < FORGERY_ALERT_WINDOW_MS) return;
    const count = forgeriesSinceAlert;
    forgeryWindowStart = now;
    forgeriesSinceAlert = 0;
    deps.alerts?.raise(
      'forgery',
      `Avangate POST refused: ${reason} (REFNO ${refno ?? 'none'}, from ${remote ?? 'unknown address'})`,
      `${count} refused since the last alert. Check that vendors.avangate.secret matches the secret key in Avangate's control panel; if it does, someone else is posting to ${vendor.path}.`,
    );
  };

  // Each unknown product is alerted once per REFNO and code, not on every retry Avangate makes.
  const unknownAlerted = new Set<string>();

  async function decide(req: IncomingMessage, remote: string | undefined): Promise<Answer> {
    if (vendor.allowFrom !== null && !addressAllowed(vendor.allowFrom, remote)) {
      log.warn('Avangate POST refused: address not in vendors.avangate.allowFrom', { remote, method: req.method });
      return text(403, 'forbidden', 'forbidden');
    }
    if (req.method !== 'POST') return text(405, 'method not allowed: POST only', 'wrong_method', { Allow: 'POST' });

    const tooLarge = (): Answer => {
      log.warn('Avangate POST refused: body over the limit', { remote, limit: BODY_LIMIT });
      return text(413, `body too large: at most ${BODY_LIMIT} bytes`, 'too_large', { Connection: 'close' });
    };
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > BODY_LIMIT) return tooLarge();
    const mediaType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
    if (mediaType !== '' && mediaType !== 'application/x-www-form-urlencoded') {
      // A multipart or JSON body would be read differently by PHP: no HASH is computed over it.
      log.warn('Avangate POST refused: not a urlencoded form', { remote, contentType: mediaType });
      return text(400, 'malformed: expected application/x-www-form-urlencoded', 'malformed');
    }

    const read = await readBody(req, BODY_LIMIT);
    if (read.kind === 'too-large') return tooLarge();

    let fields: PostedField[];
    try {
      fields = parsePostedFields(read.body);
    } catch (err) {
      if (!(err instanceof MalformedPostError)) throw err;
      log.warn('Avangate POST refused: malformed body', { remote, reason: err.message });
      return text(400, 'malformed', 'malformed');
    }

    const verdict = verifyHash(fields, vendor.secret);
    if (!verdict.ok) {
      const refno = forLog(fieldValue(fields, 'REFNO'));
      log.warn('Avangate POST refused: HASH does not verify', { refno, remote, reason: verdict.reason });
      noteForgery(verdict.reason, refno, remote);
      return text(400, verdict.reason, 'bad_hash');
    }

    const product = findProduct(products, fields);
    const plan = product && plans.get(product.id);
    const order = orderFromFields(fields, plan?.licenseField);
    if (typeof order === 'string') {
      log.warn('Avangate POST refused: signed, but not an order keymailer can record', { refno: forLog(fieldValue(fields, 'REFNO')), remote, reason: order });
      return text(400, `malformed: ${order}`, 'malformed');
    }
    if (!product || !plan) {
      const codes = ['PCODE', 'PSKU', 'PID'].map((name) => `${name}=${fieldValue(fields, name) ?? ''}`).join(' ');
      log.warn('Avangate order for an unknown product', { refno: order.vendorOrderId, remote, codes });
      const key = `${order.vendorOrderId ?? ''}|${codes}`;
      if (!unknownAlerted.has(key)) {
        if (unknownAlerted.size >= 1000) unknownAlerted.clear();
        unknownAlerted.add(key);
        deps.alerts?.raise(
          'review',
          `Avangate order ${order.vendorOrderId ?? ''} for ${order.buyerEmail || 'unknown buyer'}: unknown product (${codes})`,
          "Add the product's PCODE, PSKU or PID to a product's match list; Avangate retries the order and it is answered then.",
        );
      }
      return text(404, 'unknown product', 'unknown_product');
    }

    const recorded = await pipeline.recordSignedOrder(AVANGATE_VENDOR, order, product.id);
    if (recorded.outcome === 'review' || recorded.serials === null) {
      // The reason never holds key material (serial errors name settings, not values).
      return text(503, `order held for review: ${recorded.reason ?? 'no codes'}`, 'review');
    }
    return { ...codesAnswer(plan, recorded.serials), result: recorded.outcome === 'replay' ? 'replay' : 'fulfilled' };
  }

  return {
    path: vendor.path,
    async handle(req, res) {
      const remote = req.socket.remoteAddress;
      let answer: Answer;
      try {
        answer = await decide(req, remote);
      } catch (thrown) {
        const err = coerceError(thrown);
        if (req.destroyed || res.destroyed) {
          log.info('Avangate POST abandoned by the client', { remote, reason: err.message });
          return;
        }
        log.error('Avangate POST failed', { remote, reason: err.message });
        deps.alerts?.raise('review', 'Avangate POST failed with an internal error', err.message);
        answer = text(500, 'internal error', 'error');
      }
      metrics.signedPost(AVANGATE_VENDOR, answer.result);
      write(res, answer);
    },
  };
}
