import crypto from 'node:crypto';

/** Hex SHA-256: how keymailer fingerprints messages and identities. */
export function sha256(data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}
