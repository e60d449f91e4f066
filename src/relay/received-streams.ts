import type { PeerKey } from "../reliable/protocol.ts";
import { type RelayedMessage, type SiteMember, type StreamKind, streamKey, type StreamPosition } from "./relay-frames.ts";

/** One origin's stream as a receiver follows it. */
interface InStream {
  readonly origin: SiteMember;
  readonly stream: StreamKind;
  readonly targetId: PeerKey;
  /** The number delivered next. */
  next: number;
  /** Whether anything of it was delivered here (a stream first met past a gap skips it silently). */
  started: boolean;
  /** Messages that came ahead of `next`, by number. */
  readonly held: Map<number, RelayedMessage>;
  heldBytes: number;
  /** Last time a message of it arrived (for eviction of the idlest stream). */
  lastActive: number;
}

/** What one arrival gives: messages to deliver, in order, and runs skipped for good. */
export interface Arrival {
  readonly deliver: readonly RelayedMessage[];
  readonly lost: readonly { readonly origin: SiteMember; readonly stream: StreamKind; readonly firstSeq: number; readonly lastSeq: number }[];
}

export interface ReceivedStats {
  /** Messages delivered. */
  delivered: number;
  /** Copies of messages delivered already (resends after a gateway change, mostly). */
  duplicates: number;
  /** Messages too far ahead of the next one to hold: dropped, sent again by the origin later. */
  early: number;
  /** Messages of an origin's older incarnation, after its newer one was heard. */
  stale: number;
  /** Streams forgotten to stay within `maxStreams`. */
  evicted: number;
  /** Messages reported lost (skipped because their origin released them: their site was down). */
  lost: number;
}

const NONE: Arrival = { deliver: [], lost: [] };

/**
 * The receiving side of the streams above the bridge: each member delivers every origin's relayed
 * messages once, in the origin's order, whichever gateway and however many times they came through.
 * Out-of-order messages wait (at most `windowMessages` ahead of the next one and `windowBytes` per
 * stream, what an origin may hold); a message's `floor` says what its origin no longer holds, and a
 * receiver waiting for less skips there. How far each stream was delivered is reported to the site's
 * gateway, which acknowledges to the origins. At most `maxStreams` streams are followed; past that the
 * idlest one is forgotten (a stream met again starts afresh at its floor).
 */
export class ReceivedStreams {
  readonly #streams = new Map<string, InStream>();
  /** The newest incarnation heard of each origin id: older ones' messages are stale. */
  readonly #incarnations = new Map<PeerKey, number>();
  /** Streams whose position moved since the last report. */
  readonly #moved = new Set<string>();
  readonly stats: ReceivedStats = { delivered: 0, duplicates: 0, early: 0, stale: 0, evicted: 0, lost: 0 };

  constructor(
    private readonly windowMessages: number,
    private readonly windowBytes: number,
    private readonly maxStreams: number,
  ) {}

  get size(): number {
    return this.#streams.size;
  }

  /** Takes a message of a stream; returns what can be delivered now and what was skipped. */
  accept(message: RelayedMessage, now: number): Arrival {
    const { origin } = message;
    const newest = this.#incarnations.get(origin.id) ?? 0;
    if (origin.incarnation < newest) {
      this.stats.stale++;
      return NONE;
    }
    if (origin.incarnation > newest) this.#restarted(origin);
    const targetId = message.stream === "direct" ? message.target!.id : "";
    const key = streamKey(origin, message.stream, targetId);
    let stream = this.#streams.get(key);
    if (stream === undefined) {
      this.#evictFor(1);
      stream = { origin, stream: message.stream, targetId, next: message.floor, started: false, held: new Map(), heldBytes: 0, lastActive: now };
      this.#streams.set(key, stream);
    }
    stream.lastActive = now;
    const lost: Arrival["lost"][number][] = [];
    if (message.floor > stream.next) {
      if (stream.started) {
        lost.push({ origin, stream: message.stream, firstSeq: stream.next, lastSeq: message.floor - 1 });
        this.stats.lost += message.floor - stream.next;
      }
      for (const [seq, held] of stream.held) {
        if (seq >= message.floor) continue;
        stream.held.delete(seq);
        stream.heldBytes -= held.payload.length;
      }
      stream.next = message.floor;
      this.#moved.add(key);
    }
    if (message.seq < stream.next || stream.held.has(message.seq)) {
      // A copy: its origin did not hear the acknowledgement (lost, or refused by a gateway that did not
      // know the acknowledging one yet), so the position is reported again.
      this.stats.duplicates++;
      this.#moved.add(key);
      return lost.length === 0 ? NONE : { deliver: [], lost };
    }
    if (message.seq > stream.next) {
      const fits = message.seq - stream.next <= this.windowMessages && stream.heldBytes + message.payload.length <= this.windowBytes;
      if (!fits) {
        this.stats.early++;
      } else {
        stream.held.set(message.seq, message);
        stream.heldBytes += message.payload.length;
      }
      return lost.length === 0 ? NONE : { deliver: [], lost };
    }
    const deliver: RelayedMessage[] = [message];
    stream.next++;
    for (let held = stream.held.get(stream.next); held !== undefined; held = stream.held.get(stream.next)) {
      stream.held.delete(stream.next);
      stream.heldBytes -= held.payload.length;
      deliver.push(held);
      stream.next++;
    }
    stream.started = true;
    this.stats.delivered += deliver.length;
    this.#moved.add(key);
    return { deliver, lost };
  }

  /** How far each stream was delivered: those that moved since the last call, or all with `complete`. */
  positions(complete: boolean): StreamPosition[] {
    const keys = complete ? [...this.#streams.keys()] : [...this.#moved];
    this.#moved.clear();
    const out: StreamPosition[] = [];
    for (const key of keys) {
      const stream = this.#streams.get(key);
      if (stream !== undefined) out.push({ origin: stream.origin, stream: stream.stream, targetId: stream.targetId, seq: stream.next - 1 });
    }
    return out;
  }

  /** Whether positions moved (or copies came, to acknowledge again) since the last report. */
  get hasMoved(): boolean {
    return this.#moved.size > 0;
  }

  // An origin restarted (a newer incarnation): its older streams are over.
  #restarted(origin: SiteMember): void {
    this.#incarnations.set(origin.id, origin.incarnation);
    for (const [key, stream] of this.#streams) if (stream.origin.id === origin.id && stream.origin.incarnation < origin.incarnation) this.#streams.delete(key);
    if (this.#incarnations.size > this.maxStreams) this.#incarnations.delete(this.#incarnations.keys().next().value!);
  }

  #evictFor(count: number): void {
    while (this.#streams.size + count > this.maxStreams) {
      let idlest: string | undefined;
      let at = Number.POSITIVE_INFINITY;
      for (const [key, stream] of this.#streams) {
        if (stream.lastActive < at) {
          at = stream.lastActive;
          idlest = key;
        }
      }
      this.#streams.delete(idlest!);
      this.#moved.delete(idlest!);
      this.stats.evicted++;
    }
  }
}
