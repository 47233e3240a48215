/**
 * A private Dovecot IMAP server on 127.0.0.1 for tests (see /work/shared/notes/testing.md).
 *
 * Every instance lives in its own temporary directory (config, pid file, sockets, log and
 * maildirs); the system's /etc/dovecot and /var/run/dovecot are never touched. The directory
 * survives stop() (so restart() can bring the same mailboxes back) and is removed when the
 * test process exits, unless KEYMAILER_KEEP_DOVECOT=1 is set (handy to read dovecot.log).
 * Any instance still running at process exit is sent SIGTERM (master and children).
 * DOVECOT_BIN overrides the binary (default /usr/sbin/dovecot or /usr/local/sbin/dovecot).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImapFlow } from 'imapflow';

export interface Dovecot {
  host: '127.0.0.1';
  port: number;
  /** the default login (first user of opts.users, or `orders`) */
  user: string;
  pass: string;
  /** the instance's temporary directory (dovecot.conf, dovecot.log, mail/<user>/Maildir) */
  dir: string;
  /**
   * SIGTERM to the master (pid from base_dir/master.pid) and to every other process of this
   * instance, then wait until all are gone and the port refuses connections (typically
   * 30-150 ms). Open IMAP sessions get `* BYE Server shutting down.` and are closed at once.
   * Mail and the directory stay; restart() starts it again. No-op when already stopped.
   */
  stop(): Promise<void>;
  /** stop() (if running), then start again on the same port with the same maildirs */
  restart(): Promise<void>;
  /**
   * Makes the mailbox look deleted and recreated with the same messages, so it gets a new,
   * strictly greater UIDVALIDITY and its messages get fresh UIDs from 1 (in filename order).
   *
   * How: the server is stopped (every IMAP session is dropped, exactly as restart() does);
   * in the mailbox's maildir folder (INBOX: mail/<user>/Maildir, others:
   * mail/<user>/Maildir/.<name>) dovecot-uidlist (the filename -> UID map whose header holds
   * UIDVALIDITY) and the dovecot.index* files are deleted, as is the user's mailbox-list index
   * (Maildir/dovecot.list.index*, which caches UIDVALIDITY for STATUS). The message files in
   * cur/ and new/ stay untouched, so flags encoded in their names (`:2,S`) survive. The server
   * is then started again on the same port and rescans the folder: every message gets a new
   * UID (1..n) and the mailbox a new UIDVALIDITY, allocated from Maildir/dovecot-uidvalidity
   * (kept), so it is always greater than the old one (observed: +1 or +2).
   * Only d.user's mailboxes. Throws if the mailbox does not exist. `name` is the IMAP name ('INBOX' or e.g. 'Orders';
   * the hierarchy separator is '.'). If the server was stopped it stays stopped.
   */
  recreateMailbox(name: string): Promise<void>;
}

export interface StartDovecotOptions {
  /** login -> password; default { orders: 'test-imap-pass' }. The first entry is d.user/d.pass. */
  users?: Record<string, string>;
}

const DOVECOT_CANDIDATES = ['/usr/sbin/dovecot', '/usr/local/sbin/dovecot'];
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;

const liveDirs = new Set<string>();
/** dir -> master pid of every instance this process started and has not stopped */
const liveMasters = new Map<string, number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [dir, master] of liveMasters) {
      if (isMaster(master, dir)) signal(master, 'SIGTERM');
      for (const pid of instancePids(dir, master)) signal(pid, 'SIGTERM');
    }
    if (process.env['KEYMAILER_KEEP_DOVECOT'] === '1') return;
    for (const dir of liveDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    }
  });
}

function instanceName(dir: string): string {
  return `km-${path.basename(dir)}`;
}

/** true when pid is a live `dovecot -c <dir>/dovecot.conf` (guards against stale/reused pids) */
function isMaster(pid: number, dir: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(path.join(dir, 'dovecot.conf'));
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/**
 * Live (non-zombie) processes of one instance other than the master: children of the master,
 * plus anything whose process title is `dovecot-<instance_name>/...` (Dovecot retitles its
 * children that way; ones that outlived the master have been re-parented to PID 1).
 */
function instancePids(dir: string, master: number | undefined): number[] {
  const title = `dovecot-${instanceName(dir)}/`;
  const found: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === master) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const state = rest[0];
      const ppid = Number(rest[1]);
      if (state === 'Z' || state === 'X') continue;
      if (ppid === master || readFileSync(`/proc/${e}/cmdline`, 'latin1').startsWith(title)) found.push(pid);
    } catch {
      /* exited meanwhile */
    }
  }
  return found;
}

