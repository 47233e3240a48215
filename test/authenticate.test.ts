/**
 * What a seller observes of the sender check: which notifications keymailer fulfils as the vendor's,
 * which it refuses (and the reason it gives), and when it only asks to try again later.
 *
 * Every message is signed here, at run time, with a key pair made for this run
 * (test/support/dkim.ts); every DNS answer comes from that support file's resolver. No network.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import {
  authenticateSender,
  buildAuthPolicy,
  type AuthPolicy,
  type AuthVerdict,
  type Resolver,
} from '../src/authenticate/sender';
import { DEFAULT_VENDOR_DOMAINS } from '../src/authenticate/vendor-domains';
import { crlf, fakeDns, fixture, prepend, signAs } from './support/dkim';

const LABELS = { kagi: 'Kagi', paypal: 'PayPal', fastspring: 'FastSpring' };
const TRUSTED_MX = 'mx1.example.net';

function policyWith(vendors: Record<string, Record<string, unknown>> = {}, timeoutMs?: number): AuthPolicy {
  const policy = buildAuthPolicy(vendors, [TRUSTED_MX], LABELS);
  return timeoutMs === undefined ? policy : { ...policy, timeoutMs };
}

/** DNS as the world would answer it: every domain of these tests publishes the run's key. */
const world = (): ReturnType<typeof fakeDns> =>
  fakeDns({ publish: ['kagi.com', 'evil.example', 'seller.example', 'paypal.de', 'paypal.com'] });

async function check(
  raw: Buffer,
  options: { vendorId?: string; policy?: AuthPolicy; resolver?: Resolver; forwardedOriginal?: Buffer } = {},
): Promise<AuthVerdict> {
  return authenticateSender(
    { raw, vendorId: options.vendorId ?? 'kagi', forwardedOriginal: options.forwardedOriginal ?? null },
    options.policy ?? policyWith(),
    options.resolver ?? world().resolve,
  );
}

function assertAuthentic(verdict: AuthVerdict, how: RegExp): void {
  assert.equal(verdict.ok, true, verdict.ok ? '' : `refused: ${verdict.reason}`);
  if (verdict.ok) assert.match(verdict.how, how);
}

function assertRefused(verdict: AuthVerdict, reason: RegExp): void {
  assert.equal(verdict.ok, false, verdict.ok ? `accepted: ${verdict.how}` : '');
  if (!verdict.ok) {
    assert.equal(verdict.temporary, false, `temporary: ${verdict.reason}`);
    assert.match(verdict.reason, reason);
  }
}

function assertTemporary(verdict: AuthVerdict, reason: RegExp): void {
  assert.equal(verdict.ok, false, verdict.ok ? `accepted: ${verdict.how}` : '');
  if (!verdict.ok) {
    assert.equal(verdict.temporary, true, `not temporary: ${verdict.reason}`);
    assert.match(verdict.reason, reason);
  }
}

const kagiSale = (): Buffer => fixture('kagi-sale.eml');

function withFrom(message: Buffer, from: string): Buffer {
  return Buffer.from(message.toString('utf8').replace(/^From: .*$/m, `From: ${from}`), 'utf8');
}

function alterBody(message: Buffer): Buffer {
  const altered = message.toString('utf8').replace('Quantity Ordered: 1', 'Quantity Ordered: 50');
  assert.notEqual(altered, message.toString('utf8'));
  return Buffer.from(altered, 'utf8');
}

function attachedForward(original: Buffer): Buffer {
  return Buffer.concat([fixture('attached-forward-head.eml'), original, crlf('\n--fwd-boundary-7f3a--\n')]);
}

// --- DKIM ------------------------------------------------------------------------------------

test('a Kagi sale signed by kagi.com is authentic', async () => {
  const dns = world();
  const verdict = await check(await signAs(kagiSale(), 'kagi.com'), { resolver: dns.resolve });
  assertAuthentic(verdict, /^DKIM signature by kagi\.com$/);
  assert.deepEqual(dns.lookups, ['km2026._domainkey.kagi.com']);
});

test('a Kagi sale whose body was changed after signing is not authentic', async () => {
  const verdict = await check(alterBody(await signAs(kagiSale(), 'kagi.com')));
  assertRefused(verdict, /^DKIM signature invalid \(kagi\.com: body hash did not verify\)/);
});

