// Checks a keymailer ed25519 serial offline, with the public key alone (Node >= 16, no packages).
// Usage: node verify-ed25519.js PUBLIC_KEY.pem SERIAL "NAME" [PRODUCT]   -> exit 0 valid, 1 not
// Serial = base58(payload + 64-byte signature); payload = version 1, flags (bit 0: test order),
// issue day (uint16 BE, days since 1970), seats (uint16 BE), then product, order id and name,
// each one length byte + UTF-8. Remove any serial.prefix first; dashes and spaces are ignored.
const crypto = require('node:crypto');
const fs = require('node:fs');

function readLicense(publicKeyPem, serial) {
  const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
  const text = serial.replace(/[\s-]/g, '');
  let n = 0n;
  for (const c of text) {
    if (!B58.includes(c)) return null;
    n = n * 58n + BigInt(B58.indexOf(c));
  }
  const hex = n.toString(16);
  const zeros = Buffer.alloc(text.length - text.replace(/^1+/, '').length); // leading '1's are zero bytes
  const bytes = Buffer.concat([zeros, Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex')]);
  const payload = bytes.subarray(0, -64);
  const key = crypto.createPublicKey(publicKeyPem);
  if (payload.length < 9 || payload[0] !== 1 || !crypto.verify(null, payload, key, bytes.subarray(-64))) return null;
  let at = 6;
  const field = () => payload.subarray(at + 1, (at += 1 + payload[at])).toString('utf8');
  return {
    test: (payload[1] & 1) === 1,
    issued: new Date(payload.readUInt16BE(2) * 86400000).toISOString().slice(0, 10),
    seats: payload.readUInt16BE(4), product: field(), order: field(), name: field(),
  };
}

const [keyFile, serial = '', name = '', product] = process.argv.slice(2);
const license = readLicense(fs.readFileSync(keyFile), serial);
// Tidy the typed name as keymailer does by default (trim, collapse spaces, NFC) before comparing.
const typed = name.trim().replace(/\s+/g, ' ').normalize('NFC');
const valid = !!license && !license.test && license.name === typed && (product === undefined || license.product === product);
console.log(valid ? `valid: ${JSON.stringify(license)}` : 'not valid');
process.exit(valid ? 0 : 1);
