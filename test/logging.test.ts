/**
 * Logging: JSON lines in rotated files, secrets redacted, and rotation that does not leak file
 * descriptors on a box that runs for years. The soak runs in a child process so the descriptors of
 * the test runner itself do not blur the count; the child is this same file, started with
 * KEYMAILER_LOG_SOAK set.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeLogger, createLogger, logFileOf, logSettingsSchema } from '../src/log';

const tempDirs: string[] = [];
/** A fresh directory, removed when the file's tests are done. */
function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
// Not in the child process: that one is no test run.
if (!process.env.KEYMAILER_LOG_SOAK) {
  after(() => {
    for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  });
}

interface SoakParams {
  readonly dir: string;
  /** size: a tiny maxSize makes every few lines a new file; date: a per-second date pattern. */
  readonly mode: 'size' | 'date';
  readonly rotations: number;
  readonly maxFiles: number;
  /** By the child's clock, which faketime may run fast. */
  readonly deadlineMs: number;
}

interface SoakResult {
  readonly rotations: number;
  readonly lines: number;
  readonly fdBefore: number;
  readonly fdPeak: number;
  readonly fdAfter: number;
  readonly fdWithOneMoreOpen: number;
  readonly fdAfterClose: number;
  /** Descriptors open on files in the log directory: the one being written, nothing else. */
  readonly logFdsBefore: number;
  readonly logFdsAfter: number;
  readonly logFdsAfterClose: number;
  readonly ms: number;
}

const fdCount = (): number => fs.readdirSync('/proc/self/fd').length;

