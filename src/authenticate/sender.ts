/**
 * "No serial for a forgery": decides whether a notification really comes from its vendor before any
 * order in it is fulfilled. Anyone can mail the order mailbox a message that looks like a Kagi sale;
 * only the vendor can sign one with its domain's DKIM key, and only the seller's own receiving host
 * can stamp the topmost Authentication-Results header.
 *
 * A message is authentic when its From address is at one of the vendor's domains and either
 * - it carries a DKIM signature (verified by mailauth) that passes, signs the From header, covers
 *   the whole body (no `l=` shorter than the body: text appended after a partial signature would
 *   otherwise ride along), and whose `d=` is one of the vendor's domains, aligned with From (relaxed:
 *   both under the same listed domain, so `d=kagi.com` aligns with `From: x@mail.kagi.com`); or
 * - the TOPMOST Authentication-Results header has an authserv-id listed in `trustAuthResults` and
 *   says `dkim=pass` with `header.d` (or `dmarc=pass` with `header.from`) one of the vendor's domains,
 *   aligned with From. Only the topmost one: anyone can write the lower ones before the mail reaches
 *   the seller's host, and a host that stamps its own on top makes every older one hearsay.
 * Forwarded notifications: an attached original (`forwardedOriginal`, the inner bytes) is authentic
 * when its own DKIM signature passes the test above (its own Authentication-Results count for
 * nothing). Otherwise a forward counts only when the OUTER From is in `vendors.<id>.trustedForwarders`
 * and the outer message authenticates for the forwarder's domain (aligned DKIM, or the trusted topmost
 * Authentication-Results with `dmarc=pass header.from=<forwarder's domain>`); with an attached
 * original its From must still be at a vendor domain. For an inline forward nobody here can read the
 * original From: the seller vouched for the forwarder, and the parser reads what it forwarded.
 * `vendors.<id>.auth: none` skips every check, the From check included (the caller logs that choice
 * at start).
 *
 * DNS: every lookup goes through the resolver the caller passes, and only for DKIM keys of domains
 * that could make the message authentic (the vendor's and the trusted forwarders'): a signature by
 * evil.example costs no lookup. Time is bounded (`timeoutMs`, 10 s by default): a lookup still
 * unanswered at the deadline counts as a DNS timeout, which makes the verdict temporary (the caller
 * retries), never a failure. Nothing here logs; the caller logs the verdict.
 */
import { performance } from 'node:perf_hooks';
import dns from 'node:dns';
import type { DKIMResult, DKIMVerifyResult, DNSResolver } from 'mailauth';

type DkimVerify = (typeof import('mailauth/lib/dkim/verify'))['dkimVerify'];
let loadedVerify: DkimVerify | null = null;
/** Loaded on first use: mailauth costs ~150 ms and ~8 MB at start-up, and many sellers start idle. */
function dkimVerify(...args: Parameters<DkimVerify>): ReturnType<DkimVerify> {
  loadedVerify ??= (require('mailauth/lib/dkim/verify') as typeof import('mailauth/lib/dkim/verify')).dkimVerify;
  return loadedVerify(...args);
}
import { coerceError } from '../errors';
import {
  alignedWithin,
  domainOfAddress,
  isUnderAny,
  normalizeDomain,
  type AuthPolicy,
  type VendorAuthSettings,
} from './vendor-domains';

// The settings half of this API lives with the vendors' domains (vendor-domains.ts).
export {
  buildAuthPolicy,
  vendorAuthSchema,
  type AuthPolicy,
  type VendorAuthConfig,
  type VendorAuthSettings,
} from './vendor-domains';

/**
 * mailauth's resolver: `(name, 'TXT')` resolves to what `dns.promises.resolve` gives (a list of
 * records, each a list of string chunks; mailauth joins the chunks of the FIRST record). "No such
 * key" is a rejection whose `code` is 'ENOTFOUND' or 'ENODATA' (a permanent failure of that
 * signature); a rejection with any other code, or none, ('ETIMEOUT', 'ESERVFAIL', 'ECONNREFUSED')
 * is a DNS temporary error and makes the verdict temporary.
 */
export type Resolver = DNSResolver;

/**
 * ok: fulfil; `how` says what proved it, for the log. Not ok and temporary: try again later (DNS
 * trouble); the caller sends it to review only when that lasts. Not ok and not temporary: review
 * now, with `reason` (precise, safe to log and to show the seller; never holds a secret).
 */
export type AuthVerdict =
  | { readonly ok: true; readonly how: string }
  | { readonly ok: false; readonly temporary: boolean; readonly reason: string };

