/**
 * The queue directory. Layout:
 *   tmp/            files being written (removed at start: never acknowledged)
 *   msg/<id>        one line of envelope JSON, then the message bytes (CRLF)
 *                   exactly as they will be delivered (the envelope's `size`
 *                   says how many); written in full in tmp/, then renamed
 *                   into msg/
 *   state/<id>.json the envelope with later delivery state (per-recipient
 *                   outcomes, attempts, next retry); overrides the copy in msg/
 *   flush           ops request (`mailinfra queue flush`): retry everything now
 *
 * A message is acknowledged (250) only after its file and the msg/ directory
 * are fsynced: one file, one file fsync and one (group-committed) directory
 * fsync per message, the two issued together after the rename (durable.ts
 * commitNew: one wait for the disk). A crash before both are done may leave
 * msg/<id> empty or short: never acknowledged, and open() removes it (its
 * length does not match its envelope). State files, which replace each other,
 * keep the strict order (tmp, fsync, rename, directory fsync). Removal deletes
 * msg/<id> first, so a crash never leaves state without its message that
 * matters.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { commitNew, writeDurably } from "./durable.js";
import type { EnqueueRequest, QueuedEnvelope } from "./types.js";

const ID_PATTERN = /^[0-9a-z]{8,16}-[0-9a-f]{12}$/;
const NEWLINE = 0x0a;

export function newQueueId(now = Date.now()): string {
  return `${now.toString(36)}-${randomBytes(6).toString("hex")}`;
}

export function isQueueId(id: string): boolean {
  return ID_PATTERN.test(id);
}

function missing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === "ENOENT";
}

export class QueueStore {
  private tmpCounter = 0;

  constructor(readonly dir: string) {}

  private get tmpDir(): string {
    return join(this.dir, "tmp");
  }
  private get msgDir(): string {
    return join(this.dir, "msg");
  }
  private get stateDir(): string {
    return join(this.dir, "state");
  }
  messagePath(id: string): string {
    return join(this.msgDir, id);
  }
  private statePath(id: string): string {
    return join(this.stateDir, `${id}.json`);
  }
  private tmpPath(id: string, kind: string): string {
    this.tmpCounter += 1;
    return join(this.tmpDir, `${id}.${kind}.${process.pid}.${this.tmpCounter}`);
  }

  /**
   * Creates the folders and removes what a crash left half-done: temporary
   * files and queue files cut short before their fsync (never acknowledged:
   * the client will send again), and state files whose message is gone.
   * Returns the ids of the queue files removed as incomplete.
   */
  async open(): Promise<string[]> {
    for (const d of [this.dir, this.tmpDir, this.msgDir, this.stateDir]) {
      await mkdir(d, { recursive: true, mode: 0o700 });
    }
    for (const name of await readdir(this.tmpDir)) {
      await rm(join(this.tmpDir, name), { force: true });
    }
    const incomplete: string[] = [];
    for (const id of await this.ids()) {
      if (!(await this.whole(id))) {
        await rm(this.messagePath(id), { force: true });
        incomplete.push(id);
      }
    }
    const committed = new Set(await this.ids());
    for (const name of await readdir(this.stateDir)) {
      if (!committed.has(name.replace(/\.json$/, ""))) await rm(join(this.stateDir, name), { force: true });
    }
    return incomplete;
  }

  /**
   * A queue file is whole when it has its envelope line and exactly the bytes
   * the envelope's `size` announces after it. A crash between the rename and
   * the fsync leaves it empty or short (ordered data on ext4 and XFS: the size
   * on disk never runs ahead of the data written).
   */
  private async whole(id: string): Promise<boolean> {
    let envelope: QueuedEnvelope | null;
    let headBytes: number;
    try {
      const read = await this.headWithLength(id);
      if (!read) return true; // gone meanwhile: nothing to remove
      envelope = read.envelope;
      headBytes = read.length;
    } catch {
      return false; // no envelope line, or not JSON
    }
    if (typeof envelope?.size !== "number") return false;
    const { size } = await stat(this.messagePath(id));
    return size === headBytes + 1 + envelope.size;
  }

  /** Writes envelope + message as one file, fsynced with its directory. Resolves only when durable. */
  async enqueue(message: Buffer, request: EnqueueRequest, now = Date.now()): Promise<QueuedEnvelope> {
    const id = request.id ?? newQueueId(now);
    const envelope: QueuedEnvelope = {
      version: 1,
      id,
      receivedAt: now,
      mailFrom: request.mailFrom,
      size: message.length,
      recipients: request.recipients.map((r) => ({ ...r, status: "pending" as const })),
      attempts: 0,
      nextAttemptAt: now,
      ...(request.dsn ? { dsn: request.dsn } : {}),
      ...(request.client ? { client: request.client } : {}),
      ...(request.hold ? { hold: true } : {}),
    };
    const head = Buffer.from(`${JSON.stringify(envelope)}\n`);
    await commitNew(this.tmpPath(id, "msg"), this.messagePath(id), Buffer.concat([head, message]));
    return envelope;
  }

  /** Atomically replaces the delivery state (durable when this resolves). */
  async save(envelope: QueuedEnvelope): Promise<void> {
    await writeDurably(
      this.tmpPath(envelope.id, "state"),
      this.statePath(envelope.id),
      JSON.stringify(envelope),
    );
  }

  async exists(id: string): Promise<boolean> {
    try {
      await stat(this.messagePath(id));
      return true;
    } catch (err) {
      if (missing(err)) return false;
      throw err;
    }
  }

  private async state(id: string): Promise<QueuedEnvelope | null> {
    try {
      return JSON.parse(await readFile(this.statePath(id), "utf8")) as QueuedEnvelope;
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
  }

  /** The envelope line at the start of msg/<id>, read without the message. */
  private async head(id: string): Promise<QueuedEnvelope | null> {
    return (await this.headWithLength(id))?.envelope ?? null;
  }

  /** The envelope and the length of its line (without the newline). */
  private async headWithLength(id: string): Promise<{ envelope: QueuedEnvelope; length: number } | null> {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(this.messagePath(id), "r");
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
    try {
      const chunks: Buffer[] = [];
      for (let position = 0; ; ) {
        const buffer = Buffer.alloc(64 * 1024);
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
        if (bytesRead === 0) throw new Error(`queue file ${id}: no envelope line`);
        const chunk = buffer.subarray(0, bytesRead);
        const nl = chunk.indexOf(NEWLINE);
        chunks.push(nl >= 0 ? chunk.subarray(0, nl) : chunk);
        if (nl >= 0) break;
        position += bytesRead;
      }
      const line = Buffer.concat(chunks);
      return { envelope: JSON.parse(line.toString("utf8")) as QueuedEnvelope, length: line.length };
    } finally {
      await handle.close();
    }
  }

  /** null when the message is gone (delivered, or removed by ops meanwhile). */
  async load(id: string): Promise<QueuedEnvelope | null> {
    const state = await this.state(id);
    if (state) return (await this.exists(id)) ? state : null;
    return this.head(id);
  }

  /** Envelope (latest state) and message bytes with one read of the queue file. */
  async loadWithMessage(id: string): Promise<{ envelope: QueuedEnvelope; message: Buffer } | null> {
    let data: Buffer;
    try {
      data = await readFile(this.messagePath(id));
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
    const nl = data.indexOf(NEWLINE);
    if (nl < 0) throw new Error(`queue file ${id}: no envelope line`);
    const envelope =
      (await this.state(id)) ?? (JSON.parse(data.subarray(0, nl).toString("utf8")) as QueuedEnvelope);
    return { envelope, message: data.subarray(nl + 1) };
  }

  async readMessage(id: string): Promise<Buffer> {
    const loaded = await this.loadWithMessage(id);
    if (!loaded) throw new Error(`no such queued message: ${id}`);
    return loaded.message;
  }

  /** Committed message ids. */
  async ids(): Promise<string[]> {
    return (await readdir(this.msgDir)).filter(isQueueId);
  }

  /** Removes a message: the queue file (the commit point) first. false when it was not there. */
  async remove(id: string, options: { state?: boolean } = {}): Promise<boolean> {
    if (!isQueueId(id)) return false;
    try {
      await unlink(this.messagePath(id));
    } catch (err) {
      if (missing(err)) return false;
      throw err;
    }
    // state: false when the caller knows no state file was ever written (saves a syscall per message).
    if (options.state !== false) await rm(this.statePath(id), { force: true });
    return true;
  }

  /** Asks the running queue to retry everything now (ops). */
  async requestFlush(): Promise<void> {
    await writeFile(join(this.dir, "flush"), `${Date.now()}\n`);
  }

  /** true once per flush request. */
  async takeFlushRequest(): Promise<boolean> {
    const path = join(this.dir, "flush");
    try {
      await stat(path);
    } catch {
      return false;
    }
    await rm(path, { force: true });
    return true;
  }
}