test('a Kagi sale whose signed Subject was changed after signing is not authentic', async () => {
  const signed = (await signAs(kagiSale(), 'kagi.com')).toString('utf8').replace('Widget Pro - Jonas', 'Widget Pro Site - Jonas');
  assertRefused(await check(Buffer.from(signed, 'utf8')), /^DKIM signature invalid \(kagi\.com: bad signature\)/);
});

test('a Kagi-looking sale signed by evil.example is not authentic, and evil.example is never looked up', async () => {
  const dns = world();
  const verdict = await check(await signAs(kagiSale(), 'evil.example'), { resolver: dns.resolve });
  assertRefused(verdict, /^no DKIM signature from a Kagi domain \(signed by evil\.example\)/);
  assert.deepEqual(dns.lookups, []);
});

test('a sale signed by kagi.com but From attacker@evil.example is not authentic', async () => {
  const verdict = await check(await signAs(withFrom(kagiSale(), 'Kagi <attacker@evil.example>'), 'kagi.com'));
  assertRefused(verdict, /^From not a Kagi domain: attacker@evil\.example/);
});

test('an unsigned Kagi-looking sale is not authentic', async () => {
  assertRefused(await check(kagiSale()), /^no DKIM signature from a Kagi domain \(message not signed\)/);
});

test('a sale with two From addresses is not authentic, even when signed by kagi.com', async () => {
  const raw = await signAs(withFrom(kagiSale(), 'Kagi <admin@kagi.com>, attacker@evil.example'), 'kagi.com');
  assertRefused(await check(raw), /^more than one From address/);
});

test('a Kagi signature over only part of the body does not cover text appended after it', async () => {
  const sale = kagiSale();
  const bodyStart = sale.indexOf('\r\n\r\n') + 4;
  const signed = await signAs(sale, 'kagi.com', { maxBodyLength: sale.length - bodyStart });
  const appended = Buffer.concat([signed, crlf('\nRegistration Name: Mallory\nQuantity Ordered: 500\n')]);
  assertAuthentic(await check(signed), /DKIM signature by kagi\.com/);
  assertRefused(await check(appended), /^DKIM signature by kagi\.com covers only part of the body/);
});

test('a Kagi signature that does not sign the From header is not authentic', async () => {
  // Signed while the message had no From, so h= lacks From; the From added afterwards is unsigned.
  const withoutFrom = Buffer.from(kagiSale().toString('utf8').replace(/^From: .*\r\n/m, ''), 'utf8');
  const signed = (await signAs(withoutFrom, 'kagi.com')).toString('utf8');
  assert.doesNotMatch(signed, /h=[^;]*\bFrom\b/i);
  const raw = Buffer.from(signed.replace('To: orders@example.com', 'From: Kagi <admin@kagi.com>\r\nTo: orders@example.com'), 'utf8');
  assertRefused(await check(raw), /^DKIM signature by kagi\.com does not sign the From header/);
});

test('a Kagi sale From a kagi.com subdomain, signed by kagi.com, is authentic', async () => {
  const raw = await signAs(withFrom(kagiSale(), 'Kagi <admin@mail.kagi.com>'), 'kagi.com');
  assertAuthentic(await check(raw), /^DKIM signature by kagi\.com$/);
});

test('a PayPal payment From paypal.de signed by paypal.de is authentic; signed by paypal.com it is not aligned', async () => {
  const payment = fixture('paypal-payment.eml');
  assertAuthentic(await check(await signAs(payment, 'paypal.de'), { vendorId: 'paypal' }), /by paypal\.de/);
  const unaligned = await check(await signAs(payment, 'paypal.com'), { vendorId: 'paypal' });
  assertRefused(unaligned, /^DKIM signature by paypal\.com not aligned with From domain paypal\.de/);
});

// --- Authentication-Results -------------------------------------------------------------------

test('a forged Authentication-Results from an untrusted host counts for nothing', async () => {
  const raw = prepend(kagiSale(), 'Authentication-Results: mx.evil.example; dkim=pass header.d=kagi.com; dmarc=pass header.from=kagi.com');
  assertRefused(await check(raw), /Authentication-Results from an untrusted host \(mx\.evil\.example\)/);
});

test('a trusted Authentication-Results below an untrusted one is not honoured', async () => {
  const raw = prepend(
    kagiSale(),
    'Authentication-Results: relay.elsewhere.example; none',
    `Authentication-Results: ${TRUSTED_MX}; dkim=pass header.d=kagi.com; dmarc=pass header.from=kagi.com`,
  );
  assertRefused(
    await check(raw),
    /untrusted host \(relay\.elsewhere\.example\); the one from mx1\.example\.net is not the topmost and counts for nothing/,
  );
});

