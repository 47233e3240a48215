/**
 * What a seller's monitoring sees: GET /healthz (200, or 503 with a JSON reason) and GET /metrics
 * (Prometheus text) from the listener of a real App, plus how the listener starts and stops.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { buildHttpApp } from '../src/http/app';
import { buildApp } from '../src/main';
import { parseConfig } from '../src/config';
import { EXAMPLES, tempDir } from './support/cli';
import { captureLogger, formBody, opensslHmacMd5, signedSource, startHttpApp, type Running } from './support/http-app';

const SECRET = 'health-check-secret';

const BASE = `
database: state/keymailer.db
owner: { email: owner@acme.example }
dropFolder: inbox
outbox: outbox
from: "Acme Software <sales@acme.example>"
http: { host: 127.0.0.1, port: 8080 }
products:
  - id: widget-pro
    name: Widget Pro
    key: "Tq9#vL2!pX7@mR4s"
    match: ["Widget Pro", "WP-1"]
`;

const WITH_AVANGATE = `${BASE}vendors:
  kagi: { auth: none }
  avangate:
    secret: ${SECRET}
`;

const WITH_IMAP = `${BASE}imap:
  host: 127.0.0.1
  port: 1
  user: sales@acme.example
  pass: not-used
`;

type Health = {
  status: string;
  reasons: string[];
  mailbox: { source: string; connected: boolean; since: string; lastSyncAt: string | null };
  outbox: { depth: number; failed: number; oldestQueuedAt: string | null };
};

async function health(running: Running): Promise<{ status: number; body: Health; contentType: string | null }> {
  const res = await fetch(`${running.url}/healthz`);
  return { status: res.status, contentType: res.headers.get('content-type'), body: (await res.json()) as Health };
}

/** Metric lines as name{labels} → value; checks every line is a comment or a sample. */
async function scrape(running: Running): Promise<{ contentType: string | null; samples: Map<string, number> }> {
  const res = await fetch(`${running.url}/metrics`);
  assert.equal(res.status, 200);
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.e+-]+|NaN)$/.exec(line);
    assert.ok(match?.[1] !== undefined && match[2] !== undefined, `a Prometheus sample line: ${line}`);
    samples.set(match[1], Number(match[2]));
  }
  return { contentType: res.headers.get('content-type'), samples };
}

function queueMail(running: Running, minutesAgo: number, id: string): void {
  const at = new Date(Date.now() - minutesAgo * 60_000).toISOString();
  const raw = Buffer.from(`Message-ID: <${id}@acme.example>\r\nSubject: test\r\n\r\nbody\r\n`);
  running.app.store.enqueue({ kind: 'serial', messageId: `<${id}@acme.example>`, recipient: 'buyer@example.net', raw }, null, at);
}

describe('GET /healthz', () => {
  test('with the drop folder and nothing waiting in the outbox, health is 200 with a JSON status', async () => {
    const running = await startHttpApp(BASE);
    try {
      const { status, body, contentType } = await health(running);
      assert.equal(status, 200);
      assert.match(contentType ?? '', /^application\/json/);
      assert.equal(body.status, 'ok');
      assert.deepEqual(body.reasons, []);
      assert.equal(body.mailbox.connected, true);
      assert.match(body.mailbox.source, /^drop folder /);
      assert.equal(body.outbox.depth, 0);
    } finally {
      await running.close();
    }
  });

  test('a buyer mail stuck in the outbox for over 15 minutes makes health 503 with the reason, and 200 again once it is sent', async () => {
    const running = await startHttpApp(BASE);
    try {
      queueMail(running, 2, 'recent');
      assert.equal((await health(running)).status, 200, 'a mail queued 2 minutes ago is still draining');

      queueMail(running, 20, 'stuck');
      const stuck = await health(running);
      assert.equal(stuck.status, 503);
      assert.equal(stuck.body.status, 'unhealthy');
      assert.equal(stuck.body.outbox.depth, 2);
      assert.match(stuck.body.reasons.join('; '), /outbox not draining: 2 mail\(s\) waiting, the oldest for 20 minutes/);

      const head = await fetch(`${running.url}/healthz`, { method: 'HEAD' });
      assert.equal(head.status, 503);
      assert.equal(await head.text(), '');

      await running.app.outbox.kick();
      const drained = await health(running);
      assert.equal(drained.status, 200);
      assert.equal(drained.body.outbox.depth, 0);
    } finally {
      await running.close();
    }
  });

  test('with IMAP configured and not connected, health is 503 naming the mailbox', async () => {
    const running = await startHttpApp(WITH_IMAP);
    try {
      const { status, body } = await health(running);
      assert.equal(status, 503);
      assert.equal(body.mailbox.connected, false);
      assert.match(body.reasons.join('; '), /mailbox not connected since .* \(IMAP sales@acme\.example@127\.0\.0\.1:1\/INBOX\)/);
    } finally {
      await running.close();
    }
  });
});

