/**
 * What a seller sees when Avangate (2Checkout) calls keymailer as its dynamic key generator: real
 * POSTs with fetch to the listener of a real App, the answers Avangate would get, and the orders
 * table every later command reads.
 *
 * Independent oracles: every expected HASH is computed by the openssl binary over a source string
 * the test writes out itself (in PHP's $_POST order), and every expected serial by node:crypto's
 * AES-128-ECB over the UTF-8 name (test/support/cli.ts referenceSerial), never by the modules
 * under test.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { ConfigError } from '../src/errors';
import { addressAllowed, parseCidr, type Cidr } from '../src/http/avangate-settings';
import { referenceSerial } from './support/cli';
import { formBody, opensslHmacMd5, signedSource, startHttpApp, type Running } from './support/http-app';

const SECRET = 'SECRETKEY';
const ENV = { AVANGATE_SECRET: SECRET };

// AES keys of the products below (16 ASCII characters each).
const DOC_KEY = 'Doc-Real-Key-001';
const DOC_TEST_KEY = 'Doc-Test-Key-002';
const SITE_KEY = 'Site-Key-0000003';
const TEAM_KEY = 'Team-Key-0000004';
const LEGACY_KEY = 'Legacy-Key-00005';
const STUDIO_KEY = 'Studio-Key-00006';
const PLUGIN_KEY = 'Plugin-Key-00007';
const REG_KEY = 'Registr-Key-0008';

const CONFIG = `
database: state/keymailer.db
owner: { email: owner@acme.example }
dropFolder: inbox
outbox: outbox
from: "Acme Software <sales@acme.example>"
http: { host: 127.0.0.1, port: 8080 }
vendors:
  avangate:
    secret: \${AVANGATE_SECRET}
    path: /avangate
products:
  - id: documented
    name: Documented Example
    match: ["123"]
    serial: { key: "${DOC_KEY}", testKey: "${DOC_TEST_KEY}" }
  - id: site
    name: Site License
    match: ["SITE-3"]
    serial: { key: "${SITE_KEY}", input: "{name}#{unit}", perUnit: true }
  - id: team
    name: Team License
    match: ["TEAM-3"]
    key: "${TEAM_KEY}"
  - id: legacy
    name: Legacy Tool
    match: ["LEGACY"]
    key: "${LEGACY_KEY}"
  - id: studio
    name: Studio
    match: ["STUDIO-SKU"]
    key: "${STUDIO_KEY}"
  - id: plugin
    name: Plugin
    match: ["777001"]
    key: "${PLUGIN_KEY}"
  - id: registered
    name: Registered Edition
    match: ["REG-1"]
    key: "${REG_KEY}"
`;

const PRODUCT_SETTINGS = {
  studio: { description: 'Thanks & welcome', codeDescription: 'Your <Studio> key', filename: 'studio.key' },
  plugin: { answer: 'binary', filename: 'plugin.lic' },
  registered: { licenseField: 'Registered to' },
};

/** The documented example, field by field, in the order Avangate posts it. */
const DOCUMENTED: [string, string][] = [
  ['PID', '189645'],
  ['PCODE', '123'],
  ['REFNO', '1250747'],
  ['REFNOEXT', ''],
  ['TESTORDER', 'YES'],
  ['QUANTITY', '1'],
  ['FIRSTNAME', 'John'],
  ['LASTNAME', 'Doe'],
  ['COMPANY', ''],
  ['EMAIL', 'info@avangate.com'],
  ['LANG', 'en'],
  ['COUNTRY', 'Netherlands'],
  ['COUNTRY_CODE', 'nl'],
  ['CITY', 'Amstelveen'],
  ['ZIPCODE', '1181'],
];
const DOCUMENTED_SOURCE = '618964531237125074703YES114John3Doe017info@avangate.com2en11Netherlands2nl10Amstelveen41181';
const DOCUMENTED_HASH = '364b47f4a21def26ee7758f697ca4bd9';

type OrderRow = {
  id: number;
  order_key: string;
  vendor: string;
  vendor_order_id: string;
  vendor_product: string;
  product_id: string;
  buyer_name: string;
  buyer_email: string;
  license_name: string | null;
  quantity: number;
  test: number;
  serials: string | null;
  state: string;
  reason: string | null;
};

/** A plain (non-array) order's fields, signed: the HASH from openssl over the values in order. */
function signed(pairs: readonly (readonly [string, string])[]): string {
  const hash = opensslHmacMd5(SECRET, signedSource(pairs.map(([, value]) => value)));
  return `${formBody(pairs)}&HASH=${hash}`;
}

