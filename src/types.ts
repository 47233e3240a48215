/**
 * Terminology, in the seller's words:
 *
 * - notification: one email a payment processor sent about a sale (or a refund, or a newsletter).
 * - vendor: the payment processor that sent it (Kagi, FastSpring, ...). One parser per vendor in `parsers/`.
 * - order: one line item of a sale: a buyer bought a quantity of one product. Its identity is
 *   (vendor, vendor's order id, vendor's product), so a repeat of the same notification is a duplicate.
 * - buyer: the person who paid; the buyer mail goes to them.
 * - name to license: the registration or license name when the vendor gives one, else the buyer's name.
 * - product: one of the seller's products (`products[]` in the config), holding its serial settings.
 * - serial: the license key made for an order, exactly as the seller's own generator would make it.
 * - buyer mail: the mail carrying the serial(s) to the buyer, rendered from `templates/`.
 * - review: where anything goes that needs a human (unknown layout, unknown product, test order, ...).
 */

/** A decoded email, as every parser sees it. Built once from the raw message by `parse/notification.ts`. */
export interface Notification {
  /** Lower-cased address of the From header, or '' when there is none. */
  readonly fromAddress: string;
  readonly fromName: string;
  readonly subject: string;
  readonly messageId: string | null;
  readonly date: Date | null;
  /** The plain-text body; when the mail has only HTML, that HTML converted to text. */
  readonly text: string;
  /** The HTML body, or null. */
  readonly html: string | null;
  /** Every header, name lower-cased, values in the order they appear (topmost first). */
  readonly headers: ReadonlyMap<string, readonly string[]>;
}

/** One line item of a sale, as the vendor wrote it. Values are trimmed; money is a decimal string. */
export interface ParsedOrder {
  /** The vendor's order or transaction id; null when the vendor gives none (then identity falls back to the message). */
  readonly vendorOrderId: string | null;
  readonly buyerName: string;
  readonly buyerEmail: string;
  /** Registration or license name when the vendor gives one. */
  readonly licenseName: string | null;
  /** The vendor's name for the product. */
  readonly product: string;
  /** The vendor's product code or id, when given. */
  readonly productCode: string | null;
  readonly quantity: number;
  /** The unit price, as a decimal string. */
  readonly price: string | null;
  readonly currency: string | null;
  readonly test: boolean;
  /**
   * The vendor's running number for this product's notifications (Kagi's SQNM-<name> <number>),
   * when it sends one: a number skipped means a notification that never arrived.
   */
  readonly sequence?: { readonly series: string; readonly number: number };
}

export type ParseResult =
  | { readonly kind: 'orders'; readonly orders: readonly ParsedOrder[] }
  /** Vendor mail that is no sale: newsletter, receipt copy, payout notice. */
  | { readonly kind: 'ignore'; readonly reason: string }
  | {
      readonly kind: 'refund';
      readonly vendorOrderId: string | null;
      readonly chargeback: boolean;
      readonly reason: string;
    };

export interface VendorParser {
  /** Stored in the database and used as the key under `vendors:` in the config; never renamed. */
  readonly id: string;
  readonly label: string;
  /** Cheap test on sender and subject; never throws. */
  matches(notification: Notification): boolean;
  /**
   * A pure function of the notification: no I/O, no clock, no randomness, no logging.
   * Throws ParseError for a layout it does not understand or a sale missing what a serial needs.
   */
  parse(notification: Notification): ParseResult;
}

/**
 * What happened to a message; decides where the source files it. `defer`: not decided yet (a
 * temporary failure such as a DNS error while verifying): leave it where it is and try again later.
 */
export type MessageOutcome = 'processed' | 'review' | 'defer';

/** Where a message came from: enough to find it again and to recognise it when seen twice. */
export interface MessageKey {
  /** `imap:<mailbox>` or `drop:<folder>` or `file`. */
  readonly source: string;
  readonly uidValidity: number;
  /** The IMAP UID, or the file name for file sources. */
  readonly uid: string;
}

export interface IncomingMessage {
  readonly key: MessageKey;
  /** The whole message; only its header block when `size` is over the configured limit. */
  readonly raw: Buffer;
  /** Set when the message was too large to download whole: its size in bytes. */
  readonly tooLarge?: number;
}

/**
 * Handles messages, in order, to their final states; resolves with one outcome per message only
 * once every state is committed (a batch shares one commit). Throws when one could not be
 * committed: the source then files none of the batch, and the next pass finds the committed ones
 * already handled.
 */
export type MessageHandler = (messages: readonly IncomingMessage[]) => Promise<MessageOutcome[]>;

/** A place messages arrive: an IMAP mailbox or a drop folder. Knows nothing of parsing or SMTP. */
/** How a source is doing, for health checks and the "mailbox unreachable" alert. */
export interface SourceStatus {
  readonly connected: boolean;
  /** When the current state (connected or not) began, ms since epoch. */
  readonly since: number;
  /** When the last pass over the mailbox finished, ms since epoch. */
  readonly lastSyncAt: number | null;
}

export interface Source {
  readonly description: string;
  status(): SourceStatus;
  /** Processes everything waiting, then keeps watching until stop(). Resolves once the first pass is done. */
  start(handle: MessageHandler): Promise<void>;
  /** One pass over what is waiting (used by --once); resolves when every message was handled. */
  drain(handle: MessageHandler): Promise<void>;
  stop(): Promise<void>;
}
