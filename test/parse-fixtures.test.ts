/**
 * Every notification fixture through the real `keymailer parse` command, compared with what the
 * seller should see: test/fixtures/<vendor>/<case>.eml next to <case>.expected.json, read with the
 * config test/fixtures/products.yaml.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { loadConfig } from '../src/config';
import { buildParsers } from '../src/parse/registry';
import { FIXTURES, runCli } from './support/cli';

const CONFIG = path.join(FIXTURES, 'products.yaml');

/** One folder per vendor the test config knows, plus unknown/ for mail that no parser claims. */
function fixtureFiles(): string[] {
  const vendors = buildParsers(loadConfig(CONFIG).config.vendors).map((p) => p.id);
  return [...vendors, 'unknown']
    .map((dir) => path.join(FIXTURES, dir))
    .filter((dir) => fs.existsSync(dir))
    .flatMap((dir) => fs.readdirSync(dir).filter((n) => n.endsWith('.eml')).sort().map((n) => path.join(dir, n)));
}

const expectedPath = (eml: string): string => eml.replace(/\.eml$/, '.expected.json');
const label = (eml: string): string => path.relative(FIXTURES, eml);

describe('keymailer parse on every fixture', () => {
  const files = fixtureFiles();
  const actual = new Map<string, unknown>();
  let stderr = '';

  before(async () => {
    // One process for all files: the output has one line per file, in order.
    const run = await runCli(['parse', ...files, '--config', CONFIG], { timeoutMs: 60_000 });
    stderr = run.stderr;
    assert.equal(run.code, 0, `keymailer parse failed:\n${run.stderr}`);
    const lines = run.stdout.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, files.length, `one JSON line per file expected:\n${run.stdout}\n${run.stderr}`);
    files.forEach((file, i) => actual.set(file, JSON.parse(lines[i] ?? 'null')));
  });

  test('there are fixtures for every built-in vendor', () => {
    const vendors = new Set(files.map((f) => path.basename(path.dirname(f))));
    for (const id of ['kagi', 'fastspring', 'paypal', 'gumroad', 'bmtmicro', '2checkout', 'lemonsqueezy', 'paddle']) {
      assert.ok(vendors.has(id), `no fixture in test/fixtures/${id}/`);
    }
  });

  for (const file of files) {
    test(`${label(file)} reads as its expected.json says`, () => {
      assert.ok(fs.existsSync(expectedPath(file)), `${label(file)} has no ${path.basename(expectedPath(file))}`);
      const expected: unknown = JSON.parse(fs.readFileSync(expectedPath(file), 'utf8'));
      assert.deepEqual(actual.get(file), expected, `${label(file)} (stderr: ${stderr})`);
    });
  }

  test('every vendor with sales has one the seller would see fulfilled, and a mail that is no sale', () => {
    const byVendor = new Map<string, Set<string>>();
    for (const [file, result] of actual) {
      const vendor = path.basename(path.dirname(file));
      const action = (result as { action?: string }).action ?? '';
      byVendor.set(vendor, (byVendor.get(vendor) ?? new Set()).add(action));
    }
    for (const [vendor, actions] of byVendor) {
      if (vendor === 'unknown') continue;
      if (vendor !== 'paddle') assert.ok(actions.has('fulfill'), `${vendor}: no fixture is fulfilled`);
      assert.ok(actions.has('ignore'), `${vendor}: no fixture is a non-sale the seller never hears of`);
    }
  });
});

describe('keymailer parse, the command', () => {
  test('a file that cannot be read is named on stderr and exits 1, while the others are still reported', async () => {
    const sale = path.join(FIXTURES, 'kagi', 'sale.eml');
    const missing = path.join(FIXTURES, 'kagi', 'no-such-file.eml');
    const run = await runCli(['parse', missing, sale, '--config', CONFIG]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cannot read .*no-such-file\.eml/);
    const lines = run.stdout.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1);
    assert.equal((JSON.parse(lines[0] ?? '{}') as { action?: string }).action, 'fulfill');
  });

  test('a config that cannot be read stops with a message naming it, exit 3', async () => {
    const run = await runCli(['parse', path.join(FIXTURES, 'kagi', 'sale.eml'), '--config', path.join(FIXTURES, 'no-such-config.yaml')]);
    assert.equal(run.code, 3);
    assert.match(run.stderr, /no-such-config\.yaml/);
    assert.equal(run.stdout, '');
  });
});
