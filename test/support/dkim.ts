/**
 * DKIM for tests, with no network: one RSA-2048 key pair per test run, messages signed with
 * mailauth's own signer, and a resolver that publishes the public key for the domains a test names.
 *
 * How the resolver answers (mailauth's contract, see `Resolver` in src/authenticate/sender.ts):
 * - a published `<selector>._domainkey.<domain>` TXT name: `[[ 'v=DKIM1; k=rsa; p=…' ]]`;
 * - anything else: rejects with code ENOTFOUND, which mailauth reads as "no key" (permanent);
 * - a domain listed in `temporary`: rejects with that code (ESERVFAIL, ETIMEOUT), which mailauth
 *   reads as a DNS temporary error;
 * - a domain listed in `hang`: never answers.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { dkimSign } from 'mailauth/lib/dkim/sign';
import type { Resolver } from '../../src/authenticate/sender';

export const SELECTOR = 'km2026';

export const FIXTURES = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'auth');

const keyPair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const PRIVATE_KEY = keyPair.privateKey.export({ type: 'pkcs8', format: 'pem' });

/** The TXT record a domain publishes for SELECTOR. */
export const PUBLIC_KEY_TXT = `v=DKIM1; k=rsa; p=${keyPair.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;

/** A fixture from test/fixtures/auth, with CRLF line ends as it travels over SMTP. */
export function fixture(name: string): Buffer {
  return crlf(fs.readFileSync(path.join(FIXTURES, name), 'utf8'));
}

export function crlf(text: string): Buffer {
  return Buffer.from(text.replace(/\r?\n/g, '\r\n'), 'utf8');
}

export interface SignOptions {
  /** l=: sign only this many bytes of the canonical body. */
  maxBodyLength?: number;
}

/** `message` with a DKIM-Signature by `domain` (selector SELECTOR) prepended. */
export async function signAs(message: Buffer, domain: string, options: SignOptions = {}): Promise<Buffer> {
  const signature = { signingDomain: domain, selector: SELECTOR, privateKey: PRIVATE_KEY };
  const withLength = options.maxBodyLength === undefined ? signature : { ...signature, maxBodyLength: options.maxBodyLength };
  // mailauth 4.13 reads the signatures from signatureData only; its types also require the
  // top-level fields, which it ignores.
  const result = await dkimSign(message, { ...signature, signatureData: [withLength] });
  if (result.errors.length > 0 || !result.signatures.startsWith('DKIM-Signature:')) {
    throw new Error(`signing failed: ${result.errors.map((e) => e.message).join('; ') || 'no signature'}`);
  }
  return Buffer.concat([Buffer.from(result.signatures, 'utf8'), message]);
}

/** Headers placed above the message, topmost first (as hosts prepend them). */
export function prepend(message: Buffer, ...headerLines: string[]): Buffer {
  return Buffer.concat([Buffer.from(headerLines.map((line) => `${line}\r\n`).join(''), 'utf8'), message]);
}

export interface FakeDns {
  readonly resolve: Resolver;
  /** Every name asked for, in order. */
  readonly lookups: string[];
}

export function fakeDns(options: { publish: string[]; temporary?: Record<string, string>; hang?: string[] }): FakeDns {
  const lookups: string[] = [];
  const resolve: Resolver = (name, rrtype) => {
    lookups.push(name);
    const marker = name.indexOf('._domainkey.');
    const selector = marker < 0 ? '' : name.slice(0, marker);
    const domain = marker < 0 ? '' : name.slice(marker + '._domainkey.'.length);
    const temporaryCode = options.temporary?.[domain];
    if (temporaryCode !== undefined) return Promise.reject(dnsError(temporaryCode, `queryTxt ${temporaryCode} ${name}`));
    if (options.hang?.includes(domain)) return new Promise<string[][]>(() => undefined);
    if (rrtype === 'TXT' && selector === SELECTOR && options.publish.includes(domain)) {
      return Promise.resolve([[PUBLIC_KEY_TXT]]);
    }
    return Promise.reject(dnsError('ENOTFOUND', `queryTxt ENOTFOUND ${name}`));
  };
  return { resolve, lookups };
}

function dnsError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}
