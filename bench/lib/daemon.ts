/**
 * The real keymailer daemon (`node dist/src/cli.js --config FILE`) as a child process, for
 * benchmarks. Like test/support/cli.ts startDaemon, plus what measuring needs: node flags
 * (--cpu-prof), the moment of spawn, the IPC 'ready' message pm2 waits for, the arrival time of
 * chosen log lines, and its output in a file (a benchmark logs hundreds of thousands of lines;
 * holding them in a string would measure the bench, not the daemon).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { CLI, nodeFlags } from '../../test/support/cli';

export interface BenchDaemon {
  readonly child: ChildProcess;
  readonly pid: number;
  /** performance.now() just before spawn() */
  readonly spawnedAt: number;
  /** performance.now() when the IPC 'ready' message arrived, null until then */
  readyAt(): number | null;
  /** resolves with performance.now() of the 'ready' message; rejects on exit or timeout */
  ready(timeoutMs?: number): Promise<number>;
  /** resolves with performance.now() of the first output line matching pattern (already seen counts) */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<number>;
  /** the last ~64 KB of output, for error messages */
  tail(): string;
  /** SIGTERM (or the signal given), then SIGKILL after the timeout; resolves with the exit code */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

export interface BenchDaemonOptions {
  readonly config: string;
  readonly env: NodeJS.ProcessEnv;
  /** where stdout and stderr go (appended) */
  readonly logFile: string;
  /** node flags before the script, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/x'] */
  readonly execArgv?: readonly string[];
  readonly args?: readonly string[];
}

const TAIL_BYTES = 64 * 1024;

