/**
 * 10,000 mutated notifications (bit flips, truncation, duplicated headers, swapped encodings)
 * through parsing and sender authentication: no exception, no hang, every message ends in
 * exactly one state, and no mutated buyer name ever gets a serial.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { parseConfig } from '../src/config';
import { decide, decideContext, type DecideContext } from '../src/decide';
import { EXAMPLES, tempDir } from './support/cli';
import { fakeDns, prepend, signAs } from './support/dkim';
import { seededRandom } from './support/random';

const MUTANTS = 10_000;
const KEY = 'Tq9#vL2!pX7@mR4s';
const FINAL: Record<string, string> = { fulfill: 'fulfilled', ignore: 'ignored', refund: 'ignored', review: 'review', reject: 'review' };

function mutate(raw: Buffer, random: () => number): { kind: string; raw: Buffer } {
  const text = raw.toString('latin1');
  const pick = Math.floor(random() * 6);
  switch (pick) {
    case 0: {
      const out = Buffer.from(raw);
      const flips = 1 + Math.floor(random() * 8);
      for (let i = 0; i < flips; i++) {
        const at = Math.floor(random() * out.length);
        out[at] = (out[at] ?? 0) ^ (1 << Math.floor(random() * 8));
      }
      return { kind: 'bit flips', raw: out };
    }
    case 1:
      return { kind: 'truncation', raw: raw.subarray(0, Math.floor(random() * raw.length)) };
    case 2: {
      const lines = text.split('\r\n');
      const end = lines.indexOf('');
      const at = Math.floor(random() * Math.max(1, end));
      lines.splice(at, 0, lines[at] ?? '');
      return { kind: 'duplicated header', raw: Buffer.from(lines.join('\r\n'), 'latin1') };
    }
    case 3: {
      const swaps: [RegExp, string][] = [
        [/charset=UTF-8/i, 'charset=ISO-8859-1'],
        [/charset=UTF-8/i, 'charset=x-no-such-charset'],
        [/Content-Transfer-Encoding: 8bit/i, 'Content-Transfer-Encoding: base64'],
        [/Content-Transfer-Encoding: 8bit/i, 'Content-Transfer-Encoding: quoted-printable'],
        [/Content-Type: text\/plain/i, 'Content-Type: multipart/mixed; boundary="x"'],
        [/Content-Type: text\/plain/i, 'Content-Type: text/html'],
      ];
      const [from, to] = swaps[Math.floor(random() * swaps.length)] ?? swaps[0]!;
      return { kind: 'encoding swap', raw: Buffer.from(text.replace(from, to), 'latin1') };
    }
    case 4: {
      const at = Math.floor(random() * raw.length);
      const junk = Buffer.alloc(1 + Math.floor(random() * 2000), Math.floor(random() * 256));
      return { kind: 'inserted garbage', raw: Buffer.concat([raw.subarray(0, at), junk, raw.subarray(at)]) };
    }
    default: {
      // Another name in the body: exactly what a forger would try.
      return { kind: 'name changed', raw: Buffer.from(text.replace(/Purchaser Name: [^\r\n]*/, 'Purchaser Name: Mallory Forger').replace(/Registration Name: [^\r\n]*/, 'Registration Name: Mallory Forger'), 'latin1') };
    }
  }
}

let context: DecideContext;
let signed: Buffer;
let vouched: Buffer;
let honestSerial: string;

before(async () => {
  const dir = tempDir();
  const loaded = parseConfig(
    `owner: { email: owner@acme.example }
from: "Acme <sales@acme.example>"
trustAuthResults: [mx1.acme.example]
products: [{ id: widget-pro, name: Widget Pro, key: "${KEY}", match: ["Widget Pro"] }]
`,
    path.join(dir, 'config.yaml'),
    dir,
  );
  const dns = fakeDns({ publish: ['kagi.com'] });
  context = { ...decideContext(loaded, dns.resolve), today: '2026-11-22' };
  const sale = Buffer.from(fs.readFileSync(path.join(EXAMPLES, 'kagi-sale-widget-pro.eml'), 'utf8').replace(/\r?\n/g, '\r\n'));
  signed = await signAs(sale, 'kagi.com');
  vouched = prepend(sale, 'Authentication-Results: mx1.acme.example; dkim=pass header.d=kagi.com; dmarc=pass header.from=kagi.com');
  const honest = await decide(signed, context);
  assert.equal(honest.action, 'fulfill', honest.reason ?? '');
  honestSerial = honest.orders[0]?.serials?.[0] ?? '';
  assert.equal((await decide(vouched, context)).action, 'fulfill');
});

test(`${MUTANTS} mutated notifications: no exception, no hang, one final state each, no serial for a changed name`, async (t) => {
  const random = seededRandom(20261122);
  const states = new Map<string, number>();
  let slowest = 0;
  for (let i = 0; i < MUTANTS; i++) {
    const base = i % 2 === 0 ? signed : vouched;
    const { kind, raw } = mutate(base, random);
    const started = performance.now();
    const decision = await decide(raw, context);
    const ms = performance.now() - started;
    slowest = Math.max(slowest, ms);
    assert.ok(ms < 5000, `mutant ${i} (${kind}) took ${ms.toFixed(0)} ms`);
    const state = FINAL[decision.action];
    assert.ok(state, `mutant ${i} (${kind}) ended as "${decision.action}", not a final state`);
    states.set(state, (states.get(state) ?? 0) + 1);
    if (decision.action === 'fulfill' && base === signed) {
      // Whatever survived DKIM is the honest sale: the same serial, never one for another name.
      for (const order of decision.orders) assert.deepEqual(order.serials, [honestSerial], `mutant ${i} (${kind}) got another serial`);
    }
    if (kind === 'name changed' && base === signed) assert.notEqual(decision.action, 'fulfill', `mutant ${i}: a changed name passed DKIM`);
  }
  t.diagnostic(`final states: ${JSON.stringify(Object.fromEntries(states))}; slowest ${slowest.toFixed(0)} ms`);
  assert.ok((states.get('review') ?? 0) > 0 && (states.get('fulfilled') ?? 0) > 0);
});
