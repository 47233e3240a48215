/**
 * A real keymailer App (buildApp) on a temporary directory, with its HTTP listener on 127.0.0.1 and
 * a free port, for tests that send real requests with fetch. No IMAP or SMTP: a drop folder and
 * outbox files, unless the config says otherwise.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { parseConfig, type LoadedConfig } from '../../src/config';
import { buildHttpApp, type HttpApp, type HttpAppOptions } from '../../src/http/app';
import { buildApp, type App } from '../../src/main';
import { tempDir } from './cli';

export interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly [field: string]: unknown;
}

export interface Running {
  readonly dir: string;
  readonly app: App;
  readonly http: HttpApp;
  /** http://127.0.0.1:<port> (or the host asked for) */
  readonly url: string;
  readonly address: AddressInfo;
  /** Every log line so far, as logged (no redaction: tests check what the code itself logs). */
  readonly logs: LogLine[];
  close(): Promise<void>;
}

/**
 * `products[].avangate` settings by product id, added to the parsed config. Needed while
 * config.ts's product schema is strict and does not know `avangate` yet; once it does, these can
 * move into the YAML (the listener validates them the same way either way).
 */
export type ProductSettings = Readonly<Record<string, unknown>>;

function withProductSettings(loaded: LoadedConfig, settings: ProductSettings): LoadedConfig {
  return {
    ...loaded,
    config: {
      ...loaded.config,
      products: loaded.config.products.map((product) =>
        // Object.assign types as ProductConfig & { avangate: unknown }: compiles before and after
        // config.ts declares products[].avangate.
        Object.hasOwn(settings, product.id) ? Object.assign({}, product, { avangate: settings[product.id] }) : product,
      ),
    },
  };
}

export function captureLogger(): { log: winston.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  const log = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
  return { log, lines };
}

/** Writes config.yaml into a new temp dir, builds the App and its listener, and listens. */
export async function startHttpApp(
  yaml: string,
  options: {
    readonly env?: NodeJS.ProcessEnv;
    readonly productSettings?: ProductSettings;
    readonly host?: string;
    readonly http?: HttpAppOptions;
  } = {},
): Promise<Running> {
  const dir = tempDir('km-http-');
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, yaml);
  fs.mkdirSync(path.join(dir, 'inbox'), { recursive: true });
  let loaded = parseConfig(yaml, file, dir, options.env ?? {});
  if (options.productSettings) loaded = withProductSettings(loaded, options.productSettings);
  const { log, lines } = captureLogger();
  const app = buildApp(loaded, log);
  let http: HttpApp;
  try {
    http = buildHttpApp(app, options.http);
  } catch (err) {
    await app.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const address = await http.listen({ host: options.host ?? '127.0.0.1', port: 0 });
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    dir,
    app,
    http,
    url: `http://${host}:${address.port}`,
    address,
    logs: lines,
    async close() {
      await http.close();
      await app.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** HMAC-MD5 hex of `source` keyed with `secret`, computed by the openssl binary, not by keymailer. */
export function opensslHmacMd5(secret: string, source: string): string {
  const output = execFileSync('openssl', ['dgst', '-md5', '-hmac', secret], { input: Buffer.from(source, 'utf8') });
  const hex = /([0-9a-f]{32})\s*$/.exec(output.toString('latin1'))?.[1];
  if (hex === undefined) throw new Error(`unexpected openssl output: ${output.toString('latin1')}`);
  return hex;
}

/** Avangate's signed string for values in the order PHP's $_POST holds them: byte length, then value. */
export function signedSource(values: readonly string[]): string {
  return values.map((value) => `${Buffer.byteLength(value, 'utf8')}${value}`).join('');
}

/** An urlencoded body from name=value pairs, exactly in the order given (names may repeat, `X[]`). */
export function formBody(pairs: readonly (readonly [string, string])[]): string {
  return pairs.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`).join('&');
}
