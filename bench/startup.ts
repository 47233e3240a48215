/**
 * 5. Start-up: from spawning `keymailer --config FILE` to its 'ready' (the IPC message pm2 waits
 * for, sent once IMAP is connected, the empty mailbox is checked and IDLE begins), several times on
 * an empty mailbox. Baseline: spawning a node process that sends 'ready' at once.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { MB, memoryOf, portAccepts, startBenchDaemon } from './lib/daemon';
import { measureFootprint, ownCodeMs, timeSteps, type Footprint } from './lib/footprint';
import { num, type SectionResult } from './lib/report';
import { startWorld } from './lib/setup';
import { fmt, median } from './lib/stats';

/** spawn → 'ready' of a node process that does nothing else: what node itself costs here */
function bareNodeReady(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(process.execPath, ['-e', "process.send('ready'); process.disconnect()"], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    child.once('message', () => resolve(performance.now() - t));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`bare node exited ${String(code)}`));
    });
  });
}

/** What bounds start-up, from this run's numbers. */
function startupNotes(readyMs: number, bareMs: number, firstLineMs: number, footprint: Footprint): string[] {
  const heaviest = [...footprint.steps].sort((a, b) => b.ms - a.ms);
  const lines = [
    `${fmt(firstLineMs, 0)} ms of the median ${fmt(readyMs, 0)} ms pass before the daemon's first log line, i.e. in starting node ` +
      `(${fmt(bareMs, 0)} ms for a bare one) and loading code; IMAP login, the first pass over the empty box and the listener take ` +
      `the remaining ${fmt(readyMs - firstLineMs, 0)} ms.`,
    `Requiring dist/src/cli.js in a fresh process takes ${fmt(footprint.totalMs, 0)} ms; the packages it loads at start, largest first: ` +
      `${timeSteps(footprint, 6)}; keymailer's own modules ${fmt(ownCodeMs(footprint), 0)} ms.`,
  ];
  if (heaviest.slice(0, 3).some((s) => s.name === 'mailauth')) {
    lines.push(
      'mailauth (DKIM verification, imported at the top of src/authenticate/sender.ts) is only needed once a message from a vendor ' +
        'with auth: dkim arrives: imported on first use (`await import(...)`), it leaves the start-up path.',
    );
  }
  return [`What bounds start-up, measured in this run:\n\n${lines.map((l) => `- ${l}`).join('\n')}`];
}

export async function startup(options: { readonly runs: number; readonly httpPort: number }): Promise<SectionResult> {
  const world = await startWorld({ httpPort: options.httpPort });
  const times: number[] = [];
  const bare: number[] = [];
  const listenerUp: boolean[] = [];
  const rssAtReady: number[] = [];
  const phases = { loaded: [] as number[], built: [] as number[], listening: [] as number[], connected: [] as number[] };
  const codes: (number | null)[] = [];
  try {
    for (let i = 0; i < options.runs; i++) {
      const daemon = startBenchDaemon({ config: world.config, env: world.env, logFile: path.join(world.dir, `daemon-${i}.log`) });
      try {
        const readyAt = await daemon.ready();
        times.push(readyAt - daemon.spawnedAt);
        rssAtReady.push(memoryOf(daemon.pid)?.rss ?? Number.NaN);
        // the log lines on the way, in the order the daemon prints them (all already seen)
        const at = async (pattern: RegExp): Promise<number> => (await daemon.waitForLine(pattern, 1000)) - daemon.spawnedAt;
        phases.loaded.push(await at(/config loaded/));
        phases.built.push(await at(/keymailer started/));
        phases.listening.push(await at(/HTTP listening/));
        phases.connected.push(await at(/IMAP connected/));
        listenerUp.push(await portAccepts(options.httpPort));
      } finally {
        codes.push(await daemon.stop());
      }
      bare.push(await bareNodeReady());
    }
  } finally {
    await world.close();
  }
  const footprint = await measureFootprint();
  const m = median(times);
  const b = median(bare);
  const up = listenerUp.filter(Boolean).length;
  return {
    id: 'startup',
    title: '5. Start-up',
    method:
      `The daemon is spawned ${options.runs} times on an empty mailbox with the HTTP listener configured; each time from spawn() ` +
      "to the IPC 'ready' message (sent after IMAP is connected, the empty box checked and IDLE begun), then SIGTERM. " +
      "The first run also creates the database. Baseline: spawning `node -e \"process.send('ready')\"`.",
    rows: [
      {
        measure: `spawn → ready, median of ${options.runs}`,
        value: num(m, 'ms', 0),
        baseline: num(b, 'ms', 0),
        baselineLabel: 'bare node',
        comparison: `+${fmt(m - b, 0)} ms`,
        target: '≤ 1000 ms',
        met: m <= 1000,
      },
    ],
    details: [
      `each run: ${times.map((t) => fmt(t, 0)).join(', ')} ms; bare node: ${bare.map((t) => fmt(t, 0)).join(', ')} ms`,
      `RSS at ready (empty mailbox, nothing done yet): median ${fmt(median(rssAtReady) / MB, 1)} MB`,
      `medians from spawn: the first log line ("config loaded": node started, modules loaded, config read) at ${fmt(median(phases.loaded), 0)} ms; ` +
        `"keymailer started" (database opened, templates compiled) ${fmt(median(phases.built), 0)} ms; "HTTP listening" ${fmt(median(phases.listening), 0)} ms; ` +
        `"IMAP connected" (login, folders, SELECT) ${fmt(median(phases.connected), 0)} ms; ready ${fmt(m, 0)} ms`,
      `loading the code alone, in a fresh process (bench/footprint-child.ts): requiring dist/src/cli.js takes ${fmt(footprint.totalMs, 0)} ms, ` +
        `of which the packages it requires (each with its own dependencies; the largest): ${timeSteps(footprint)}; keymailer's own modules ${fmt(ownCodeMs(footprint), 0)} ms`,
      up === times.length
        ? `the HTTP listener (port ${options.httpPort}) accepted connections at ready in every run`
        : `the HTTP listener accepted connections at ready in ${up} of ${times.length} runs: the daemon does not start it (yet), so "ready" does not include it`,
    ],
    checks: { 'the daemon stopped cleanly (exit 0 on SIGTERM) every time': codes.every((c) => c === 0) },
    notes: m <= 1000 ? [] : startupNotes(m, b, median(phases.loaded), footprint),
  };
}