test('the seller\'s own host saying dkim=pass header.d=kagi.com makes a sale authentic after forwarding broke the signature', async () => {
  const broken = alterBody(await signAs(kagiSale(), 'kagi.com'));
  const raw = prepend(
    broken,
    `Authentication-Results: ${TRUSTED_MX} (Postfix) 1;\r\n\tdkim=pass (2048-bit key; unprotected) header.d=kagi.com header.i=@kagi.com header.s=km2026 header.b="Aa1+/bC2";\r\n\tspf=pass smtp.mailfrom=kagi.com`,
  );
  assertAuthentic(await check(raw), /^Authentication-Results from mx1\.example\.net: dkim=pass header\.d=kagi\.com$/);
});

test('the seller\'s own host saying dmarc=pass header.from=kagi.com makes an unsigned sale authentic', async () => {
  const raw = prepend(kagiSale(), `Authentication-Results: MX1.example.net; dkim=none; dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=kagi.com`);
  assertAuthentic(await check(raw), /^Authentication-Results from mx1\.example\.net: dmarc=pass header\.from=kagi\.com$/);
});

test('the seller\'s own host saying dkim=fail leaves a sale not authentic', async () => {
  const raw = prepend(kagiSale(), `Authentication-Results: ${TRUSTED_MX}; dkim=fail header.d=kagi.com; dmarc=fail header.from=kagi.com`);
  assertRefused(await check(raw), /Authentication-Results from mx1\.example\.net says dkim=fail header\.d=kagi\.com, dmarc=fail header\.from=kagi\.com: no pass for a Kagi domain$/);
});

test('a trusted dkim=pass for kagi.com does not make mail From evil.example authentic', async () => {
  const raw = prepend(withFrom(kagiSale(), 'attacker@evil.example'), `Authentication-Results: ${TRUSTED_MX}; dkim=pass header.d=kagi.com`);
  assertRefused(await check(raw), /^From not a Kagi domain: attacker@evil\.example/);
});

// --- auth: none ---------------------------------------------------------------------------------

test('with vendors.kagi.auth: none an unsigned message from anywhere is accepted', async () => {
  const raw = withFrom(kagiSale(), 'attacker@evil.example');
  const verdict = await check(raw, { policy: policyWith({ kagi: { auth: 'none' } }) });
  assertAuthentic(verdict, /^not checked: vendors\.kagi\.auth is none$/);
});

// --- DNS trouble and time ------------------------------------------------------------------------

test('a DNS temporary failure while verifying gives a temporary verdict, not a refusal', async () => {
  const signed = await signAs(kagiSale(), 'kagi.com');
  for (const code of ['ESERVFAIL', 'ETIMEOUT']) {
    const dns = fakeDns({ publish: ['kagi.com'], temporary: { 'kagi.com': code } });
    assertTemporary(await check(signed, { resolver: dns.resolve }), new RegExp(`^DNS temporary failure .* by kagi\\.com \\(DNS failure: ${code}\\)`));
  }
});

test('a kagi.com key that does not exist is a refusal, not a temporary failure', async () => {
  const dns = fakeDns({ publish: [] });
  assertRefused(await check(await signAs(kagiSale(), 'kagi.com'), { resolver: dns.resolve }), /^DKIM signature invalid \(kagi\.com: no key\)/);
});

test('a DNS server that never answers gives a temporary verdict once the time limit passes', async () => {
  const dns = fakeDns({ publish: ['kagi.com'], hang: ['kagi.com'] });
  const started = performance.now();
  const verdict = await check(await signAs(kagiSale(), 'kagi.com'), { resolver: dns.resolve, policy: policyWith({}, 300) });
  const elapsed = performance.now() - started;
  assertTemporary(verdict, /DNS failure: ETIMEOUT/);
  assert.ok(elapsed >= 250 && elapsed < 2_000, `took ${Math.round(elapsed)} ms`);
});

test('a DNS temporary failure does not hold up a sale the seller\'s own host already verified', async () => {
  const dns = fakeDns({ publish: [], temporary: { 'kagi.com': 'ESERVFAIL' } });
  const raw = prepend(await signAs(kagiSale(), 'kagi.com'), `Authentication-Results: ${TRUSTED_MX}; dkim=pass header.d=kagi.com`);
  assertAuthentic(await check(raw, { resolver: dns.resolve }), /^Authentication-Results from mx1\.example\.net/);
});