const DEFAULT_TIMEOUT_MS = 10_000;
/** After the lookup deadline mailauth only finishes hashing; this bounds that too. */
const GRACE_MS = 1_000;

// ---------------------------------------------------------------------------------------------
// The check

/**
 * The verdict on one message of vendor `vendorId` (the id of the parser that matched it). `raw` is the
 * message as received; `forwardedOriginal` the bytes of an attached `message/rfc822` original when
 * the caller found one. `resolver` answers the DKIM key lookups (Node's DNS when omitted). Never
 * throws for anything in the message; settles within `policy.timeoutMs` plus one second.
 */
export async function authenticateSender(
  input: { raw: Buffer; vendorId: string; forwardedOriginal?: Buffer | null },
  policy: AuthPolicy,
  resolver: Resolver = systemResolver,
): Promise<AuthVerdict> {
  const vendor = policy.vendor(input.vendorId);
  if (vendor.auth === 'none') {
    return { ok: true, how: `not checked: vendors.${input.vendorId}.auth is none` };
  }
  if (vendor.domains.length === 0) {
    return fail(`no domains known for ${vendor.label}: set vendors.${input.vendorId}.domains`);
  }
  const deadline = performance.now() + (policy.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const forwarderDomains = vendor.trustedForwarders.map(domainOfEntry);
  const trusted = policy.trustAuthResults.map((id) => id.toLowerCase());

  if (input.forwardedOriginal) {
    // The inner message alone: its own signature, never its (forgeable) Authentication-Results.
    const inner = await examine(input.forwardedOriginal, vendor.domains, resolver, deadline);
    const innerVerdict = 'timedOut' in inner ? timedOut(policy) : judgeVendor(inner, vendor, null);
    if (innerVerdict.ok) return { ok: true, how: `attached original: ${innerVerdict.how}` };

    const outer = await examine(input.raw, forwarderDomains, resolver, deadline);
    if ('timedOut' in outer) return timedOut(policy);
    const innerFrom = 'timedOut' in inner ? null : singleFrom(inner);
    const innerFromOk = typeof innerFrom === 'string' && isUnderAny(domainOfAddress(innerFrom), vendor.domains);
    const viaForwarder = judgeForwarder(outer, input.vendorId, vendor, trusted);
    if (viaForwarder.ok && innerFromOk) return viaForwarder;
    const why = viaForwarder.ok
      ? `the attached original's From is not a ${vendor.label} address`
      : viaForwarder.reason;
    return {
      ok: false,
      temporary: (!innerVerdict.ok && innerVerdict.temporary) || (!viaForwarder.ok && viaForwarder.temporary),
      reason: `attached original not authentic (${innerVerdict.reason}); ${why}`,
    };
  }

  const message = await examine(input.raw, [...vendor.domains, ...forwarderDomains], resolver, deadline);
  if ('timedOut' in message) return timedOut(policy);
  const from = singleFrom(message);
  if (typeof from !== 'string') return fail(from.reason);
  if (isUnderAny(domainOfAddress(from), vendor.domains)) return judgeVendor(message, vendor, trusted);
  if (matchForwarder(from, vendor.trustedForwarders) !== null) {
    return judgeForwarder(message, input.vendorId, vendor, trusted);
  }
  return fail(`From not a ${vendor.label} domain: ${from} (nor a trusted forwarder)`);
}

/** Node's own DNS, for callers that pass no resolver (only DKIM key records are ever asked for). */
const systemResolver: Resolver = async (name, rrtype) => {
  if (rrtype !== 'TXT') throw dnsError('ENOTFOUND', `${name}: only TXT lookups are made`);
  return dns.promises.resolveTxt(name);
};

function fail(reason: string, temporary = false): AuthVerdict {
  return { ok: false, temporary, reason };
}

function timedOut(policy: AuthPolicy): AuthVerdict {
  return fail(`DKIM verification took longer than ${policy.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`, true);
}

/** A vendor's message: From at a vendor domain, then aligned DKIM, then (outer only) trusted A-R. */
function judgeVendor(message: Examined, vendor: VendorAuthSettings, trusted: readonly string[] | null): AuthVerdict {
  const from = singleFrom(message);
  if (typeof from !== 'string') return fail(from.reason);
  const fromDomain = domainOfAddress(from);
  if (!isUnderAny(fromDomain, vendor.domains)) return fail(`From not a ${vendor.label} domain: ${from}`);

  const dkim = judgeSignatures(message.signatures, vendor.domains, fromDomain, `a ${vendor.label} domain`);
  if (dkim.ok) return dkim;
  const results =
    trusted === null
      ? null
      : judgeAuthResults(message.headers, trusted, vendor.domains, fromDomain, true, `a ${vendor.label} domain`);
  if (results?.ok) return results;
  if (dkim.temporary) return dkim;
  return fail([dkim.reason, results?.ok === false ? results.reason : ''].filter(Boolean).join('; '));
}

/** A message from a trusted forwarder: authenticated for the forwarder's own domain. */
function judgeForwarder(
  message: Examined,
  vendorId: string,
  vendor: VendorAuthSettings,
  trusted: readonly string[],
): AuthVerdict {
  const from = singleFrom(message);
  if (typeof from !== 'string') return fail(`forwarder: ${from.reason}`);
  const entry = matchForwarder(from, vendor.trustedForwarders);
  if (entry === null) return fail(`forwarded by ${from}, who is not in vendors.${vendorId}.trustedForwarders`);
  const domains = [domainOfEntry(entry)];
  const fromDomain = domainOfAddress(from);
  const dkim = judgeSignatures(message.signatures, domains, fromDomain, domains[0] ?? '');
  if (dkim.ok) return { ok: true, how: `forwarded by trusted ${from}: ${dkim.how}` };
  const results = judgeAuthResults(message.headers, trusted, domains, fromDomain, false, `${domains[0] ?? ''} (DMARC)`);
  if (results.ok) return { ok: true, how: `forwarded by trusted ${from}: ${results.how}` };
  if (dkim.temporary) return dkim;
  const why = [dkim.reason, results.ok ? '' : results.reason].filter(Boolean).join('; ');
  return fail(`forwarded by trusted ${from}, but its own mail does not authenticate: ${why}`);
}

function domainOfEntry(entry: string): string {
  return entry.includes('@') ? domainOfAddress(entry) : normalizeDomain(entry);
}

/** The trustedForwarders entry that `address` matches, or null. */
function matchForwarder(address: string, entries: readonly string[]): string | null {
  const lower = address.toLowerCase();
  return (
    entries.find((entry) =>
      entry.includes('@') ? entry === lower : isUnderAny(domainOfAddress(lower), [entry]),
    ) ?? null
  );
}

/** The one From address, or why there is not exactly one (two addresses are a spoofing classic). */
function singleFrom(message: Examined): string | { reason: string } {
  if (message.unreadable !== undefined) return { reason: `message unreadable: ${message.unreadable}` };
  if (message.fromAddresses.length === 0) return { reason: 'no From address' };
  if (message.fromAddresses.length > 1) {
    return { reason: `more than one From address: ${message.fromAddresses.join(', ')}` };
  }
  return (message.fromAddresses[0] ?? '').toLowerCase();
}

/** DKIM: a passing, complete, From-signing signature by one of `domains`, aligned with From. */
function judgeSignatures(
  signatures: readonly Signature[],
  domains: readonly string[],
  fromDomain: string,
  whose: string,
): AuthVerdict {
  const relevant = signatures.filter((s) => isUnderAny(s.domain, domains));
  const good = relevant.find(
    (s) => s.result === 'pass' && s.signsFrom && !s.partialBody && alignedWithin(s.domain, fromDomain, domains),
  );
  if (good) return { ok: true, how: `DKIM signature by ${good.domain}` };

  const temporary = relevant.find((s) => s.result === 'temperror');
  if (temporary) {
    return fail(`DNS temporary failure verifying the DKIM signature by ${temporary.domain} (${temporary.comment})`, true);
  }
  const passing = relevant.find((s) => s.result === 'pass');
  if (passing) {
    if (!passing.signsFrom) return fail(`DKIM signature by ${passing.domain} does not sign the From header`);
    if (passing.partialBody) return fail(`DKIM signature by ${passing.domain} covers only part of the body (l=)`);
    return fail(`DKIM signature by ${passing.domain} not aligned with From domain ${fromDomain}`);
  }
  const invalid = relevant[0];
  if (invalid) {
    return fail(`DKIM signature invalid (${invalid.domain}: ${invalid.comment || invalid.result})`);
  }
  const others = [...new Set(signatures.map((s) => s.domain))];
  return fail(
    others.length > 0
      ? `no DKIM signature from ${whose} (signed by ${others.join(', ')})`
      : `no DKIM signature from ${whose} (message not signed)`,
  );
}

/**
 * The topmost Authentication-Results header, if a trusted host wrote it: `dmarc=pass` with
 * header.from under `domains` (always), or `dkim=pass` with header.d under them (only when
 * `acceptDkim`, i.e. for the vendor; a forwarder must pass DMARC). Either aligned with From.
 */
function judgeAuthResults(
  headers: readonly HeaderField[],
  trusted: readonly string[],
  domains: readonly string[],
  fromDomain: string,
  acceptDkim: boolean,
  whose: string,
): AuthVerdict {
  const all = headers.filter((h) => h.name === 'authentication-results').map((h) => parseAuthResults(h.value));
  const top = all[0];
  if (!top) return fail(trusted.length ? `no Authentication-Results header from ${trusted.join(' or ')}` : '');
  if (!trusted.includes(top.authservId)) {
    const buried = all.slice(1).find((r) => trusted.includes(r.authservId));
    return fail(
      `Authentication-Results from an untrusted host (${top.authservId || 'no authserv-id'})` +
        (buried ? `; the one from ${buried.authservId} is not the topmost and counts for nothing` : ''),
    );
  }
  const said: string[] = [];
  for (const { method, result, props } of top.results) {
    const domain = method === 'dkim' ? props.get('header.d') : method === 'dmarc' ? props.get('header.from') : undefined;
    if (domain === undefined) continue;
    const claim = `${method}=${result} ${method === 'dkim' ? 'header.d' : 'header.from'}=${domain}`;
    said.push(claim);
    if (result !== 'pass' || (method === 'dkim' && !acceptDkim)) continue;
    if (isUnderAny(domain, domains) && alignedWithin(domain, fromDomain, domains)) {
      return { ok: true, how: `Authentication-Results from ${top.authservId}: ${claim}` };
    }
  }
  const saying = said.length > 0 ? `says ${said.join(', ')}` : 'has no dkim or dmarc result';
  return fail(`Authentication-Results from ${top.authservId} ${saying}: no pass for ${whose}`);
}

// ---------------------------------------------------------------------------------------------
// Reading a message: mailauth for DKIM and From, our own reading of the header block for A-R.

interface Signature {
  /** d=, normalised. */
  readonly domain: string;
  readonly result: string;
  readonly comment: string;
  /** h= lists From (RFC 6376 requires it; without it the From is anyone's). */
  readonly signsFrom: boolean;
  /** l= shorter than the body: text after it is unsigned. */
  readonly partialBody: boolean;
}

interface HeaderField {
  /** Lower-cased. */
  readonly name: string;
  /** Unfolded, trimmed. */
  readonly value: string;
}

interface Examined {
  /** Set when mailauth could not read the message at all. */
  readonly unreadable?: string;
  readonly fromAddresses: readonly string[];
  readonly signatures: readonly Signature[];
  /** Every header field in order, topmost first. */
  readonly headers: readonly HeaderField[];
}

/** Runs mailauth on one message, looking up keys only for `keyDomains`, finishing by the deadline. */
async function examine(
  raw: Buffer,
  keyDomains: readonly string[],
  resolver: Resolver,
  deadline: number,
): Promise<Examined | { timedOut: true }> {
  const guarded: Resolver = async (name, rrtype) => {
    const marker = name.toLowerCase().lastIndexOf('._domainkey.');
    const domain = marker < 0 ? '' : name.slice(marker + '._domainkey.'.length);
    if (rrtype !== 'TXT' || !isUnderAny(domain, keyDomains)) {
      // Not a key that could make this message authentic: no lookup, "no key" for that signature.
      throw dnsError('ENOTFOUND', `${name}: not looked up`);
    }
    const answer = await beforeDeadline(Promise.resolve().then(() => resolver(name, rrtype)), deadline);
    if (answer === TIMED_OUT) throw dnsError('ETIMEOUT', `${name}: no answer in time`);
    return answer;
  };
  let verified: DKIMVerifyResult | typeof TIMED_OUT;
  try {
    verified = await beforeDeadline(dkimVerify(raw, { resolver: guarded }), deadline + GRACE_MS);
  } catch (thrown) {
    // mailauth throws on input it cannot read at all (it reports DNS trouble in the results).
    return { unreadable: coerceError(thrown).message, fromAddresses: [], signatures: [], headers: [] };
  }
  if (verified === TIMED_OUT) return { timedOut: true };
  return {
    fromAddresses: verified.headerFrom.map((address) => address.trim()),
    signatures: verified.results.flatMap(readSignature),
    headers: headerFields(raw),
  };
}

/** mailauth's result for one signature; 'none' (the message has no signature at all) is dropped. */
function readSignature(result: DKIMResult): Signature[] {
  const status = result.status;
  if (status.result === 'none' || typeof result.signingDomain !== 'string') return [];
  const extra: Record<string, unknown> = { ...result };
  const signing = extra['signingHeaders'];
  const keys =
    typeof signing === 'object' && signing !== null && 'keys' in signing && typeof signing.keys === 'string'
      ? signing.keys
      : '';
  const limited = extra['canonBodyLengthLimited'] === true;
  const total = extra['canonBodyLengthTotal'];
  const hashed = extra['canonBodyLength'];
  return [
    {
      domain: normalizeDomain(result.signingDomain),
      result: status.result === 'temperr' ? 'temperror' : status.result,
      comment: typeof status.comment === 'string' ? status.comment : '',
      signsFrom: keys.split(':').some((key) => key.trim().toLowerCase() === 'from'),
      partialBody: limited && (typeof total !== 'number' || typeof hashed !== 'number' || hashed < total),
    },
  ];
}

/** The header block, unfolded: one entry per field, in order. */
function headerFields(raw: Buffer): HeaderField[] {
  const ends = [raw.indexOf('\r\n\r\n'), raw.indexOf('\n\n')].filter((index) => index >= 0);
  const block = raw.subarray(0, ends.length > 0 ? Math.min(...ends) : raw.length).toString('latin1');
  const fields: HeaderField[] = [];
  let current: string | null = null;
  const flush = (): void => {
    if (current === null) return;
    const colon = current.indexOf(':');
    if (colon > 0) fields.push({ name: current.slice(0, colon).trim().toLowerCase(), value: current.slice(colon + 1).trim() });
  };
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && current !== null) {
      current += ` ${line.trim()}`;
    } else {
      flush();
      current = line;
    }
  }
  flush();
  return fields;
}