function findDovecot(): string {
  const fromEnv = process.env['DOVECOT_BIN'];
  // DOVECOT_BIN (if set) is the only candidate
  const candidates = fromEnv ? [fromEnv] : DOVECOT_CANDIDATES;
  for (const c of candidates) {
    if (existsSync(c)) return c;
  }
  throw new Error('Dovecot not installed: apt-get install -y dovecot-imapd');
}

/** A free TCP port on 127.0.0.1 (bind to port 0, read it back, close). */
export async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('could not determine a free port'));
        return;
      }
      const port = addr.port;
      srv.close(() => resolve(port));
    });
  });
}

interface UnixIds {
  uid: number;
  gid: number;
}

function lookupId(file: '/etc/passwd' | '/etc/group', name: string, field: 2 | 3): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const parts = line.split(':');
    if (parts[0] === name) {
      const v = Number(parts[field]);
      return Number.isInteger(v) ? v : undefined;
    }
  }
  return undefined;
}

/** The uid/gid the mail processes run as: nobody:nogroup as root, else the current user. */
function mailIds(): UnixIds & { asRoot: boolean; userName: string; groupName: string } {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid !== 0) {
    const userName = os.userInfo().username;
    return { uid, gid, asRoot: false, userName, groupName: String(gid) };
  }
  const nobody = lookupId('/etc/passwd', 'nobody', 2) ?? 65534;
  const groupName = lookupId('/etc/group', 'nogroup', 2) !== undefined ? 'nogroup' : 'nobody';
  const nogroup = lookupId('/etc/group', groupName, 2) ?? 65534;
  return { uid: nobody, gid: nogroup, asRoot: true, userName: 'nobody', groupName };
}

function buildConfig(dir: string, port: number, ids: ReturnType<typeof mailIds>): string {
  const instance = instanceName(dir);
  const loginUser = ids.asRoot ? 'dovenull' : ids.userName;
  const internalUser = ids.asRoot ? 'dovecot' : ids.userName;
  return `# generated by test/support/dovecot.ts
instance_name = ${instance}
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
info_log_path = ${dir}/dovecot.log
debug_log_path = ${dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = ${loginUser}
default_internal_user = ${internalUser}
mail_uid = ${ids.uid}
mail_gid = ${ids.gid}
mail_location = maildir:${dir}/mail/%u/Maildir
mail_max_userip_connections = 100
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = static
  args = uid=${ids.uid} gid=${ids.gid} home=${dir}/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
protocol imap {
  mail_max_userip_connections = 100
}
`;
}

async function tail(file: string, lines = 30): Promise<string> {
  try {
    const text = await fs.readFile(file, 'utf8');
    return text.split('\n').slice(-lines - 1).join('\n').trim();
  } catch {
    return '(no log)';
  }
}

/**
 * true while the process exists and is not a zombie. The master daemonizes and is re-parented
 * to PID 1, which on some machines (this one's init is a custom process_api) reaps only every
 * few seconds: kill(pid, 0) keeps succeeding on the zombie, so /proc/<pid>/stat is checked too.
 */
function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ...": the state follows the last ')'
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Connect once and read the first line. Resolves true when it is an IMAP `* OK` greeting,
 * false when the connection is refused / reset / not a greeting within the timeout.
 */
function probeGreeting(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.setEncoding('latin1');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.includes('\n')) finish(buf.startsWith('* OK'));
    });
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(false));
  });
}

/** true while something accepts TCP connections on the port */
function portOpen(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/**
 * Runs `dovecot -c conf`, which daemonizes: the daemon inherits the child's stdout/stderr, so
 * pipes would never reach EOF. Output goes to a file instead and we wait for the child's `exit`.
 */
async function runDovecot(bin: string, conf: string, outFile: string): Promise<{ code: number | null; output: string }> {
  const out = await fs.open(outFile, 'w');
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(bin, ['-c', conf], { stdio: ['ignore', out.fd, out.fd] });
      child.once('error', reject);
      child.once('exit', (c) => resolve(c));
    });
    return { code, output: (await fs.readFile(outFile, 'utf8')).trim() };
  } finally {
    await out.close();
  }
}

async function chownR(p: string, uid: number, gid: number): Promise<void> {
  await fs.chown(p, uid, gid);
  const st = await fs.stat(p);
  if (!st.isDirectory()) return;
  for (const entry of await fs.readdir(p)) {
    await chownR(path.join(p, entry), uid, gid);
  }
}

class DovecotInstance implements Dovecot {
  readonly host = '127.0.0.1' as const;
  private running = false;

