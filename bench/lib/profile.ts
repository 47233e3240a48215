/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and says where the time went: by package or project
 * file, and by function. Native frames (SQLite's statement calls, crypto, socket writes) have no
 * script URL: their time is charged to the nearest caller that has one, with the native function
 * named, so "record/store.js → run" reads as SQLite work started by the store.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fmt } from './stats';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  /** share of the profile with the main thread waiting (V8's "(idle)") */
  readonly idleMs: number;
  readonly gcMs: number;
  /** [category, ms], largest first; categories: a package, a project file, or (garbage collector)… */
  readonly byCategory: readonly (readonly [string, number])[];
  /** [function @ place, ms], largest first */
  readonly byFunction: readonly (readonly [string, number])[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** "better-sqlite3", "src/record/store.js", "node:internal/…" */
function categoryOf(url: string): string {
  const clean = url.replace(/^file:\/\//, '');
  const nm = clean.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = clean.slice(nm + '/node_modules/'.length).split('/');
    const name = rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? '?');
    return name;
  }
  const dist = clean.lastIndexOf('/dist/');
  if (dist >= 0) return clean.slice(dist + '/dist/'.length);
  if (clean.startsWith('node:')) return 'node core (JS)';
  return clean === '' ? '(native)' : path.basename(clean);
}

/** `skipFirstMs`: leave out the profile's first milliseconds (the daemon's start-up, when only its steady state matters). */
export function summariseProfile(file: string, skipFirstMs = 0): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  // self time per node: each sample is charged the interval up to the next sample
  const self = new Map<number, number>();
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    at += (profile.timeDeltas[i] ?? 0) / 1000;
    const id = profile.samples[i];
    const delta = profile.timeDeltas[i + 1] ?? 0;
    if (id === undefined || at < skipFirstMs) continue;
    self.set(id, (self.get(id) ?? 0) + delta / 1000);
  }
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  let idle = 0;
  let gc = 0;
  for (const [id, ms] of self) {
    const node = byId.get(id);
    if (!node) continue;
    total += ms;
    const name = node.callFrame.functionName;
    if (SPECIAL.has(name) && node.callFrame.url === '') {
      if (name === '(idle)') idle += ms;
      if (name === '(garbage collector)') gc += ms;
      byCategory.set(name, (byCategory.get(name) ?? 0) + ms);
      byFunction.set(name, (byFunction.get(name) ?? 0) + ms);
      continue;
    }
    // native frame: charge the nearest ancestor with a script URL, naming the native function
    let owner: ProfileNode = node;
    const natives: string[] = [];
    // native frames, node's own JS and the bench's instrumentation (sqlite-probe.js) are charged to their caller
    while (owner.callFrame.url === '' || owner.callFrame.url.startsWith('node:') || owner.callFrame.url.includes('/bench/sqlite-probe')) {
      if (owner.callFrame.url === '' && natives.length === 0) natives.push(owner.callFrame.functionName || '(anonymous)');
      if (owner.callFrame.url.includes('/bench/sqlite-probe')) natives.length = 0;
      const up = parent.get(owner.id);
      const next = up === undefined ? undefined : byId.get(up);
      if (!next || SPECIAL.has(next.callFrame.functionName)) break;
      owner = next;
    }
    const category = owner.callFrame.url === '' ? `(native) ${natives[0] ?? name}` : categoryOf(owner.callFrame.url);
    byCategory.set(category, (byCategory.get(category) ?? 0) + ms);
    const where = node.callFrame.url.includes('/bench/sqlite-probe')
      ? `Statement.run (better-sqlite3: the SQLite work itself, fsync included; seen through the bench's SQLite probe), called from ${category}`
      : name === 'wrapSafe' && node.callFrame.url.startsWith('node:')
        ? 'wrapSafe (node compiling each module it loads: start-up)'
        : `${node.callFrame.functionName || '(anonymous)'} (${node.callFrame.url === '' ? `native, called from ${categoryOf(owner.callFrame.url)}` : `${categoryOf(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`})`;
    byFunction.set(where, (byFunction.get(where) ?? 0) + ms);
  }
  const sorted = (m: Map<string, number>): [string, number][] => [...m].sort((a, b) => b[1] - a[1]);
  return { file, totalMs: total, idleMs: idle, gcMs: gc, byCategory: sorted(byCategory), byFunction: sorted(byFunction) };
}

/** Markdown: the category table and the top functions, with shares of the busy (non-idle) time. */
export function profileMarkdown(summary: ProfileSummary, topCategories = 12, topFunctions = 15): string {
  const busy = summary.totalMs - summary.idleMs;
  const pct = (ms: number): string => `${fmt((100 * ms) / (busy || 1), 1)} %`;
  const lines: string[] = [];
  lines.push(
    `Profile \`${path.basename(summary.file)}\`: ${fmt(summary.totalMs, 0)} ms sampled, of which the main thread was idle ` +
      `(waiting for Dovecot, the SMTP server or a timer) ${fmt(summary.idleMs, 0)} ms ` +
      `(${fmt((100 * summary.idleMs) / (summary.totalMs || 1), 1)} %) and busy ${fmt(busy, 0)} ms. ` +
      'Shares below are of the busy time; a native call (SQLite, crypto, socket writes) is charged to the script that made it.',
  );
  lines.push('');
  lines.push('| where (package or project file) | busy ms | share |');
  lines.push('| --- | --- | --- |');
  for (const [name, ms] of summary.byCategory.filter(([n]) => n !== '(idle)').slice(0, topCategories)) {
    lines.push(`| ${name} | ${fmt(ms, 0)} | ${pct(ms)} |`);
  }
  lines.push('');
  lines.push('| function | self ms | share |');
  lines.push('| --- | --- | --- |');
  for (const [name, ms] of summary.byFunction.filter(([n]) => n !== '(idle)').slice(0, topFunctions)) {
    lines.push(`| ${name.replace(/\|/g, '\\|')} | ${fmt(ms, 0)} | ${pct(ms)} |`);
  }
  return lines.join('\n');
}

/** The newest .cpuprofile in dir (node names them CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile). */
export function newestProfile(dir: string): string | null {
  if (!fs.existsSync(dir)) return null;
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => path.join(dir, f))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  return files[0] ?? null;
}

/** Busy milliseconds of the functions (or, with `in: 'category'`, the categories) whose label matches. */
export function busyMs(summary: ProfileSummary, pattern: RegExp, where: 'function' | 'category' = 'function'): number {
  const list = where === 'function' ? summary.byFunction : summary.byCategory;
  return list.filter(([name]) => pattern.test(name)).reduce((sum, [, ms]) => sum + ms, 0);
}

/** ms as a percentage of the busy (non-idle) time */
export const busyShare = (summary: ProfileSummary, ms: number): number => (100 * ms) / (summary.totalMs - summary.idleMs || 1);