// --- Forwarded notifications ------------------------------------------------------------------

test('a forward with the original attached and still signed by kagi.com is authentic', async () => {
  const original = await signAs(kagiSale(), 'kagi.com');
  const verdict = await check(attachedForward(original), { forwardedOriginal: original });
  assertAuthentic(verdict, /^attached original: DKIM signature by kagi\.com$/);
});

test('a forward whose attached original was altered is not authentic from an untrusted forwarder', async () => {
  const original = alterBody(await signAs(kagiSale(), 'kagi.com'));
  const verdict = await check(await signAs(attachedForward(original), 'seller.example'), { forwardedOriginal: original });
  assertRefused(verdict, /^attached original not authentic \(DKIM signature invalid .*\); forwarded by sam@seller\.example, who is not in vendors\.kagi\.trustedForwarders/);
});

test('an attached original with a forged Authentication-Results inside is not authentic', async () => {
  const original = prepend(kagiSale(), `Authentication-Results: ${TRUSTED_MX}; dkim=pass header.d=kagi.com; dmarc=pass header.from=kagi.com`);
  const verdict = await check(attachedForward(original), { forwardedOriginal: original });
  assertRefused(verdict, /^attached original not authentic \(no DKIM signature from a Kagi domain/);
});

test('an inline forward from a forwarder the seller did not list is not authentic', async () => {
  const verdict = await check(await signAs(fixture('inline-forward.eml'), 'seller.example'));
  assertRefused(verdict, /^From not a Kagi domain: sam@seller\.example \(nor a trusted forwarder\)/);
});

test('an inline forward from a trusted forwarder whose own mail is signed is authentic', async () => {
  const policy = policyWith({ kagi: { trustedForwarders: ['Sam@Seller.example'] } });
  const verdict = await check(await signAs(fixture('inline-forward.eml'), 'seller.example'), { policy });
  assertAuthentic(verdict, /^forwarded by trusted sam@seller\.example: DKIM signature by seller\.example$/);
});

test('an inline forward from a trusted forwarder domain, verified by the seller\'s own host with dmarc=pass, is authentic', async () => {
  const policy = policyWith({ kagi: { trustedForwarders: ['seller.example'] } });
  const raw = prepend(fixture('inline-forward.eml'), `Authentication-Results: ${TRUSTED_MX}; dmarc=pass header.from=seller.example`);
  assertAuthentic(await check(raw, { policy }), /^forwarded by trusted sam@seller\.example: Authentication-Results from mx1\.example\.net: dmarc=pass/);
});

test('an inline forward that only claims to come from a trusted forwarder is not authentic', async () => {
  const policy = policyWith({ kagi: { trustedForwarders: ['sam@seller.example'] } });
  const unsigned = await check(fixture('inline-forward.eml'), { policy });
  assertRefused(unsigned, /^forwarded by trusted sam@seller\.example, but its own mail does not authenticate: no DKIM signature from seller\.example/);
  const signedByOther = await check(await signAs(fixture('inline-forward.eml'), 'evil.example'), { policy });
  assertRefused(signedByOther, /no DKIM signature from seller\.example \(signed by evil\.example\)/);
  // dkim=pass alone is not enough for a forwarder: DMARC must pass for its domain.
  const dkimOnly = prepend(fixture('inline-forward.eml'), `Authentication-Results: ${TRUSTED_MX}; dkim=pass header.d=seller.example`);
  assertRefused(await check(dkimOnly, { policy }), /says dkim=pass header\.d=seller\.example: no pass for seller\.example \(DMARC\)/);
});

test('an attached original that fails, forwarded by a trusted forwarder whose mail is signed, is authentic', async () => {
  const policy = policyWith({ kagi: { trustedForwarders: ['sam@seller.example'] } });
  const original = alterBody(await signAs(kagiSale(), 'kagi.com'));
  const verdict = await check(await signAs(attachedForward(original), 'seller.example'), { policy, forwardedOriginal: original });
  assertAuthentic(verdict, /^forwarded by trusted sam@seller\.example: DKIM signature by seller\.example$/);
});

test('a trusted forwarder cannot pass off an attached original that is not from a Kagi address', async () => {
  const policy = policyWith({ kagi: { trustedForwarders: ['sam@seller.example'] } });
  const original = withFrom(kagiSale(), 'attacker@evil.example');
  const verdict = await check(await signAs(attachedForward(original), 'seller.example'), { policy, forwardedOriginal: original });
  assertRefused(verdict, /^attached original not authentic \(From not a Kagi domain: attacker@evil\.example\); the attached original's From is not a Kagi address/);
});

// --- Settings ---------------------------------------------------------------------------------------

test('vendor settings: built-in domains, a list that replaces them, other keys left alone', () => {
  const policy = buildAuthPolicy(
    { kagi: { domains: ['Kagi.com.', 'mail.kagi.example'], productMap: { x: 'y' } }, paypal: { auth: 'none' } },
    ['MX1.Example.NET'],
    LABELS,
  );
  assert.deepEqual(policy.trustAuthResults, ['mx1.example.net']);
  assert.deepEqual(policy.vendor('kagi'), { auth: 'dkim', domains: ['kagi.com', 'mail.kagi.example'], trustedForwarders: [], label: 'Kagi' });
  assert.equal(policy.vendor('paypal').auth, 'none');
  assert.ok(policy.vendor('paypal').domains.includes('paypal.co.uk'));
  assert.deepEqual(policy.vendor('fastspring').domains, ['fastspring.com']);
  assert.deepEqual(policy.vendor('2checkout').domains, ['2checkout.com', 'avangate.com', 'verifone.com']);
  assert.deepEqual(Object.keys(DEFAULT_VENDOR_DOMAINS).sort(), ['2checkout', 'bmtmicro', 'fastspring', 'gumroad', 'kagi', 'lemonsqueezy', 'paddle', 'paypal']);
});

test('bad vendor settings stop start-up with a message naming the key', () => {
  const cases: [Record<string, Record<string, unknown>>, Record<string, string>, RegExp][] = [
    [{ kagi: { auth: 'maybe' } }, LABELS, /^vendors\.kagi\.auth: /],
    [{ kagi: { domains: ['@kagi.com'] } }, LABELS, /^vendors\.kagi\.domains\.0: must be a domain name/],
    [{ kagi: { domains: ['*.kagi.com'] } }, LABELS, /^vendors\.kagi\.domains\.0: /],
    [{ kagi: { domains: [] } }, LABELS, /^vendors\.kagi\.domains: must list at least one domain/],
    [{ kagi: { domains: 'kagi.com' } }, LABELS, /^vendors\.kagi\.domains: /],
    [{ kagi: { trustedForwarders: ['not an address'] } }, LABELS, /^vendors\.kagi\.trustedForwarders\.0: must be an address/],
    [{}, { ...LABELS, acme: 'Acme Pay' }, /^vendors\.acme\.domains: no built-in domains for Acme Pay/],
  ];
  for (const [vendors, labels, message] of cases) {
    assert.throws(() => buildAuthPolicy(vendors, [TRUSTED_MX], labels), (error: unknown) => {
      assert.ok(error instanceof Error);
      assert.equal(error.name, 'ConfigError');
      assert.match(error.message, message);
      return true;
    });
  }
  assert.throws(() => buildAuthPolicy({}, ['mx1.example.net; dkim=pass'], LABELS), /^ConfigError: trustAuthResults\.0: /);
  // A vendor without built-in domains is fine once the seller lists them or turns the check off.
  assert.deepEqual(buildAuthPolicy({ acme: { domains: ['acme.example'] } }, [], { acme: 'Acme Pay' }).vendor('acme').domains, ['acme.example']);
  assert.equal(buildAuthPolicy({ acme: { auth: 'none' } }, [], { acme: 'Acme Pay' }).vendor('acme').auth, 'none');
});

test('verification time per message, with a resolver that answers at once', async (t) => {
  const signed = await signAs(kagiSale(), 'kagi.com');
  const policy = policyWith();
  const dns = world();
  const rounds = 200;
  await check(signed, { policy, resolver: dns.resolve });
  const started = performance.now();
  for (let i = 0; i < rounds; i += 1) {
    const verdict = await check(signed, { policy, resolver: dns.resolve });
    assert.equal(verdict.ok, true);
  }
  const perMessage = (performance.now() - started) / rounds;
  t.diagnostic(`${perMessage.toFixed(2)} ms per verification (${rounds} rounds, 2048-bit RSA, one DKIM signature)`);
  assert.ok(perMessage < 100, `${perMessage} ms per verification`);
});
