/**
 * keymailer's heap settings (package.json config.nodeFlags) reach node however a seller starts it:
 * `npm start`, pm2 (ecosystem.config.js) and the `keymailer` command itself (its first line).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CLI, PROJECT_ROOT, nodeFlags, tempDir } from './support/cli';

test('the heap settings are the ones in package.json, and there are some', () => {
  assert.deepEqual(nodeFlags(), ['--max-semi-space-size=2', '--heap-growing-percent=25']);
});

test('npm start passes them', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.equal(pkg.scripts['start'], 'node $npm_package_config_nodeFlags dist/src/cli.js');
});

test('pm2 passes them', () => {
  const ecosystem = require(path.join(PROJECT_ROOT, 'ecosystem.config.js')) as { apps: { node_args: string[] }[] };
  assert.deepEqual(ecosystem.apps[0]?.node_args, nodeFlags());
});

test('the keymailer command starts node with them', () => {
  const firstLine = fs.readFileSync(CLI, 'utf8').split('\n')[0];
  assert.equal(firstLine, `#!/usr/bin/env -S node ${nodeFlags().join(' ')}`);
  // Run as an executable, the way the installed bin runs: node really got the flags.
  const hook = path.join(tempDir(), 'print-exec-argv.js');
  fs.writeFileSync(hook, "process.stderr.write('execArgv ' + JSON.stringify(process.execArgv) + '\\n');\n");
  fs.chmodSync(CLI, 0o755);
  const run = spawnSync(CLI, ['--help'], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: `--require ${hook}` } });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stderr, new RegExp(`execArgv ${JSON.stringify(nodeFlags()).replace(/[[\]]/g, '\\$&')}`));
});
