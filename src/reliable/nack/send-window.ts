import type { PeerKey } from "../protocol.ts";

interface Receiver {
  /** Highest sequence number the receiver has acknowledged (delivered everything up to). */
  acked: number;
  /** When it was last heard acknowledging anything (ms, the protocol's clock). */
  heardAt: number;
  responsive: boolean;
}

/**
 * The sender's side of a NACK stream: the retransmit buffer and the flow-control window. Frames are
 * kept until every responsive receiver has acknowledged them (they are stable), so memory is bounded by
 * the window: at most `capacity` messages and about `windowBytes` bytes are unstable at once.
 */
export class SendWindow {
  /** The next sequence number to hand out. */
  nextSeq = 1;
  /** The lowest sequence number still held (everything below is stable and dropped). */
  low = 1;
  #bytes = 0;
  readonly #frames: Array<Uint8Array | undefined>;
  readonly #sentAt: Float64Array;
  readonly #receivers = new Map<PeerKey, Receiver>();

  constructor(
    readonly capacity: number,
    readonly windowBytes: number,
  ) {
    this.#frames = new Array<Uint8Array | undefined>(capacity);
    this.#sentAt = new Float64Array(capacity);
  }

  /** Messages held for retransmission. */
  get unstable(): number {
    return this.nextSeq - this.low;
  }

  /** Bytes held for retransmission. */
  get unstableBytes(): number {
    return this.#bytes;
  }

  /** True when a message of `bytes` bytes fits in the window. One message always fits in an empty window. */
  canSend(bytes: number): boolean {
    if (this.nextSeq - this.low >= this.capacity) return false;
    return this.#bytes === 0 || this.#bytes + bytes <= this.windowBytes;
  }

  /** Keeps the frame of message `seq` (just sent) for retransmission. */
  record(seq: number, frame: Uint8Array, now: number): void {
    const slot = seq % this.capacity;
    this.#frames[slot] = frame;
    this.#sentAt[slot] = now;
    this.#bytes += frame.length;
  }

  /** The frame of `seq`, if still held. */
  frame(seq: number): Uint8Array | undefined {
    return seq >= this.low && seq < this.nextSeq ? this.#frames[seq % this.capacity] : undefined;
  }

  /** When `seq` was last (re)sent. */
  sentAt(seq: number): number {
    return this.#sentAt[seq % this.capacity]!;
  }

  markResent(seq: number, now: number): void {
    this.#sentAt[seq % this.capacity] = now;
  }

  /** Starts tracking a receiver that has delivered everything before `from`. */
  addReceiver(peer: PeerKey, from: number, now: number): void {
    this.#receivers.set(peer, { acked: Math.max(0, from - 1), heardAt: now, responsive: true });
  }

  removeReceiver(peer: PeerKey): boolean {
    const removed = this.#receivers.delete(peer);
    if (removed) this.#trim();
    return removed;
  }

  hasReceiver(peer: PeerKey): boolean {
    return this.#receivers.has(peer);
  }

  /**
   * A receiver acknowledged everything up to `cumulative`. Returns true when it had been unresponsive
   * (it counts again from now on).
   */
  ack(peer: PeerKey, cumulative: number, now: number): boolean {
    const receiver = this.#receivers.get(peer);
    if (receiver === undefined) return false;
    receiver.heardAt = now;
    const revived = !receiver.responsive;
    receiver.responsive = true;
    if (cumulative > receiver.acked) receiver.acked = Math.min(cumulative, this.nextSeq - 1);
    // A revived receiver may be behind what was already dropped; it cannot hold the window back for that.
    if (revived && receiver.acked < this.low - 1) receiver.acked = this.low - 1;
    this.#trim();
    return revived;
  }

  /**
   * Receivers that have not acknowledged anything for `timeoutMs` while holding messages back stop
   * counting. Returns the ones newly marked unresponsive.
   */
  expire(now: number, timeoutMs: number): Array<{ peer: PeerKey; silentMs: number }> {
    const expired: Array<{ peer: PeerKey; silentMs: number }> = [];
    for (const [peer, receiver] of this.#receivers) {
      if (receiver.responsive && receiver.acked < this.nextSeq - 1 && now - receiver.heardAt > timeoutMs) {
        receiver.responsive = false;
        expired.push({ peer, silentMs: now - receiver.heardAt });
      }
    }
    if (expired.length > 0) this.#trim();
    return expired;
  }

  /** Hands out the next sequence number. */
  next(): number {
    return this.nextSeq++;
  }

  /** Drops every message all responsive receivers have acknowledged. */
  #trim(): void {
    let stable = this.nextSeq - 1;
    for (const receiver of this.#receivers.values()) {
      if (receiver.responsive && receiver.acked < stable) stable = receiver.acked;
    }
    while (this.low <= stable) {
      const slot = this.low % this.capacity;
      this.#bytes -= this.#frames[slot]!.length;
      this.#frames[slot] = undefined;
      this.low++;
    }
  }

  /** Re-checks stability after messages were sent with no receiver known. */
  trim(): void {
    this.#trim();
  }
}