/** A typical order for `code`, with overrides. */
function order(refno: string, code: string, overrides: Record<string, string> = {}): [string, string][] {
  const base: Record<string, string> = {
    PID: '500100',
    PCODE: code,
    REFNO: refno,
    REFNOEXT: '',
    TESTORDER: 'NO',
    QUANTITY: '1',
    FIRSTNAME: 'Pat',
    LASTNAME: 'Lee',
    COMPANY: '',
    EMAIL: 'pat@example.net',
    LANG: 'en',
    COUNTRY: 'Germany',
  };
  return Object.entries({ ...base, ...overrides });
}

const xmlCodes = (codes: readonly string[]): string =>
  `<?xml version="1.0" encoding="UTF-8"?><Data>${codes.map((c) => `<code>${c}</code>`).join('')}</Data>`;

const post = (running: Running, body: string | Uint8Array, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${running.url}/avangate`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
    body,
  });

function ordersFor(running: Running, refno: string): OrderRow[] {
  return running.app.db.prepare('SELECT * FROM orders WHERE vendor_order_id = ? ORDER BY id').all(refno) as OrderRow[];
}

function onlyOrder(running: Running, refno: string): OrderRow {
  const rows = ordersFor(running, refno);
  assert.equal(rows.length, 1, `one order row for REFNO ${refno}`);
  const row = rows[0];
  assert.ok(row);
  return row;
}

/** The counter of signed POSTs with this result, as /metrics shows it. */
async function signedPosts(running: Running, result: string): Promise<number> {
  const text = await (await fetch(`${running.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`keymailer_signed_posts_total{vendor="avangate",result="${result}"}`));
  assert.ok(line, `metric line for ${result}`);
  return Number(line.split(' ').pop());
}