export function startBenchDaemon(options: BenchDaemonOptions): BenchDaemon {
  const log = fs.createWriteStream(options.logFile, { flags: 'a' });
  const env: NodeJS.ProcessEnv = { ...process.env, KEYMAILER_CONFIG: '', ...options.env };
  // The test runner's marker would make a child that loads node:test report to it.
  delete env['NODE_TEST_CONTEXT'];
  const spawnedAt = performance.now();
  // The node flags keymailer ships with (npm start, pm2 and the bin pass them), then the bench's own.
  const child = spawn(process.execPath, [...nodeFlags(), ...(options.execArgv ?? []), CLI, '--config', options.config, ...(options.args ?? [])], {
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  if (child.pid === undefined) throw new Error('could not start the keymailer daemon');
  const pid = child.pid;
  let readyAt: number | null = null;
  // The last chunks, at least TAIL_BYTES of them, joined only when asked: copying the tail on every
  // chunk cost this process more CPU than the daemon's logging under a signed-POST load.
  const tailChunks: string[] = [];
  let tailLength = 0;
  const tail = (): string => tailChunks.join('').slice(-TAIL_BYTES);
  let partial = '';
  const lineWaiters = new Set<(line: string, at: number) => void>();
  const seenLines: { line: string; at: number }[] = [];
  const readyWaiters = new Set<() => void>();

  const onData = (chunk: Buffer): void => {
    const at = performance.now();
    log.write(chunk);
    const text = chunk.toString('utf8');
    tailChunks.push(text);
    tailLength += text.length;
    while (tailChunks.length > 1 && tailLength - (tailChunks[0]?.length ?? 0) >= TAIL_BYTES) tailLength -= tailChunks.shift()?.length ?? 0;
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      // only lines someone may still ask about are kept: start-up and pass markers, errors
      if (/config loaded|keymailer started|watching for notifications|IMAP connected|HTTP listening|error|warn/i.test(line)) {
        if (seenLines.length < 1000) seenLines.push({ line, at });
      }
      for (const w of [...lineWaiters]) w(line, at);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  child.on('message', (message: unknown) => {
    if (message === 'ready' && readyAt === null) {
      readyAt = performance.now();
      for (const w of [...readyWaiters]) w();
    }
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      log.end();
      resolve(code);
      for (const w of [...readyWaiters]) w();
    });
  });

  return {
    child,
    pid,
    spawnedAt,
    readyAt: () => readyAt,
    exited,
    tail,
    ready(timeoutMs = 15_000) {
      return new Promise<number>((resolve, reject) => {
        const check = (): void => {
          if (readyAt !== null) {
            done();
            resolve(readyAt);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(new Error(`keymailer exited (${String(child.exitCode ?? child.signalCode)}) before it was ready:\n${tail().slice(-4000)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`keymailer was not ready within ${timeoutMs} ms:\n${tail().slice(-4000)}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          readyWaiters.delete(check);
        };
        readyWaiters.add(check);
        check();
      });
    },
    waitForLine(pattern, timeoutMs = 15_000) {
      const seen = seenLines.find((l) => pattern.test(l.line));
      if (seen) return Promise.resolve(seen.at);
      return new Promise<number>((resolve, reject) => {
        const waiter = (line: string, at: number): void => {
          if (!pattern.test(line)) return;
          clearTimeout(timer);
          lineWaiters.delete(waiter);
          resolve(at);
        };
        const timer = setTimeout(() => {
          lineWaiters.delete(waiter);
          reject(new Error(`keymailer never printed ${String(pattern)} within ${timeoutMs} ms:\n${tail().slice(-4000)}`));
        }, timeoutMs);
        lineWaiters.add(waiter);
      });
    },
    async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** VmRSS and VmHWM (peak RSS) of a process in bytes, from /proc/<pid>/status; null once it is gone. */
export function memoryOf(pid: number): { rss: number; hwm: number } | null {
  let status: string;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s*(\\d+)\\s*kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/**
 * Resets the kernel's peak-RSS mark (VmHWM) of a process to its current RSS (Linux ≥ 4.0:
 * `echo 5 > /proc/<pid>/clear_refs`), so a second phase gets its own peak. False when not allowed.
 */
export function resetPeak(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Where a process's resident memory lies, from /proc/<pid>/smaps, in bytes. */
export interface RssBreakdown {
  /** pages of the node executable itself: its code, V8's built-ins and the ICU data compiled into it */
  readonly nodeBinary: number;
  /** anonymous mappings: V8's heap (heapTotal of it), thread stacks, allocations malloc maps directly */
  readonly anonymous: number;
  /** malloc's main heap ([heap]): SQLite's page cache, buffers, native allocations of node and addons */
  readonly mallocHeap: number;
  /** every other file mapped: shared libraries, better-sqlite3's addon, the database's -shm */
  readonly otherFiles: number;
}

export function rssBreakdown(pid: number): RssBreakdown | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return null;
  }
  const sums = { nodeBinary: 0, anonymous: 0, mallocHeap: 0, otherFiles: 0 };
  let into: keyof typeof sums = 'anonymous';
  for (const line of text.split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      const name = mapping[1] ?? '';
      into = name === '' || name.startsWith('[anon') || name === '[stack]' ? 'anonymous' : name === '[heap]' ? 'mallocHeap' : name === process.execPath ? 'nodeBinary' : 'otherFiles';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) sums[into] += Number(rss[1]) * 1024;
  }
  return sums;
}

/** Samples VmRSS every intervalMs; max() is the highest sample, a cross-check of VmHWM. */
export class RssSampler {
  private timer: NodeJS.Timeout | null = null;
  private highest = 0;
  private count = 0;
  private atHighest: RssBreakdown | null = null;

  constructor(
    private readonly pid: number,
    private readonly intervalMs = 25,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    return this;
  }

  private sample(): void {
    const m = memoryOf(this.pid);
    if (m === null) return;
    this.count++;
    // smaps is read again only when the peak grew by a megabyte: reading it costs a few ms.
    if (m.rss > this.highest + MB || (m.rss > this.highest && this.atHighest === null)) this.atHighest = rssBreakdown(this.pid) ?? this.atHighest;
    if (m.rss > this.highest) this.highest = m.rss;
  }

  /** Stops sampling; returns the highest RSS seen, how many samples were taken, and where the memory lay near the highest. */
  stop(): { highest: number; samples: number; breakdown: RssBreakdown | null } {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    return { highest: this.highest, samples: this.count, breakdown: this.atHighest };
  }
}

export const MB = 1024 * 1024;

/** Whether something accepts TCP connections on 127.0.0.1:port now. */
export function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
