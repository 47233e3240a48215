/**
 * What a seller sees running `keymailer avangate sign|check`: the HASH, the verdict on a captured
 * request, exit codes a script can branch on, and never the secret.
 *
 * Each test builds its own commander program (exitOverride, captured output) with a loadSecret stub.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerAvangateCommands } from '../src/commands/avangate';

const SECRET = 'SECRETKEY';
const DOCUMENTED_HASH = '364b47f4a21def26ee7758f697ca4bd9';
const DOCUMENTED_LINES = [
  'PID=189645',
  'PCODE=123',
  'REFNO=1250747',
  'REFNOEXT=',
  'TESTORDER=YES',
  'QUANTITY=1',
  'FIRSTNAME=John',
  'LASTNAME=Doe',
  'COMPANY=',
  'EMAIL=info@avangate.com',
  'LANG=en',
  'COUNTRY=Netherlands',
  'COUNTRY_CODE=nl',
  'CITY=Amstelveen',
  'ZIPCODE=1181',
];
const DOCUMENTED_BODY =
  'PID=189645&PCODE=123&REFNO=1250747&REFNOEXT=&TESTORDER=YES&QUANTITY=1&FIRSTNAME=John&LASTNAME=Doe' +
  '&COMPANY=&EMAIL=info%40avangate.com&LANG=en&COUNTRY=Netherlands&COUNTRY_CODE=nl&CITY=Amstelveen&ZIPCODE=1181';
const DOCUMENTED_SOURCE =
  '618964531237125074703YES114John3Doe017info@avangate.com2en11Netherlands2nl10Amstelveen41181';

const dir = mkdtempSync(join(tmpdir(), 'keymailer-avangate-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function file(content: string | Buffer): string {
  const path = join(dir, `input-${++fileCount}.txt`);
  writeFileSync(path, content);
  return path;
}

function opensslHmac(secret: string, source: string): string {
  const output = execFileSync('/usr/bin/openssl', ['dgst', '-md5', '-hmac', secret], { input: Buffer.from(source, 'utf8') });
  const hex = /([0-9a-f]{32})\s*$/.exec(output.toString('latin1'))?.[1];
  assert.ok(hex);
  return hex;
}

type Result = { code: number; out: string; err: string; configPaths: (string | undefined)[] };

/** Run `keymailer <args>` in-process; the exit code is commander's (usage, help) or process.exitCode. */
function run(args: string[], loadSecret: (configPath?: string) => string = () => SECRET): Result {
  const out: string[] = [];
  const err: string[] = [];
  const configPaths: (string | undefined)[] = [];
  const program = new Command('keymailer')
    .exitOverride()
    .configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => err.push(s) });
  registerAvangateCommands(program, (configPath) => {
    configPaths.push(configPath);
    return loadSecret(configPath);
  });
  const saved = process.exitCode;
  process.exitCode = undefined;
  let code: number;
  try {
    program.parse(args, { from: 'user' });
    code = Number(process.exitCode ?? 0);
  } catch (thrown) {
    if (!(thrown instanceof CommanderError)) throw thrown;
    code = thrown.exitCode;
  } finally {
    process.exitCode = saved;
  }
  return { code, out: out.join(''), err: err.join(''), configPaths };
}

function assertNoSecret(result: Result, secret = SECRET): void {
  assert.ok(!result.out.includes(secret) && !result.err.includes(secret), 'the secret is never printed');
}

test("sign prints the documented example's HASH from a fields file", () => {
  const result = run(['avangate', 'sign', file(DOCUMENTED_LINES.join('\n') + '\n')]);
  assert.deepEqual(result, { code: 0, out: `${DOCUMENTED_HASH}\n`, err: '', configPaths: [undefined] });
});

test('sign reads a captured urlencoded body too, ignoring its HASH and trailing newline', () => {
  const result = run(['avangate', 'sign', file(`${DOCUMENTED_BODY}&HASH=0123456789abcdef0123456789abcdef\n`)]);
  assert.equal(result.code, 0);
  assert.equal(result.out, `${DOCUMENTED_HASH}\n`);
});

test('sign --verbose shows the source string on stderr, the HASH alone on stdout, never the secret', () => {
  const result = run(['avangate', 'sign', '--verbose', file(DOCUMENTED_LINES.join('\r\n'))]);
  assert.equal(result.code, 0);
  assert.equal(result.out, `${DOCUMENTED_HASH}\n`);
  assert.equal(result.err, `source: ${DOCUMENTED_SOURCE}\n`);
  assertNoSecret(result);
});

