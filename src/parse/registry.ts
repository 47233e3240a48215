/**
 * Every vendor parser, in the order they are asked. Listed explicitly (no directory scanning), so
 * what runs is what is reviewed; a test fails when a file in parsers/ is missing here.
 */
import kagi from '../../parsers/kagi';
import type { Notification, VendorParser } from '../types';

export const PARSERS: readonly VendorParser[] = [kagi];

export function findParser(notification: Notification, parsers: readonly VendorParser[] = PARSERS): VendorParser | null {
  for (const parser of parsers) {
    try {
      if (parser.matches(notification)) return parser;
    } catch {
      // matches() must not throw; one that does simply does not claim the message.
    }
  }
  return null;
}
