/**
 * The baseline of the signed-POST benchmark, run as its own process like the daemon: a bare
 * node:http server that does what an Avangate key generator must and nothing more: read the
 * urlencoded body, check its HASH (the project's parsePostedFields + verifyHash), make the serial
 * (AES-128-ECB of "FIRSTNAME LASTNAME" with node:crypto, upper-case hex in groups of 4: the
 * default scheme) and answer the same Basic XML (the project's basicXml) with the same headers.
 * No database, no logging, no routing.
 *
 *   node dist/bench/bare-avangate.js PORT PATH   (secret in BARE_SECRET, AES key in BARE_KEY)
 *
 * Sends 'ready' over IPC once listening.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import { fieldValue, parsePostedFields, verifyHash } from '../src/authenticate/signed-post';
import { basicXml } from '../src/http/avangate-answer';

const BODY_LIMIT = 64 * 1024;

function serial(key: string, name: string): string {
  const cipher = crypto.createCipheriv('aes-128-ecb', Buffer.from(key, 'latin1'), null);
  const hex = Buffer.concat([cipher.update(name, 'utf8'), cipher.final()]).toString('hex').toUpperCase();
  return hex.match(/.{1,4}/g)?.join('-') ?? '';
}

function main(): void {
  const port = Number(process.argv[2]);
  const path = process.argv[3] ?? '/avangate';
  const secret = process.env['BARE_SECRET'] ?? '';
  const key = process.env['BARE_KEY'] ?? '';
  if (!Number.isInteger(port) || secret === '' || key.length !== 16) {
    process.stderr.write('usage: BARE_SECRET=… BARE_KEY=<16 chars> node bare-avangate.js PORT [PATH]\n');
    process.exit(2);
  }
  const answer = (res: http.ServerResponse, status: number, type: string, body: string): void => {
    res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
    res.end(body);
  };
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== path) {
      answer(res, 404, 'text/plain; charset=utf-8', 'not found\n');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= BODY_LIMIT) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > BODY_LIMIT) {
        answer(res, 413, 'text/plain; charset=utf-8', 'body too large\n');
        return;
      }
      try {
        const fields = parsePostedFields(Buffer.concat(chunks, size));
        const verdict = verifyHash(fields, secret);
        if (!verdict.ok) {
          answer(res, 400, 'text/plain; charset=utf-8', `${verdict.reason}\n`);
          return;
        }
        const name = [fieldValue(fields, 'FIRSTNAME'), fieldValue(fields, 'LASTNAME')].map((p) => p?.trim() ?? '').filter((p) => p !== '').join(' ');
        answer(res, 200, 'text/xml; charset=utf-8', basicXml([serial(key, name)]));
      } catch {
        answer(res, 400, 'text/plain; charset=utf-8', 'malformed\n');
      }
    });
  });
  server.listen(port, '127.0.0.1', () => process.send?.('ready'));
  process.on('SIGTERM', () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}

main();
