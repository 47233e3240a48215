import { z } from 'zod';

/**
 * `products[].serial`: how one product's serials are made.
 *
 * scheme `aes` (the default) reproduces a seller's existing generator: AES-128 over a text built from
 * the order, every choice that generators differ in being a setting whose default is the common case.
 * scheme `ed25519` is for new products: a signed payload that apps verify offline with a public key.
 *
 * Error messages name the setting and what is wrong with it, never its value: keys are secrets.
 */

/** What `input` may refer to, in the seller's words. */
export const TEMPLATE_FIELDS = ['name', 'email', 'product', 'order', 'quantity', 'unit'] as const;
export type TemplateField = (typeof TEMPLATE_FIELDS)[number];
export type TemplatePart = { readonly literal: string } | { readonly field: TemplateField };

export const NORMALIZERS = ['trim', 'collapse-spaces', 'lowercase', 'uppercase', 'nfc', 'nfkd-ascii'] as const;
export type Normalizer = (typeof NORMALIZERS)[number];

export const OUTPUTS = ['hex-upper', 'hex-lower', 'base32', 'base32-crockford', 'base64', 'base64url'] as const;
export type OutputEncoding = (typeof OUTPUTS)[number];

/** The characters each output may contain: a separator must not use them, or verify could not strip it. */
export const OUTPUT_ALPHABETS: Readonly<Record<OutputEncoding, string>> = {
  'hex-upper': '0123456789ABCDEF',
  'hex-lower': '0123456789abcdef',
  base32: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567',
  'base32-crockford': '0123456789ABCDEFGHJKMNPQRSTVWXYZ',
  base64: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=',
  base64url: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_',
};

const KEY_FORMS = '16 characters (used as their ASCII bytes) or hex: followed by 32 hex digits';

/**
 * Why a key (or iv) text is unusable, or null when it is fine. Describes the text's shape only.
 * A 16-character text is always taken as ASCII, even one that starts with "hex:".
 */
export function keyTextProblem(text: string): string | null {
  if (text.length === 16) {
    return /^[\x20-\x7e]{16}$/.test(text)
      ? null
      : `must be ${KEY_FORMS}; it has 16 characters but not all are printable ASCII`;
  }
  if (text.startsWith('hex:')) {
    const digits = text.slice(4);
    if (/^[0-9a-fA-F]{32}$/.test(digits)) return null;
    return `must be ${KEY_FORMS}; after hex: it has ${digits.length} characters, not 32 hex digits`;
  }
  return `must be ${KEY_FORMS}; it has ${text.length} characters`;
}

/** The 16 key bytes of a text that passed keyTextProblem. */
export function keyTextBytes(text: string): Buffer {
  return text.length === 16 ? Buffer.from(text, 'latin1') : Buffer.from(text.slice(4), 'hex');
}

/** Splits an `input` template into literal text and fields; `{{` and `}}` stand for braces. Throws Error. */
export function parseInputTemplate(template: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let literal = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if ((c === '{' || c === '}') && template[i + 1] === c) {
      literal += c;
      i++;
    } else if (c === '{') {
      const end = template.indexOf('}', i);
      const field = end < 0 ? '' : template.slice(i + 1, end);
      if (end < 0) throw new Error(`input has a { without its closing }; write {{ for a literal brace`);
      if (!(TEMPLATE_FIELDS as readonly string[]).includes(field)) {
        throw new Error(
          `input has an unknown placeholder {${field}}; known: ${TEMPLATE_FIELDS.map((f) => `{${f}}`).join(', ')}`,
        );
      }
      if (literal) parts.push({ literal });
      literal = '';
      parts.push({ field: field as TemplateField });
      i = end;
    } else if (c === '}') {
      throw new Error('input has a } without its opening {; write }} for a literal brace');
    } else {
      literal += c;
    }
  }
  if (literal) parts.push({ literal });
  return parts;
}

const keyText = (setting: string) =>
  z.string({ error: `${setting} must be a text: ${KEY_FORMS}` }).superRefine((text, ctx) => {
    const problem = keyTextProblem(text);
    if (problem) ctx.addIssue({ code: 'custom', message: `${setting} ${problem}` });
  });

const pemOrFile = (setting: string) =>
  z.string({ error: `${setting} must be PEM text or file: followed by a path` }).refine(
    (text) => (text.startsWith('file:') && text.length > 5) || text.includes('-----BEGIN'),
    { error: `${setting} must be PEM text (-----BEGIN ... KEY-----) or file: followed by a path` },
  );

