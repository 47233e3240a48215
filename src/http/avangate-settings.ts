/**
 * Settings of the Avangate (2Checkout) key-generator listener:
 *
 * - `vendors.avangate` (avangateVendorSchema): the shared secret, the path Avangate posts to, and
 *   the optional list of address ranges allowed to post.
 * - `products[].avangate` (avangateProductSchema): how one product's codes are answered.
 *
 * Error messages name the setting and what is wrong with it, never the value of the secret.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { ConfigError } from '../errors';
import { escapeXmlAttribute, escapeXmlText } from './avangate-answer';

// ---------------------------------------------------------------------------------------------
// Address ranges

/** One allowFrom entry, normalized: IPv4-mapped IPv6 ranges are stored as the IPv4 range they cover. */
export interface Cidr {
  readonly family: 4 | 6;
  /** The network address as an unsigned integer of 32 or 128 bits. */
  readonly network: bigint;
  readonly prefix: number;
}

function ipv4ToBigint(text: string): bigint {
  return text.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

/** The 128 bits of an IPv6 address that net.isIPv6 accepted (zone id already removed). */
function ipv6ToBigint(text: string): bigint {
  let groups = text;
  // A trailing dotted quad (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) stands for the last two groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(groups);
  if (dotted?.[1] !== undefined) {
    const v4 = ipv4ToBigint(dotted[1]);
    groups = groups.slice(0, dotted.index) + `${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = groups.split('::');
  const headParts = head === '' ? [] : head.split(':');
  const tailParts = tail === undefined || tail === '' ? [] : tail.split(':');
  const missing = 8 - headParts.length - tailParts.length;
  const all = tail === undefined ? headParts : [...headParts, ...Array<string>(missing).fill('0'), ...tailParts];
  return all.reduce((acc, part) => (acc << 16n) | BigInt(parseInt(part, 16)), 0n);
}

/**
 * An address as family and bits; IPv4-mapped IPv6 (`::ffff:203.0.113.7`, what a dual-stack listener
 * reports for an IPv4 peer) becomes the IPv4 address, so an IPv4 range admits it. Null when the
 * text is no IP address.
 */
export function parseAddress(text: string): { family: 4 | 6; value: bigint } | null {
  const address = text.replace(/%[^%]*$/, ''); // a zone id (fe80::1%eth0) says nothing about the range
  if (isIPv4(address)) return { family: 4, value: ipv4ToBigint(address) };
  if (!isIPv6(address)) return null;
  const value = ipv6ToBigint(address);
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn };
  return { family: 6, value };
}

/**
 * Parses `203.0.113.0/24`, `2001:db8::/32`, `::ffff:203.0.113.0/120` or a bare address (a single
 * host). Returns the range or the reason it is not one. Host bits set after the prefix are refused
 * (`10.1.2.3/8`): likely a typo, and silently widening an allow list is the wrong way to be lenient.
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  if (addressText.includes('%')) return 'must not have a zone id (%...)';
  const address = parseAddress(addressText);
  if (address === null) return 'must be an IPv4 or IPv6 address, optionally followed by /prefix length';
  const written = isIPv4(addressText) ? 32 : 128;
  let prefix = written;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > written) {
      return `must have a prefix length from 0 to ${written} after the /`;
    }
    prefix = Number(prefixText);
  }
  let family = written === 32 ? (4 as const) : (6 as const);
  let network = written === 32 ? address.value : ipv6ToBigint(addressText);
  let bits = written;
  if (family === 6 && address.family === 4) {
    // An IPv4-mapped range: kept as IPv4 when it lies within ::ffff:0:0/96, as the addresses it
    // is compared with are.
    if (prefix < 96) return 'an IPv4-mapped range (::ffff:...) needs a prefix length of 96 or more';
    family = 4;
    network = address.value;
    prefix -= 96;
    bits = 32;
  }
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((network & hostMask) !== 0n) {
    return `has address bits set after the /${slash < 0 ? '' : text.slice(slash + 1)} prefix; write the network address`;
  }
  return { family, network, prefix };
}

/** Whether the address lies in one of the ranges. An address that does not parse is in none. */
export function addressAllowed(ranges: readonly Cidr[], address: string | undefined): boolean {
  if (address === undefined) return false;
  const parsed = parseAddress(address);
  if (parsed === null) return false;
  const bits = parsed.family === 4 ? 32 : 128;
  return ranges.some((range) => {
    if (range.family !== parsed.family) return false;
    const shift = BigInt(bits - range.prefix);
    return parsed.value >> shift === range.network >> shift;
  });
}

// ---------------------------------------------------------------------------------------------
// vendors.avangate

const cidrText = z.string({ error: 'each allowFrom entry must be a text such as 203.0.113.0/24' }).transform((text, ctx) => {
  const parsed = parseCidr(text.trim());
  if (typeof parsed === 'string') {
    ctx.addIssue({ code: 'custom', message: `"${text}" ${parsed}` });
    return z.NEVER;
  }
  return text.trim();
});

/** Paths the listener serves itself: Avangate's path must not hide them. */
const RESERVED_PATHS = ['/healthz', '/metrics'];

export const avangateVendorSchema = z.strictObject(
  {
    /**
     * The secret key from Avangate's control panel (IPN/key generator settings). Best given as
     * ${AVANGATE_SECRET}. At least 8 characters: a shorter HMAC key is guessable from one signed
     * request.
     */
    secret: z
      .string({ error: 'secret must be a text (best ${AVANGATE_SECRET}, from the environment)' })
      .min(8, { error: 'secret must be at least 8 characters: copy it from Avangate\'s control panel' }),
    /** The URL path Avangate posts to. Default /avangate. */
    path: z
      .string({ error: 'path must be a text such as /avangate' })
      .regex(/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/, { error: 'path must start with / and hold no spaces, ? or #' })
      .refine((p) => !RESERVED_PATHS.includes(p), { error: `path must not be ${RESERVED_PATHS.join(' or ')}` })
      .default('/avangate'),
    /**
     * Address ranges (CIDR, IPv4 or IPv6; a bare address is one host) allowed to post; anyone else
     * gets 403. Absent: anyone may post (the HASH still has to verify). Compared with the TCP
     * peer's address: behind a reverse proxy, restrict at the proxy instead.
     */
    allowFrom: z.array(cidrText, { error: 'allowFrom must be a list of address ranges such as 203.0.113.0/24' }).optional(),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown setting ${(issue.keys ?? []).join(', ')}; known: secret, path, allowFrom`
        : issue.code === 'invalid_type'
          ? 'vendors.avangate must be a mapping with secret, path and allowFrom'
          : undefined,
  },
);

export type AvangateVendorSettings = z.output<typeof avangateVendorSchema>;

/** Vendor settings ready for the handler: the ranges parsed once. */
export interface AvangateVendor {
  readonly secret: string;
  readonly path: string;
  /** Null: no restriction. */
  readonly allowFrom: readonly Cidr[] | null;
}

/** First zod issue as "where.key: message". */
function describe(prefix: string, error: z.ZodError): string {
  const issue = error.issues[0];
  const key = [prefix, ...(issue?.path ?? []).map(String)].join('.');
  if (issue === undefined) return `${key}: invalid`;
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) return `${key}: is required`;
  return `${key}: ${issue.message}`;
}

