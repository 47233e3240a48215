import type { VendorParser } from '../types';

/** Identity function that gives a vendor file its type checking and one obvious shape. */
export function defineParser(parser: VendorParser): VendorParser {
  return Object.freeze(parser);
}
