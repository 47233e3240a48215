/** The machine and the exact versions a run measured, read from the system and node_modules. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../test/support/cli';

function cpuModel(): string {
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const model = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim();
    const mhz = /^cpu MHz\s*:\s*([\d.]+)$/m.exec(info)?.[1];
    if (model) return mhz ? `${model} (${Math.round(Number(mhz))} MHz reported)` : model;
  } catch {
    /* not Linux */
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

function command(bin: string, args: readonly string[]): string | null {
  try {
    return execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    // wrk prints its version to stdout and exits 1 when asked for it
    const out = (err as { stdout?: unknown }).stdout;
    return typeof out === 'string' && out.trim() !== '' ? out.trim() : null;
  }
}

export function machineLines(): string[] {
  const osRelease = (() => {
    try {
      return /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os.type();
    } catch {
      return os.type();
    }
  })();
  return [
    `CPU: ${cpuModel()}, ${os.cpus().length} cores (what node sees: os.cpus())`,
    `memory: ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    `system: ${osRelease}, kernel ${os.release()}`,
    `Node ${process.version}`,
    `Dovecot ${command('/usr/sbin/dovecot', ['--version']) ?? 'not found'}`,
    `wrk: ${command('wrk', ['--version'])?.split('\n')[0] ?? 'not installed'}`,
  ];
}

/** name@version of every direct dependency, as installed (node_modules/<name>/package.json). */
export function packageVersions(): string[] {
  const manifest = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
    devDependencies?: Record<string, string>;
  };
  const names = [...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.devDependencies ?? {})]
    .filter((n) => !n.startsWith('@types/'))
    .sort();
  return names.map((name) => {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version?: string };
      return `${name} ${pkg.version ?? '?'}`;
    } catch {
      return `${name} (not installed)`;
    }
  });
}