/**
 * `config.vendors.avangate` validated, or null when it is absent (then no Avangate path is served).
 * @throws ConfigError naming `vendors.avangate.<key>`.
 */
export function avangateVendorSettings(vendors: Readonly<Record<string, unknown>>, file: string | null = null): AvangateVendor | null {
  const raw = vendors['avangate'];
  if (raw === undefined) return null;
  const result = avangateVendorSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(`${file === null ? '' : `${file}: `}${describe('vendors.avangate', result.error)}`);
  const { secret, path, allowFrom } = result.data;
  return {
    secret,
    path,
    allowFrom: allowFrom === undefined ? null : allowFrom.map((text) => parseCidr(text) as Cidr),
  };
}

// ---------------------------------------------------------------------------------------------
// products[].avangate

/** A text XML can carry (checked with the answer builder's own rule, so start-up fails, not an order). */
const xmlText = (setting: string) =>
  z.string({ error: `${setting} must be a text` }).superRefine((text, ctx) => {
    try {
      escapeXmlText(text, setting);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });

const fileName = z
  .string({ error: 'filename must be a text such as widget.key' })
  .min(1, { error: 'filename must not be empty' })
  .refine((name) => !/[\u0000-\u001F\u007F]/.test(name), { error: 'filename must not hold control characters' })
  .superRefine((name, ctx) => {
    try {
      escapeXmlAttribute(name, 'filename');
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });

const contentType = z
  .string({ error: 'contentType must be a media type such as application/octet-stream' })
  .regex(/^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(?:\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(?:[A-Za-z0-9!#$&^_.+-]+|"[^"\\\u0000-\u001F]*"))*$/, {
    error: 'contentType must be a media type such as application/octet-stream',
  });

const ANSWERS = ['basic', 'advanced', 'binary'] as const;
const PRODUCT_KEYS = ['answer', 'description', 'codeDescription', 'filename', 'contentType', 'licenseField'];

export const avangateProductSchema = z
  .strictObject(
    {
      /**
       * How the codes are answered: basic (Basic XML), advanced (Advanced XML) or binary (a key
       * file download). Default: advanced when the product has a description, codeDescription or
       * filename, else basic. `answer: basic` with a description puts it in Basic XML.
       */
      answer: z.enum(ANSWERS, { error: `answer must be one of ${ANSWERS.join(', ')}` }).optional(),
      /** Shown once for the whole order (basic and advanced). */
      description: xmlText('description').optional(),
      /** Shown with each code (advanced only). */
      codeDescription: xmlText('codeDescription').optional(),
      /**
       * binary: the download's file name (default key.bin). advanced: when set, each code also
       * comes as a file of this name holding the code.
       */
      filename: fileName.optional(),
      /** The file's media type: binary default application/octet-stream, advanced default text/plain. */
      contentType: contentType.optional(),
      /**
       * The label of an Avangate custom field (order or product custom field) whose value is the
       * name to license, e.g. "Registered to". Absent, or the field absent or empty: the buyer's
       * name (FIRSTNAME LASTNAME) is licensed.
       */
      licenseField: z.string({ error: 'licenseField must be the label of a custom field' }).trim().min(1, { error: 'licenseField must not be empty' }).optional(),
    },
    {
      error: (issue) =>
        issue.code === 'unrecognized_keys'
          ? `unknown setting ${(issue.keys ?? []).join(', ')}; known: ${PRODUCT_KEYS.join(', ')}`
          : issue.code === 'invalid_type'
            ? `avangate must be a mapping of ${PRODUCT_KEYS.join(', ')}`
            : undefined,
    },
  )
  .superRefine((value, ctx) => {
    const answer = value.answer;
    if (answer === 'basic') {
      for (const key of ['codeDescription', 'filename', 'contentType'] as const) {
        if (value[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `${key} needs answer: advanced or binary (Basic XML has no place for it)` });
      }
    }
    if (answer === 'binary') {
      for (const key of ['description', 'codeDescription'] as const) {
        if (value[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `${key} cannot go with answer: binary (a key file has no descriptions)` });
      }
      if (value.contentType !== undefined && /^\s*(?:text|application)\/xml\s*(?:;|$)/i.test(value.contentType)) {
        ctx.addIssue({ code: 'custom', path: ['contentType'], message: 'contentType of a binary answer must not be XML: Avangate would read it as codes' });
      }
    }
    if (answer !== 'binary' && value.contentType !== undefined && value.filename === undefined) {
      ctx.addIssue({ code: 'custom', path: ['contentType'], message: 'contentType needs filename (it is the type of that file)' });
    }
  });

export type AvangateProductSettings = z.output<typeof avangateProductSchema>;

/** Product settings with the defaults decided: what the handler answers with. */
export type AvangateAnswerPlan =
  | { readonly answer: 'basic'; readonly description: string | undefined; readonly licenseField: string | undefined }
  | {
      readonly answer: 'advanced';
      readonly description: string | undefined;
      readonly codeDescription: string | undefined;
      readonly file: { readonly name: string; readonly contentType: string } | undefined;
      readonly licenseField: string | undefined;
    }
  | { readonly answer: 'binary'; readonly filename: string; readonly contentType: string; readonly licenseField: string | undefined };

/** The plan for validated settings (undefined: no `avangate` settings, Basic XML). */
export function answerPlan(settings: AvangateProductSettings | undefined): AvangateAnswerPlan {
  const s = settings ?? {};
  const answer = s.answer ?? (s.codeDescription !== undefined || s.filename !== undefined || s.description !== undefined ? 'advanced' : 'basic');
  switch (answer) {
    case 'basic':
      return { answer, description: s.description, licenseField: s.licenseField };
    case 'advanced':
      return {
        answer,
        description: s.description,
        codeDescription: s.codeDescription,
        file: s.filename === undefined ? undefined : { name: s.filename, contentType: s.contentType ?? 'text/plain' },
        licenseField: s.licenseField,
      };
    case 'binary':
      return { answer, filename: s.filename ?? 'key.bin', contentType: s.contentType ?? 'application/octet-stream', licenseField: s.licenseField };
  }
}

/**
 * The answer plan of one product, from `product.avangate` validated with avangateProductSchema.
 * Works whether or not config.ts already validated that key (parsing validated output again gives
 * the same value).
 * @throws ConfigError naming `products.<index>.avangate.<key>`.
 */
export function productAnswerPlan(product: { readonly id: string }, index: number, file: string | null = null): AvangateAnswerPlan {
  const raw = (product as { avangate?: unknown }).avangate;
  if (raw === undefined) return answerPlan(undefined);
  const result = avangateProductSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(`${file === null ? '' : `${file}: `}${describe(`products.${index}.avangate`, result.error)}`);
  return answerPlan(result.data);
}
