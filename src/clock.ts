/** The time as keymailer writes it (ISO 8601, UTC), made once per millisecond: a burst stamps many log lines and rows in the same one. */
let lastMs = 0;
let lastIso = '';

export function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}
