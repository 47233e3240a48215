/**
 * 2. Backlog and 4. Memory. N notifications wait in INBOX when the daemon starts (the box was off
 * for a week): time until the last buyer mail is accepted, against the raw rate of each stage the
 * daemon runs them through, measured first, in the same run, on the same N messages: imapflow
 * FETCH, mailparser, pooled nodemailer to the same SMTP sink, better-sqlite3 commits with the
 * daemon's durability settings. The same daemon then gets a second backlog of N; its RSS is read
 * from /proc throughout. With `profile`, a third backlog is worked by a daemon under --cpu-prof.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { ImapFlow } from 'imapflow';
import { simpleParser } from 'mailparser';
import nodemailer, { type Transporter } from 'nodemailer';
import { PROJECT_ROOT, nodeFlags } from '../test/support/cli';
import { withImap } from '../test/support/dovecot';
import { kagiSale } from '../test/support/imap-config';
import type { ReceivedMail } from '../test/support/smtp-sink';
import { Renderer } from '../src/deliver/render';
import { MB, RssSampler, memoryOf, resetPeak, startBenchDaemon, type BenchDaemon, type RssBreakdown } from './lib/daemon';
import { measureFootprint, memorySteps, type Footprint } from './lib/footprint';
import { timeCommits } from './lib/sqlite-cost';
import { costliest, fullScan, readProbe, statementTable, type CostlyStatement } from './lib/sqlite-report';
import type { SqliteProbe } from './sqlite-probe';
import { busyMs, busyShare, newestProfile, profileMarkdown, summariseProfile, type ProfileSummary } from './lib/profile';
import { num, type Row, type SectionResult } from './lib/report';
import { deliverToMaildir, startWorld, type World } from './lib/setup';
import { fmt, perSecond, waitUntil } from './lib/stats';

/**
 * The options src/parse/notification.ts passes to simpleParser (a copy: it does not export them;
 * keep in step). The baseline parses the way the daemon does, so it is the daemon's ceiling.
 */
const DAEMON_PARSE_OPTIONS = { skipHtmlToText: true, skipImageLinks: true, skipTextLinks: true, skipTextToHtml: true } as const;
/** src/deliver/mailer.ts's pool size. */
const DAEMON_SMTP_CONNECTIONS = 2;
const FROM = 'Acme Software <sales@acme.example>';
const ENVELOPE_FROM = 'sales@acme.example';

export interface BacklogOptions {
  readonly count: number;
  /** work a third backlog under node --cpu-prof and summarise where the time goes */
  readonly profile: boolean;
}

const email = (n: number): string => `bl${n}@example.net`;
const sale = (n: number): string => kagiSale(n, `Buyer ${n}`, email(n));
const range = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => from + i);

interface Stage {
  readonly name: string;
  readonly ms: number;
  readonly count: number;
  /** counts for the target (the daemon's own stages); false: shown for understanding only */
  readonly ceiling: boolean;
}

