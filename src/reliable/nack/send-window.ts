import type { PeerKey } from "../protocol.ts";

interface Receiver {
  /** Everything up to here was delivered (cumulative acknowledgement). */
  acked: number;
  /** The highest sequence number it has received (gaps below it are being repaired). */
  received: number;
  /** When it was last heard acknowledging anything (ms, the protocol's clock). */
  heardAt: number;
  responsive: boolean;
}

/** How many times the flow-control window the retransmit buffer may hold while gaps are repaired. */
export const BUFFER_WINDOWS = 4;

/** The receiver of a retransmission sent to the whole group. */
export const EVERYONE: PeerKey = "";

/**
 * The sender's side of a NACK stream: the retransmit buffer and the flow-control window.
 *
 * Flow control counts what is in flight: sent, but not yet received by every responsive receiver
 * (`windowMessages` and `windowBytes`). A receiver repairing a gap still reports what it has received
 * above it, so one lost datagram does not stall the sender for the time of a repair.
 *
 * Stability decides what is kept: a frame stays until every responsive receiver has delivered it, for
 * retransmission. While a gap is repaired this may exceed the window, up to `BUFFER_WINDOWS` windows
 * (a hard bound on memory, in messages and in bytes); past that the sender waits.
 */
export class SendWindow {
  /** The next sequence number to hand out. */
  nextSeq = 1;
  /** The lowest sequence number still held (everything below is stable and dropped). */
  low = 1;
  readonly capacity: number;
  readonly maxBufferBytes: number;
  #bytes = 0;
  /** Everything up to here has been received by every responsive receiver. */
  #receivedByAll = 0;
  #inFlightBytes = 0;
  readonly #frames: Array<Uint8Array | undefined>;
  readonly #resentAt: Float64Array;
  readonly #resentTo: Array<PeerKey | undefined>;
  readonly #receivers = new Map<PeerKey, Receiver>();

  constructor(
    readonly windowMessages: number,
    readonly windowBytes: number,
  ) {
    this.capacity = windowMessages * BUFFER_WINDOWS;
    this.maxBufferBytes = windowBytes * BUFFER_WINDOWS;
    this.#frames = new Array<Uint8Array | undefined>(this.capacity);
    this.#resentAt = new Float64Array(this.capacity);
    this.#resentTo = new Array<PeerKey | undefined>(this.capacity);
  }

  /** Messages held for retransmission. */
  get unstable(): number {
    return this.nextSeq - this.low;
  }

  /** Bytes held for retransmission. */
  get unstableBytes(): number {
    return this.#bytes;
  }

  /** The receivers tracked: the other members of the group. */
  get receivers(): number {
    return this.#receivers.size;
  }

  /** Messages sent and not yet received by every responsive receiver. */
  get inFlight(): number {
    return this.nextSeq - 1 - this.#receivedByAll;
  }

