/**
 * A folder of .eml files, for trying keymailer without a mail server and for sellers who export
 * notifications by hand. Handled files move to processed/ or review/ inside the folder, only
 * after their final state is committed.
 */
import fs from 'node:fs';
import path from 'node:path';
import cron, { type ScheduledTask } from 'node-cron';
import { sha256 } from '../hash';
import type { Logger } from '../log';
import { PassRunner } from '../pass-runner';
import type { IncomingMessage, MessageHandler, Source, SourceStatus } from '../types';

export class DropFolderSource implements Source {
  readonly description: string;
  private watcher: fs.FSWatcher | null = null;
  private poll: ScheduledTask | null = null;
  private handler: MessageHandler | null = null;
  private readonly runner = new PassRunner({
    pass: async () => {
      if (this.handler) await this.passOn(this.folder, this.handler, false);
    },
    keepGoing: () => !this.stopped,
    done: () => {
      this.lastSyncAt = Date.now();
    },
    onError: (err) => this.log.warn('drop folder pass interrupted; will retry', { reason: err.message }),
  });
  private stopped = false;
  private debounce: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  private lastSyncAt: number | null = null;

  constructor(
    readonly folder: string,
    private readonly log: Logger,
    private readonly pollSchedule: string = '* * * * *',
    private readonly maxMessageSize: number = 10 * 1024 * 1024,
  ) {
    this.description = `drop folder ${folder}`;
  }

  status(): SourceStatus {
    return { connected: true, since: this.startedAt, lastSyncAt: this.lastSyncAt };
  }

  get processedFolder(): string {
    return path.join(this.folder, 'processed');
  }

  get reviewFolder(): string {
    return path.join(this.folder, 'review');
  }

  async start(handle: MessageHandler): Promise<void> {
    await this.ensureFolders();
    await this.requestPass(handle);
    this.watcher = fs.watch(this.folder, () => {
      // Editors and copies fire several events per file: wait for the burst to settle.
      if (this.debounce) clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.requestPass(handle), 150);
    });
    this.watcher.on('error', (err) => this.log.warn('drop folder watch failed; polling continues', { reason: err.message }));
    this.poll = cron.schedule(this.pollSchedule, () => void this.requestPass(handle), { noOverlap: true, name: 'drop-poll', timezone: 'UTC' });
  }

  async drain(handle: MessageHandler): Promise<void> {
    await this.ensureFolders();
    await this.requestPass(handle);
  }

  /** Runs the files in review/ through again; those that now succeed move to processed/. */
  async processReview(handle: MessageHandler, onTotal?: (count: number) => void): Promise<number> {
    return this.passOn(this.reviewFolder, handle, true, onTotal);
  }

  private async ensureFolders(): Promise<void> {
    for (const dir of [this.folder, this.processedFolder, this.reviewFolder]) await fs.promises.mkdir(dir, { recursive: true });
  }

  private requestPass(handle: MessageHandler): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.handler = handle;
    return this.runner.request();
  }

  private async passOn(folder: string, handle: MessageHandler, fromReview: boolean, onTotal?: (count: number) => void): Promise<number> {
    const names = (await fs.promises.readdir(folder, { withFileTypes: true }))
      .filter((e) => e.isFile() && e.name.toLowerCase().endsWith('.eml'))
      .map((e) => e.name)
      .sort();
    onTotal?.(names.length);
    let handled = 0;
    for (let i = 0; i < names.length && !this.stopped; i += BATCH) {
      const files: string[] = [];
      const messages: IncomingMessage[] = [];
      for (const name of names.slice(i, i + BATCH)) {
        const file = path.join(folder, name);
        let raw: Buffer;
        let tooLarge: number | undefined;
        try {
          const { size } = await fs.promises.stat(file);
          if (size > this.maxMessageSize) {
            tooLarge = size;
            raw = await readHead(file);
          } else raw = await fs.promises.readFile(file);
        } catch {
          continue; // moved or deleted meanwhile
        }
        // The name alone is not an identity: a seller may drop another order.eml tomorrow.
        const hash = sha256(raw).slice(0, 16);
        const key = { source: `drop:${this.folder}`, uidValidity: 0, uid: `${name}:${hash}` };
        files.push(file);
        messages.push(tooLarge === undefined ? { key, raw } : { key, raw, tooLarge });
      }
      if (messages.length === 0) continue;
      const outcomes = await handle(messages);
      handled += messages.length;
      for (const [index, file] of files.entries()) {
        const outcome = outcomes[index];
        if (outcome === undefined || outcome === 'defer' || (fromReview && outcome === 'review')) continue;
        await moveAside(file, outcome === 'processed' ? this.processedFolder : this.reviewFolder);
      }
    }
    return handled;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.debounce) clearTimeout(this.debounce);
    this.watcher?.close();
    this.poll?.stop();
    await this.runner.settle();
  }
}

/** Files read, decided and committed together: one fsync per batch, and few files held in memory. */
const BATCH = 50;

/** The header block of a file too large to read whole (at most the first 256 KB). */
async function readHead(file: string): Promise<Buffer> {
  const handle = await fs.promises.open(file, 'r');
  try {
    const buffer = Buffer.alloc(256 * 1024);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const head = buffer.subarray(0, bytesRead);
    const end = head.indexOf('\r\n\r\n') >= 0 ? head.indexOf('\r\n\r\n') + 4 : head.indexOf('\n\n') >= 0 ? head.indexOf('\n\n') + 2 : bytesRead;
    return Buffer.from(head.subarray(0, end));
  } finally {
    await handle.close();
  }
}

/** Moves a file into a folder without overwriting a file of the same name already there. */
async function moveAside(file: string, folder: string): Promise<void> {
  const base = path.basename(file, '.eml');
  let target = path.join(folder, `${base}.eml`);
  for (let n = 2; fs.existsSync(target); n++) target = path.join(folder, `${base}-${n}.eml`);
  await fs.promises.rename(file, target);
}