async function fetchBaselines(world: World, count: number): Promise<{ stages: Stage[]; sources: Buffer[]; scanMs: number }> {
  const client = new ImapFlow({
    host: world.dovecot.host,
    port: world.dovecot.port,
    secure: false,
    auth: { user: world.dovecot.user, pass: world.dovecot.pass },
    logger: false,
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    let t = performance.now();
    // The first SELECT after the drop makes Dovecot scan new/ and give the files UIDs.
    await client.mailboxOpen('INBOX', { readOnly: true });
    const scanMs = performance.now() - t;
    t = performance.now();
    const all = await client.fetchAll('1:*', { uid: true, source: true });
    const oneCommandMs = performance.now() - t;
    const sources = all.map((m) => m.source).filter((s): s is Buffer => s !== undefined);
    if (sources.length !== count) throw new Error(`FETCH returned ${sources.length} sources, expected ${count}`);
    // The daemon's way: UIDs by SEARCH, then per 50 UIDs a FETCH of sizes and a FETCH of sources.
    t = performance.now();
    const found = await client.search({ all: true }, { uid: true });
    const uids = Array.isArray(found) ? found : [];
    for (let i = 0; i < uids.length; i += 50) {
      const batch = uids.slice(i, i + 50).join(',');
      await client.fetchAll(batch, { uid: true, size: true }, { uid: true });
      await client.fetchAll(batch, { uid: true, source: true }, { uid: true });
    }
    const batchedMs = performance.now() - t;
    return {
      scanMs,
      sources,
      stages: [
        { name: 'imapflow FETCH uid+source, one command', ms: oneCommandMs, count, ceiling: true },
        { name: "imapflow SEARCH, then per 50 UIDs FETCH size + FETCH source (the daemon's pattern)", ms: batchedMs, count, ceiling: false },
      ],
    };
  } finally {
    await client.logout().catch(() => client.close());
  }
}

async function parseBaselines(sources: readonly Buffer[]): Promise<Stage[]> {
  let t = performance.now();
  for (const source of sources) await simpleParser(source, DAEMON_PARSE_OPTIONS);
  const daemonOptionsMs = performance.now() - t;
  t = performance.now();
  for (const source of sources) await simpleParser(source);
  const defaultsMs = performance.now() - t;
  return [
    { name: "mailparser simpleParser, the daemon's options (skip HTML↔text, links)", ms: daemonOptionsMs, count: sources.length, ceiling: true },
    { name: 'mailparser simpleParser, default options', ms: defaultsMs, count: sources.length, ceiling: false },
  ];
}

/** The buyer mails the daemon will send for these orders, built by the project's renderer. */
async function buyerMails(numbers: readonly number[]): Promise<{ to: string; raw: Buffer }[]> {
  const renderer = new Renderer(path.join(PROJECT_ROOT, 'templates'), FROM);
  const mails: { to: string; raw: Buffer }[] = [];
  for (const n of numbers) {
    const { raw } = await renderer.buildBuyerMail(
      'serial',
      {
        buyer: { name: `Buyer ${n}`, email: `base-${email(n)}` },
        licenseName: `Buyer ${n}`,
        product: { id: 'widget-pro', name: 'Widget Pro' },
        serials: ['0A1B-2C3D-4E5F-6A7B-8C9D-0E1F-2A3B-4C5D'],
        quantity: 1,
        order: { id: `9000-${n}-0001`, vendor: 'kagi' },
        test: false,
      },
      `bench:${n}`,
    );
    mails.push({ to: `base-${email(n)}`, raw });
  }
  return mails;
}

function baselineTransport(world: World): Transporter {
  return nodemailer.createTransport({
    pool: true,
    maxConnections: DAEMON_SMTP_CONNECTIONS,
    host: world.sink.host,
    port: world.sink.port,
    secure: false,
    ignoreTLS: true,
  });
}

/** All mails queued at once: the pool keeps both connections busy (the stage's ceiling). Milliseconds to the last arrival. */
async function sendPooled(world: World, mails: readonly { to: string; raw: Buffer }[]): Promise<number> {
  const transport = baselineTransport(world);
  try {
    const base = world.sink.messages.length;
    const t = performance.now();
    await Promise.all(mails.map((m) => transport.sendMail({ envelope: { from: ENVELOPE_FROM, to: [m.to] }, raw: m.raw })));
    await world.sink.waitForCount(base + mails.length, 60_000);
    return lastArrival(world.sink.messages.slice(base)) - t;
  } finally {
    transport.close();
  }
}

const POOLED = `nodemailer pool (${DAEMON_SMTP_CONNECTIONS} connections, as the daemon's) → the same SMTP sink, all queued at once`;

async function smtpBaselines(world: World, mails: readonly { to: string; raw: Buffer }[]): Promise<Stage[]> {
  const pooledMs = await sendPooled(world, mails);
  const transport = baselineTransport(world);
  try {
    // one in flight, each awaited: what a single-lane outbox gets (src/outbox.ts uses one lane per connection)
    const base = world.sink.messages.length;
    const t = performance.now();
    for (const m of mails) await transport.sendMail({ envelope: { from: ENVELOPE_FROM, to: [m.to] }, raw: m.raw });
    const sequentialMs = lastArrival(world.sink.messages.slice(base)) - t;
    return [
      { name: POOLED, ms: pooledMs, count: mails.length, ceiling: true },
      { name: "nodemailer pool → the same SMTP sink, one mail in flight at a time (a single-lane outbox, for comparison)", ms: sequentialMs, count: mails.length, ceiling: false },
    ];
  } finally {
    transport.close();
  }
}

function sqliteBaseline(dir: string, sources: readonly Buffer[], synchronous: 'FULL' | 'NORMAL'): Stage {
  return {
    name:
      synchronous === 'FULL'
        ? "better-sqlite3, WAL + synchronous=FULL (the daemon's settings for commits that fsync as they commit), one row (with the message) per transaction"
        : 'better-sqlite3, WAL + synchronous=NORMAL (no fsync per commit), the same rows',
    ms: timeCommits(dir, sources, synchronous),
    count: sources.length,
    ceiling: synchronous === 'FULL',
  };
}

function lastArrival(mails: readonly ReceivedMail[]): number {
  return mails.reduce((max, m) => Math.max(max, m.receivedAt), Number.NEGATIVE_INFINITY);
}

interface Ledger {
  orders: number;
  distinctKeys: number;
  sent: number;
  outbox: number;
  outboxSent: number;
}

function ledger(dbFile: string): Ledger {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const o = db.prepare(`SELECT count(*) AS orders, count(DISTINCT order_key) AS distinctKeys, coalesce(sum(state = 'sent'), 0) AS sent FROM orders`).get() as {
      orders: number;
      distinctKeys: number;
      sent: number;
    };
    const m = db.prepare(`SELECT count(*) AS outbox, coalesce(sum(sent_at IS NOT NULL), 0) AS outboxSent FROM outbox WHERE kind = 'serial'`).get() as {
      outbox: number;
      outboxSent: number;
    };
    return { ...o, ...m };
  } finally {
    db.close();
  }
}