  constructor(
    readonly port: number,
    readonly user: string,
    readonly pass: string,
    readonly dir: string,
    private readonly bin: string,
    private readonly ids: ReturnType<typeof mailIds>,
  ) {}

  private get conf(): string {
    return path.join(this.dir, 'dovecot.conf');
  }
  private get logFile(): string {
    return path.join(this.dir, 'dovecot.log');
  }
  private get pidFile(): string {
    return path.join(this.dir, 'run', 'master.pid');
  }

  async start(): Promise<void> {
    if (this.running) return;
    if (this.ids.asRoot) await chownR(path.join(this.dir, 'mail'), this.ids.uid, this.ids.gid);
    const { code, output } = await runDovecot(this.bin, this.conf, path.join(this.dir, 'startup.out'));
    if (code !== 0) {
      throw new Error(
        `dovecot -c ${this.conf} exited with code ${String(code)}: ${output}\n--- ${this.logFile} ---\n${await tail(this.logFile)}`,
      );
    }
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (await probeGreeting(this.port, 500)) break;
      if (Date.now() > deadline) {
        await this.stop().catch(() => undefined);
        throw new Error(
          `dovecot did not greet on 127.0.0.1:${this.port} within ${START_TIMEOUT_MS} ms` +
            `${output ? ` (output: ${output})` : ''}\n--- ${this.logFile} ---\n${await tail(this.logFile)}`,
        );
      }
      await sleep(25);
    }
    const pid = await this.readPid();
    if (pid !== undefined) liveMasters.set(this.dir, pid);
    this.running = true;
  }

  /** the master's pid, only if that process really is this instance's master (no stale pid file) */
  private async readPid(): Promise<number | undefined> {
    let n: number | undefined;
    try {
      n = Number((await fs.readFile(this.pidFile, 'utf8')).trim());
    } catch {
      n = liveMasters.get(this.dir);
    }
    return n !== undefined && isMaster(n, this.dir) ? n : undefined;
  }

  async stop(): Promise<void> {
    const master = await this.readPid();
    const alive = (): number[] => {
      const pids = instancePids(this.dir, master);
      if (master !== undefined && pidAlive(master)) pids.push(master);
      return pids;
    };
    if (alive().length === 0) {
      this.running = false;
      liveMasters.delete(this.dir);
      return;
    }
    // The master alone is not enough: on SIGTERM it exits after ~1 s, but imap processes
    // (and log/stats) outlive it, keeping client sessions open for ~9 more seconds before
    // sending "* BYE Server shutting down.". So every process of the instance gets SIGTERM
    // (an imap process answers that with the BYE and closes at once).
    if (master !== undefined) signal(master, 'SIGTERM');
    for (const pid of instancePids(this.dir, master)) signal(pid, 'SIGTERM');
    let deadline = Date.now() + STOP_TIMEOUT_MS;
    let killed = false;
    for (;;) {
      const left = alive();
      if (left.length === 0 && !(await portOpen(this.port))) break;
      if (Date.now() > deadline) {
        if (killed) {
          throw new Error(
            `dovecot did not stop within ${STOP_TIMEOUT_MS} ms (pids ${left.join(',')})\n--- ${this.logFile} ---\n${await tail(this.logFile)}`,
          );
        }
        killed = true;
        deadline = Date.now() + 2000;
        for (const pid of left) signal(pid, 'SIGKILL');
      } else {
        // children spawned or re-parented since the first round
        for (const pid of left) if (pid !== master) signal(pid, 'SIGTERM');
      }
      await sleep(20);
    }
    this.running = false;
    liveMasters.delete(this.dir);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async recreateMailbox(name: string): Promise<void> {
    if (!/^[\x20-\x7e]+$/.test(name) || name.includes('/') || name.startsWith('.') || name.includes('..')) {
      throw new Error(`recreateMailbox: unsupported mailbox name ${JSON.stringify(name)}`);
    }
    const root = path.join(this.dir, 'mail', this.user, 'Maildir');
    const isInbox = name.toUpperCase() === 'INBOX';
    const folder = isInbox ? root : path.join(root, `.${name}`);
    if (!existsSync(path.join(folder, 'cur'))) {
      throw new Error(`recreateMailbox: mailbox ${name} does not exist (${folder})`);
    }
    const wasRunning = this.running;
    await this.stop();
    const removeIndexFiles = async (dirPath: string, prefixes: string[]): Promise<void> => {
      for (const e of await fs.readdir(dirPath)) {
        if (prefixes.some((p) => e === p || e.startsWith(`${p}.`))) await fs.rm(path.join(dirPath, e), { force: true });
      }
    };
    await removeIndexFiles(folder, ['dovecot-uidlist', 'dovecot.index']);
    await removeIndexFiles(root, ['dovecot.list.index']);
    if (wasRunning) await this.start();
  }
}

