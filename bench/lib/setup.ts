/**
 * A benchmark's world: a private Dovecot, the SMTP sink and a keymailer config pointing at both,
 * built from the test harness (test/support), plus the backlog writer that fills the Maildir
 * directly instead of by APPEND.
 */
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { startDovecot, withImap, type Dovecot } from '../../test/support/dovecot';
import { writeImapConfig } from '../../test/support/imap-config';
import { startSmtpSink, type SmtpSink } from '../../test/support/smtp-sink';

export const AVANGATE_SECRET = 'bench-avangate-secret-0123456789';
export const AVANGATE_PATH = '/avangate';

export interface World {
  readonly dir: string;
  readonly dovecot: Dovecot;
  readonly sink: SmtpSink;
  readonly config: string;
  /** the variables the config's ${…} refer to */
  readonly env: NodeJS.ProcessEnv;
  /** the HTTP port written to the config (http: block), or null */
  readonly httpPort: number | null;
  close(): Promise<void>;
}

/**
 * test/support/imap-config.ts's config (Kagi with auth: none, product widget-pro matched by
 * "Widget Pro" and "WIDGET-PRO"), plus, when httpPort is given, the HTTP listener and
 * vendors.avangate, so Avangate POSTs with PCODE=WIDGET-PRO get the same product.
 */
export async function startWorld(options: { readonly httpPort?: number; readonly keep?: boolean } = {}): Promise<World> {
  const dovecot = await startDovecot();
  const sink = await startSmtpSink();
  // not km-…: other test runs on a shared machine clean those up
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-keymailer-'));
  fs.chmodSync(dir, 0o755);
  const httpPort = options.httpPort ?? null;
  const extra = httpPort === null ? '' : `http: { host: 127.0.0.1, port: ${httpPort} }\n`;
  const config = writeImapConfig(dir, dovecot, sink, extra);
  if (httpPort !== null) {
    const text = fs.readFileSync(config, 'utf8');
    const kagi = '  kagi: { auth: none }\n';
    if (!text.includes(kagi)) throw new Error(`bench: writeImapConfig no longer writes "${kagi.trim()}" under vendors; update bench/lib/setup.ts`);
    fs.writeFileSync(config, text.replace(kagi, `${kagi}  avangate: { secret: "\${AVANGATE_SECRET}", path: ${AVANGATE_PATH} }\n`));
  }
  // Logging in once creates the user's Maildir (cur/, new/, tmp/), which the backlog writer fills.
  await withImap(dovecot, async (client) => {
    await client.mailboxOpen('INBOX');
  });
  return {
    dir,
    dovecot,
    sink,
    config,
    env: { TEST_IMAP_PASSWORD: dovecot.pass, AVANGATE_SECRET },
    httpPort,
    async close() {
      await sink.stop();
      await dovecot.stop();
      // KEYMAILER_BENCH_KEEP=1 keeps the directory (config, daemon logs, database) to look into
      if (!options.keep && process.env['KEYMAILER_BENCH_KEEP'] !== '1') fs.rmSync(dir, { recursive: true, force: true });
      else process.stderr.write(`[bench] kept ${dir}\n`);
    },
  };
}

/**
 * Delivers messages into INBOX the way a local delivery agent does, without IMAP: each file is
 * written into Maildir/tmp/ and renamed into Maildir/new/ (the Maildir rule: a file appears in new/
 * complete or not at all). APPEND would take seconds per thousand and slows as the box grows
 * (shared/notes/testing.md); this takes milliseconds.
 *
 * Names follow Dovecot's Maildir rules (/usr/share/doc/dovecot-core/wiki/MailboxFormat.Maildir.txt):
 * `<seconds>.Q<n>P<pid>.kmbench,S=<size>,W=<vsize>`: a unique base name; `S=` the file size and
 * `W=` the RFC822.SIZE (size with CRLF line ends), which Dovecot then trusts instead of computing;
 * no `:2,` info part, since mail in new/ has not been seen by any client yet (Dovecot adds it when
 * it moves the file to cur/). Lines end in LF, as Dovecot stores APPENDed mail. Dovecot gives new
 * files UIDs in name order; the zero-padded sequence keeps them in the order given. A client
 * IDLE-ing on the box is told (Dovecot watches new/ with inotify), so a running daemon sees them.
 *
 * As root the mail processes run as another user (nobody): files get the owner of Maildir/new.
 */
export function deliverToMaildir(dovecot: Dovecot, messages: readonly string[], firstSeq: number): void {
  const maildir = path.join(dovecot.dir, 'mail', dovecot.user, 'Maildir');
  const owner = fs.statSync(path.join(maildir, 'new'));
  const seconds = Math.floor(Date.now() / 1000);
  messages.forEach((message, i) => {
    const lf = Buffer.from(message.replace(/\r\n/g, '\n'), 'utf8');
    let lines = 0;
    for (const byte of lf) if (byte === 0x0a) lines++;
    const name = `${seconds}.Q${String(firstSeq + i).padStart(8, '0')}P${process.pid}.kmbench,S=${lf.length},W=${lf.length + lines}`;
    const temporary = path.join(maildir, 'tmp', name);
    fs.writeFileSync(temporary, lf, { mode: 0o600 });
    fs.chownSync(temporary, owner.uid, owner.gid);
    fs.renameSync(temporary, path.join(maildir, 'new', name));
  });
}
