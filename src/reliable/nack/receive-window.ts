import type { Stream } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import type { Scheduled } from "../../core/deadlines.ts";
import type { DataFields } from "../../wire/frames.ts";
import { ackFrame } from "../control-frames.ts";
import { idOf } from "../member-key.ts";
import type { PeerKey, ProtocolStats } from "../protocol.ts";

/** One sender's stream as a receiver holds it, with the deadlines of its acknowledgement and its NACK. */
export interface IncomingStream extends Scheduled {
  readonly peer: PeerKey;
  readonly window: ReceiveWindow;
  /** The sender's member id, for acknowledgements and NACKs. */
  readonly originId: Uint8Array;
  /** Counts a delivery and hands the message up; made once per stream. */
  readonly deliver: (data: DataFields) => void;
  /** When the acknowledgement of what is unacknowledged is due (`Infinity`: none is). */
  ackDue: number;
  /** When the NACK of the gap is due (`Infinity`: no gap, or not yet). */
  nackDue: number;
  /** NACKs sent for the current gap: the retry waits double with each. */
  nackAttempts: number;
  /** Times the NACK now due was put off because another receiver asked for the same messages. */
  nackPutOffs: number;
  /** Another receiver asked for all of the current gap while a NACK of ours was pending (and put it off). */
  othersAsked: boolean;
  /** The first and last message our last NACK asked for. */
  askedFirst: number;
  askedLast: number;
  /**
   * The last gap, filled after our NACK, counts as ours alone once the next gap opens — unless a copy
   * of a message of it comes first: a second receiver asked for it too.
   */
  pendingAlone: boolean;
  /** When the current gap opened. */
  gapSince: number;
  /**
   * How many of this stream's recent gaps other receivers asked to repair too (a moving average, 0–1):
   * a gap filled before we asked, or a NACK of ours put off for another's. NACKs of a stream whose
   * losses are shared go to the whole group and ask for the repair to go to everyone, so that one NACK
   * per loss suffices; those of a receiver that loses alone go to the sender only, are repaired to it
   * alone, and cost the other receivers nothing.
   */
  sharedLosses: number;
  /** False once the stream was dropped: a deadline that comes due for it does nothing. */
  live: boolean;
}

/** Past this share of a stream's gaps repaired for others too, its losses count as shared. */
export const SHARED_LOSSES = 0.5;

/** When a receiver acknowledges: after this much received, or this long after the first unacknowledged message. */
export interface AckPolicy {
  readonly ackThreshold: number;
  readonly ackThresholdBytes: number;
  readonly ackDelayMs: number;
}

/**
 * After messages arrived: true when enough is unacknowledged to acknowledge at once; otherwise sets
 * the acknowledgement's deadline (once: the first unacknowledged message starts it) and returns false.
 * Runs per received message, and allocates nothing.
 */
export function ackDueNow(stream: IncomingStream, policy: AckPolicy, now: number): boolean {
  const window = stream.window;
  if (window.unacked >= policy.ackThreshold || window.unackedBytes >= policy.ackThresholdBytes) return true;
  if (window.unacked > 0 && stream.ackDue === Number.POSITIVE_INFINITY) stream.ackDue = now + policy.ackDelayMs;
  return false;
}

/** The acknowledgement of everything the stream has delivered and received; counts start again. */
export function takeAck(stream: IncomingStream, kind: Stream): Uint8Array {
  const window = stream.window;
  const frame = ackFrame(kind, stream.originId, window.incarnation, window.next - 1, window.highestReceived);
  ackTaken(stream);
  return frame;
}

/**
 * The acknowledgement of everything the stream has delivered and received went out (its fields read
 * from the window by a sender that writes it in place, or by `takeAck`): counts start again.
 */
export function ackTaken(stream: IncomingStream): void {
  const window = stream.window;
  window.unacked = 0;
  window.unackedBytes = 0;
  stream.ackDue = Number.POSITIVE_INFINITY;
}

/** The gap is filled: no NACK is due, and the next one starts afresh. */
export function clearNack(stream: IncomingStream): void {
  stream.nackDue = Number.POSITIVE_INFINITY;
  stream.nackAttempts = 0;
  stream.nackPutOffs = 0;
  stream.othersAsked = false;
}

