/** What loading the daemon costs before it does anything: bench/footprint-child.ts in a fresh process. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { nodeFlags } from '../../test/support/cli';
import { MB } from './daemon';
import { fmt } from './stats';

export interface Footprint {
  /** RSS of node before requiring anything */
  readonly nodeAlone: number;
  /** each package keymailer's code requires (with what it requires in turn): time and RSS added */
  readonly steps: readonly { readonly name: string; readonly ms: number; readonly rssAdded: number }[];
  /** RSS once dist/src/cli.js is loaded (the daemon's code and everything it loads at start) */
  readonly withDaemonCode: number;
  /** the time to require dist/src/cli.js, packages included */
  readonly totalMs: number;
}

export function measureFootprint(): Promise<Footprint> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['NODE_TEST_CONTEXT'];
  return new Promise((resolve, reject) => {
    // With the node flags the daemon runs with, so the floor is the daemon's floor.
    const child = spawn(process.execPath, [...nodeFlags(), path.join(__dirname, '..', 'footprint-child.js')], { env, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    child.once('message', (message) => resolve(message as Footprint));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`bench/footprint-child.js exited with ${String(code)}`));
    });
  });
}

const signed = (value: number, digits: number): string => `${value >= 0 ? '+' : '−'}${fmt(Math.abs(value), digits)}`;

/** "imapflow +9.1 MB, …", largest first, the top `top` */
export function memorySteps(f: Footprint, top = 8): string {
  return [...f.steps]
    .sort((a, b) => b.rssAdded - a.rssAdded)
    .slice(0, top)
    .map((a) => `${a.name} ${signed(a.rssAdded / MB, 1)} MB`)
    .join(', ');
}

/** "mailauth 180 ms, imapflow 95 ms, …", largest first, the top `top` */
export function timeSteps(f: Footprint, top = 8): string {
  return [...f.steps]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, top)
    .map((s) => `${s.name} ${fmt(s.ms, 0)} ms`)
    .join(', ');
}

/** time spent in keymailer's own modules (the total less the packages they required) */
export const ownCodeMs = (f: Footprint): number => f.totalMs - f.steps.reduce((sum, s) => sum + s.ms, 0);