interface AuthResults {
  /** Lower-cased; '' when the header has none. */
  readonly authservId: string;
  readonly results: readonly { method: string; result: string; props: ReadonlyMap<string, string> }[];
}

/** RFC 8601: `authserv-id [version]; method=result [reason=...] ptype.property=value ...; ...`. */
function parseAuthResults(value: string): AuthResults {
  const segments = splitOutsideQuotes(stripComments(value), ';');
  const first = (segments[0] ?? '').trim().split(/\s+/)[0] ?? '';
  const results: { method: string; result: string; props: Map<string, string> }[] = [];
  const pair = /([A-Za-z0-9_-]+(?:\s*\/\s*[0-9]+)?(?:\s*\.\s*[A-Za-z0-9_-]+)?)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s"]+)/g;
  for (const segment of segments.slice(1)) {
    const trimmed = segment.trim();
    let method = '';
    let result = '';
    const props = new Map<string, string>();
    for (const match of trimmed.matchAll(pair)) {
      const key = (match[1] ?? '').replace(/\s+/g, '').toLowerCase();
      const raw = unquote(match[2] ?? '');
      if (method === '') {
        if (match.index !== 0) break; // not a methodspec: skip this segment
        method = key.replace(/\/.*$/, '');
        result = raw.toLowerCase();
      } else if (key.includes('.')) {
        props.set(key, key === 'header.from' || key === 'header.d' ? normalizeDomain(raw.slice(raw.lastIndexOf('@') + 1)) : raw);
      }
    }
    if (method !== '') results.push({ method, result, props });
  }
  return { authservId: unquote(first).toLowerCase(), results };
}

