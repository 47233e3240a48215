/**
 * `npm run bench`: every benchmark of issue 8, keymailer beside the raw limit of each piece it is
 * built on, measured in the same run on the same servers (a private Dovecot, an SMTP sink, loopback).
 *
 *   node dist/bench/run.js            full sizes (about five minutes); writes bench/RESULTS.md
 *   node dist/bench/run.js --quick    tiny sizes (well under a minute); prints the report, writes nothing
 *   options: --profile   (quick) also profile the daemon on the backlog (always done on a full run)
 *            --only a,b  run only these sections (time-to-buyer, backlog, signed-posts, startup,
 *                        micro); prints, never writes RESULTS.md (it holds complete runs only)
 *            --out FILE  also write the report to FILE
 *
 * Exit code: 0 when every benchmark ran and every correctness check held (a missed speed target
 * is reported, not an error); 1 when a benchmark failed or a check (every order exactly once, …)
 * did not hold; 2 for bad arguments. The last stdout line is a JSON summary for the quick test.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { PROJECT_ROOT } from '../test/support/cli';
import { freePort } from '../test/support/dovecot';
import { backlog } from './backlog';
import { machineLines, packageVersions } from './lib/machine';
import { SUMMARY_MARKER, renderMarkdown, summarise, type FailedSection, type SectionResult } from './lib/report';
import { micro } from './micro';
import { signedPosts } from './signed-posts';
import { startup } from './startup';
import { timeToBuyer } from './time-to-buyer';

const SECTIONS = ['time-to-buyer', 'backlog', 'signed-posts', 'startup', 'micro'] as const;
type SectionId = (typeof SECTIONS)[number];

interface Args {
  readonly quick: boolean;
  readonly profile: boolean;
  readonly only: readonly SectionId[] | null;
  readonly out: string | null;
}

function parseArgs(argv: readonly string[]): Args | string {
  let quick = false;
  let profile = false;
  let only: SectionId[] | null = null;
  let out: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--quick') quick = true;
    else if (a === '--profile') profile = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const list = a.startsWith('--only=') ? a.slice('--only='.length) : argv[++i];
      if (!list) return '--only needs a list of sections';
      only = [];
      for (const name of list.split(',')) {
        const id = SECTIONS.find((s) => s === name.trim());
        if (!id) return `unknown section "${name}"; known: ${SECTIONS.join(', ')}`;
        only.push(id);
      }
    } else if (a === '--out' || a.startsWith('--out=')) {
      out = a.startsWith('--out=') ? a.slice('--out='.length) : (argv[++i] ?? null);
      if (!out) return '--out needs a file';
    } else return `unknown argument "${a}"`;
  }
  return { quick, profile: profile || !quick, only, out };
}

/** The 1-minute load average from /proc/loadavg ('?' elsewhere). */
function loadAverage(): string {
  try {
    return fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0] ?? '?';
  } catch {
    return '?';
  }
}

function say(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (typeof args === 'string') {
    process.stderr.write(`bench: ${args}\nusage: node dist/bench/run.js [--quick] [--profile] [--only a,b] [--out FILE]\n`);
    return 2;
  }
  const startedAt = new Date();
  const t0 = performance.now();
  const wanted = (id: SectionId): boolean => args.only === null || args.only.includes(id);
  const sections: SectionResult[] = [];
  const failed: FailedSection[] = [];
  const run = async (id: SectionId, title: string, body: () => Promise<SectionResult | SectionResult[]>): Promise<void> => {
    if (!wanted(id)) return;
    say(`${title}…`);
    const t = performance.now();
    const loadBefore = loadAverage();
    try {
      const result = await body();
      // Other processes on the machine take CPU from both sides of a ratio: the load says how much.
      const load = `load average (1 min) before and after this benchmark: ${loadBefore} → ${loadAverage()} (${os.cpus().length} cores)`;
      const list = Array.isArray(result) ? result : [result];
      sections.push(...list.map((r) => ({ ...r, details: [...r.details, load] })));
      say(`${title}: done in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    } catch (err) {
      // a sink timeout lists every message received: keep the report readable
      const full = err instanceof Error ? (err.stack ?? err.message) : String(err);
      const error = full.length > 3000 ? `${full.slice(0, 3000)} … (${full.length - 3000} more characters)` : full;
      failed.push({ id, title, error });
      say(`${title}: FAILED: ${error}`);
    }
  };

  const q = args.quick;
  await run('time-to-buyer', '1. Time to the buyer', () => timeToBuyer({ count: q ? 3 : 100, gapMs: 1000 }));
  await run('backlog', '2. Backlog and 4. Memory', () => backlog({ count: q ? 100 : 2000, profile: args.profile }));
  await run('signed-posts', '3. Signed POSTs', () => signedPosts({ seconds: q ? 1 : 10, rounds: q ? 1 : 2, warmupSeconds: q ? 0 : 2, profile: args.profile }));
  await run('startup', '5. Start-up', async () => startup({ runs: q ? 3 : 7, httpPort: await freePort() }));
  await run('micro', '6. Serial generation and template rendering', () => micro({ perRound: q ? 300 : 5000 }));

  const order = ['time-to-buyer', 'backlog', 'signed-posts', 'memory', 'startup', 'micro'];
  sections.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  const command = `npm run bench${q || args.only || args.out ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const markdown = renderMarkdown(
    { quick: q, startedAt, durationMs: performance.now() - t0, machine: machineLines(), versions: packageVersions(), command },
    sections,
    failed,
  );
  const complete = !q && args.only === null;
  if (complete) {
    const file = path.join(PROJECT_ROOT, 'bench', 'RESULTS.md');
    fs.writeFileSync(file, markdown);
    say(`wrote ${file}`);
  } else {
    process.stdout.write(markdown);
  }
  if (args.out) {
    fs.writeFileSync(args.out, markdown);
    say(`wrote ${args.out}`);
  }
  const summary = summarise(q, sections, failed);
  process.stdout.write(`${SUMMARY_MARKER}${JSON.stringify(summary)}\n`);
  const checksHold = sections.every((s) => Object.values(s.checks).every(Boolean));
  if (!checksHold) say('a correctness check did not hold: see the report');
  return failed.length === 0 && checksHold ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Dovecot's exit hook and closed sockets let the process end; a stray handle must not keep it.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