/** Buyer mails addressed to bl<n>@example.net for n in numbers: each exactly once, no other mail. */
function exactlyOnceAtSink(mails: readonly ReceivedMail[], numbers: readonly number[]): { ok: boolean; detail: string } {
  const wanted = new Set(numbers.map(email));
  const counts = new Map<string, number>();
  let others = 0;
  for (const m of mails) {
    for (const to of m.to) {
      if (wanted.has(to)) counts.set(to, (counts.get(to) ?? 0) + 1);
      else others++;
    }
  }
  const missing = [...wanted].filter((w) => !counts.has(w)).length;
  const twice = [...counts.values()].filter((c) => c > 1).length;
  return { ok: missing === 0 && twice === 0 && others === 0, detail: `${counts.size} buyers reached, ${missing} missing, ${twice} more than once, ${others} other mails` };
}

interface Phase {
  readonly ms: number;
  /** time from the daemon's "IMAP connected" (first phase) or the delivery (second) to the last mail */
  readonly workMs: number;
  readonly sinkCheck: { ok: boolean; detail: string };
  readonly ledger: Ledger;
  readonly hwm: number;
  readonly highestSample: number;
  /** where the memory lay at (within a megabyte of) the highest sample */
  readonly breakdown: RssBreakdown | null;
  readonly rssAfter: number;
}

/** Waits until the sink holds `total` mails; fails at once, with the daemon's last output, if the daemon exits first. */
async function mailsOrExit(world: World, total: number, daemon: BenchDaemon, timeoutMs: number): Promise<void> {
  let waiting = true;
  const exited = daemon.exited.then((code) => {
    if (waiting) throw new Error(`the daemon exited (code ${String(code)}) with ${world.sink.messages.length} of ${total} mails at the sink:\n${daemon.tail().slice(-3000)}`);
  });
  exited.catch(() => undefined);
  try {
    await Promise.race([world.sink.waitForCount(total, timeoutMs), exited]);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // the sink's own timeout message lists every mail: the daemon's output says more
    throw new Error(`${message.slice(0, 300)}\ndaemon output (last lines):\n${daemon.tail().slice(-3000)}`);
  } finally {
    waiting = false;
  }
}

async function settle(dbFile: string, expectedOrders: number, daemon: BenchDaemon): Promise<Ledger> {
  let last: Ledger | null = null;
  await waitUntil(
    () => {
      last = ledger(dbFile);
      return last.sent >= expectedOrders && last.outboxSent >= expectedOrders;
    },
    60_000,
    `${expectedOrders} orders marked sent (daemon output: ${daemon.tail().slice(-2000)})`,
    50,
  );
  // The moves to Processed and the last log writes finish; RSS is read at rest.
  await sleep(1000);
  return ledger(dbFile);
}

