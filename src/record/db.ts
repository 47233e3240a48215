/**
 * The SQLite database: the source of truth for what happened to every message and order.
 * Schema changes are numbered migrations tracked by PRAGMA user_version, never edited once landed.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,               -- imap:<mailbox>, drop:<folder>, file
    uid_validity  INTEGER NOT NULL,
    uid           TEXT NOT NULL,
    message_id    TEXT,
    content_hash  TEXT NOT NULL,
    state         TEXT NOT NULL,               -- seen, fulfilled, ignored, refund, review
    vendor        TEXT,
    reason        TEXT,
    raw           BLOB NOT NULL,
    received_at   TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (source, uid_validity, uid)
  );
  CREATE INDEX messages_content_hash ON messages (content_hash);
  CREATE INDEX messages_message_id ON messages (message_id);

  CREATE TABLE orders (
    id               INTEGER PRIMARY KEY,
    order_key        TEXT NOT NULL UNIQUE,     -- vendor:vendor order id:vendor product; never sent twice
    vendor           TEXT NOT NULL,
    vendor_order_id  TEXT,
    vendor_product   TEXT NOT NULL,
    product_id       TEXT,
    buyer_name       TEXT NOT NULL,
    buyer_email      TEXT NOT NULL,
    license_name     TEXT,
    quantity         INTEGER NOT NULL,
    price            TEXT,
    currency         TEXT,
    test             INTEGER NOT NULL,
    serials          TEXT,                     -- JSON array
    state            TEXT NOT NULL,            -- review, fulfilled, sent, refunded
    reason           TEXT,
    message_row      INTEGER REFERENCES messages (id),
    received_at      TEXT NOT NULL,
    fulfilled_at     TEXT,
    sent_at          TEXT,
    updated_at       TEXT NOT NULL
  );
  CREATE INDEX orders_vendor_order_id ON orders (vendor_order_id);
  CREATE INDEX orders_buyer_email ON orders (buyer_email);

  CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER REFERENCES orders (id),
    kind             TEXT NOT NULL,            -- serial, resend, alert
    message_id       TEXT NOT NULL UNIQUE,     -- stable, derived from the order
    recipient        TEXT NOT NULL,
    raw              BLOB NOT NULL,            -- the complete MIME message, built once
    created_at       TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_error       TEXT,
    sent_at          TEXT,
    failed_at        TEXT
  );
  CREATE INDEX outbox_unsent ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

  CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,
    order_id     INTEGER REFERENCES orders (id),
    message_row  INTEGER REFERENCES messages (id),
    kind         TEXT NOT NULL,
    detail       TEXT
  );
  CREATE INDEX events_order ON events (order_id);
  `,
  `
  -- Only one daemon works a database at a time; a second one waits until the lease expires.
  CREATE TABLE lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL               -- ms since epoch
  );

  -- Owner alerts wait here until they are grouped into one mail.
  CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    detail     TEXT,
    mailed_at  TEXT
  );
  CREATE INDEX alerts_unmailed ON alerts (id) WHERE mailed_at IS NULL;

  -- Set once the owner was told a mail has waited too long, so they are told once, not per retry.
  ALTER TABLE outbox ADD COLUMN alerted_at TEXT;
  `,
  `
  -- The vendor's running number of the product's notifications (Kagi SQNM): a gap is a lost notification.
  ALTER TABLE orders ADD COLUMN sequence_series TEXT;
  ALTER TABLE orders ADD COLUMN sequence_number INTEGER;
  CREATE INDEX orders_sequence ON orders (vendor, sequence_series, sequence_number) WHERE sequence_series IS NOT NULL;
  `,
];

export function openDatabase(file: string): Db {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // An order commit must survive a power cut: a lost commit means a buyer mailed twice or never.
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  db.pragma('journal_size_limit = 67108864');
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (let version = current; version < MIGRATIONS.length; version++) {
    const sql = MIGRATIONS[version];
    if (sql === undefined) break;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
}
