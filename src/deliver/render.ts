/**
 * Renders buyer mails from templates/<name>.{subject,text,html}.hbs (Handlebars) into complete
 * MIME messages. The message is built once, before it is recorded, so a resend after a crash
 * repeats exactly the same bytes and Message-ID.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';
import { ConfigError } from '../errors';
import { sha256 } from '../hash';
import { buildMime } from './mime';

export interface BuyerMailData {
  readonly buyer: { readonly name: string; readonly email: string };
  readonly licenseName: string;
  readonly product: { readonly id: string; readonly name: string };
  readonly serials: readonly string[];
  readonly quantity: number;
  readonly order: { readonly id: string | null; readonly vendor: string };
  readonly test: boolean;
}

interface CompiledTemplate {
  readonly subject: Handlebars.TemplateDelegate;
  readonly text: Handlebars.TemplateDelegate;
  readonly html: Handlebars.TemplateDelegate | null;
}

export class Renderer {
  private readonly cache = new Map<string, CompiledTemplate>();

  constructor(
    private readonly templatesDir: string,
    private readonly from: string,
  ) {}

  /** Fails at start-up, not at the first sale, when a product names a template that is not there. */
  check(name: string): void {
    this.template(name);
  }

  private template(name: string): CompiledTemplate {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const read = (part: string): string | null => {
      const file = path.join(this.templatesDir, `${name}.${part}.hbs`);
      return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    };
    const subject = read('subject');
    const text = read('text');
    if (subject === null || text === null) {
      throw new ConfigError(`template "${name}": ${this.templatesDir}/${name}.subject.hbs and ${name}.text.hbs are required`);
    }
    const html = read('html');
    const plain = { noEscape: true, strict: false };
    const compiled: CompiledTemplate = {
      subject: Handlebars.compile(subject.trim(), plain),
      text: Handlebars.compile(text, plain),
      html: html === null ? null : Handlebars.compile(html),
    };
    this.cache.set(name, compiled);
    return compiled;
  }

  render(name: string, data: BuyerMailData): { subject: string; text: string; html: string | null } {
    const t = this.template(name);
    const context = { ...data, serial: data.serials[0], plural: data.serials.length > 1 };
    return {
      subject: t.subject(context).replace(/\s+/g, ' ').trim(),
      text: t.text(context),
      html: t.html ? t.html(context) : null,
    };
  }

  /** The complete buyer mail as MIME bytes, with a Message-ID derived from the order's identity. */
  async buildBuyerMail(
    name: string,
    data: BuyerMailData,
    identity: string,
    date: Date = new Date(),
  ): Promise<{ messageId: string; raw: Buffer }> {
    const { subject, text, html } = this.render(name, data);
    const messageId = stableMessageId(identity, this.from);
    const raw = await composeMail({
      from: this.from,
      to: { name: data.buyer.name, address: data.buyer.email },
      subject,
      text,
      html,
      messageId,
      date,
    });
    return { messageId, raw };
  }
}

export interface MailParts {
  readonly from: string;
  readonly to: string | { name: string; address: string };
  readonly subject: string;
  readonly text: string;
  readonly html: string | null;
  readonly messageId: string;
  readonly date: Date;
  readonly headers?: Record<string, string>;
}

type MailComposerClass = typeof import('nodemailer/lib/mail-composer').default;
let composerClass: MailComposerClass | null = null;
/** nodemailer's composer, loaded on first use (see preloadMailParser for why) and kept: a require() resolves its path again on every call. */
function mailComposer(): MailComposerClass {
  return (composerClass ??= (require('nodemailer/lib/mail-composer') as typeof import('nodemailer/lib/mail-composer')).default);
}

export function preloadMailComposer(): void {
  mailComposer();
}

export async function composeMail(parts: MailParts): Promise<Buffer> {
  const composer = new (mailComposer())({
    from: parts.from,
    to: parts.to,
    subject: parts.subject,
    text: parts.text,
    ...(parts.html === null ? {} : { html: parts.html }),
    messageId: parts.messageId,
    date: parts.date,
    headers: { 'X-Mailer': 'keymailer', ...parts.headers },
    // Random as nodemailer's own, from node's buffered UUIDs: nodemailer draws 8 random bytes per part otherwise.
    baseBoundary: randomUUID().replace(/-/g, ''),
  });
  return buildMime(composer.compile());
}

/** `<hash.km@seller-domain>`: the same identity always gives the same Message-ID, so a repeat is recognisable. */
export function stableMessageId(identity: string, from: string): string {
  const domain = /@([^>\s]+)>?\s*$/.exec(from)?.[1] ?? 'keymailer.local';
  const hash = sha256(identity).slice(0, 32);
  return `<${hash}.km@${domain}>`;
}