/** What bounds memory, from this run's numbers. */
function memoryNotes(p1: Phase, p2: Phase, footprint: Footprint): string[] {
  const floor = footprint.withDaemonCode;
  const peak = Math.max(p1.hwm, p2.hwm);
  const lines = [
    `Before it does anything, a node process with keymailer's code loaded is at ${fmt(floor / MB, 1)} MB (bench/footprint-child.ts): ` +
      `node alone ${fmt(footprint.nodeAlone / MB, 1)} MB, and the packages keymailer loads at start add, largest first: ` +
      `${memorySteps(footprint, 6)}. ` +
      (floor / MB >= 100
        ? 'That floor alone is above the 100 MB target, before any work.'
        : `That floor leaves ${fmt(100 - floor / MB, 1)} MB of the 100 MB target for the work itself.`),
    `Working the backlog adds ${fmt((peak - floor) / MB, 1)} MB on top (peak ${fmt(peak / MB, 1)} MB), and at rest afterwards the ` +
      `process stays at ${fmt(p2.rssAfter / MB, 1)} MB, with the node flags keymailer ships with (${nodeFlags().join(' ')}, package.json ` +
      'config.nodeFlags), which keep V8 from growing its young generation to 32 MB and its old space far past what is live.',
    ...[p1, p2].flatMap((p, i) =>
      p.breakdown === null
        ? []
        : [
            `At the ${i === 0 ? 'first' : 'second'} backlog's highest sample (/proc/<pid>/smaps): the node executable's own pages ` +
              `(its code, V8's built-ins, ICU data) ${fmt(p.breakdown.nodeBinary / MB, 1)} MB, anonymous memory (V8's heap, thread ` +
              `stacks) ${fmt(p.breakdown.anonymous / MB, 1)} MB, malloc's heap (SQLite's cache, buffers, native allocations) ` +
              `${fmt(p.breakdown.mallocHeap / MB, 1)} MB, other mapped files ${fmt(p.breakdown.otherFiles / MB, 1)} MB.`,
          ],
    ),
    `From the first backlog to the second, the resting RSS changed by ${fmt(100 * (p2.rssAfter / p1.rssAfter - 1), 1)} % and the peak by ` +
      `${fmt(100 * (p2.hwm / p1.hwm - 1), 1)} %: the growth target is about what accumulates per order, the peak target about the floor above.`,
  ];
  return [`What bounds memory, measured in this run:\n\n${lines.map((l) => `- ${l}`).join('\n')}`];
}

