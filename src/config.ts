/**
 * The only reader of the config file and of process.env. Everything is validated here, once,
 * and frozen: the rest of keymailer trusts what it gets.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors';
import { keyTextProblem, serialSettingsSchema } from './fulfil/serial-settings';
import { avangateProductSchema, avangateVendorSchema } from './http/avangate-settings';
import { logSettingsSchema } from './log';
import { configurableVendorSchema, isConfigurableVendor } from './parse/configurable';
import { backupSettingsSchema, summarySettingsSchema, timezoneSchema } from './schedules';

/** The project root: templates/ and examples/ ship here; the embedded demo keeps its data here. */
export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');

const nonEmpty = z.string().trim().min(1, 'must not be empty');
const port = z.number().int().min(1).max(65535);
const email = z.email('must be an email address');

const productSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i, 'must be letters, digits, dots, dashes or underscores'),
    name: nonEmpty,
    /** The 16-character AES-128 key (legacy spelling of serial.key). */
    key: z
      .string()
      .superRefine((key, ctx) => {
        const problem = keyTextProblem(key);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    match: z.array(nonEmpty).min(1, 'must list at least one name the vendors use for this product'),
    template: z.string().regex(/^[a-z0-9_-]+$/i, 'must be a template name such as "serial"').default('serial'),
    serial: serialSettingsSchema.optional(),
    /** How Avangate's key generator answers for this product (src/http/avangate-settings.ts). */
    avangate: avangateProductSchema.optional(),
  })
  .strict();

const imapSchema = z
  .object({
    host: nonEmpty,
    port: port.default(993),
    secure: z.boolean().default(true),
    user: nonEmpty,
    pass: z.string(),
    mailbox: nonEmpty.default('INBOX'),
    processed: nonEmpty.default('Processed'),
    review: nonEmpty.default('Review'),
    /** Accept a self-signed certificate (a home server's own Dovecot). */
    allowSelfSigned: z.boolean().default(false),
  })
  .strict();

const smtpSchema = z
  .object({
    host: nonEmpty,
    port: port.default(587),
    secure: z.boolean().default(false),
    user: z.string().optional(),
    pass: z.string().optional(),
    /** Skip STARTTLS even when offered (only for a local relay on the same machine). */
    ignoreTLS: z.boolean().default(false),
    allowSelfSigned: z.boolean().default(false),
  })
  .strict();

export const configSchema = z
  .object({
    database: nonEmpty.default('data/keymailer.db'),
    owner: z.object({ email }).strict(),
    imap: imapSchema.optional(),
    dropFolder: nonEmpty.default('data/inbox'),
    smtp: smtpSchema.optional(),
    outbox: nonEmpty.default('data/outbox'),
    from: nonEmpty,
    http: z.object({ host: nonEmpty.default('127.0.0.1'), port }).strict().optional(),
    /** Where templates/<name>.{subject,text,html}.hbs live; the shipped ones by default. */
    templates: nonEmpty.optional(),
    /** node-cron schedule of the fallback poll, for when IMAP IDLE or file watching goes quiet. */
    poll: nonEmpty.default('* * * * *'),
    /** Messages larger than this (bytes) are not downloaded whole: they go to review. */
    maxMessageSize: z.number().int().min(64 * 1024).default(10 * 1024 * 1024),
    delivery: z
      .object({
        /** First retry after an SMTP failure; doubles per attempt, up to an hour. */
        retrySeconds: z.number().positive().default(30),
        /** The owner is told once when a buyer mail has waited this long. */
        alertAfterMinutes: z.number().positive().default(60),
        /** Then the mail is given up and its order goes to review. */
        giveUpHours: z.number().positive().default(72),
      })
      .strict()
      .default({ retrySeconds: 30, alertAfterMinutes: 60, giveUpHours: 72 }),
    /** How long a stopped daemon's claim on the database blocks another one from taking over. */
    leaseSeconds: z.number().int().min(2).max(600).default(30),
    /** Owner alerts are grouped: at most one alert mail per this many minutes. */
    alertWindowMinutes: z.number().positive().default(15),
    log: logSettingsSchema,
    /** IANA zone for schedules and the summary's times; default: the system's zone. */
    timezone: timezoneSchema,
    summary: summarySettingsSchema,
    backup: backupSettingsSchema,
    /**
     * authserv-ids of the seller's own receiving mail servers: their topmost Authentication-Results
     * header is trusted as proof that a notification came from its vendor.
     */
    trustAuthResults: z.array(nonEmpty).default([]),
    /** Per-vendor settings; each vendor's own issue defines its keys. */
    vendors: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
    products: z.array(productSchema).min(1, 'must list at least one product'),
  })
  .strict()
  .superRefine((config, ctx) => {
    // vendors.avangate belongs to the HTTP listener; checked here so a bad value stops start-up with its key.
    const avangate = config.vendors['avangate'];
    if (avangate !== undefined) {
      const result = avangateVendorSchema.safeParse(avangate);
      for (const issue of result.success ? [] : result.error.issues) {
        ctx.addIssue({ code: 'custom', path: ['vendors', 'avangate', ...issue.path.map(String)], message: issue.message });
      }
    }
    // A vendor the seller describes (it has labels) is checked now, so a typo names its key at start.
    for (const [id, settings] of Object.entries(config.vendors)) {
      if (!isConfigurableVendor(settings)) continue;
      const result = configurableVendorSchema.safeParse(settings);
      for (const issue of result.success ? [] : result.error.issues) {
        ctx.addIssue({ code: 'custom', path: ['vendors', id, ...issue.path.map(String)], message: issue.message });
      }
    }
    const seen = new Set<string>();
    config.products.forEach((product, index) => {
      if (seen.has(product.id)) {
        ctx.addIssue({ code: 'custom', path: ['products', index, 'id'], message: `"${product.id}" is used twice` });
      }
      seen.add(product.id);
      const serial = product.serial;
      const hasAesKey = serial?.scheme === 'aes' && serial.key !== undefined;
      if (product.key === undefined && !hasAesKey && serial?.scheme !== 'ed25519') {
        ctx.addIssue({
          code: 'custom',
          path: ['products', index, 'key'],
          message: 'is missing: give the 16-character AES key as key or serial.key',
        });
      }
    });
  });

