import type { PeerKey } from "./protocol.ts";
import type { DataFields } from "../wire/frames.ts";

interface PartialMessage {
  readonly peer: PeerKey;
  /** The pieces that arrived, by fragment index: memory for what came, not for what a sender claims. */
  readonly pieces: Map<number, Uint8Array>;
  readonly count: number;
  bytes: number;
  readonly length: number;
  readonly startedAt: number;
}

/** Messages one peer may have in pieces at once; a new one past it pushes out the peer's oldest. */
const MAX_PARTIAL_PER_PEER = 16;

export type ReassemblyRefusal = "tooLarge" | "inconsistent";

/**
 * Puts fragmented messages back together. Fragments of one message carry consecutive sequence numbers,
 * so `seq − fragmentIndex` names the message; they may arrive in any order (out-of-band, or best
 * effort). A message whose fragments stop arriving is dropped after a timeout.
 *
 * What it holds is bounded whatever senders claim: a partial message costs what arrived of it (not its
 * claimed fragment count or length), a peer has at most 16 messages in pieces, and all of them together
 * at most `maxHeldBytes` (by default four messages of the largest size); past a bound the oldest are
 * dropped, and counted with the expired ones.
 */
export class Reassembler {
  readonly #partial = new Map<string, PartialMessage>();
  readonly #perPeer = new Map<PeerKey, number>();
  readonly maxHeldBytes: number;
  #heldBytes = 0;
  /** Partial messages dropped for room since `expire` last reported. */
  #evicted = 0;

  constructor(
    readonly maxMessageBytes: number,
    readonly timeoutMs: number,
    maxHeldBytes: number = 4 * maxMessageBytes,
  ) {
    this.maxHeldBytes = maxHeldBytes;
  }

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
      if ((this.#perPeer.get(peer) ?? 0) >= MAX_PARTIAL_PER_PEER) this.#evictOldest(peer);
      partial = { peer, pieces: new Map(), count, bytes: 0, length: data.messageLength, startedAt: now };
      this.#partial.set(key, partial);
      this.#perPeer.set(peer, (this.#perPeer.get(peer) ?? 0) + 1);
    }
    if (partial.count !== count || partial.length !== data.messageLength) return this.#drop(key);
    if (partial.pieces.has(data.fragmentIndex)) return undefined;
    partial.pieces.set(data.fragmentIndex, data.payload);
    partial.bytes += data.payload.length;
    this.#heldBytes += data.payload.length;
    if (partial.bytes > partial.length) return this.#drop(key);
    while (this.#heldBytes > this.maxHeldBytes && this.#partial.size > 1) this.#evictOldest(undefined, key);
    if (partial.pieces.size < count) return undefined;
    this.#remove(key, partial);
    if (partial.bytes !== partial.length) return "inconsistent";
    const message = new Uint8Array(partial.length);
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const piece = partial.pieces.get(i)!;
      message.set(piece, offset);
      offset += piece.length;
    }
    return message;
  }

  /** Bytes of the pieces held. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Drops partial messages older than the timeout; returns how many, with those dropped for room since the last call. */
  expire(now: number): number {
    let dropped = this.#evicted;
    this.#evicted = 0;
    for (const [key, partial] of this.#partial) {
      if (now - partial.startedAt > this.timeoutMs) {
        this.#remove(key, partial);
        dropped++;
      }
    }
    return dropped;
  }

  /** Forgets a peer's partial messages. */
  forget(peer: PeerKey): void {
    for (const [key, partial] of this.#partial) if (partial.peer === peer) this.#remove(key, partial);
  }

  #drop(key: string): ReassemblyRefusal {
    this.#remove(key, this.#partial.get(key)!);
    return "inconsistent";
  }

  // The oldest partial message (of `peer`, or of anyone), but never `keep`.
  #evictOldest(peer: PeerKey | undefined, keep?: string): void {
    for (const [key, partial] of this.#partial) {
      if (key === keep || (peer !== undefined && partial.peer !== peer)) continue;
      this.#remove(key, partial);
      this.#evicted++;
      return;
    }
  }

  #remove(key: string, partial: PartialMessage): void {
    this.#partial.delete(key);
    this.#heldBytes -= partial.bytes;
    const left = (this.#perPeer.get(partial.peer) ?? 1) - 1;
    if (left === 0) this.#perPeer.delete(partial.peer);
    else this.#perPeer.set(partial.peer, left);
  }
}
