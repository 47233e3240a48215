/**
 * Broken mail never breaks keymailer: truncated and garbled copies of every fixture go through
 * decide() and come out as review (or reject: a broken copy may no longer authenticate), or as a
 * result that is whole (never a half-read sale).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig } from '../src/config';
import { decide, decideContext, type DecideContext, type Decision } from '../src/decide';
import type { Resolver } from '../src/authenticate/sender';
import type { VendorParser } from '../src/types';
import { FIXTURES } from './support/cli';
import { seededRandom } from './support/random';

/** No network in a test: a DKIM key lookup finds nothing, as for an unknown selector. */
const noDns: Resolver = (name) => Promise.reject(Object.assign(new Error(`${name}: no DNS in tests`), { code: 'ENOTFOUND' }));
const context: DecideContext = { ...decideContext(loadConfig(path.join(FIXTURES, 'products.yaml')), noDns), today: '2026-11-30' };
const parsers = context.parsers;

function fixtureFiles(): string[] {
  return [...parsers.map((p) => p.id), 'unknown']
    .map((dir) => path.join(FIXTURES, dir))
    .filter((dir) => fs.existsSync(dir))
    .flatMap((dir) => fs.readdirSync(dir).filter((n) => n.endsWith('.eml')).sort().map((n) => path.join(dir, n)));
}

function variants(raw: Buffer, seed: number): { name: string; raw: Buffer }[] {
  const rnd = seededRandom(seed);
  const out: { name: string; raw: Buffer }[] = [];
  for (const share of [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]) {
    const cut = Math.floor(raw.length * share);
    out.push({ name: `truncated at ${cut} bytes`, raw: raw.subarray(0, cut) });
  }
  for (let round = 0; round < 6; round++) {
    const copy = Buffer.from(raw);
    const flips = 1 + Math.floor(rnd() * 40);
    for (let i = 0; i < flips; i++) copy[Math.floor(rnd() * copy.length)] = Math.floor(rnd() * 256);
    out.push({ name: `${flips} random bytes (round ${round})`, raw: copy });
  }
  const lines = raw.toString('latin1').split('\n');
  const shuffled = [...lines];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j] ?? '', shuffled[i] ?? ''];
  }
  out.push({ name: 'lines shuffled', raw: Buffer.from(shuffled.join('\n'), 'latin1') });
  out.push({ name: 'every other line dropped', raw: Buffer.from(lines.filter((_, i) => i % 2 === 0).join('\n'), 'latin1') });
  out.push({ name: 'no blank line between head and body', raw: Buffer.from(raw.toString('latin1').replace(/\r?\n\r?\n/, '\n'), 'latin1') });
  out.push({ name: 'body repeated', raw: Buffer.concat([raw, raw.subarray(raw.indexOf('\n\n'))]) });
  out.push({ name: 'a 200 kB line of spaces', raw: Buffer.concat([raw, Buffer.from(`\nX: ${' '.repeat(200_000)}y\n`)]) });
  out.push({ name: 'empty', raw: Buffer.alloc(0) });
  return out;
}

/** A decision the pipeline can act on: review with a reason, or a complete result. */
function assertWhole(d: Decision, where: string): void {
  assert.ok(['fulfill', 'refund', 'ignore', 'review', 'reject', 'defer'].includes(d.action), `${where}: action ${d.action}`);
  if (d.action === 'fulfill') {
    assert.equal(d.reason, null, where);
    assert.ok(d.orders.length > 0, `${where}: a sale without orders`);
  } else {
    assert.equal(typeof d.reason, 'string', `${where}: ${d.action} without a reason`);
    assert.ok((d.reason ?? '').length > 0, `${where}: empty reason`);
  }
  for (const o of d.orders) {
    assert.match(o.buyerEmail, /^[^\s@]+@[^\s@]+\.[^\s@]+$/, `${where}: buyer email`);
    assert.ok(o.product.trim().length > 0, `${where}: empty product`);
    assert.ok(Number.isInteger(o.quantity) && o.quantity >= 1, `${where}: quantity ${o.quantity}`);
    if (o.price !== null) assert.match(o.price, /^\d+(\.\d+)?$/, `${where}: price ${o.price}`);
    if (o.currency !== null) assert.match(o.currency, /^[A-Z]{3}$/, `${where}: currency ${o.currency}`);
    if (d.action === 'fulfill') {
      assert.ok(o.productId !== null && o.serials !== null && o.review === null, `${where}: fulfilled order without a serial`);
    }
  }
}

describe('truncated and garbled notifications', () => {
  fixtureFiles().forEach((file, index) => {
    test(`${path.relative(FIXTURES, file)}: every broken copy becomes review or a whole result, never an exception`, async () => {
      const raw = fs.readFileSync(file);
      for (const v of variants(raw, 1000 + index)) {
        const where = `${path.relative(FIXTURES, file)}, ${v.name}`;
        const started = process.hrtime.bigint();
        const decision = await decide(v.raw, context);
        assertWhole(decision, where);
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        assert.ok(ms < 2000, `${where}: took ${ms.toFixed(0)} ms`);
      }
    });
  });
});

describe('a parser that crashes', () => {
  test('sends the message to review with the exception as the reason', async () => {
    const crashing: VendorParser = {
      id: 'kagi',
      label: 'Kagi',
      matches: () => true,
      parse: () => {
        throw new TypeError("Cannot read properties of undefined (reading 'trim')");
      },
    };
    const decision = await decide(fs.readFileSync(path.join(FIXTURES, 'kagi', 'sale.eml')), { ...context, parsers: [crashing] });
    assert.equal(decision.action, 'review');
    assert.equal(decision.reason, "Kagi: Cannot read properties of undefined (reading 'trim')");
    assert.deepEqual(decision.orders, []);
  });
});