describe('Avangate key generator over HTTP', () => {
  let running: Running;
  const posted = new Set<string>();

  before(async () => {
    running = await startHttpApp(CONFIG, { env: ENV, productSettings: PRODUCT_SETTINGS });
  });
  after(async () => {
    await running.close();
  });

  test("Avangate's documented example verifies and gets John Doe's test code as Basic XML", async () => {
    // The oracle first: openssl reproduces the documented HASH from the documented source string.
    assert.equal(signedSource(DOCUMENTED.map(([, v]) => v)), DOCUMENTED_SOURCE);
    assert.equal(opensslHmacMd5(SECRET, DOCUMENTED_SOURCE), DOCUMENTED_HASH);

    const res = await post(running, `${formBody(DOCUMENTED)}&HASH=${DOCUMENTED_HASH}`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/xml\b/);
    const serial = referenceSerial(DOC_TEST_KEY, 'John Doe');
    assert.match(serial, /^[0-9A-F]{4}(-[0-9A-F]{4}){7}$/);
    assert.equal(await res.text(), xmlCodes([serial]));
    // TESTORDER=YES: the test key, never the real one.
    assert.notEqual(serial, referenceSerial(DOC_KEY, 'John Doe'));

    const row = onlyOrder(running, '1250747');
    posted.add('1250747');
    assert.equal(row.vendor, 'avangate');
    assert.equal(row.vendor_product, '123');
    assert.equal(row.product_id, 'documented');
    assert.equal(row.buyer_name, 'John Doe');
    assert.equal(row.buyer_email, 'info@avangate.com');
    assert.equal(row.license_name, null);
    assert.equal(row.test, 1);
    assert.equal(row.state, 'sent');
    assert.deepEqual(JSON.parse(row.serials ?? 'null'), [serial]);
  });

  test('Avangate retrying an order gets the same codes, and the order is recorded once', async () => {
    const body = signed(order('2000001', 'TEAM-3'));
    const first = await post(running, body);
    assert.equal(first.status, 200);
    const firstText = await first.text();
    const replays = await signedPosts(running, 'replay');

    const again = await post(running, body);
    assert.equal(again.status, 200);
    assert.equal(await again.text(), firstText);
    assert.equal(firstText, xmlCodes([referenceSerial(TEAM_KEY, 'Pat Lee')]));

    const row = onlyOrder(running, '2000001');
    posted.add('2000001');
    const events = running.app.db.prepare('SELECT kind FROM events WHERE order_id = ?').all(row.id) as { kind: string }[];
    assert.ok(events.some((e) => e.kind === 'replay'));
    assert.equal(await signedPosts(running, 'replay'), replays + 1);
  });

  test('a buyer with accented and CJK letters gets the serial of their UTF-8 name (HASH over byte lengths)', async () => {
    const pairs = order('2000002', 'TEAM-3', { FIRSTNAME: 'Zoë', LASTNAME: 'Ångström 李', COMPANY: 'Société Générale', CITY: 'Zürich' });
    const source = signedSource(pairs.map(([, v]) => v));
    // Byte lengths, not characters: "Zoë" is 3 characters but 4 bytes, "Ångström 李" 14 bytes.
    assert.ok(source.includes('4Zoë14Ångström 李'));
    const res = await post(running, `${formBody(pairs)}&HASH=${opensslHmacMd5(SECRET, source)}`);
    assert.equal(res.status, 200);
    const serial = referenceSerial(TEAM_KEY, 'Zoë Ångström 李');
    assert.equal(await res.text(), xmlCodes([serial]));
    const row = onlyOrder(running, '2000002');
    posted.add('2000002');
    assert.equal(row.buyer_name, 'Zoë Ångström 李');
    assert.deepEqual(JSON.parse(row.serials ?? 'null'), [serial]);
  });

  test('empty fields, and a field posted without "=", count as empty values in the HASH', async () => {
    const values = ['500100', 'TEAM-3', '2000003', '', '', 'NO', '1', 'Pat', 'Lee', '', 'pat@example.net', ''];
    const body =
      'PID=500100&PCODE=TEAM-3&REFNO=2000003&REFNOEXT=&INFO&TESTORDER=NO&QUANTITY=1&FIRSTNAME=Pat&LASTNAME=Lee' +
      '&COMPANY=&EMAIL=pat%40example.net&PHONE=';
    const source = signedSource(values);
    assert.equal(source, '65001006TEAM-372000003002NO113Pat3Lee015pat@example.net0');
    const res = await post(running, `${body}&HASH=${opensslHmacMd5(SECRET, source)}`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), xmlCodes([referenceSerial(TEAM_KEY, 'Pat Lee')]));
    onlyOrder(running, '2000003');
    posted.add('2000003');
  });

  test('custom fields and product options interleaved with other fields are signed as PHP groups them, and a custom field can name the licensee', async () => {
    // As posted: arrays interleaved with plain fields.
    const pairs: [string, string][] = [
      ['PID', '189645'],
      ['CUSTOM_FIELD_TEXT[]', 'Registered to'],
      ['PCODE', 'REG-1'],
      ['CUSTOM_FIELD_VALUE[]', 'Jane Q. Public & Co'],
      ['PRODUCT_OPTIONS_189645_TEXT[]', 'Support'],
      ['REFNO', '2000004'],
      ['PRODUCT_OPTIONS_189645_VALUE[]', '1 year'],
      ['CUSTOM_FIELD_TEXT[]', 'Seats'],
      ['QUANTITY', '1'],
      ['CUSTOM_FIELD_VALUE[]', '5'],
      ['PRODUCT_OPTIONS_189645_TEXT[]', 'Backup CD'],
      ['TESTORDER', 'NO'],
      ['FIRSTNAME', 'Jane'],
      ['PRODUCT_OPTIONS_189645_VALUE[]', 'cd'],
      ['LASTNAME', 'Public'],
      ['EMAIL', 'Jane@Example.NET'],
    ];
    // As PHP's $_POST holds them: each array at the place of its first appearance.
    const phpOrder = [
      '189645',
      'Registered to', 'Seats',
      'REG-1',
      'Jane Q. Public & Co', '5',
      'Support', 'Backup CD',
      '2000004',
      '1 year', 'cd',
      '1', 'NO', 'Jane', 'Public', 'Jane@Example.NET',
    ];
    const hash = opensslHmacMd5(SECRET, signedSource(phpOrder));
    // Signing the values as posted would be a different HASH: grouping matters.
    assert.notEqual(hash, opensslHmacMd5(SECRET, signedSource(pairs.map(([, v]) => v))));

    const res = await post(running, `${formBody(pairs)}&HASH=${hash}`);
    assert.equal(res.status, 200);
    const serial = referenceSerial(REG_KEY, 'Jane Q. Public & Co');
    assert.equal(await res.text(), xmlCodes([serial]));
    const row = onlyOrder(running, '2000004');
    posted.add('2000004');
    assert.equal(row.buyer_name, 'Jane Public');
    assert.equal(row.buyer_email, 'jane@example.net');
    assert.equal(row.license_name, 'Jane Q. Public & Co');
  });

  test('a field whose name looks like a number keeps its place in the HASH', async () => {
    const pairs: [string, string][] = [['7', 'seven'], ...order('2000005', 'TEAM-3'), ['2024', '']];
    const values = ['seven', ...order('2000005', 'TEAM-3').map(([, v]) => v), ''];
    const res = await post(running, `${formBody(pairs)}&HASH=${opensslHmacMd5(SECRET, signedSource(values))}`);
    assert.equal(res.status, 200);
    onlyOrder(running, '2000005');
    posted.add('2000005');
  });

  test('a product made one code per unit answers three codes for QUANTITY=3', async () => {
    const res = await post(running, signed(order('2000006', 'SITE-3', { QUANTITY: '3' })));
    assert.equal(res.status, 200);
    const serials = [1, 2, 3].map((unit) => referenceSerial(SITE_KEY, `Pat Lee#${unit}`));
    assert.equal(new Set(serials).size, 3);
    assert.equal(await res.text(), xmlCodes(serials));
    const row = onlyOrder(running, '2000006');
    posted.add('2000006');
    assert.equal(row.quantity, 3);
    assert.deepEqual(JSON.parse(row.serials ?? 'null'), serials);
  });

  test('a product made one code per order answers one code for QUANTITY=3', async () => {
    const res = await post(running, signed(order('2000007', 'TEAM-3', { QUANTITY: '3' })));
    assert.equal(res.status, 200);
    const serial = referenceSerial(TEAM_KEY, 'Pat Lee');
    assert.equal(await res.text(), xmlCodes([serial]));
    const row = onlyOrder(running, '2000007');
    posted.add('2000007');
    assert.equal(row.quantity, 3);
    assert.deepEqual(JSON.parse(row.serials ?? 'null'), [serial]);
  });

  test('a test order for a product with a test key gets a test code, recorded as a test order', async () => {
    const res = await post(running, signed(order('2000008', '123', { TESTORDER: 'YES' })));
    assert.equal(res.status, 200);
    const serial = referenceSerial(DOC_TEST_KEY, 'Pat Lee');
    assert.equal(await res.text(), xmlCodes([serial]));
    const row = onlyOrder(running, '2000008');
    posted.add('2000008');
    assert.equal(row.test, 1);
    assert.deepEqual(JSON.parse(row.serials ?? 'null'), [serial]);
  });

  test('a test order for a product without a test key gets 503 so Avangate retries, and waits in review once', async () => {
    const body = signed(order('2000009', 'LEGACY', { TESTORDER: 'YES' }));
    const res = await post(running, body);
    assert.equal(res.status, 503);
    const text = await res.text();
    assert.match(text, /review/);
    assert.match(text, /testKey/);
    assert.ok(!text.includes(LEGACY_KEY));
    const again = await post(running, body);
    assert.equal(again.status, 503);
    const row = onlyOrder(running, '2000009');
    posted.add('2000009');
    assert.equal(row.state, 'review');
    assert.equal(row.test, 1);
    assert.equal(row.serials, null);
  });

  test('a product with descriptions is answered in Advanced XML (matched by PSKU)', async () => {
    const pairs = order('2000010', '', { PSKU: 'STUDIO-SKU' });
    const res = await post(running, signed(pairs));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/xml\b/);
    const serial = referenceSerial(STUDIO_KEY, 'Pat Lee');
    assert.equal(
      await res.text(),
      '<?xml version="1.0" encoding="UTF-8"?><data><description>Thanks &amp; welcome</description>' +
        `<code><description>Your &lt;Studio&gt; key</description><key>${serial}</key>` +
        `<file name="studio.key" content_type="text/plain">${Buffer.from(serial).toString('base64')}</file></code></data>`,
    );
    const row = onlyOrder(running, '2000010');
    posted.add('2000010');
    assert.equal(row.vendor_product, 'STUDIO-SKU');
    assert.equal(row.product_id, 'studio');
  });

  test('a product that says binary is answered with a key file download (matched by PID)', async () => {
    const pairs = order('2000011', '', { PID: '777001' });
    const res = await post(running, signed(pairs));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    assert.equal(res.headers.get('content-disposition'), 'attachment; filename=plugin.lic');
    assert.equal(Buffer.from(await res.arrayBuffer()).toString('utf8'), referenceSerial(PLUGIN_KEY, 'Pat Lee'));
    onlyOrder(running, '2000011');
    posted.add('2000011');
  });

  test('a HASH off by one character gets 400, no order, a log line with REFNO and address but not the secret, and a count', async () => {
    const before = await signedPosts(running, 'bad_hash');
    const good = signed(order('2000012', 'TEAM-3'));
    const last = good.slice(-1);
    const tampered = good.slice(0, -1) + (last === '0' ? '1' : '0');
    const res = await post(running, tampered);
    assert.equal(res.status, 400);
    assert.equal(await res.text(), 'bad HASH\n');
    assert.deepEqual(ordersFor(running, '2000012'), []);
    assert.equal(await signedPosts(running, 'bad_hash'), before + 1);

    const line = running.logs.find((l) => l.refno === '2000012');
    assert.ok(line, 'the refusal is logged with REFNO');
    assert.equal(line.level, 'warn');
    assert.equal(line.remote, '127.0.0.1');
    assert.ok(!JSON.stringify(running.logs).includes(SECRET), 'the secret is in no log line');
    const alert = running.app.db.prepare(`SELECT subject FROM alerts WHERE kind = 'forgery'`).all() as { subject: string }[];
    assert.ok(alert.some((a) => a.subject.includes('2000012')), 'the owner is alerted');
  });

  test('a POST without HASH gets 400', async () => {
    const res = await post(running, formBody(order('2000013', 'TEAM-3')));
    assert.equal(res.status, 400);
    assert.equal(await res.text(), 'missing HASH\n');
    assert.deepEqual(ordersFor(running, '2000013'), []);
  });

  test('a malformed body gets 400, before any HASH is computed', async () => {
    const before = await signedPosts(running, 'malformed');
    for (const body of ['REFNO=1&NAME=%zz&HASH=00', '', '=&[]=x']) {
      const res = await post(running, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(await res.text(), 'malformed\n');
    }
    const json = await post(running, '{"REFNO":"1"}', { 'Content-Type': 'application/json' });
    assert.equal(json.status, 400);
    assert.equal(await signedPosts(running, 'malformed'), before + 4);
  });

  test('a signed POST without REFNO gets 400 and records nothing', async () => {
    const pairs = order('', 'TEAM-3').filter(([name]) => name !== 'REFNO');
    const res = await post(running, signed(pairs));
    assert.equal(res.status, 400);
    assert.match(await res.text(), /REFNO/);
  });

  test('an order for a product the seller has not listed gets 404 and the owner is told', async () => {
    const res = await post(running, signed(order('2000014', 'NO-SUCH-PRODUCT', { PID: '999999' })));
    assert.equal(res.status, 404);
    assert.equal(await res.text(), 'unknown product\n');
    assert.deepEqual(ordersFor(running, '2000014'), []);
    const alerts = running.app.db.prepare(`SELECT subject FROM alerts WHERE kind = 'review'`).all() as { subject: string }[];
    assert.ok(alerts.some((a) => a.subject.includes('2000014') && a.subject.includes('NO-SUCH-PRODUCT')));
  });

  test('GET on the Avangate path gets 405 with Allow: POST', async () => {
    const res = await fetch(`${running.url}/avangate`);
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'POST');
    await res.text();
  });

  test('a body over 64 KiB gets 413, whether its length is declared or streamed; 64 KiB exactly is read', async () => {
    const limit = 64 * 1024;
    const exact = `PAD=${'a'.repeat(limit - 4)}`;
    const atLimit = await post(running, exact);
    assert.equal(atLimit.status, 400, 'read and parsed: no HASH');
    await atLimit.text();

    const declared = await post(running, `${exact}b`);
    assert.equal(declared.status, 413);
    assert.match(await declared.text(), /too large/);

    // Chunked: no Content-Length, the limit is found while reading.
    const chunk = new TextEncoder().encode('a'.repeat(16 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 5) controller.close();
        else {
          sent++;
          controller.enqueue(sent === 1 ? new TextEncoder().encode('PAD=') : chunk);
        }
      },
    });
    const streamed = await fetch(`${running.url}/avangate`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: stream,
      duplex: 'half',
    } as RequestInit & { duplex: 'half' });
    assert.equal(streamed.status, 413);
    await streamed.text();
  });

  test('every Avangate order is in the orders table with its REFNO, buyer, codes and outcome, as later commands read it', async () => {
    const file = path.join(running.dir, 'state', 'keymailer.db');
    const db = new Database(file, { readonly: true });
    try {
      const rows = db.prepare(`SELECT * FROM orders WHERE vendor = 'avangate' ORDER BY id`).all() as OrderRow[];
      assert.deepEqual(new Set(rows.map((r) => r.vendor_order_id)), posted);
      for (const row of rows) {
        assert.ok(row.buyer_name !== '' && row.buyer_email !== '', `buyer of ${row.vendor_order_id}`);
        assert.equal(row.order_key, `avangate:${row.vendor_order_id}:${row.vendor_product}`);
        if (row.state === 'sent') assert.ok((JSON.parse(row.serials ?? '[]') as string[]).length >= 1);
        else assert.equal(row.state, 'review');
      }
    } finally {
      db.close();
    }
  });
});

