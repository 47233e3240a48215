/**
 * 6. Serial generation and template rendering per order, for the record: the project's own
 * makeSerials (AES-128, the default scheme), Renderer.render (Handlebars) and
 * Renderer.buildBuyerMail (render + the complete MIME message), in this process.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { PROJECT_ROOT } from '../test/support/cli';
import { TEST_KEY } from '../test/support/imap-config';
import { Renderer, type BuyerMailData } from '../src/deliver/render';
import { makeSerials } from '../src/fulfil/serial';
import { num, type SectionResult } from './lib/report';
import { fmt, median } from './lib/stats';

const ROUNDS = 5;

/** µs per call: median over ROUNDS rounds of `perRound` calls, after one warm-up round. */
async function perCall(perRound: number, call: (i: number) => unknown): Promise<{ us: number; rounds: number[] }> {
  for (let i = 0; i < perRound; i++) await call(i);
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    for (let i = 0; i < perRound; i++) await call(r * perRound + i);
    rounds.push(((performance.now() - t) * 1000) / perRound);
  }
  return { us: median(rounds), rounds };
}

export async function micro(options: { readonly perRound: number }): Promise<SectionResult> {
  const product = { id: 'widget-pro', key: TEST_KEY };
  const renderer = new Renderer(path.join(PROJECT_ROOT, 'templates'), 'Acme Software <sales@acme.example>');
  const order = (i: number): BuyerMailData => ({
    buyer: { name: `Buyer ${i}`, email: `buyer${i}@example.net` },
    licenseName: `Buyer ${i}`,
    product: { id: 'widget-pro', name: 'Widget Pro' },
    serials: ['0A1B-2C3D-4E5F-6A7B-8C9D-0E1F-2A3B-4C5D'],
    quantity: 1,
    order: { id: `9000-${i}-0001`, vendor: 'kagi' },
    test: false,
  });
  const serial = await perCall(options.perRound, (i) =>
    makeSerials(product, { name: `Buyer ${i}`, email: `buyer${i}@example.net`, productId: 'widget-pro', orderId: String(i), quantity: 1, test: false, issuedAt: '2026-11-22' }),
  );
  const render = await perCall(options.perRound, (i) => renderer.render('serial', order(i)));
  const build = await perCall(options.perRound, (i) => renderer.buildBuyerMail('serial', order(i), `bench:${i}`));
  const rounds = (r: number[]): string => r.map((v) => fmt(v, 1)).join(', ');
  return {
    id: 'micro',
    title: '6. Serial generation and template rendering',
    method:
      `Per order, in the bench process: ${ROUNDS} rounds of ${fmt(options.perRound)} calls after a warm-up round; the median ` +
      'round\'s mean is shown. No target: for the record.',
    rows: [
      { measure: 'makeSerials (AES-128-ECB, default presentation), one unit', value: num(serial.us, 'µs', 1) },
      { measure: 'Renderer.render (subject, text, HTML templates)', value: num(render.us, 'µs', 1) },
      { measure: 'Renderer.buildBuyerMail (render + the MIME message)', value: num(build.us, 'µs', 1) },
    ],
    details: [
      `rounds, µs per call: makeSerials ${rounds(serial.rounds)}; render ${rounds(render.rounds)}; buildBuyerMail ${rounds(build.rounds)}`,
    ],
    checks: {},
    notes: [],
  };
}
