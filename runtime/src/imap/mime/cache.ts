/**
 * Per-process cache of what FETCH and SEARCH ask for again and again: a
 * message's top-level header block and its compiled ENVELOPE, BODY and
 * BODYSTRUCTURE (Dovecot keeps the same in dovecot.index.cache). Keyed by the
 * store's GUID, which names immutable content (Maildir never rewrites a
 * message), so entries never go stale; bounded by bytes, least recently used
 * out first.
 */

import { compile } from "../wire/compiler.js";
import { bodyStructure } from "./bodystructure.js";
import { envelope } from "./envelope.js";
import { type MimePart, parseMime } from "./structure.js";

export interface CachedMessage {
  /** Top-level header block, blank line included. */
  header: Buffer;
  envelope: Buffer;
  body: Buffer;
  bodyStructure: Buffer;
}

/** MESSAGE_CACHE_BYTES: memory the cache may hold. */
export const MESSAGE_CACHE_BYTES = 32 * 1024 * 1024;

export class MessageCache {
  private readonly map = new Map<string, CachedMessage>();
  private bytes = 0;

  constructor(private readonly maxBytes = MESSAGE_CACHE_BYTES) {}

  get(guid: string): CachedMessage | undefined {
    const hit = this.map.get(guid);
    if (hit) {
      // refresh its place in the LRU order
      this.map.delete(guid);
      this.map.set(guid, hit);
    }
    return hit;
  }

  /** Builds (from the parsed message) and remembers an entry. */
  fill(guid: string, content: Buffer, root: MimePart = parseMime(content)): CachedMessage {
    const existing = this.map.get(guid);
    if (existing) return existing;
    const entry: CachedMessage = {
      header: Buffer.from(content.subarray(root.start, root.bodyStart)),
      envelope: compile([envelope(root)]),
      body: compile([bodyStructure(content, root, false)]),
      bodyStructure: compile([bodyStructure(content, root, true)]),
    };
    const size = sizeOf(entry);
    if (size > this.maxBytes / 16) return entry;
    this.map.set(guid, entry);
    this.bytes += size;
    for (const [k, v] of this.map) {
      if (this.bytes <= this.maxBytes) break;
      this.map.delete(k);
      this.bytes -= sizeOf(v);
    }
    return entry;
  }

  get size(): number {
    return this.map.size;
  }
}

function sizeOf(e: CachedMessage): number {
  return e.header.length + e.envelope.length + e.body.length + e.bodyStructure.length + 200;
}

export const messageCache = new MessageCache();

/** Cache key: the owner too, so equal unique names in two accounts can never share an entry. */
export function cacheKey(user: string, meta: { guid: string; size: number }): string {
  return `${user}\0${meta.guid}\0${meta.size}`;
}