test('sign groups NAME[] lines as PHP does and takes values literally (UTF-8, "=", "&", "%")', () => {
  const lines = [
    '# an order with custom fields',
    'PID=189645',
    'CUSTOM_FIELD_TEXT[]=Seats',
    '',
    'FIRSTNAME=Jörg Müller',
    'CUSTOM_FIELD_TEXT[]=Team & Co = 100%',
    'LASTNAME=李小龍 🎉',
    'INFO=a+b%20c',
  ];
  // The test's own idea of $_POST order: the array at its first line.
  const values = ['189645', 'Seats', 'Team & Co = 100%', 'Jörg Müller', '李小龍 🎉', 'a+b%20c'];
  const source = values.map((v) => `${Buffer.byteLength(v)}${v}`).join('');
  const result = run(['avangate', 'sign', '-v', file(lines.join('\r\n') + '\r\n')]);
  assert.equal(result.code, 0, result.err);
  assert.equal(result.err, `source: ${source}\n`);
  assert.equal(result.out, `${opensslHmac(SECRET, source)}\n`);
});

test('check says "HASH ok" for a genuine request', () => {
  const result = run(['avangate', 'check', file(`${DOCUMENTED_BODY}&HASH=${DOCUMENTED_HASH}\n`)]);
  assert.deepEqual(result, { code: 0, out: 'HASH ok\n', err: '', configPaths: [undefined] });
});

test('check reports a tampered request with both HASHes and exit 1', () => {
  const tampered = DOCUMENTED_HASH.slice(0, -1) + '0';
  const result = run(['avangate', 'check', file(`${DOCUMENTED_BODY}&HASH=${tampered}`)]);
  assert.equal(result.code, 1);
  assert.equal(result.out, `HASH mismatch: expected ${DOCUMENTED_HASH} got ${tampered}\n`);
  assertNoSecret(result);

  const changed = run(['avangate', 'check', file(`${DOCUMENTED_BODY.replace('QUANTITY=1', 'QUANTITY=9')}&HASH=${DOCUMENTED_HASH}`)]);
  assert.equal(changed.code, 1);
  assert.match(changed.out, /^HASH mismatch: expected [0-9a-f]{32} got 364b47f4a21def26ee7758f697ca4bd9\n$/);
});

test('check reports a request without HASH as a mismatch (exit 1)', () => {
  const result = run(['avangate', 'check', file(DOCUMENTED_BODY)]);
  assert.equal(result.code, 1);
  assert.equal(result.out, `HASH mismatch: expected ${DOCUMENTED_HASH} got nothing (no HASH field)\n`);
});

test('check shows a hostile posted HASH quoted, not raw on the terminal', () => {
  const result = run(['avangate', 'check', file(`${DOCUMENTED_BODY}&HASH=%1B%5B31mred`)]);
  assert.equal(result.code, 1);
  assert.equal(result.out, `HASH mismatch: expected ${DOCUMENTED_HASH} got "\\u001b[31mred"\n`);
});

test('bad input exits 2 with the reason on stderr', () => {
  const cases: [string[], RegExp][] = [
    [['avangate', 'check', file(`${DOCUMENTED_BODY}&INFO=100%`)], /malformed body: bad percent escape/],
    [['avangate', 'check', file('')], /malformed body: empty body/],
    [['avangate', 'check', file(Buffer.from('FIRSTNAME=J\xf6rg&PID=1', 'latin1'))], /invalid UTF-8/],
    [['avangate', 'check', join(dir, 'no-such-file.txt')], /cannot read .*no-such-file\.txt/],
    [['avangate', 'sign', file('PID=1\nNOT A FIELD\n')], /line 2: expected NAME=value/],
    [['avangate', 'sign', file('# only a comment\n\n')], /no fields/],
    [['avangate', 'sign', file(Buffer.from('PID=1\nFIRSTNAME=J\xf6rg\n', 'latin1'))], /not valid UTF-8/],
  ];
  for (const [args, reason] of cases) {
    const result = run(args);
    assert.equal(result.code, 2, args.join(' '));
    assert.equal(result.out, '');
    assert.match(result.err, reason);
  }
});

