/** A keymailer config pointing at the test's own Dovecot and SMTP sink. */
import fs from 'node:fs';
import path from 'node:path';
import type { Dovecot } from './dovecot';
import type { SmtpSink } from './smtp-sink';

export const TEST_KEY = 'Tq9#vL2!pX7@mR4s';

export function writeImapConfig(dir: string, dovecot: Dovecot, sink: SmtpSink, extra = ''): string {
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(
    file,
    `database: data/keymailer.db
owner: { email: owner@acme.example }
imap:
  host: 127.0.0.1
  port: ${dovecot.port}
  secure: false
  user: ${dovecot.user}
  pass: \${TEST_IMAP_PASSWORD}
  mailbox: INBOX
  processed: Processed
  review: Review
smtp:
  host: 127.0.0.1
  port: ${sink.port}
  secure: false
  ignoreTLS: true
from: "Acme Software <sales@acme.example>"
vendors:
  kagi: { auth: none }
products:
  - id: widget-pro
    name: Widget Pro
    key: "${TEST_KEY}"
    match: ["Widget Pro", "WIDGET-PRO"]
${extra}`,
  );
  return file;
}

/** A Kagi-style sale notification, unique per call, for tests that need many. */
export function kagiSale(n: number, buyer = `Buyer ${n}`, email = `buyer${n}@example.net`): string {
  return [
    'From: Kagi <admin@kagi.com>',
    'To: orders@acme.example',
    `Subject: Kagi Payment Acknowledgement - Widget Pro - ${buyer}`,
    `Date: Sun, 22 Nov 2026 0${n % 10}:00:00 -0800`,
    `Message-ID: <sale-${n}-${Date.now()}@kagi.com>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=UTF-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    `Kagi Transaction ID: 9000-${String(n).padStart(4, '0')}-0001`,
    'Date Processed: 2026-11-22 00:00:00 PST',
    `Purchaser Name: ${buyer}`,
    `Purchaser Email: ${email}`,
    'Country: Canada',
    '',
    'Product Name: Widget Pro',
    'Product ID: WIDGET-PRO',
    'Quantity Ordered: 1',
    'Unit Payment: $29.00 USD',
    '',
  ].join('\r\n');
}