describe('Avangate allowFrom', () => {
  const ALLOW_CONFIG = (allow: string): string =>
    CONFIG.replace('    path: /avangate\n', `    path: /avangate\n    allowFrom: ${allow}\n`);

  test('a POST from outside allowFrom gets 403, even with a valid HASH', async () => {
    const running = await startHttpApp(ALLOW_CONFIG('["10.0.0.0/8", "2001:db8::/32"]'), { env: ENV });
    try {
      const res = await post(running, signed(order('3000001', 'TEAM-3')));
      assert.equal(res.status, 403);
      assert.equal(await res.text(), 'forbidden\n');
      assert.deepEqual(ordersFor(running, '3000001'), []);
      // Even the method is not disclosed to an outsider.
      assert.equal((await fetch(`${running.url}/avangate`)).status, 403);
    } finally {
      await running.close();
    }
  });

  test('on a dual-stack listener an IPv4 range admits IPv4 peers (seen as ::ffff:a.b.c.d) and an IPv6 range admits IPv6 peers', async () => {
    const running = await startHttpApp(ALLOW_CONFIG('["127.0.0.0/8", "::1/128"]'), { env: ENV, host: '::' });
    try {
      const v4 = await fetch(`http://127.0.0.1:${running.address.port}/avangate`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: signed(order('3000002', 'TEAM-3')),
      });
      assert.equal(v4.status, 200);
      await v4.text();
      const v6 = await fetch(`http://[::1]:${running.address.port}/avangate`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: signed(order('3000003', 'TEAM-3')),
      });
      assert.equal(v6.status, 200);
      await v6.text();
    } finally {
      await running.close();
    }
  });

  test('allowFrom ranges: IPv4, IPv6, IPv4-mapped, single hosts; typos are refused', () => {
    const ranges = ['203.0.113.0/24', '2001:db8::/32', '::ffff:198.51.100.0/120', '192.0.2.7'].map((text) => {
      const parsed = parseCidr(text);
      assert.equal(typeof parsed, 'object', text);
      return parsed as Cidr;
    });
    const allowed = (address: string): boolean => addressAllowed(ranges, address);
    assert.ok(allowed('203.0.113.255'));
    assert.ok(allowed('::ffff:203.0.113.9'));
    assert.ok(!allowed('203.0.114.1'));
    assert.ok(allowed('2001:db8:ffff::1'));
    assert.ok(!allowed('2001:db9::1'));
    assert.ok(allowed('198.51.100.200'));
    assert.ok(allowed('::ffff:198.51.100.1'));
    assert.ok(allowed('192.0.2.7'));
    assert.ok(!allowed('192.0.2.8'));
    assert.ok(!allowed('not an address'));
    for (const bad of ['10.1.2.3/8', '10.0.0.0/33', '2001:db8::/129', 'example.com', '::ffff:10.0.0.0/90', 'fe80::1%eth0']) {
      assert.equal(typeof parseCidr(bad), 'string', bad);
    }
  });

  test('a bad allowFrom entry or a short secret stops start-up with a message naming the key', async () => {
    await assert.rejects(startHttpApp(ALLOW_CONFIG('["10.1.2.3/8"]'), { env: ENV }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /vendors\.avangate\.allowFrom\.0: "10\.1\.2\.3\/8" has address bits set/);
      return true;
    });
    await assert.rejects(startHttpApp(CONFIG, { env: { AVANGATE_SECRET: 'short' } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /vendors\.avangate\.secret: secret must be at least 8 characters/);
      assert.ok(!err.message.includes('short'), 'the secret is not in the message');
      return true;
    });
    await assert.rejects(startHttpApp(CONFIG, { env: ENV, productSettings: { studio: { answer: 'zip' } } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /products\.4\.avangate\.answer: answer must be one of basic, advanced, binary/);
      return true;
    });
  });
});
