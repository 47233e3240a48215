/**
 * What each benchmark hands back, and how the run turns it into bench/RESULTS.md (or prints it for
 * --quick). Nothing here holds a number of its own: every value comes from a SectionResult.
 */
import { fmt } from './stats';

/** A measured number, or why there is none. */
export type Num = { readonly value: number; readonly unit: string; readonly digits?: number } | { readonly unavailable: string };

export const num = (value: number, unit: string, digits = 0): Num => ({ value, unit, digits });
export const unavailable = (reason: string): Num => ({ unavailable: reason });

export function isValue(n: Num | undefined): n is { readonly value: number; readonly unit: string; readonly digits?: number } {
  return n !== undefined && 'value' in n;
}

export function showNum(n: Num | undefined): string {
  if (n === undefined) return '';
  if (!isValue(n)) return `not available (${n.unavailable})`;
  return `${fmt(n.value, n.digits ?? 0)}${n.unit === '' ? '' : ` ${n.unit}`}`;
}

/** One line of a section's table: keymailer's number beside its baseline, and the verdict. */
export interface Row {
  readonly measure: string;
  readonly value: Num;
  readonly baseline?: Num;
  readonly baselineLabel?: string;
  /** The ratio or difference the target is stated in, already formatted ("0.62×", "+23.1 ms"). */
  readonly comparison?: string;
  readonly target?: string;
  /** true / false; null when it could not be judged (a number is missing). Absent: no target. */
  readonly met?: boolean | null;
}

export interface SectionResult {
  readonly id: string;
  readonly title: string;
  /** One paragraph: what was measured and how. */
  readonly method: string;
  readonly rows: readonly Row[];
  /** Extra measured facts, one bullet each (already formatted). */
  readonly details: readonly string[];
  /** Extra markdown tables of measured numbers (baseline stages...), shown after the main table. */
  readonly tables?: readonly string[];
  /** Correctness checks of the run (every order exactly once...): name → passed. */
  readonly checks: Readonly<Record<string, boolean>>;
  /** Findings for the notes section (profiles, what bounds a missed target). */
  readonly notes: readonly string[];
}

export interface RunInfo {
  readonly quick: boolean;
  readonly startedAt: Date;
  readonly durationMs: number;
  readonly machine: readonly string[];
  readonly versions: readonly string[];
  readonly command: string;
}

export interface FailedSection {
  readonly id: string;
  readonly title: string;
  readonly error: string;
}

const verdict = (met: boolean | null | undefined): string => (met === undefined ? '' : met === null ? 'not judged' : met ? '**met**' : '**missed**');

function table(rows: readonly Row[]): string {
  const head = '| measure | keymailer | baseline | ratio / difference | target | met |\n| --- | --- | --- | --- | --- | --- |';
  const lines = rows.map((r) => {
    const base = r.baseline === undefined ? '' : `${showNum(r.baseline)}${r.baselineLabel ? ` (${r.baselineLabel})` : ''}`;
    return `| ${r.measure} | ${showNum(r.value)} | ${base} | ${r.comparison ?? ''} | ${r.target ?? ''} | ${verdict(r.met)} |`;
  });
  return [head, ...lines].join('\n');
}

export function renderMarkdown(info: RunInfo, sections: readonly SectionResult[], failed: readonly FailedSection[]): string {
  const out: string[] = [];
  out.push(`# keymailer benchmarks${info.quick ? ' (quick run: tiny sizes, not for judging targets)' : ''}`);
  out.push('');
  out.push(
    `Written by \`${info.command}\` on ${info.startedAt.toISOString()} (run took ${fmt(info.durationMs / 1000, 1)} s). ` +
      'Every number below comes from that run; none is typed in. Regenerate with `npm run bench` ' +
      '(about five minutes); `npm run bench -- --quick` runs every benchmark at a tiny size and only prints.',
  );
  out.push('');
  out.push('## Machine');
  out.push('');
  for (const line of info.machine) out.push(`- ${line}`);
  out.push('');
  out.push('## Package versions');
  out.push('');
  out.push(info.versions.join(', '));
  out.push('');
  out.push('## Summary');
  out.push('');
  out.push('| benchmark | target | met |');
  out.push('| --- | --- | --- |');
  for (const s of sections) {
    for (const r of s.rows) if (r.target !== undefined) out.push(`| ${s.title}: ${r.measure} | ${r.target} | ${verdict(r.met)} |`);
    for (const [name, passed] of Object.entries(s.checks)) out.push(`| ${s.title}: ${name} | must hold | ${passed ? '**met**' : '**missed**'} |`);
  }
  for (const f of failed) out.push(`| ${f.title} | the benchmark must run | **failed**: ${f.error.split('\n')[0] ?? ''} |`);
  out.push('');
  for (const s of sections) {
    out.push(`## ${s.title}`);
    out.push('');
    out.push(s.method);
    out.push('');
    out.push(table(s.rows));
    out.push('');
    for (const t of s.tables ?? []) {
      out.push(t);
      out.push('');
    }
    if (Object.keys(s.checks).length > 0) {
      out.push('Checks:');
      out.push('');
      for (const [name, passed] of Object.entries(s.checks)) out.push(`- ${passed ? 'passed' : '**FAILED**'}: ${name}`);
      out.push('');
    }
    if (s.details.length > 0) {
      for (const d of s.details) out.push(`- ${d}`);
      out.push('');
    }
  }
  for (const f of failed) {
    out.push(`## ${f.title}: failed to run`);
    out.push('');
    out.push('```');
    out.push(f.error);
    out.push('```');
    out.push('');
  }
  const notes = sections.flatMap((s) => s.notes.map((n) => ({ title: s.title, n })));
  out.push('## Notes');
  out.push('');
  if (notes.length === 0) out.push('No target was missed and no profile was taken in this run.');
  let last = '';
  for (const { title, n } of notes) {
    if (title !== last) {
      out.push(`### ${title}`);
      out.push('');
      last = title;
    }
    out.push(n);
    out.push('');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

/** The machine-readable line the quick test reads: every number and check of every section. */
export interface Summary {
  readonly quick: boolean;
  readonly sections: readonly {
    readonly id: string;
    readonly values: Readonly<Record<string, number | null>>;
    readonly unavailable: Readonly<Record<string, string>>;
    readonly checks: Readonly<Record<string, boolean>>;
  }[];
  readonly failed: readonly FailedSection[];
}

export const SUMMARY_MARKER = 'KEYMAILER_BENCH_SUMMARY ';

export function summarise(quick: boolean, sections: readonly SectionResult[], failed: readonly FailedSection[]): Summary {
  return {
    quick,
    sections: sections.map((s) => {
      const values: Record<string, number | null> = {};
      const missing: Record<string, string> = {};
      for (const r of s.rows) {
        for (const [key, n] of [
          [r.measure, r.value],
          [`${r.measure} (baseline)`, r.baseline],
        ] as const) {
          if (n === undefined) continue;
          if (isValue(n)) values[key] = n.value;
          else {
            values[key] = null;
            missing[key] = n.unavailable;
          }
        }
      }
      return { id: s.id, values, unavailable: missing, checks: s.checks };
    }),
    failed,
  };
}