const inputTemplate = z
  .string({ error: 'input must be a text such as {name}' })
  .superRefine((text, ctx) => {
    try {
      if (parseInputTemplate(text).length === 0) ctx.addIssue({ code: 'custom', message: 'input must not be empty' });
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });

const normalizeList = z.array(
  z.enum(NORMALIZERS, { error: `normalize steps must be among ${NORMALIZERS.join(', ')}` }),
  { error: `normalize must be a list of steps among ${NORMALIZERS.join(', ')}` },
);

/** Per-unit serials differ only through {unit}; without it every unit would get the same serial. */
function checkUnits(value: { input: string; perUnit: boolean }, ctx: z.RefinementCtx): void {
  const usesUnit = value.input.replace(/\{\{|\}\}/g, '').includes('{unit}');
  if (value.perUnit && !usesUnit) {
    ctx.addIssue({
      code: 'custom',
      path: ['input'],
      message: 'perUnit: true needs {unit} in input (e.g. {name}#{unit}), or every unit would get the same serial',
    });
  }
  if (!value.perUnit && usesUnit) {
    ctx.addIssue({ code: 'custom', path: ['perUnit'], message: 'input uses {unit}, which needs perUnit: true' });
  }
}

function unknownSettings(scheme: string, known: readonly string[]) {
  return (issue: { code?: string; keys?: readonly string[] }): string | undefined =>
    issue.code === 'unrecognized_keys'
      ? `unknown setting ${(issue.keys ?? []).join(', ')} for serial scheme ${scheme}; known: ${known.join(', ')}`
      : undefined;
}

const aesShape = {
  scheme: z.literal('aes').default('aes'),
  key: keyText('key').optional(),
  testKey: keyText('testKey').optional(),
  mode: z.enum(['ecb', 'cbc'], { error: 'mode must be ecb or cbc' }).default('ecb'),
  iv: keyText('iv').optional(),
  padding: z.enum(['pkcs7', 'zero', 'none'], { error: 'padding must be pkcs7, zero or none' }).default('pkcs7'),
  input: inputTemplate.default('{name}'),
  normalize: normalizeList.default([]),
  encoding: z
    .enum(['utf-8', 'latin1', 'utf-16le'], { error: 'encoding must be utf-8, latin1 or utf-16le' })
    .default('utf-8'),
  output: z.enum(OUTPUTS, { error: `output must be one of ${OUTPUTS.join(', ')}` }).default('hex-upper'),
  group: z
    .number({ error: 'group must be a whole number of characters (0 for no grouping)' })
    .int({ error: 'group must be a whole number of characters (0 for no grouping)' })
    .min(0, { error: 'group must be 0 (no grouping) or more' })
    .default(4),
  separator: z.string({ error: 'separator must be a text' }).default('-'),
  prefix: z.string({ error: 'prefix must be a text' }).default(''),
  length: z
    .number({ error: 'length must be a whole number of characters' })
    .int({ error: 'length must be a whole number of characters' })
    .positive({ error: 'length must be 1 or more' })
    .optional(),
  perUnit: z.boolean({ error: 'perUnit must be true or false' }).default(false),
};

const aesSettingsSchema = z
  .strictObject(aesShape, { error: unknownSettings('aes', Object.keys(aesShape)) })
  .superRefine((value, ctx) => {
    checkUnits(value, ctx);
    if (value.iv !== undefined && value.mode !== 'cbc') {
      ctx.addIssue({ code: 'custom', path: ['iv'], message: 'iv is only used with mode: cbc' });
    }
    // Comparing decoded bytes catches the same key written once as text and once as hex:.
    if (
      value.key !== undefined &&
      value.testKey !== undefined &&
      !keyTextProblem(value.key) &&
      !keyTextProblem(value.testKey) &&
      keyTextBytes(value.key).equals(keyTextBytes(value.testKey))
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['testKey'],
        message: 'testKey must differ from key, or test orders would get real serials',
      });
    }
    const alphabet = OUTPUT_ALPHABETS[value.output];
    const caseless = value.output !== 'base64' && value.output !== 'base64url';
    const clash = [...value.separator].find((c) =>
      caseless ? alphabet.includes(c.toUpperCase()) || alphabet.includes(c.toLowerCase()) : alphabet.includes(c),
    );
    if (clash !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['separator'],
        message: `separator must not use characters of the ${value.output} output (it has "${clash}"), or serials could not be told apart from their grouping`,
      });
    }
  });

const ed25519Shape = {
  scheme: z.literal('ed25519'),
  privateKey: pemOrFile('privateKey').optional(),
  publicKey: pemOrFile('publicKey').optional(),
  testPrivateKey: pemOrFile('testPrivateKey').optional(),
  testPublicKey: pemOrFile('testPublicKey').optional(),
  input: inputTemplate.default('{name}'),
  // No installed base to match, so names are tidied by default: the app compares what the buyer types.
  normalize: normalizeList.default(['trim', 'collapse-spaces', 'nfc']),
  perUnit: z.boolean({ error: 'perUnit must be true or false' }).default(false),
  prefix: z.string({ error: 'prefix must be a text' }).default(''),
};

const ed25519SettingsSchema = z
  .strictObject(ed25519Shape, { error: unknownSettings('ed25519', Object.keys(ed25519Shape)) })
  .superRefine(checkUnits);

export const serialSettingsSchema = z.discriminatedUnion('scheme', [aesSettingsSchema, ed25519SettingsSchema], {
  error: (issue) =>
    issue.code === 'invalid_union' ? 'scheme must be aes (the default) or ed25519' : 'serial must be a mapping of settings',
});

export type SerialSettings = z.output<typeof serialSettingsSchema>;
export type AesSerialSettings = Extract<SerialSettings, { scheme: 'aes' }>;
export type Ed25519SerialSettings = Extract<SerialSettings, { scheme: 'ed25519' }>;
