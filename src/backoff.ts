/** Exponential backoff with ±20 % jitter, as pure math: the caller owns the timers. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const delay = Math.min(baseMs * 2 ** Math.max(0, attempt), maxMs);
  return Math.round(delay * (0.8 + random() * 0.4));
}
