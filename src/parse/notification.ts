/** Decodes a raw message once (mailparser) into the Notification every parser reads. */
import { simpleParser, type AddressObject } from 'mailparser';
import type { Notification } from '../types';

export async function toNotification(raw: Buffer): Promise<Notification> {
  const mail = await simpleParser(raw, { skipImageLinks: true, skipTextLinks: true, skipTextToHtml: true });
  const from = firstAddress(mail.from);
  const headers = new Map<string, string[]>();
  for (const line of mail.headerLines) {
    const name = line.key.toLowerCase();
    const value = line.line.slice(line.line.indexOf(':') + 1).trim();
    const list = headers.get(name);
    if (list) list.push(value);
    else headers.set(name, [value]);
  }
  const html = typeof mail.html === 'string' ? mail.html : null;
  return {
    fromAddress: (from?.address ?? '').toLowerCase(),
    fromName: from?.name ?? '',
    subject: mail.subject ?? '',
    messageId: mail.messageId ?? null,
    date: mail.date ?? null,
    text: mail.text ?? '',
    html,
    headers,
  };
}

function firstAddress(value: AddressObject | AddressObject[] | undefined): { address?: string; name: string } | null {
  const object = Array.isArray(value) ? value[0] : value;
  return object?.value[0] ?? null;
}