/** Replaces RFC 5322 comments (nested, with quoted pairs) by a space; quoted strings are kept. */
function stripComments(value: string): string {
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i += 1) {
    const c = value[i] ?? '';
    if (c === '\\' && (quoted || depth > 0)) {
      if (depth === 0) out += c + (value[i + 1] ?? '');
      i += 1;
    } else if (depth > 0) {
      if (c === '(') depth += 1;
      else if (c === ')') {
        depth -= 1;
        if (depth === 0) out += ' ';
      }
    } else if (c === '"') {
      quoted = !quoted;
      out += c;
    } else if (c === '(' && !quoted) {
      depth = 1;
    } else {
      out += c;
    }
  }
  return out;
}

function splitOutsideQuotes(value: string, separator: string): string[] {
  const parts: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < value.length; i += 1) {
    const c = value[i] ?? '';
    if (c === '\\' && quoted) {
      current += c + (value[i + 1] ?? '');
      i += 1;
    } else if (c === '"') {
      quoted = !quoted;
      current += c;
    } else if (c === separator && !quoted) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

function unquote(value: string): string {
  return value.startsWith('"') && value.endsWith('"') && value.length >= 2
    ? value.slice(1, -1).replace(/\\(.)/g, '$1')
    : value;
}

// ---------------------------------------------------------------------------------------------
// Time

const TIMED_OUT: unique symbol = Symbol('timed out');

/** `work`, or TIMED_OUT once `deadline` (performance.now() time) passes. The timer never outlives the race. */
async function beforeDeadline<T>(work: Promise<T>, deadline: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), Math.max(0, deadline - performance.now()));
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

function dnsError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}