export type Config = z.output<typeof configSchema>;
export type ProductConfig = Config['products'][number];

/** A validated config plus where it came from; paths in it are absolute. */
export interface LoadedConfig {
  readonly config: Readonly<Config>;
  /** The file it was read from, or null for the embedded demo. */
  readonly file: string | null;
  readonly templatesDir: string;
  /** Every secret value in the config, so the logger can redact them wherever they appear. */
  readonly secrets: readonly string[];
}

/** The embedded default: runs with no config file at all, on a demo product and local folders. */
export const DEMO_CONFIG_YAML = `
database: data/keymailer.db
owner: { email: seller@example.com }
dropFolder: data/inbox
outbox: data/outbox
from: "Demo Software <sales@example.com>"
# The demo's sample notifications are not signed by Kagi: accept them unchecked. A real
# config keeps the check on (the default), so a forged sale never gets a serial.
vendors: { kagi: { auth: none } }
products:
  - id: widget-pro
    name: Widget Pro
    key: "DEMO-KEY-NOT-4U!"
    match: ["Widget Pro", "WIDGET-PRO"]
    template: serial
`;

/** Which config file to read: --config, then KEYMAILER_CONFIG, then ./config.yaml if it exists. */
export function findConfigFile(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | null {
  if (flag) return path.resolve(flag);
  if (env.KEYMAILER_CONFIG) return path.resolve(env.KEYMAILER_CONFIG);
  const local = path.resolve('config.yaml');
  return fs.existsSync(local) ? local : null;
}

export function loadConfig(flag?: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const file = findConfigFile(flag, env);
  if (file === null) return parseConfig(DEMO_CONFIG_YAML, null, PROJECT_ROOT, env);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`cannot read config file ${file}: ${code === 'ENOENT' ? 'no such file' : code}`);
  }
  return parseConfig(text, file, path.dirname(file), env);
}

/** Parses, substitutes ${NAME} from the environment, validates; paths resolve against baseDir. */
export function parseConfig(
  text: string,
  file: string | null,
  baseDir: string,
  env: NodeJS.ProcessEnv = process.env,
): LoadedConfig {
  const where = file ?? 'embedded demo config';
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0];
    const line = first?.linePos?.[0]?.line;
    const hint = /\$\{/.test(text) ? ' (inside { } or [ ], write "${NAME}" in quotes)' : '';
    throw new ConfigError(`${where}${line ? `:${line}` : ''}: not valid YAML: ${first?.code ?? 'syntax error'}${hint}`);
  }
  const secrets: string[] = [];
  const substituted = substituteEnv(doc.toJS(), [], env, secrets);
  const result = configSchema.safeParse(substituted ?? {});
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = issue ? issue.path.map(String).join('.') || '(top level)' : '(top level)';
    throw new ConfigError(`${where}: ${key}: ${issue ? describeIssue(issue) : 'invalid'}`);
  }
  const config = result.data;
  const resolve = (p: string): string => path.resolve(baseDir, p);
  config.database = resolve(config.database);
  config.dropFolder = resolve(config.dropFolder);
  config.outbox = resolve(config.outbox);
  config.log.dir = resolve(config.log.dir);
  config.backup.dir = resolve(config.backup.dir);
  const templatesDir = config.templates ? resolve(config.templates) : path.join(PROJECT_ROOT, 'templates');
  collectSecrets(config, secrets);
  return deepFreeze({ config, file, templatesDir, secrets: [...new Set(secrets.filter((s) => s.length >= 4))] });
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) return 'is required';
  return issue.message;
}

/** Replaces ${NAME} in every string value; remembers substituted values as secrets. */
function substituteEnv(value: unknown, at: string[], env: NodeJS.ProcessEnv, secrets: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const found = env[name];
      if (found === undefined) {
        throw new ConfigError(`${at.join('.')}: environment variable ${name} is not set`);
      }
      secrets.push(found);
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, [...at, String(i)], env, secrets));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, substituteEnv(v, [...at, k], env, secrets)]),
    );
  }
  return value;
}

const SECRET_KEY_NAMES = /^(pass|password|key|testKey|secret|privateKey|token)$/i;

function collectSecrets(value: unknown, secrets: string[]): void {
  if (Array.isArray(value)) value.forEach((v) => collectSecrets(v, secrets));
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (typeof v === 'string' && SECRET_KEY_NAMES.test(k)) {
        secrets.push(v);
        if (v.startsWith('hex:')) secrets.push(v.slice(4));
      } else collectSecrets(v, secrets);
    }
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