export async function startDovecot(opts: StartDovecotOptions = {}): Promise<Dovecot> {
  const bin = findDovecot();
  const users = opts.users ?? { orders: 'test-imap-pass' };
  const entries = Object.entries(users);
  const first = entries[0];
  if (first === undefined) throw new Error('startDovecot: users must not be empty');
  for (const [u, p] of entries) {
    if (!/^[A-Za-z0-9._@+-]+$/.test(u) || /[:\n]/.test(p)) {
      throw new Error(`startDovecot: unsupported user/password ${JSON.stringify(u)}`);
    }
  }
  installExitHook();
  // short: unix socket paths under base_dir must stay below ~107 bytes
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'dv-'));
  liveDirs.add(dir);
  await fs.chmod(dir, 0o755);
  const ids = mailIds();
  let port = await freePort();
  await fs.mkdir(path.join(dir, 'run'), { mode: 0o755 });
  await fs.mkdir(path.join(dir, 'state'), { mode: 0o755 });
  await fs.mkdir(path.join(dir, 'mail'), { mode: 0o755 });
  for (const [u] of entries) await fs.mkdir(path.join(dir, 'mail', u), { mode: 0o700 });
  await fs.writeFile(
    path.join(dir, 'users'),
    entries.map(([u, p]) => `${u}:{PLAIN}${p}::::::\n`).join(''),
    { mode: 0o644 },
  );
  // The port is free when chosen but someone else may bind it before Dovecot does: retry with
  // a new port when Dovecot reports "Address already in use".
  for (let attempt = 1; ; attempt++) {
    await fs.writeFile(path.join(dir, 'dovecot.conf'), buildConfig(dir, port, ids), { mode: 0o644 });
    const d = new DovecotInstance(port, first[0], first[1], dir, bin, ids);
    try {
      await d.start();
      return d;
    } catch (err) {
      if (attempt >= 3 || !String(err).includes('Address already in use')) throw err;
      port = await freePort();
    }
  }
}

/** Connect a fresh ImapFlow as d.user, run fn, always log out (close on failure). */
export async function withImap<T>(
  d: Pick<Dovecot, 'host' | 'port' | 'user' | 'pass'>,
  fn: (client: ImapFlow) => Promise<T>,
): Promise<T> {
  const client = new ImapFlow({
    host: d.host,
    port: d.port,
    secure: false,
    auth: { user: d.user, pass: d.pass },
    logger: false,
  });
  let lastError: Error | undefined;
  client.on('error', (err: Error) => {
    lastError = err;
  });
  try {
    await client.connect();
  } catch (err) {
    client.close();
    throw err instanceof Error ? err : new Error(String(lastError ?? err));
  }
  try {
    return await fn(client);
  } finally {
    try {
      await client.logout();
    } catch {
      client.close();
    }
  }
}

/** APPEND raw to mailbox (created first if missing); returns the new message's UID. */
export async function appendMessage(d: Dovecot, mailbox: string, raw: string | Buffer): Promise<number> {
  return withImap(d, async (client) => {
    const boxes = await client.list();
    if (!boxes.some((b) => b.path.toUpperCase() === mailbox.toUpperCase())) {
      await client.mailboxCreate(mailbox);
    }
    const res = await client.append(mailbox, raw);
    if (res === false || res.uid === undefined) {
      throw new Error(`APPEND to ${mailbox} returned no UID (${JSON.stringify(res === false ? res : { ...res, uidValidity: String(res.uidValidity) })})`);
    }
    return res.uid;
  });
}

/** Every message in mailbox as { uid, raw } in UID order; [] when the mailbox does not exist. */
export async function listMailbox(d: Dovecot, mailbox: string): Promise<{ uid: number; raw: Buffer }[]> {
  return withImap(d, async (client) => {
    const boxes = await client.list();
    if (!boxes.some((b) => b.path.toUpperCase() === mailbox.toUpperCase())) return [];
    const lock = await client.getMailboxLock(mailbox, { readOnly: true });
    try {
      const exists = client.mailbox === false ? 0 : client.mailbox.exists;
      if (exists === 0) return [];
      const msgs = await client.fetchAll('1:*', { uid: true, source: true });
      return msgs
        .map((m) => {
          if (m.source === undefined) throw new Error(`FETCH of ${mailbox} uid ${m.uid} returned no source`);
          return { uid: m.uid, raw: m.source };
        })
        .sort((a, b) => a.uid - b.uid);
    } finally {
      lock.release();
    }
  });
}