export async function backlog(options: BacklogOptions): Promise<SectionResult[]> {
  const n = options.count;
  const world = await startWorld();
  const dbFile = path.join(world.dir, 'data', 'keymailer.db');
  const first = range(1, n);
  const second = range(n + 1, n);
  const third = range(2 * n + 1, n);
  let profileNote: string | null = null;
  let profile: ProfileSummary | null = null;
  let probe: SqliteProbe | null = null;
  let statements: CostlyStatement[] = [];
  let profileCopy: string | null = null;
  let code: number | null = null;
  const phases: Phase[] = [];
  let stages: Stage[] = [];
  let scanMs = Number.NaN;
  let startLineMs = Number.NaN;
  let mailboxAfter = { inbox: -1, processed: -1 };
  const footprint = await measureFootprint();
  try {
    deliverToMaildir(world.dovecot, first.map(sale), 1);
    const fetched = await fetchBaselines(world, n);
    scanMs = fetched.scanMs;
    stages = [...fetched.stages, ...(await parseBaselines(fetched.sources))];
    const baselineMails = await buyerMails(first);
    stages.push(...(await smtpBaselines(world, baselineMails)));
    stages.push(sqliteBaseline(world.dir, fetched.sources, 'FULL'), sqliteBaseline(world.dir, fetched.sources, 'NORMAL'));

    // --- the daemon, first backlog
    const base = world.sink.messages.length;
    const daemon = startBenchDaemon({ config: world.config, env: world.env, logFile: path.join(world.dir, 'daemon.log') });
    try {
      let sampler = new RssSampler(daemon.pid).start();
      const connectedAt = daemon.waitForLine(/IMAP connected/, 60_000);
      await mailsOrExit(world, base + n, daemon, 60_000 + n * 50);
      const firstMails = world.sink.messages.slice(base, base + n);
      const lastMail = lastArrival(firstMails);
      startLineMs = (await connectedAt) - daemon.spawnedAt;
      let after = await settle(dbFile, n, daemon);
      let mem = memoryOf(daemon.pid);
      let samples = sampler.stop();
      phases.push({
        ms: lastMail - daemon.spawnedAt,
        workMs: lastMail - (await connectedAt),
        sinkCheck: exactlyOnceAtSink(world.sink.messages.slice(base), first),
        ledger: after,
        hwm: mem?.hwm ?? Number.NaN,
        highestSample: samples.highest,
        breakdown: samples.breakdown,
        rssAfter: mem?.rss ?? Number.NaN,
      });

      // --- second backlog into the running daemon (it is IDLE-ing: Dovecot tells it of new/)
      if (!resetPeak(daemon.pid)) throw new Error('cannot reset the peak RSS mark (/proc/<pid>/clear_refs)');
      sampler = new RssSampler(daemon.pid).start();
      const base2 = world.sink.messages.length;
      const delivered = performance.now();
      deliverToMaildir(world.dovecot, second.map(sale), n + 1);
      await mailsOrExit(world, base2 + n, daemon, 60_000 + n * 50);
      const lastMail2 = lastArrival(world.sink.messages.slice(base2, base2 + n));
      after = await settle(dbFile, 2 * n, daemon);
      mem = memoryOf(daemon.pid);
      samples = sampler.stop();
      phases.push({
        ms: lastMail2 - delivered,
        workMs: lastMail2 - delivered,
        sinkCheck: exactlyOnceAtSink(world.sink.messages.slice(base2), second),
        ledger: after,
        hwm: mem?.hwm ?? Number.NaN,
        highestSample: samples.highest,
        breakdown: samples.breakdown,
        rssAfter: mem?.rss ?? Number.NaN,
      });
      mailboxAfter = await withImap(world.dovecot, async (client) => {
        const inbox = await client.status('INBOX', { messages: true });
        const processed = await client.status('Processed', { messages: true });
        const count = (status: typeof inbox): number => (status === false ? -1 : (status.messages ?? -1));
        return { inbox: count(inbox), processed: count(processed) };
      });
    } finally {
      code = await daemon.stop();
    }
    // The slowest stage once more, now the daemon is done: the machine's speed drifts over a run, and
    // the mean of before and after puts the daemon's run in the middle of the baseline's.
    const pooledAfter = await sendPooled(world, baselineMails);
    stages = stages.map((st) =>
      st.name === POOLED ? { ...st, name: `${POOLED}; the mean of a run before the daemon (${fmt(st.ms, 0)} ms) and one after it (${fmt(pooledAfter, 0)} ms)`, ms: (st.ms + pooledAfter) / 2 } : st,
    );

    if (options.profile) {
      const profDir = path.join(world.dir, 'profile');
      deliverToMaildir(world.dovecot, third.map(sale), 2 * n + 1);
      const base3 = world.sink.messages.length;
      const probeFile = path.join(world.dir, 'sqlite-probe.json');
      const profiled = startBenchDaemon({
        config: world.config,
        logFile: path.join(world.dir, 'daemon-profiled.log'),
        env: { ...world.env, KEYMAILER_BENCH_SQLITE: probeFile },
        execArgv: ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--require', path.join(__dirname, 'sqlite-probe.js')],
      });
      try {
        await mailsOrExit(world, base3 + n, profiled, 120_000 + n * 100);
        await settle(dbFile, 3 * n, profiled);
      } finally {
        await profiled.stop();
      }
      probe = readProbe(probeFile);
      if (probe !== null) statements = costliest(probe, dbFile);
      const file = newestProfile(profDir);
      if (file === null) profileNote = 'The profiled daemon wrote no .cpuprofile.';
      else {
        const keepDir = path.join(os.tmpdir(), 'keymailer-bench-profiles');
        fs.mkdirSync(keepDir, { recursive: true });
        profileCopy = path.join(keepDir, `backlog-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
        fs.copyFileSync(file, profileCopy);
        profile = { ...summariseProfile(file), file: profileCopy };
        profileNote = profileMarkdown(profile);
      }
    }
  } finally {
    await world.close();
  }

  const [p1, p2] = phases;
  if (!p1 || !p2) throw new Error('the backlog phases did not complete');
  const ceilings = stages.filter((s) => s.ceiling);
  const slowest = ceilings.reduce((a, b) => (perSecond(a.count, a.ms) <= perSecond(b.count, b.ms) ? a : b));
  const slowestRate = perSecond(slowest.count, slowest.ms);
  const rate = perSecond(n, p1.ms);
  const ratio = rate / slowestRate;
  const workRate = perSecond(n, p1.workMs);
  const secondRate = perSecond(n, p2.ms);
  const onceOk = (p: Phase, expected: number): boolean =>
    p.sinkCheck.ok && p.ledger.orders === expected && p.ledger.distinctKeys === expected && p.ledger.sent === expected && p.ledger.outbox === expected && p.ledger.outboxSent === expected;

  const stageTable = [
    '| stage, on the same messages | time | rate | counts for the target |',
    '| --- | --- | --- | --- |',
    ...stages.map((s) => `| ${s.name} | ${fmt(s.ms, 0)} ms | ${fmt(perSecond(s.count, s.ms), 0)} msg/s | ${s.ceiling ? (s === slowest ? 'yes (slowest)' : 'yes') : 'no (for understanding)'} |`),
  ].join('\n');

  const rows: Row[] = [
    {
      measure: `rate over ${fmt(n)} waiting notifications (daemon start → last buyer mail accepted)`,
      value: num(rate, 'msg/s'),
      baseline: num(slowestRate, 'msg/s'),
      baselineLabel: `slowest stage: ${slowest.name}`,
      comparison: `${fmt(ratio, 2)}×`,
      target: '≥ 0.5× the slowest stage',
      met: ratio >= 0.5,
    },
    { measure: 'time to the last buyer mail, from spawning the daemon', value: num(p1.ms, 'ms') },
    { measure: 'the same, from the daemon\'s "IMAP connected" log line', value: num(p1.workMs, 'ms'), comparison: `${fmt(workRate, 0)} msg/s` },
    { measure: `second backlog of ${fmt(n)} into the running daemon (delivery → last buyer mail, incl. Dovecot's IDLE delay)`, value: num(p2.ms, 'ms'), comparison: `${fmt(secondRate, 0)} msg/s` },
  ];
  const notes: string[] = [];
  const full = stages.find((st) => st.ceiling && st.name.includes('synchronous=FULL'));
  const normal = stages.find((st) => !st.ceiling && st.name.includes('synchronous=NORMAL'));
  if (!(ratio >= 0.5)) {
    const bounds: string[] = [
      `The daemon works ${fmt(rate, 0)} notifications/s against the slowest stage's ${fmt(slowestRate, 0)}/s; counted from its ` +
        `"IMAP connected" line it is ${fmt(workRate, 0)}/s` +
        (workRate < 0.5 * slowestRate ? ', so start-up is not what holds it back.' : ': without its start-up it would meet the target.'),
    ];
    if (profile !== null) {
      const idle = (100 * profile.idleMs) / (profile.totalMs || 1);
      bounds.push(
        `Its main thread was busy ${fmt(100 - idle, 0)} % of the profiled backlog and idle ${fmt(idle, 0)} %: ` +
          (idle < 50
            ? 'it is bound mostly by its own work on that one thread (JavaScript and the synchronous SQLite calls, fsync included), ' +
              'not by waiting for Dovecot or the SMTP server.'
            : 'it spends more time waiting for Dovecot, the SMTP server or timers than working.'),
      );
    }
    const perNotificationMs = 1000 / workRate;
    for (const st of statements.slice(0, 3)) {
      const table = fullScan(st.plan);
      if (table === null || st.ms / n < 0.05 * perNotificationMs) continue;
      let line =
        `\`${st.sql.slice(0, 100)}${st.sql.length > 100 ? '…' : ''}\` ran ${fmt(st.calls / n, 2)} times per notification at ` +
        `${fmt(st.ms / st.calls, 2)} ms per call in the profiled backlog: ${fmt(st.ms / n, 2)} ms per notification, ` +
        `${fmt((100 * st.ms) / n / perNotificationMs, 0)} % of the daemon's time per notification. SQLite plans it as \`${st.plan}\` ` +
        `on the daemon's database: every call reads the whole ${table} table, so it slows down as the table grows.`;
      if (/FROM outbox WHERE sent_at IS NULL/i.test(st.sql) && /ORDER BY id/i.test(st.sql)) {
        line +=
          ' (This is Store.dueMail, the outbox asking for due mail: after every pass and every kick. Its `ORDER BY id` keeps SQLite ' +
          'from using the partial index outbox_unsent; `ORDER BY next_attempt_at, id` uses it.)';
      }
      bounds.push(line);
    }
    if (profile !== null) {
      const prepare = busyShare(profile, busyMs(profile, /^prepare \(better-sqlite3/));
      if (prepare > 2) {
        bounds.push(
          `better-sqlite3's prepare() is ${fmt(prepare, 1)} % of the busy time: src/record/store.ts compiles its SQL anew on every ` +
            'call (this.db.prepare(...).run(...)); preparing each statement once and keeping the Statement removes that.',
        );
      }
    }
    if (full && normal) {
      const fullUs = (1000 * full.ms) / full.count;
      const normalUs = (1000 * normal.ms) / normal.count;
      let line =
        `A one-row commit costs ${fmt(fullUs, 0)} µs here with synchronous=FULL and ${fmt(normalUs, 0)} µs with NORMAL (stage table). ` +
        "The daemon's batch commits and sent-marks run with NORMAL and leave their fsync to one fdatasync off the main thread " +
        '(src/record/wal-sync.ts); any other commit pays the FULL fsync on the thread.';
      if (probe !== null) {
        const perNotification = (probe.transactions + probe.autocommits) / n;
        const autocommitted = Object.entries(probe.bySql)
          .filter(([, st]) => st.autocommits > 0)
          .sort((a, b) => b[1].autocommits - a[1].autocommits)
          .slice(0, 4)
          .map(([sql, st]) => `\`${sql.slice(0, 60)}…\` ${fmt(st.autocommits / n, 2)}`)
          .join(', ');
        const share = (perNotification * (fullUs - normalUs)) / 1000 / (1000 / workRate);
        line +=
          ` Counted in the profiled backlog (bench/sqlite-probe.ts): ${fmt(perNotification, 2)} commits per notification, ` +
          `${fmt(probe.transactions / n, 2)} transactions and ${fmt(probe.autocommits / n, 2)} autocommits (${autocommitted}). ` +
          `Had every one of them paid the fsync on the thread (FULL − NORMAL), that would be about ${fmt(100 * share, 0)} % of the ` +
          "daemon's time per notification.";
      }
      bounds.push(line);
    }
    if (profile !== null) {
      const mailer = busyShare(profile, busyMs(profile, /^nodemailer$/, 'category'));
      const aborts = busyShare(profile, busyMs(profile, /^DOMException /));
      if (mailer > 10) {
        bounds.push(
          `nodemailer is ${fmt(mailer, 1)} % of the busy time (building the buyer mail with MailComposer, then streaming it to the server)` +
            (aborts > 0.5
              ? `; ${fmt(aborts, 1)} % goes to DOMException: node's stream.pipeline, which nodemailer's MimeNode uses per part, creates an ` +
                'AbortError with a stack trace each time a pipeline finishes. The bare nodemailer stage pays this too.'
              : '.'),
        );
      }
    }
    notes.push(`What bounds the backlog rate, measured in this run:\n\n${bounds.map((b) => `- ${b}`).join('\n')}`);
  }
  if (profileNote !== null) {
    notes.push(
      `Where the daemon's time goes while it works a backlog of ${fmt(n)} (a third backlog, worked by a daemon started with ` +
        `\`node --cpu-prof\`, start-up included; profile kept at \`${profileCopy ?? 'n/a'}\`: open it in Chrome DevTools → Performance).`,
    );
    notes.push(profileNote);
    if (statements.length > 0) {
      notes.push(`The SQLite statements that took the daemon the most time in that backlog (bench/sqlite-probe.ts; time includes fsync):\n\n${statementTable(statements, n, 'notification')}`);
    }
  } else if (!(ratio >= 0.5)) {
    notes.push('Run `npm run bench -- --profile` to see where the daemon\'s time goes while it works a backlog.');
  }

  const backlogSection: SectionResult = {
    id: 'backlog',
    title: '2. Backlog',
    method:
      `${fmt(n)} Kagi notifications are delivered straight into the private Dovecot's Maildir (new/, see bench/lib/setup.ts: ` +
      'APPENDing thousands takes minutes and slows as the box grows), then each stage is measured alone on those same messages ' +
      '(FETCH, parse, send, commit), then the daemon is started (daemon mode, as under pm2, with the node flags it ships with) ' +
      'and works them, then the slowest stage, sending, is measured once more (its rate counts as the mean of both runs, so a ' +
      'slow spell of this noisy machine lands on both sides). Its rate is ' +
      `${fmt(n)} ÷ (spawn → the last buyer mail's end of DATA at the sink), start-up included. Every order must reach the sink ` +
      'exactly once and be recorded once, as sent, in the daemon\'s database.',
    rows,
    tables: [stageTable],
    details: [
      `Dovecot's first SELECT after the drop (scanning new/ and giving ${fmt(n)} files UIDs) took ${fmt(scanMs, 0)} ms; it is in the FETCH baseline's session, not in the daemon's time`,
      `daemon spawn → "IMAP connected": ${fmt(startLineMs, 0)} ms`,
      `first backlog: sink ${p1.sinkCheck.detail}; database: ${p1.ledger.orders} orders (${p1.ledger.distinctKeys} distinct keys), ${p1.ledger.sent} sent, outbox ${p1.ledger.outboxSent}/${p1.ledger.outbox} sent`,
      `second backlog: sink ${p2.sinkCheck.detail}; database after both: ${p2.ledger.orders} orders (${p2.ledger.distinctKeys} distinct keys), ${p2.ledger.sent} sent, outbox ${p2.ledger.outboxSent}/${p2.ledger.outbox} sent`,
      `mailbox after both: INBOX ${mailboxAfter.inbox} messages, Processed ${mailboxAfter.processed}`,
    ],
    checks: {
      [`first backlog: each of the ${fmt(n)} orders mailed exactly once and recorded once as sent`]: onceOk(p1, n),
      [`second backlog: each of the ${fmt(n)} orders mailed exactly once and recorded once as sent`]: onceOk(p2, 2 * n),
      'every notification moved out of INBOX into Processed': mailboxAfter.inbox === 0 && mailboxAfter.processed === 2 * n,
      'the daemon stopped cleanly (exit 0 on SIGTERM)': code === 0,
    },
    notes,
  };

  const peak = Math.max(p1.hwm, p2.hwm);
  const growth = p2.rssAfter / p1.rssAfter - 1;
  const memorySection: SectionResult = {
    id: 'memory',
    title: '4. Memory',
    method:
      'The daemon of the backlog benchmark, read from /proc/<pid>/status: VmHWM (the kernel\'s peak RSS mark) at the end of each ' +
      'backlog, the peak mark reset between the two (clear_refs), and VmRSS at rest one second after every order of the backlog ' +
      'is marked sent. VmRSS was also sampled every 25 ms as a cross-check of the peak.',
    rows: [
      {
        measure: `peak RSS, first backlog of ${fmt(n)}`,
        value: num(p1.hwm / MB, 'MB', 1),
        baseline: num(footprint.withDaemonCode / MB, 'MB', 1),
        baselineLabel: "node with keymailer's code loaded, idle",
        comparison: `+${fmt((p1.hwm - footprint.withDaemonCode) / MB, 1)} MB`,
        target: '≤ 100 MB',
        met: p1.hwm / MB <= 100,
      },
      {
        measure: `peak RSS, second backlog of ${fmt(n)}`,
        value: num(p2.hwm / MB, 'MB', 1),
        baseline: num(footprint.withDaemonCode / MB, 'MB', 1),
        baselineLabel: "node with keymailer's code loaded, idle",
        comparison: `+${fmt((p2.hwm - footprint.withDaemonCode) / MB, 1)} MB`,
        target: '≤ 100 MB',
        met: p2.hwm / MB <= 100,
      },
      {
        measure: 'RSS at rest after the second backlog',
        value: num(p2.rssAfter / MB, 'MB', 1),
        baseline: num(p1.rssAfter / MB, 'MB', 1),
        baselineLabel: 'at rest after the first',
        comparison: `${growth >= 0 ? '+' : ''}${fmt(100 * growth, 1)} %`,
        target: '≤ 10 % growth',
        met: growth <= 0.1,
      },
    ],
    details: [
      `highest 25 ms sample of VmRSS: first backlog ${fmt(p1.highestSample / MB, 1)} MB, second ${fmt(p2.highestSample / MB, 1)} MB; peak overall ${fmt(peak / MB, 1)} MB`,
      `peak growth from the first backlog to the second: ${fmt(100 * (p2.hwm / p1.hwm - 1), 1)} %`,
      `the floor, in a fresh process (bench/footprint-child.ts): node alone ${fmt(footprint.nodeAlone / MB, 1)} MB; with keymailer's code ` +
        `loaded (dist/src/cli.js, not run) ${fmt(footprint.withDaemonCode / MB, 1)} MB; the packages it requires add (each with its own ` +
        `dependencies; the largest): ${memorySteps(footprint)}`,
    ],
    checks: {},
    notes: peak / MB <= 100 && growth <= 0.1 ? [] : memoryNotes(p1, p2, footprint),
  };
  return [backlogSection, memorySection];
}
