/**
 * What loading the daemon costs before it does anything, measured in a fresh process: RSS of node
 * alone, then dist/src/cli.js is required (the daemon's code: it defines the command, does not run
 * it) with a hook on node's module loader that times every package the project's own code requires
 * (with everything that package requires in turn), in the order the daemon loads them.
 * Started by bench/lib/footprint.ts; reports one JSON object over IPC.
 */
import Module, { isBuiltin } from 'node:module';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Footprint } from './lib/footprint';

interface Loader {
  _load(request: string, parent: { readonly filename?: string | null } | null | undefined, isMain: boolean): unknown;
}

/** "mailauth/lib/dkim/verify" → "mailauth", "@scope/x/y" → "@scope/x" */
function packageOf(request: string): string {
  const parts = request.split('/');
  return request.startsWith('@') ? `${parts[0] ?? ''}/${parts[1] ?? ''}` : (parts[0] ?? request);
}

function main(): void {
  const nodeAlone = process.memoryUsage().rss;
  const loader = Module as unknown as Loader;
  const original = loader._load;
  const steps = new Map<string, { ms: number; rss: number }>();
  let inside = 0;
  loader._load = function load(request, parent, isMain) {
    const from = parent?.filename ?? '';
    const fromProject = from.includes(`${path.sep}dist${path.sep}`) && !from.includes(`${path.sep}node_modules${path.sep}`);
    if (inside > 0 || !fromProject || request.startsWith('.') || request.startsWith('/') || isBuiltin(request)) {
      return original.call(this, request, parent, isMain);
    }
    const name = packageOf(request);
    const t = performance.now();
    const before = process.memoryUsage().rss;
    inside++;
    try {
      return original.call(this, request, parent, isMain);
    } finally {
      inside--;
      const step = steps.get(name) ?? { ms: 0, rss: 0 };
      steps.set(name, { ms: step.ms + performance.now() - t, rss: step.rss + process.memoryUsage().rss - before });
    }
  };
  const t = performance.now();
  require(path.join(__dirname, '..', 'src', 'cli.js'));
  const totalMs = performance.now() - t;
  const result: Footprint = {
    nodeAlone,
    steps: [...steps].map(([name, s]) => ({ name, ms: s.ms, rssAdded: s.rss })),
    withDaemonCode: process.memoryUsage().rss,
    totalMs,
  };
  process.send?.(result, () => process.exit(0));
}

main();
