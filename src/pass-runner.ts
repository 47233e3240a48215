/**
 * One pass at a time over a mailbox, a folder or the outbox: a request made while a pass runs
 * folds into one more pass after it, so a burst of new-mail events costs two passes, not fifty.
 */
import { coerceError } from './errors';

export interface PassRunnerOptions {
  readonly pass: () => Promise<void>;
  /** Checked before each folded pass; false stops the loop (the daemon is stopping). */
  readonly keepGoing?: () => boolean;
  /** After the passes succeeded. */
  readonly done?: () => void;
  /** A failed pass ends the loop; with this, the error is reported here once and the request resolves. */
  readonly onError?: (err: Error) => void;
  /** After the loop, whatever its end. */
  readonly settled?: () => void;
}

export class PassRunner {
  private running: Promise<void> | null = null;
  private again = false;

  constructor(private readonly options: PassRunnerOptions) {}

  request(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const { pass, keepGoing = () => true, done, onError, settled } = this.options;
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await pass();
        } while (this.again && keepGoing());
        done?.();
      } catch (err) {
        if (!onError) throw err;
        onError(coerceError(err));
      } finally {
        this.running = null;
        settled?.();
      }
    })();
    return this.running;
  }

  get busy(): boolean {
    return this.running !== null;
  }

  /** Resolves when the pass in hand, if any, has ended. */
  settle(): Promise<void> {
    return this.running?.catch(() => undefined) ?? Promise.resolve();
  }
}
