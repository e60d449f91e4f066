import type { PeerKey } from "./protocol.ts";
import type { DataFields } from "../wire/frames.ts";

interface PartialMessage {
  readonly pieces: Array<Uint8Array | undefined>;
  received: number;
  bytes: number;
  readonly length: number;
  readonly startedAt: number;
}

export type ReassemblyRefusal = "tooLarge" | "inconsistent";

/**
 * Puts fragmented messages back together. Fragments of one message carry consecutive sequence numbers,
 * so `seq − fragmentIndex` names the message; they may arrive in any order (out-of-band, or best
 * effort). A message whose fragments stop arriving is dropped after a timeout.
 */
export class Reassembler {
  readonly #partial = new Map<string, PartialMessage>();

  constructor(
    readonly maxMessageBytes: number,
    readonly timeoutMs: number,
  ) {}

  /** Messages being put together. */
  get pending(): number {
    return this.#partial.size;
  }

  /**
   * Accepts a fragment (or a whole message). Returns the complete payload when this was the last piece,
   * undefined while pieces are missing, or a refusal for a fragment that cannot be right.
   */
  accept(peer: PeerKey, data: DataFields, now: number): Uint8Array | undefined | ReassemblyRefusal {
    const count = data.fragmentCount;
    if (count === 0) return data.payload;
    if (data.messageLength > this.maxMessageBytes) return "tooLarge";
    const key = `${peer}/${data.seq - data.fragmentIndex}`;
    let partial = this.#partial.get(key);
    if (partial === undefined) {
      partial = { pieces: new Array(count), received: 0, bytes: 0, length: data.messageLength, startedAt: now };
      this.#partial.set(key, partial);
    }
    if (partial.pieces.length !== count || partial.length !== data.messageLength) return this.#drop(key);
    if (partial.pieces[data.fragmentIndex] !== undefined) return undefined;
    partial.pieces[data.fragmentIndex] = data.payload;
    partial.received++;
    partial.bytes += data.payload.length;
    if (partial.bytes > partial.length) return this.#drop(key);
    if (partial.received < count) return undefined;
    this.#partial.delete(key);
    if (partial.bytes !== partial.length) return "inconsistent";
    const message = new Uint8Array(partial.length);
    let offset = 0;
    for (const piece of partial.pieces) {
      message.set(piece!, offset);
      offset += piece!.length;
    }
    return message;
  }

  /** Drops partial messages older than the timeout; returns how many. */
  expire(now: number): number {
    let expired = 0;
    for (const [key, partial] of this.#partial) {
      if (now - partial.startedAt > this.timeoutMs) {
        this.#partial.delete(key);
        expired++;
      }
    }
    return expired;
  }

  /** Forgets a peer's partial messages. */
  forget(peer: PeerKey): void {
    const prefix = `${peer}/`;
    for (const key of this.#partial.keys()) if (key.startsWith(prefix)) this.#partial.delete(key);
  }

  #drop(key: string): ReassemblyRefusal {
    this.#partial.delete(key);
    return "inconsistent";
  }
}
