/** A notification that keymailer cannot read safely: goes to review with this message as the reason. */
export class ParseError extends Error {
  override readonly name = 'ParseError';
}

/** A setting or input the seller must fix; the message names what is wrong and never holds a secret. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Retry later: network trouble, SMTP 4xx, a busy database. */
export class TemporaryError extends Error {
  override readonly name = 'TemporaryError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** Never going to work as it is: SMTP 5xx, bad serial input. Goes to review. */
export class PermanentError extends Error {
  override readonly name = 'PermanentError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** Whatever was thrown, as an Error, so every catch handles one shape. */
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === 'string' ? thrown : JSON.stringify(thrown));
}