/** A stream from `peer` (incarnation `incarnation`) whose first expected message is `first` (0: not known yet). */
export function openIncomingStream(
  peer: PeerKey,
  first: number,
  incarnation: number,
  limits: EarlyLimits,
  stats: ProtocolStats,
  deliver: (peer: PeerKey, data: DataFields, incarnation: number) => void,
): IncomingStream {
  return {
    peer,
    window: new ReceiveWindow(first, incarnation, limits),
    originId: idOf(peer),
    deliver: (data) => {
      stats.delivered++;
      deliver(peer, data, incarnation);
    },
    ackDue: Number.POSITIVE_INFINITY,
    nackDue: Number.POSITIVE_INFINITY,
    nackAttempts: 0,
    nackPutOffs: 0,
    othersAsked: false,
    askedFirst: 0,
    askedLast: 0,
    pendingAlone: false,
    gapSince: 0,
    // At the threshold: shared until its first gap says otherwise (one gap of a lone lossy receiver does).
    sharedLosses: SHARED_LOSSES,
    live: true,
    queuedAt: Number.POSITIVE_INFINITY,
  };
}

/**
 * How much one stream holds out of order: what its sender may have outstanding beyond the next message
 * the receiver delivers, so that a sender with the same options never overflows it. What arrives past
 * the limits is dropped and asked for again once the gap below it is filled.
 */
export interface EarlyLimits {
  /** Most messages held, and how far above the next one to deliver a held message may be. */
  readonly messages: number;
  /** Most payload bytes held; one message always fits in an empty buffer, as in an empty window. */
  readonly bytes: number;
}

/** What became of a received message. */
export type Receipt = "taken" | "duplicate" | "full";

/**
 * The receiver's side of one sender's NACK stream: delivers in sequence order exactly once, holds
 * early arrivals, and knows which sequence numbers are missing. Out-of-band messages are delivered on
 * arrival and skipped when their turn comes.
 *
 * A window may start without knowing where its stream starts for this receiver (`first` 0): it then
 * holds what arrives, delivers nothing, and is opened once the sender says where to start.
 */
export class ReceiveWindow {
  /** The next sequence number to deliver in order; 0 until the window is opened. */
  next: number;
  /** The highest sequence number known to exist (received, or announced by the sender). */
  highest: number;
  /** The highest sequence number received. */
  highestReceived: number;
  /**
   * Messages that arrived ahead of their turn, by sequence number; null marks an out-of-band message
   * delivered already, so that the in-order pass skips it. Made on first use: most streams never need
   * it, and its size follows what it holds, never the span of the numbers.
   */
  #early: Map<number, DataFields | null> | undefined;
  #earlyBytes = 0;
  /** Messages received, and their payload bytes, since the last acknowledgement. */
  unacked = 0;
  unackedBytes = 0;

  constructor(
    first: number,
    readonly incarnation: number,
    readonly limits: EarlyLimits,
  ) {
    this.next = first;
    this.highest = first - 1;
    this.highestReceived = first - 1;
  }

  /** False while the window waits to learn where its stream starts. */
  get opened(): boolean {
    return this.next > 0;
  }

  /** True when some message below `highest` has not arrived. */
  get hasGap(): boolean {
    return this.next > 0 && this.highest >= this.next;
  }

  /** Messages held out of order. */
  get held(): number {
    return this.#early?.size ?? 0;
  }

  /** Payload bytes held out of order. */
  get heldBytes(): number {
    return this.#earlyBytes;
  }

