import type { Stream } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import type { Clock } from "../../transport/clock.ts";
import type { DataFields } from "../../wire/frames.ts";
import { ackFrame } from "../control-frames.ts";
import { idOf } from "../member-key.ts";
import type { PeerKey, ProtocolStats } from "../protocol.ts";

/** One sender's stream as a receiver holds it. */
export interface IncomingStream {
  readonly window: ReceiveWindow;
  /** The sender's member id, for acknowledgements and NACKs. */
  readonly originId: Uint8Array;
  /** Counts a delivery and hands the message up; made once per stream. */
  readonly deliver: (data: DataFields) => void;
}

/** When a receiver acknowledges: after this much received, or this long after the first unacknowledged message. */
export interface AckPolicy {
  readonly ackThreshold: number;
  readonly ackThresholdBytes: number;
  readonly ackDelayMs: number;
}

/** How a protocol sends a stream's acknowledgement, and whether the stream is still its current one. */
export interface Acknowledger {
  send(peer: PeerKey, stream: IncomingStream): void;
  current(peer: PeerKey, stream: IncomingStream): boolean;
}

/**
 * After messages arrived: acknowledges at once when enough is unacknowledged, otherwise arms the ack
 * timer (once). The timer sends only while the stream is still current. Runs per received message, so
 * it allocates nothing unless it arms the timer.
 */
export function acknowledge(peer: PeerKey, stream: IncomingStream, policy: AckPolicy, clock: Clock, acknowledger: Acknowledger): void {
  const window = stream.window;
  if (window.unacked >= policy.ackThreshold || window.unackedBytes >= policy.ackThresholdBytes) acknowledger.send(peer, stream);
  else if (window.unacked > 0 && window.ackTimer === undefined) {
    window.ackTimer = clock.setTimer(policy.ackDelayMs, () => {
      window.ackTimer = undefined;
      if (acknowledger.current(peer, stream) && window.unacked > 0) acknowledger.send(peer, stream);
    });
  }
}

/** The acknowledgement of everything the stream has delivered and received; counts start again. */
export function takeAck(stream: IncomingStream, kind: Stream): Uint8Array {
  const window = stream.window;
  window.unacked = 0;
  window.unackedBytes = 0;
  window.ackTimer?.cancel();
  window.ackTimer = undefined;
  return ackFrame(kind, stream.originId, window.incarnation, window.next - 1, window.highestReceived);
}

/** A stream from `peer` (incarnation `incarnation`) whose first expected message is `first`. */
export function openIncomingStream(
  peer: PeerKey,
  first: number,
  incarnation: number,
  stats: ProtocolStats,
  deliver: (peer: PeerKey, data: DataFields, incarnation: number) => void,
): IncomingStream {
  return {
    window: new ReceiveWindow(first, incarnation),
    originId: idOf(peer),
    deliver: (data) => {
      stats.delivered++;
      deliver(peer, data, incarnation);
    },
  };
}

/**
 * The receiver's side of one sender's NACK stream: delivers in sequence order exactly once, holds
 * early arrivals, and knows which sequence numbers are missing. Out-of-band messages are delivered on
 * arrival and skipped when their turn comes.
 */
export class ReceiveWindow {
  /** The next sequence number to deliver in order. */
  next: number;
  /** The highest sequence number known to exist (received, or announced by the sender). */
  highest: number;
  /** The highest sequence number received. */
  highestReceived: number;
  readonly #early = new EarlyBuffer();
  /** Messages received, and their payload bytes, since the last acknowledgement. */
  unacked = 0;
  unackedBytes = 0;

  // NACK scheduling state, owned by the protocol.
  nackTimer: { cancel(): void } | undefined;
  nackAttempts = 0;
  ackTimer: { cancel(): void } | undefined;

  constructor(
    first: number,
    readonly incarnation: number,
  ) {
    this.next = first;
    this.highest = first - 1;
    this.highestReceived = first - 1;
  }

  /** True when some message below `highest` has not arrived. */
  get hasGap(): boolean {
    return this.highest >= this.next;
  }