function fdsInto(dir: string): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${dir}/`)) n++;
    } catch {
      // The descriptor readdir itself used is gone by now.
    }
  }
  return n;
}
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function soakChild(params: SoakParams): Promise<void> {
  const started = Date.now();
  const log = createLogger({
    level: 'info',
    stderr: true,
    file: {
      dir: params.dir,
      maxSize: params.mode === 'size' ? '1k' : '1g',
      maxFiles: params.maxFiles,
      ...(params.mode === 'date' ? { datePattern: 'YYYY-MM-DD-HH-mm-ss' } : {}),
    },
  });
  const transport = logFileOf(log);
  if (!transport) throw new Error('no file transport');
  let rotations = 0;
  transport.on('rotate', () => rotations++);
  let lines = 0;
  const line = (): void => {
    lines++;
    log.info('order sent', { vendor: 'fastspring', orderId: `FS-${lines}`, uid: lines, outcome: 'sent' });
  };
  line();
  // The first line reaches the file at the end of its turn and the file opens asynchronously; under
  // faketime's fast clock 200 ms are 4 real ones: wait (by real attempts) until it is open.
  for (let i = 0; i < 500 && fdsInto(params.dir) === 0; i++) await sleep(params.mode === 'date' ? 50 : 1);
  await sleep(200);
  const fdBefore = fdCount();
  const logFdsBefore = fdsInto(params.dir);
  let fdPeak = fdBefore;
  const deadline = Date.now() + params.deadlineMs;
  while (rotations < params.rotations && Date.now() < deadline) {
    for (let i = 0; i < 3; i++) line();
    // Give the old stream its turn to close, as the daemon's idle time between orders would.
    await sleep(params.mode === 'date' ? 2 : 0);
    fdPeak = Math.max(fdPeak, fdCount());
  }
  // Old streams close asynchronously, and the last lines may still be on their way to a file (a
  // rotation can still happen): wait until the count has stayed settled for 200 ms (or until it is
  // plain it never will).
  for (let i = 0, settled = 0; i < 300 && settled < 10; i++) {
    settled = fdCount() > fdBefore || fdsInto(params.dir) > 1 ? 0 : settled + 1;
    await sleep(20);
  }
  const fdAfter = fdCount();
  const logFdsAfter = fdsInto(params.dir);
  // The counter itself must see a leak: one more open file is one more entry.
  const extra = fs.openSync(path.join(params.dir, 'extra.txt'), 'w');
  const fdWithOneMoreOpen = fdCount();
  fs.closeSync(extra);
  fs.unlinkSync(path.join(params.dir, 'extra.txt'));
  // The child's clock may run fast: give the close all the time it needs by that clock.
  await closeLogger(log, 600_000);
  for (let i = 0; i < 200 && fdsInto(params.dir) > 0; i++) await sleep(params.mode === 'date' ? 50 : 1);
  const fdAfterClose = fdCount();
  const logFdsAfterClose = fdsInto(params.dir);
  const result: SoakResult = {
    rotations, lines, fdBefore, fdPeak, fdAfter, fdWithOneMoreOpen, fdAfterClose, logFdsBefore, logFdsAfter, logFdsAfterClose, ms: Date.now() - started,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function runSoak(params: SoakParams, prefix: readonly string[] = []): Promise<SoakResult> {
  return new Promise((resolve, reject) => {
    const command = prefix[0] ?? process.execPath;
    const args = [...prefix.slice(1), ...(prefix.length ? [process.execPath] : []), __filename];
    const child = spawn(command, args, {
      env: { ...process.env, KEYMAILER_LOG_SOAK: JSON.stringify(params) },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !last.startsWith('{')) reject(new Error(`soak child exited ${String(code)}: ${out}`));
      else resolve(JSON.parse(last) as SoakResult);
    });
  });
}

function logFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.log')).sort();
}

function assertFlat(result: SoakResult, label: string): void {
  // Allow one descriptor of slack: libuv may keep one more internal handle after a busy stretch.
  assert.ok(result.fdAfter <= result.fdBefore + 1, `${label}: descriptors grew from ${result.fdBefore} to ${result.fdAfter} over ${result.rotations} rotations`);
  assert.equal(result.fdWithOneMoreOpen, result.fdAfter + 1, 'the descriptor count must see one more open file');
  assert.equal(result.logFdsBefore, 1, 'one log file open while logging');
  assert.equal(result.logFdsAfter, 1, `${label}: still one log file open after ${result.rotations} rotations`);
  assert.equal(result.logFdsAfterClose, 0, 'closing the logger closes the log file');
  assert.ok(result.fdAfterClose < result.fdAfter, 'and the total count drops with it');
}

const hasFaketime = spawnSync('faketime', ['--version'], { stdio: 'ignore' }).status === 0;

if (process.env.KEYMAILER_LOG_SOAK) {
  void soakChild(JSON.parse(process.env.KEYMAILER_LOG_SOAK) as SoakParams).catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  });
} else {
  test('log lines go to a JSON file, secrets redacted in every field', async () => {
    const dir = tempDir('km-log-');
    const log = createLogger({ level: 'info', secrets: ['hunter2-imap-pass'], stderr: true, file: { dir } });
    log.info('order sent', { vendor: 'fastspring', orderId: 'FS-1', uid: 42, outcome: 'sent' });
    log.warn('login failed with hunter2-imap-pass', { pass: 'whatever', nested: { token: 't', note: 'x hunter2-imap-pass y' } });
    log.debug('not at this level');
    await closeLogger(log);
    const files = logFiles(dir);
    assert.equal(files.length, 1);
    assert.match(files[0] ?? '', /^keymailer-\d{4}-\d{2}-\d{2}\.log$/);
    const text = fs.readFileSync(path.join(dir, files[0] ?? ''), 'utf8');
    assert.ok(!text.includes('hunter2'), 'the secret never reaches the file');
    const lines = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 2);
    assert.deepEqual(
      { ...lines[0], timestamp: undefined },
      { level: 'info', message: 'order sent', vendor: 'fastspring', orderId: 'FS-1', uid: 42, outcome: 'sent', timestamp: undefined },
    );
    assert.match(String(lines[0]?.timestamp), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    assert.equal(lines[1]?.message, 'login failed with [redacted]');
    assert.equal(lines[1]?.pass, '[redacted]');
    assert.deepEqual(lines[1]?.nested, { token: '[redacted]', note: 'x [redacted] y' });
    assert.ok(fs.readdirSync(dir).some((n) => n === '.keymailer-log-audit.json'), 'the audit file lives in the log directory');
  });

  test('lines logged in one turn reach the console together, and the last ones still do when the process exits at once', () => {
    const child = spawnSync(
      process.execPath,
      [
        '-e',
        `const { createLogger } = require(${JSON.stringify(path.join(__dirname, '..', 'src', 'log.js'))});
         const log = createLogger({ level: 'info', stderr: false });
         const write = process.stdout.write.bind(process.stdout);
         let writes = 0;
         process.stdout.write = (chunk, ...rest) => { writes++; return write(chunk, ...rest); };
         for (let i = 1; i <= 3; i++) log.info('order sent', { order: 'FS-' + i });
         setImmediate(() => {
           process.stderr.write('writes: ' + writes + '\\n');
           log.error('keymailer stopped on an error', { reason: 'disk full' });
           process.exit(4);
         });`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(child.status, 4);
    assert.match(child.stderr, /writes: 1\n/, 'three lines, one write');
    const lines = child.stdout.trim().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[0] ?? '', /^\d{4}-\d{2}-\d{2}T[\d:.]+Z info  order sent order=FS-1$/);
    assert.match(lines[3] ?? '', /error keymailer stopped on an error reason="disk full"$/, 'logged right before process.exit()');
  });

  test('log settings: defaults, and bad sizes or retention named', () => {
    assert.deepEqual(logSettingsSchema.parse(undefined), { level: 'info', dir: 'data/logs', maxSize: '20m', maxFiles: '14d' });
    assert.deepEqual(logSettingsSchema.parse({ level: 'debug', maxFiles: 30 }), { level: 'debug', dir: 'data/logs', maxSize: '20m', maxFiles: 30 });
    assert.equal(logSettingsSchema.safeParse({ maxSize: '20MB' }).success, false);
    assert.equal(logSettingsSchema.safeParse({ maxFiles: '2w' }).success, false);
    assert.equal(logSettingsSchema.safeParse({ colour: true }).success, false);
  });

  test('size rotation: hundreds of rotations, descriptors flat, old files pruned to maxFiles', async () => {
    const dir = tempDir('km-soak-size-');
    const result = await runSoak({ dir, mode: 'size', rotations: 200, maxFiles: 5, deadlineMs: 20_000 });
    process.stdout.write(`# size rotation: ${JSON.stringify(result)}\n`);
    assert.ok(result.rotations >= 200, `only ${result.rotations} rotations`);
    assertFlat(result, 'size rotation');
    const files = logFiles(dir);
    assert.equal(files.length, 5, `kept ${files.join(', ')}`);
  });

  test('date rotation (per-second pattern, clock sped up 50x by faketime): descriptors flat, pruned', async () => {
    assert.ok(hasFaketime, 'faketime is not installed: apt-get install -y faketime');
    const dir = tempDir('km-soak-date-');
    const result = await runSoak({ dir, mode: 'date', rotations: 60, maxFiles: 4, deadlineMs: 1000_000 }, ['faketime', '-f', '+0 x50']);
    process.stdout.write(`# date rotation: ${JSON.stringify(result)}\n`);
    assert.ok(result.rotations >= 60, `only ${result.rotations} rotations`);
    assertFlat(result, 'date rotation');
    const files = logFiles(dir);
    assert.equal(files.length, 4, `kept ${files.join(', ')}`);
    assert.ok(files.every((f) => /^keymailer-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\.log$/.test(f)));
  });
}