  /** True when a message of `bytes` bytes may be sent now. A message always fits in an empty window. */
  canSend(bytes: number): boolean {
    if (this.nextSeq - this.low >= this.capacity) return false;
    if (this.#bytes > 0 && this.#bytes + bytes > this.maxBufferBytes) return false;
    if (this.inFlight >= this.windowMessages) return false;
    return this.#inFlightBytes === 0 || this.#inFlightBytes + bytes <= this.windowBytes;
  }

  /**
   * Keeps the frame of message `seq` (just sent) for retransmission. It counts as never resent: a NACK
   * comes only after a gap has lasted a while, so the first repair may go at once (and the send path
   * saves a clock read per message).
   */
  record(seq: number, frame: Uint8Array): void {
    const slot = seq % this.capacity;
    this.#frames[slot] = frame;
    this.#resentAt[slot] = -Infinity;
    this.#bytes += frame.length;
    this.#inFlightBytes += frame.length;
  }

  /** The frame of `seq`, if still held. */
  frame(seq: number): Uint8Array | undefined {
    return seq >= this.low && seq < this.nextSeq ? this.#frames[seq % this.capacity] : undefined;
  }

  /** When `seq` was last retransmitted (-Infinity: never). */
  resentAt(seq: number): number {
    return this.#resentAt[seq % this.capacity]!;
  }

  /** Whom `seq` was last retransmitted to: one receiver, or {@link EVERYONE} (meaningless when never resent). */
  resentTo(seq: number): PeerKey | undefined {
    return this.#resentTo[seq % this.capacity];
  }

  markResent(seq: number, now: number, to: PeerKey): void {
    const slot = seq % this.capacity;
    this.#resentAt[slot] = now;
    this.#resentTo[slot] = to;
  }

  /** Starts tracking a receiver that has delivered everything before `from`. */
  addReceiver(peer: PeerKey, from: number, now: number): void {
    const acked = Math.max(0, from - 1);
    this.#receivers.set(peer, { acked, received: acked, heardAt: now, responsive: true });
    this.#update();
  }

  removeReceiver(peer: PeerKey): boolean {
    const removed = this.#receivers.delete(peer);
    if (removed) this.#update();
    return removed;
  }

  hasReceiver(peer: PeerKey): boolean {
    return this.#receivers.has(peer);
  }

  /**
   * A receiver delivered everything up to `cumulative` and has received up to `received`. Returns true
   * when it had been unresponsive (it counts again from now on).
   */
  ack(peer: PeerKey, cumulative: number, received: number, now: number): boolean {
    const receiver = this.#receivers.get(peer);
    if (receiver === undefined) return false;
    receiver.heardAt = now;
    const revived = !receiver.responsive;
    receiver.responsive = true;
    const highest = this.nextSeq - 1;
    if (cumulative > receiver.acked) receiver.acked = Math.min(cumulative, highest);
    // A revived receiver may be behind what was already dropped; it cannot hold the buffer back for that.
    if (receiver.acked < this.low - 1) receiver.acked = this.low - 1;
    receiver.received = Math.min(highest, Math.max(receiver.received, received, receiver.acked));
    this.#update();
    return revived;
  }

  /**
   * `peer` stops counting at once, as an unresponsive receiver does (an acknowledgement brings it back).
   * Returns how long it had been silent, or undefined when it was not a counting receiver.
   */
  release(peer: PeerKey, now: number): number | undefined {
    const receiver = this.#receivers.get(peer);
    if (receiver === undefined || !receiver.responsive) return undefined;
    receiver.responsive = false;
    this.#update();
    return now - receiver.heardAt;
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
    if (expired.length > 0) this.#update();
    return expired;
  }

  /** Hands out the next sequence number. */
  next(): number {
    return this.nextSeq++;
  }

  /** Re-checks stability and flow after messages were sent with no receiver known. */
  trim(): void {
    if (this.#receivers.size === 0) this.#update();
  }

  // Recomputes what every responsive receiver has delivered (dropping it) and received (freeing the window).
  #update(): void {
    const highest = this.nextSeq - 1;
    let stable = highest;
    let receivedByAll = highest;
    for (const receiver of this.#receivers.values()) {
      if (!receiver.responsive) continue;
      if (receiver.acked < stable) stable = receiver.acked;
      if (receiver.received < receivedByAll) receivedByAll = receiver.received;
    }
    if (receivedByAll >= this.#receivedByAll) {
      for (let seq = this.#receivedByAll + 1; seq <= receivedByAll; seq++) {
        if (seq >= this.low) this.#inFlightBytes -= this.#frames[seq % this.capacity]!.length;
      }
    } else {
      // A receiver came back (or joined) behind the others: count its in-flight bytes afresh.
      this.#inFlightBytes = 0;
      for (let seq = Math.max(receivedByAll + 1, this.low); seq <= highest; seq++) {
        this.#inFlightBytes += this.#frames[seq % this.capacity]!.length;
      }
    }
    this.#receivedByAll = receivedByAll;
    while (this.low <= stable) {
      const slot = this.low % this.capacity;
      this.#bytes -= this.#frames[slot]!.length;
      this.#frames[slot] = undefined;
      this.low++;
    }
  }
}
