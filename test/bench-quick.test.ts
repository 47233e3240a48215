/**
 * The benchmarks must not rot: `node dist/bench/run.js --quick` runs every one of them at a tiny
 * size against a real Dovecot, SMTP sink and the compiled daemon (plus wrk for the HTTP one), and
 * must exit 0 (every benchmark ran, every correctness check held: each order mailed and recorded
 * exactly once…) with a number for every measure. Speed targets are not judged at this size.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { SUMMARY_MARKER, type Summary } from '../bench/lib/report';
import { PROJECT_ROOT } from './support/cli';

const EXPECTED_SECTIONS = ['time-to-buyer', 'backlog', 'signed-posts', 'memory', 'startup', 'micro'];

function runQuick(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    // the runner's marker would make the bench's children report to this test run
    delete env['NODE_TEST_CONTEXT'];
    const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'bench', 'run.js'), '--quick'], {
      cwd: PROJECT_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('npm run bench -- --quick runs every benchmark and reports a number for each measure', { timeout: 180_000 }, async () => {
  const { code, stdout, stderr } = await runQuick();
  const line = stdout.split('\n').find((l) => l.startsWith(SUMMARY_MARKER));
  assert.ok(line, `no summary line; exit ${String(code)}\nstderr:\n${stderr.slice(-4000)}`);
  const summary = JSON.parse(line.slice(SUMMARY_MARKER.length)) as Summary;
  assert.deepEqual(summary.failed, [], `benchmarks failed:\n${summary.failed.map((f) => `${f.title}: ${f.error}`).join('\n')}`);
  assert.equal(summary.quick, true);
  assert.deepEqual(
    summary.sections.map((s) => s.id),
    EXPECTED_SECTIONS,
  );
  for (const section of summary.sections) {
    const entries = Object.entries(section.values);
    assert.ok(entries.length > 0, `${section.id}: no measure reported`);
    for (const [measure, value] of entries) {
      const why = section.unavailable[measure];
      assert.ok(typeof value === 'number' && Number.isFinite(value) && value >= 0, `${section.id}: "${measure}" is ${String(value)}${why ? ` (${why})` : ''}`);
    }
    for (const [check, held] of Object.entries(section.checks)) assert.ok(held, `${section.id}: check failed: ${check}`);
  }
  assert.equal(code, 0, `bench exited ${String(code)}\nstderr:\n${stderr.slice(-4000)}`);
  // the quick run prints its report and must never overwrite the full run's bench/RESULTS.md
  assert.match(stdout, /^# keymailer benchmarks \(quick run/m);
});
