/**
 * A one-line progress bar for long work (`orders --csv` of a big log, --reprocess of hundreds of
 * messages). It draws only on a terminal: under pm2, in cron or into a pipe it writes nothing at all,
 * so logs and redirected output stay clean.
 *
 * Hand-written rather than cli-progress: one bar, redrawn in place, is about sixty lines; what we
 * need beyond that is to stay silent for work that finishes quickly (a bar flashing for 20 ms is
 * noise), which cli-progress cannot do. It also never hides the cursor, so a Ctrl-C mid-bar leaves
 * the terminal as it was, and it is one dependency less on a box that runs for years.
 */

export interface Progress {
  /** Counts n more items done (default 1). Cheap: it redraws at most every intervalMs. */
  tick(n?: number): void;
  /** Erases the bar (if one was drawn), so what follows starts on a clean line. Safe to call twice. */
  done(): void;
}

export interface ProgressOptions {
  /** Nothing is drawn until the work has run this long: quick work stays silent. Default 500 ms. */
  readonly delayMs?: number;
  /** Least time between two redraws, so drawing never slows the work. Default 100 ms. */
  readonly intervalMs?: number;
  /** The clock, for tests. */
  readonly now?: () => number;
}

/** Where the bar goes: a stream that may be a terminal (process.stderr is a tty.WriteStream there). */
export type ProgressStream = NodeJS.WritableStream & { readonly isTTY?: boolean; readonly columns?: number };

/** Does nothing: for callers that decided not to show progress (e.g. their output is the terminal). */
export const NO_PROGRESS: Progress = { tick: () => undefined, done: () => undefined };

export function createProgress(
  total: number,
  label: string,
  stream: ProgressStream = process.stderr,
  options: ProgressOptions = {},
): Progress {
  if (stream.isTTY !== true) return NO_PROGRESS;
  const now = options.now ?? Date.now;
  const delayMs = options.delayMs ?? 500;
  const intervalMs = options.intervalMs ?? 100;
  const started = now();
  let count = 0;
  let lastDraw = Number.NEGATIVE_INFINITY;
  let drawn = false;
  let finished = false;

  const draw = (at: number): void => {
    // columns is 0 or missing when the terminal does not say; 80 is the safe guess.
    const width = Math.max(20, (stream.columns || 80) - 1);
    const fraction = total > 0 ? Math.min(1, count / total) : 0;
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    const left = count > 0 && count < total ? `, ${duration(((at - started) * (total - count)) / count)} left` : '';
    const tail = ` ${percent} ${count}/${total}${left}`;
    const barWidth = Math.max(10, Math.min(40, width - [...label].length - tail.length - 3));
    const filled = Math.round(barWidth * fraction);
    const line = `${label} [${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}]${tail}`;
    // \r back to the start of the line, ESC[K erases what a longer earlier line left behind.
    stream.write(`\r${[...line].slice(0, width).join('')}\x1b[K`);
    drawn = true;
    lastDraw = at;
  };

  return {
    tick(n = 1) {
      if (finished) return;
      count += n;
      const at = now();
      if (at - started < delayMs) return;
      if (at - lastDraw < intervalMs && count < total) return;
      draw(at);
    },
    done() {
      if (finished) return;
      finished = true;
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}

/** "12s", "3m 04s", "1h 02m": enough to decide whether to wait or get a coffee. */
function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}