  /**
   * Accepts a message. Calls `deliver` for it and for every held message it unblocks, in order, and
   * for an out-of-band message at once. Returns false for a duplicate.
   */
  receive(data: DataFields, deliver: (data: DataFields) => void): boolean {
    const seq = data.seq;
    if (seq < this.next || this.#early.has(seq)) return false;
    if (seq > this.highest) this.highest = seq;
    if (seq > this.highestReceived) this.highestReceived = seq;
    this.unacked++;
    this.unackedBytes += data.payload.length;
    if (seq !== this.next) {
      if (data.outOfBand) {
        // null marks "delivered already" so the in-order pass skips it.
        this.#early.set(seq, null);
        deliver(data);
      } else {
        this.#early.set(seq, data);
      }
      return true;
    }
    this.next++;
    deliver(data);
    this.#drain(deliver);
    return true;
  }

  /** The sender announced its highest sequence number: a lost last message becomes a visible gap. */
  announce(highest: number): void {
    if (highest > this.highest) this.highest = highest;
  }

  /**
   * The sender no longer holds anything below `lowest`: skip what is missing below it, deliver what is
   * held. Returns how many messages were lost.
   */
  skipTo(lowest: number, deliver: (data: DataFields) => void): number {
    let lost = 0;
    while (this.next < lowest) {
      const held = this.#early.get(this.next);
      if (held === undefined) lost++;
      else {
        this.#early.delete(this.next);
        if (held !== null) deliver(held);
      }
      this.next++;
    }
    this.unacked++;
    if (this.highest < this.next - 1) this.highest = this.next - 1;
    this.#drain(deliver);
    return lost;
  }

  /** The missing sequence numbers as inclusive ranges, at most `limit` numbers in all. */
  missing(limit: number): Array<[number, number]> {
    const ranges: Array<[number, number]> = [];
    let count = 0;
    let seq = this.next;
    while (seq <= this.highest && count < limit) {
      if (this.#early.has(seq)) {
        seq++;
        continue;
      }
      const first = seq;
      while (seq <= this.highest && !this.#early.has(seq) && count < limit) {
        seq++;
        count++;
      }
      ranges.push([first, seq - 1]);
    }
    return ranges;
  }

  /** The gap is filled: no NACK is due, and the next one starts afresh. */
  clearNack(): void {
    this.nackTimer?.cancel();
    this.nackTimer = undefined;
    this.nackAttempts = 0;
  }

  /** Stops the NACK and acknowledgement timers. */
  cancelTimers(): void {
    this.nackTimer?.cancel();
    this.nackTimer = undefined;
    this.ackTimer?.cancel();
    this.ackTimer = undefined;
  }

  /** Messages held out of order. */
  get held(): number {
    return this.#early.size;
  }

  #drain(deliver: (data: DataFields) => void): void {
    const early = this.#early;
    while (early.size > 0) {
      const held = early.get(this.next);
      if (held === undefined) return;
      early.delete(this.next);
      this.next++;
      if (held !== null) deliver(held);
    }
  }
}

/**
 * Messages that arrived ahead of their turn, by sequence number: a ring of slots indexed by
 * `seq mod size`, doubled when a message lands beyond it. Cheaper than a Map on the path every
 * message behind a lost datagram takes.
 */
class EarlyBuffer {
  #slots: Array<DataFields | null | undefined> = new Array(1024);
  #seqs = new Float64Array(1024).fill(-1);
  /** Every held sequence number is in [base, base + slots.length). */
  #base = 0;
  /** The highest sequence number held since the buffer was last empty (an upper bound of those held). */
  #top = 0;
  size = 0;

  has(seq: number): boolean {
    return this.get(seq) !== undefined;
  }

  get(seq: number): DataFields | null | undefined {
    const slot = seq % this.#slots.length;
    return this.#seqs[slot] === seq ? this.#slots[slot] : undefined;
  }

  set(seq: number, data: DataFields | null): void {
    if (this.size === 0) this.#base = this.#top = seq;
    else if (seq < this.#base) this.#rebase(seq);
    else if (seq > this.#top) this.#top = seq;
    while (seq - this.#base >= this.#slots.length) this.#grow();
    const slot = seq % this.#slots.length;
    this.#slots[slot] = data;
    this.#seqs[slot] = seq;
    this.size++;
  }

  delete(seq: number): void {
    const slot = seq % this.#slots.length;
    if (this.#seqs[slot] !== seq) return;
    this.#slots[slot] = undefined;
    this.#seqs[slot] = -1;
    this.size--;
    if (seq === this.#base) this.#base++;
  }

  #rebase(seq: number): void {
    this.#base = seq;
    while (this.#top - seq >= this.#slots.length) this.#grow();
  }

  #grow(): void {
    const slots = this.#slots;
    const seqs = this.#seqs;
    this.#slots = new Array(slots.length * 2);
    this.#seqs = new Float64Array(slots.length * 2).fill(-1);
    for (let i = 0; i < slots.length; i++) {
      const seq = seqs[i]!;
      if (seq >= 0 && slots[i] !== undefined) {
        const slot = seq % this.#slots.length;
        this.#slots[slot] = slots[i];
        this.#seqs[slot] = seq;
      }
    }
  }
}