test('a secret that cannot be loaded exits 3 with the loader message, and --config reaches the loader', () => {
  const result = run(['avangate', 'check', '--config', '/etc/keymailer/missing.yaml', file(`${DOCUMENTED_BODY}&HASH=${DOCUMENTED_HASH}`)], (path) => {
    throw new Error(`config ${path ?? '(default)'}: avangate.secret is not set`);
  });
  assert.deepEqual(result, {
    code: 3,
    out: '',
    err: 'config /etc/keymailer/missing.yaml: avangate.secret is not set\n',
    configPaths: ['/etc/keymailer/missing.yaml'],
  });

  const signed = run(['avangate', 'sign', '--config', 'x.yaml', file('PID=1')], () => {
    throw new Error('no such file x.yaml');
  });
  assert.equal(signed.code, 3);
  assert.equal(signed.err, 'no such file x.yaml\n');

  const empty = run(['avangate', 'sign', file('PID=1')], () => '');
  assert.equal(empty.code, 3);
  assert.match(empty.err, /secret is empty/);
});

test('--secret-env takes the secret from the environment instead of the config', () => {
  const secret = 'env-only-secret-Ω';
  process.env['KEYMAILER_TEST_AVANGATE_SECRET'] = secret;
  try {
    const body = `PID=1&NAME=x&HASH=${opensslHmac(secret, '11' + '1x')}`;
    const result = run(['avangate', 'check', '--secret-env', 'KEYMAILER_TEST_AVANGATE_SECRET', '--verbose', file(body)], () => {
      throw new Error('the config must not be read');
    });
    assert.equal(result.code, 0, result.err);
    assert.equal(result.out, 'HASH ok\n');
    assert.deepEqual(result.configPaths, []);
    assertNoSecret(result, secret);
  } finally {
    delete process.env['KEYMAILER_TEST_AVANGATE_SECRET'];
  }
  const unset = run(['avangate', 'sign', '--secret-env', 'KEYMAILER_TEST_AVANGATE_SECRET', file('PID=1')]);
  assert.equal(unset.code, 3);
  assert.equal(unset.err, 'environment variable KEYMAILER_TEST_AVANGATE_SECRET is not set or empty\n');
  assert.deepEqual(unset.configPaths, []);
});

test('--config and --secret-env together are refused', () => {
  const result = run(['avangate', 'sign', '--config', 'a.yaml', '--secret-env', 'X', file('PID=1')]);
  assert.notEqual(result.code, 0);
  assert.match(result.err, /cannot be used with/);
  assert.deepEqual(result.configPaths, []);
});

test('--help explains input formats, options and exit codes', () => {
  const sign = run(['avangate', 'sign', '--help']);
  assert.equal(sign.code, 0);
  for (const text of ['--config <path>', '--secret-env <name>', '--verbose', 'NAME=value', 'urlencoded body', 'Exit codes']) {
    assert.ok(sign.out.includes(text), `sign --help mentions ${text}`);
  }
  const check = run(['avangate', 'check', '--help']);
  assert.equal(check.code, 0);
  for (const text of ['--config <path>', '--secret-env <name>', 'HASH ok', 'HASH mismatch', '1 mismatch', '3 no secret']) {
    assert.ok(check.out.includes(text), `check --help mentions ${text}`);
  }
});

test('"-" reads standard input, and a real process exits with the documented codes', () => {
  const script = `
    const { Command } = require(${JSON.stringify(require.resolve('commander'))});
    const { registerAvangateCommands } = require(${JSON.stringify(require.resolve('../src/commands/avangate'))});
    const program = new Command('keymailer');
    registerAvangateCommands(program, () => ${JSON.stringify(SECRET)});
    program.parse(process.argv.slice(1), { from: 'user' });
  `;
  const sign = spawnSync(process.execPath, ['-e', script, 'avangate', 'sign', '-'], { input: DOCUMENTED_LINES.join('\n') });
  assert.equal(sign.status, 0, sign.stderr.toString());
  assert.equal(sign.stdout.toString(), `${DOCUMENTED_HASH}\n`);

  const ok = spawnSync(process.execPath, ['-e', script, 'avangate', 'check', '-'], { input: `${DOCUMENTED_BODY}&HASH=${DOCUMENTED_HASH}\n` });
  assert.equal(ok.status, 0, ok.stderr.toString());
  assert.equal(ok.stdout.toString(), 'HASH ok\n');

  const bad = spawnSync(process.execPath, ['-e', script, 'avangate', 'check', '-'], { input: `${DOCUMENTED_BODY}&HASH=${'0'.repeat(32)}` });
  assert.equal(bad.status, 1);
  const malformed = spawnSync(process.execPath, ['-e', script, 'avangate', 'check', '-'], { input: 'a=%zz' });
  assert.equal(malformed.status, 2);
});