describe('GET /metrics', () => {
  test('shows orders by vendor and state, outbox depth, the last mailbox sync and signed POSTs by result, in Prometheus text format', async () => {
    const running = await startHttpApp(WITH_AVANGATE);
    try {
      const before = await scrape(running);
      assert.match(before.contentType ?? '', /^text\/plain; version=0\.0\.4/);
      assert.equal(before.samples.get('keymailer_mailbox_last_sync_timestamp_seconds'), 0, 'never synced yet');
      assert.equal(before.samples.get('keymailer_signed_posts_total{vendor="avangate",result="bad_hash"}'), 0, 'every result shows from the start');

      // One order by mail (drop folder), one by Avangate, one refused POST.
      fs.copyFileSync(path.join(EXAMPLES, 'kagi-sale-widget-pro.eml'), path.join(running.dir, 'inbox', 'sale.eml'));
      const syncStart = Date.now();
      await running.app.source.drain(running.app.pipeline.handle);
      await running.app.outbox.kick();
      const fields: [string, string][] = [['PCODE', 'WP-1'], ['REFNO', '9100001'], ['QUANTITY', '1'], ['FIRSTNAME', 'Pat'], ['LASTNAME', 'Lee'], ['EMAIL', 'pat@example.net']];
      const hash = opensslHmacMd5(SECRET, signedSource(fields.map(([, v]) => v)));
      const headers = { 'Content-Type': 'application/x-www-form-urlencoded' };
      const ok = await fetch(`${running.url}/avangate`, { method: 'POST', headers, body: `${formBody(fields)}&HASH=${hash}` });
      assert.equal(ok.status, 200);
      await ok.text();
      const bad = await fetch(`${running.url}/avangate`, { method: 'POST', headers, body: `${formBody(fields)}&HASH=${'0'.repeat(32)}` });
      assert.equal(bad.status, 400);
      await bad.text();
      // The refused POST alerts the owner; that mail goes out first, so the outbox holds only the one below.
      for (let i = 0; i < 200 && running.app.db.prepare(`SELECT count(*) AS n FROM outbox WHERE kind = 'alert'`).pluck().get() === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await running.app.outbox.kick();
      queueMail(running, 1, 'waiting');

      const { samples } = await scrape(running);
      assert.equal(samples.get('keymailer_orders{vendor="kagi",state="sent"}'), 1);
      assert.equal(samples.get('keymailer_orders{vendor="avangate",state="sent"}'), 1);
      assert.equal(samples.get('keymailer_outbox_depth'), 1);
      assert.equal(samples.get('keymailer_mailbox_connected'), 1);
      const synced = samples.get('keymailer_mailbox_last_sync_timestamp_seconds') ?? 0;
      assert.ok(synced * 1000 >= syncStart - 1000 && synced * 1000 <= Date.now(), `last sync ${synced} is the drain just done`);
      assert.equal(samples.get('keymailer_signed_posts_total{vendor="avangate",result="fulfilled"}'), 1);
      assert.equal(samples.get('keymailer_signed_posts_total{vendor="avangate",result="bad_hash"}'), 1);
    } finally {
      await running.close();
    }
  });

  test('two apps in one process count their own signed POSTs (no shared global registry)', async () => {
    const one = await startHttpApp(WITH_AVANGATE);
    const two = await startHttpApp(WITH_AVANGATE);
    try {
      const res = await fetch(`${one.url}/avangate`, { method: 'POST', body: 'REFNO=1&HASH=x', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
      assert.equal(res.status, 400);
      await res.text();
      const key = 'keymailer_signed_posts_total{vendor="avangate",result="bad_hash"}';
      assert.equal((await scrape(one)).samples.get(key), 1);
      assert.equal((await scrape(two)).samples.get(key), 0);
    } finally {
      await one.close();
      await two.close();
    }
  });
});

describe('HTTP routes and lifecycle', () => {
  test('a wrong method on /healthz or /metrics gets 405 with Allow, an unknown path 404, and without vendors.avangate so does /avangate', async () => {
    const running = await startHttpApp(BASE);
    try {
      for (const route of ['/healthz', '/metrics']) {
        const res = await fetch(`${running.url}${route}`, { method: 'POST', body: 'x' });
        assert.equal(res.status, 405, route);
        assert.equal(res.headers.get('allow'), 'GET, HEAD');
        await res.text();
      }
      for (const route of ['/', '/nope', '/avangate', '/healthz/extra']) {
        const res = await fetch(`${running.url}${route}`, { method: 'POST', body: 'x' });
        assert.equal(res.status, 404, route);
        await res.text();
      }
      const withQuery = await fetch(`${running.url}/healthz?verbose=1`);
      assert.equal(withQuery.status, 200, 'the query string does not change the route');
      await withQuery.text();
    } finally {
      await running.close();
    }
  });

  test('the listener does not listen until listen(), and close() frees the port and may be called twice', async () => {
    const dir = tempDir('km-http-');
    try {
      const loaded = parseConfig(BASE, path.join(dir, 'config.yaml'), dir, {});
      const { log } = captureLogger();
      const app = buildApp(loaded, log);
      const http = buildHttpApp(app);
      try {
        assert.equal(http.server.listening, false);
        const address = await http.listen({ port: 0 });
        assert.equal(address.address, '127.0.0.1', 'the host comes from config http.host');
        const url = `http://127.0.0.1:${address.port}/healthz`;
        const res = await fetch(url);
        assert.equal(res.status, 200);
        await res.text();
        await Promise.all([http.close(), http.close()]);
        await http.close();
        assert.equal(http.server.listening, false);
        await assert.rejects(fetch(url));
        await assert.rejects(http.listen({ port: 0 }), /closed/);
      } finally {
        await http.close();
        await app.stop();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
