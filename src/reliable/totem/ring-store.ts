import type { DataFields } from "../../wire/frames.ts";
import type { PeerKey } from "../protocol.ts";

/** A ring's identity: its representative (the member that formed it) and a number that grows with every ring. */
export interface RingId {
  readonly representative: PeerKey;
  readonly seq: number;
}

export function sameRing(a: RingId | undefined, b: RingId | undefined): boolean {
  return a !== undefined && b !== undefined && a.seq === b.seq && a.representative === b.representative;
}

/** One place in a ring's total order. */
export interface RingMessage {
  /** The member that multicast it first. */
  readonly origin: PeerKey;
  readonly originIncarnation: number;
  /** A message of this ring (delivered in its place); undefined for a recovery carrier. */
  readonly data: DataFields | undefined;
  /** A recovery carrier: the encoded relay frame (sent again as it is); its content belongs to an old ring. */
  readonly carrier: Uint8Array | undefined;
}

/**
 * What a member holds of one ring: the messages by global sequence number, how far it received without
 * a gap (`aru`), the highest it received, how far it delivered, and up to where every member is known to
 * have received (`safe`). Messages below both `safe` and `delivered` are nobody's concern any more and
 * are dropped.
 */
export class RingStore {
  readonly id: RingId;
  /** The members in ring order (the token goes from each to the next). */
  readonly members: readonly PeerKey[];
  /** The incarnation each member runs as on this ring (what the commit token said). */
  readonly incarnations: ReadonlyMap<PeerKey, number>;
  readonly #memberSet: ReadonlySet<PeerKey>;
  // Slot i holds sequence number base + i.
  #slots: Array<RingMessage | undefined> = [];
  #base = 1;
  aru = 0;
  highest = 0;
  delivered = 0;
  safe = 0;

  constructor(id: RingId, members: readonly PeerKey[], incarnations: ReadonlyMap<PeerKey, number> = new Map()) {
    this.id = id;
    this.members = members;
    this.incarnations = incarnations;
    this.#memberSet = new Set(members);
  }

  has(member: PeerKey): boolean {
    return this.#memberSet.has(member);
  }

  /** True when `member` runs on this ring as incarnation `incarnation` (an earlier or later one is another member). */
  hasIncarnation(member: PeerKey, incarnation: number): boolean {
    return this.incarnations.get(member) === incarnation;
  }

  /** The member after `member` in ring order. */
  successor(member: PeerKey): PeerKey {
    const index = this.members.indexOf(member);
    return this.members[(index + 1) % this.members.length]!;
  }

  /** Messages held. */
  get size(): number {
    let count = 0;
    for (const slot of this.#slots) if (slot !== undefined) count++;
    return count;
  }

  get(seq: number): RingMessage | undefined {
    return this.#slots[seq - this.#base];
  }

  /** True when `seq` was received (or is below what was dropped as done). */
  received(seq: number): boolean {
    return seq < this.#base || this.#slots[seq - this.#base] !== undefined;
  }

  /** Stores a message; false when it is a duplicate. */
  put(seq: number, message: RingMessage): boolean {
    if (this.received(seq)) return false;
    const index = seq - this.#base;
    while (this.#slots.length < index) this.#slots.push(undefined);
    this.#slots[index] = message;
    if (seq > this.highest) this.highest = seq;
    while (this.received(this.aru + 1) && this.aru + 1 <= this.highest) this.aru++;
    return true;
  }

  /** Missing sequence numbers in [from, to] as inclusive ranges, at most `max` numbers in all. */
  missing(from: number, to: number, max: number): Array<[number, number]> {
    const ranges: Array<[number, number]> = [];
    let budget = max;
    for (let seq = Math.max(from, this.#base); seq <= to && budget > 0; seq++) {
      if (this.received(seq)) continue;
      const last = ranges[ranges.length - 1];
      if (last !== undefined && last[1] === seq - 1) last[1] = seq;
      else ranges.push([seq, seq]);
      budget--;
    }
    return ranges;
  }

  /** Drops what every member has and this member delivered. */
  trim(): void {
    const upTo = Math.min(this.safe, this.delivered);
    const count = upTo - this.#base + 1;
    if (count <= 0) return;
    if (count >= this.#slots.length) this.#slots = [];
    else this.#slots.splice(0, count);
    this.#base = upTo + 1;
  }
}
