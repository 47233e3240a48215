/** The registry: what runs is what is listed, each vendor once, seller-described vendors first. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError } from '../src/errors';
import { PARSERS, buildParsers, findParser } from '../src/parse/registry';
import type { Notification, VendorParser } from '../src/types';

const PARSER_DIR = path.resolve(__dirname, '..', '..', 'parsers');
const COMPILED_DIR = path.resolve(__dirname, '..', 'parsers');

function notification(fromAddress: string, subject = 'Hello', extra: Record<string, unknown> = {}): Notification {
  return { fromAddress, fromName: '', subject, messageId: null, date: null, text: '', html: null, headers: new Map(), ...extra };
}

describe('parser registry', () => {
  test('every file in parsers/ is in the registry, under its file name as id', () => {
    const files = fs.readdirSync(PARSER_DIR).filter((n) => n.endsWith('.ts'));
    assert.ok(files.length > 0);
    for (const file of files) {
      const loaded: unknown = require(path.join(COMPILED_DIR, file.replace(/\.ts$/, '.js')));
      const parser = (loaded as { default?: VendorParser }).default;
      assert.ok(parser, `parsers/${file} has no default export`);
      assert.ok(PARSERS.includes(parser), `parsers/${file} (id ${parser.id}) is missing from src/parse/registry.ts`);
      assert.equal(parser.id, file.replace(/\.ts$/, ''), `parsers/${file}: the id should be the file name`);
    }
    assert.equal(PARSERS.length, files.length, 'the registry lists a parser that has no file in parsers/');
  });

  test('no two parsers share an id', () => {
    const ids = PARSERS.map((p) => p.id);
    assert.deepEqual([...new Set(ids)], ids);
  });

  test('the vendors a seller can configure by id are all there, in order', () => {
    assert.deepEqual(
      PARSERS.map((p) => p.id),
      ['kagi', 'fastspring', 'paypal', 'gumroad', 'bmtmicro', '2checkout', 'lemonsqueezy', 'paddle'],
    );
  });

  test('a vendor described in the config is asked first, and replaces the built-in parser of the same id', () => {
    const described = {
      senders: ['fastspring.com'],
      labels: { buyerName: 'Customer', buyerEmail: 'Email', product: 'Product' },
    };
    const parsers = buildParsers({ fastspring: described, shopco: { ...described, senders: ['shop.example.org'] }, avangate: { secret: 'x' } });
    assert.deepEqual(parsers.slice(0, 2).map((p) => p.id), ['fastspring', 'shopco']);
    assert.equal(parsers.filter((p) => p.id === 'fastspring').length, 1);
    assert.equal(parsers.length, PARSERS.length + 1, 'avangate settings (no labels) make no parser');
    assert.equal(findParser(notification('noreply@fastspring.com'), parsers)?.label, 'fastspring');
  });

  test('a wrong vendor description stops start-up with the key that is wrong', () => {
    assert.throws(
      () => buildParsers({ shopco: { senders: ['shop.example.org'], labels: { buyerName: 'Customer', product: 'Product' } } }),
      (err: unknown) => err instanceof ConfigError && /^vendors\.shopco\.labels\.buyerEmail: /.test(err.message),
    );
    assert.throws(
      () => buildParsers({ shopco: { senders: ['not a domain'], labels: { buyerName: 'A', buyerEmail: 'B', product: 'C' } } }),
      (err: unknown) => err instanceof ConfigError && /^vendors\.shopco\.senders\.0: /.test(err.message),
    );
  });

  test('a look-alike domain is no vendor', () => {
    assert.equal(findParser(notification('service@paypal.com.evil.example')), null);
    assert.equal(findParser(notification('service@notpaypal.com')), null);
    assert.equal(findParser(notification('service@mail.paypal.com'))?.id, 'paypal');
  });

  test('a forwarded notification is claimed by the vendor of the original it carries', () => {
    const forwarded = notification('noreply@fastspring.com', '[Acme] New Order X-1-2 - Widget Pro', {
      forwarded: { how: 'inline', by: 'owner@example.com', outerSubject: 'Fwd: ...', outerMessageId: null, original: null },
    });
    assert.equal(findParser(forwarded)?.id, 'fastspring');
  });

  test('a parser whose matches() throws does not claim the message', () => {
    const broken: VendorParser = {
      id: 'broken',
      label: 'Broken',
      matches: () => {
        throw new Error('boom');
      },
      parse: () => ({ kind: 'ignore', reason: 'never' }),
    };
    assert.equal(findParser(notification('sales@kagi.com'), [broken, ...PARSERS])?.id, 'kagi');
  });
});