  /**
   * Accepts a message. Calls `deliver` for it and for every held message it unblocks, in order, and
   * for an out-of-band message at once (once opened). Returns "duplicate" for a message delivered or
   * held already, and "full" for one that would have to be held beyond `limits` (it is dropped).
   */
  receive(data: DataFields, deliver: (data: DataFields) => void): Receipt {
    const seq = data.seq;
    if (seq < this.next) return "duplicate";
    if (seq !== this.next || this.next === 0) {
      const early = (this.#early ??= new Map());
      if (early.has(seq)) return "duplicate";
      const bytes = data.payload.length;
      const { messages, bytes: maxBytes } = this.limits;
      if (early.size >= messages || (this.next > 0 && seq - this.next >= messages)) return "full";
      if (early.size > 0 && this.#earlyBytes + bytes > maxBytes) return "full";
      this.#count(data);
      if (data.outOfBand && this.next > 0) {
        early.set(seq, null);
        deliver(data);
      } else {
        early.set(seq, retained(data));
        this.#earlyBytes += bytes;
      }
      return "taken";
    }
    this.#count(data);
    this.next++;
    deliver(data);
    this.#drain(deliver);
    return "taken";
  }

  /**
   * Opens a window that did not know where its stream starts: delivery starts at `first`. Held
   * messages below it (not meant for this receiver) or too far above it are dropped.
   */
  open(first: number, deliver: (data: DataFields) => void): void {
    this.next = first;
    this.highestReceived = first - 1;
    const early = this.#early;
    if (early !== undefined) {
      for (const [seq, held] of early) {
        if (seq < first || seq - first >= this.limits.messages) {
          this.#remove(seq, held);
          continue;
        }
        if (seq > this.highestReceived) this.highestReceived = seq;
        if (held !== null && held.outOfBand && seq !== first) {
          // Out-of-band messages go up as soon as they may.
          early.set(seq, null);
          this.#earlyBytes -= held.payload.length;
          deliver(held);
        }
      }
    }
    // What the sender announced stays known to exist (a gap to ask for).
    this.highest = Math.max(this.highest, this.highestReceived);
    this.#drain(deliver);
  }

  /** The sender announced its highest sequence number: a lost last message becomes a visible gap (once opened). */
  announce(highest: number): void {
    if (highest > this.highest) this.highest = highest;
  }

  /**
   * The sender no longer holds anything below `lowest`: delivers what is held below it, in order, and
   * reports each run of missing sequence numbers to `lose`, in order with the deliveries. Works in
   * time of the messages held, however far it skips. Returns how many messages were lost.
   */
  skipTo(lowest: number, deliver: (data: DataFields) => void, lose?: (first: number, last: number) => void): number {
    if (this.next === 0 || lowest <= this.next) return 0;
    const early = this.#early;
    const below: number[] = [];
    if (early !== undefined) for (const seq of early.keys()) if (seq < lowest) below.push(seq);
    below.sort((a, b) => a - b);
    let lost = 0;
    for (const seq of below) {
      if (seq > this.next) {
        lost += seq - this.next;
        lose?.(this.next, seq - 1);
      }
      const held = early!.get(seq)!;
      this.#remove(seq, held);
      this.next = seq + 1;
      if (held !== null) deliver(held);
    }
    if (lowest > this.next) {
      lost += lowest - this.next;
      lose?.(this.next, lowest - 1);
      this.next = lowest;
    }
    // Acknowledge the new position soon.
    this.unacked++;
    if (this.highest < this.next - 1) this.highest = this.next - 1;
    this.#drain(deliver);
    return lost;
  }

  /** The missing sequence numbers as inclusive ranges, at most `limit` numbers in all. */
  missing(limit: number): Array<[number, number]> {
    const ranges: Array<[number, number]> = [];
    const early = this.#early;
    let count = 0;
    let seq = this.next;
    while (seq <= this.highest && count < limit) {
      if (early?.has(seq) === true) {
        seq++;
        continue;
      }
      const first = seq;
      while (seq <= this.highest && early?.has(seq) !== true && count < limit) {
        seq++;
        count++;
      }
      ranges.push([first, seq - 1]);
    }
    return ranges;
  }

  #count(data: DataFields): void {
    // Before the window opens, only what the sender announces counts as known to exist.
    if (data.seq > this.highest && this.next > 0) this.highest = data.seq;
    if (data.seq > this.highestReceived) this.highestReceived = data.seq;
    this.unacked++;
    this.unackedBytes += data.payload.length;
  }

  #remove(seq: number, held: DataFields | null): void {
    this.#early!.delete(seq);
    if (held !== null) this.#earlyBytes -= held.payload.length;
  }

  #drain(deliver: (data: DataFields) => void): void {
    const early = this.#early;
    if (early === undefined) return;
    while (early.size > 0) {
      const held = early.get(this.next);
      if (held === undefined) return;
      this.#remove(this.next, held);
      this.next++;
      if (held !== null) deliver(held);
    }
  }
}

/**
 * A message about to be held, keeping little more memory than its payload: one whose payload is a
 * small part of a larger datagram gets a copy of its own, so that what is counted is what is kept.
 */
function retained(data: DataFields): DataFields {
  const payload = data.payload;
  if (payload.buffer.byteLength > 2 * payload.length) data.payload = payload.slice();
  return data;
}
