import type { PeerKey } from "./protocol.ts";
import type { DataFields } from "../wire/frames.ts";

/** A fragmented message given up: the sequence numbers its pieces carry, from `firstSeq` on. */
export interface LostMessage {
  readonly peer: PeerKey;
  readonly incarnation: number;
  readonly firstSeq: number;
  readonly count: number;
}

/** How much reassembly may hold; see {@link reassemblyLimits} for the defaults. */
export interface ReassemblyLimits {
  /** Largest message, in bytes: a piece claiming a longer one is refused. */
  readonly maxMessageBytes: number;
  /** Messages being put together from one sender, and bytes held for them. */
  readonly maxMessagesPerSender: number;
  readonly maxBytesPerSender: number;
  /** Messages being put together from all senders, and bytes held for them. */
  readonly maxMessages: number;
  readonly maxBytes: number;
}

/**
 * The limits for messages of up to `maxMessageBytes`: per sender 16 messages and twice that many bytes
 * (a whole message and more), in all 1,024 messages and 16 times that many bytes (256 MiB for 16 MiB
 * messages: sixteen senders each in the middle of a message of the largest size).
 */
export function reassemblyLimits(maxMessageBytes: number): ReassemblyLimits {
  return {
    maxMessageBytes,
    maxMessagesPerSender: 16,
    maxBytesPerSender: 2 * maxMessageBytes,
    maxMessages: 1_024,
    maxBytes: 16 * maxMessageBytes,
  };
}

export interface ReassemblerOptions {
  readonly limits: ReassemblyLimits;
  /**
   * True when the protocol hands each sender's pieces up in their order (NACK, FEC, Totem): a piece that
   * does not follow the one before means the message cannot be completed, and a message is never given
   * up for taking long. Out-of-band pieces, and every piece when false (best effort), may come in any
   * order and are given up after `timeoutMs` without a new piece.
   */
  readonly ordered: boolean;
  readonly timeoutMs: number;
  /** Called for every message given up (with its sender and the sequence numbers of its pieces). */
  readonly lost?: (message: LostMessage) => void;
}

/** Bytes charged per piece held beyond its payload: what holding it costs (a view and a slot). */
const PIECE_OVERHEAD_BYTES = 64;
/** Ranges of given-up messages remembered per sender: their late pieces are dropped quietly. */
const REMEMBERED_LOSSES = 8;

interface PartialMessage {
  readonly firstSeq: number;
  readonly count: number;
  readonly length: number;
  /** Pieces in order (ordered streams) or by index (any order); grows as pieces arrive, never pre-sized. */
  readonly pieces: Array<Uint8Array | undefined>;
  readonly ordered: boolean;
  received: number;
  /** Payload bytes received, and what holding them is charged. */
  bytes: number;
  held: number;
  /** Time without a new piece, counted by `expire`. */
  idleMs: number;
  /** The `expire` round of the last new piece: the stalest message of a sender goes first. */
  progressedAt: number;
}

interface SenderState {
  incarnation: number;
  /** Partial messages by the sequence number of their first piece. */
  readonly messages: Map<number, PartialMessage>;
  held: number;
  /** Recent given-up messages as [first, last] sequence numbers. */
  losses: Array<readonly [number, number]>;
}

/**
 * Puts fragmented messages back together. Pieces of one message carry consecutive sequence numbers of
 * one sender incarnation, so (sender, incarnation, `seq − fragmentIndex`) names the message; pieces of
 * two incarnations never mix, and a sender's new incarnation ends its old one's partial messages.
 *
 * Nothing is taken on trust: a piece is checked against the message it claims to belong to (count and
 * length agree, the bytes fit), nothing is allocated for a message before its bytes arrive, and what is
 * held is bounded per sender and in all (`limits`). A message that cannot be completed is given up at
 * once and reported through `lost`, with its sender and the sequence numbers of its pieces: pieces out
 * of order on an ordered stream, inconsistent pieces, a limit reached (a sender's stalest message makes
 * room for its newer ones; past the overall limits a new message is refused), the sender gone or cut
 * off (`forget`, `cut`), or — for pieces that may come in any order — no new piece for `timeoutMs`. Late
 * pieces of a message given up are dropped quietly.
 */
export class Reassembler {
  readonly #senders = new Map<PeerKey, SenderState>();
  readonly #limits: ReassemblyLimits;
  readonly #ordered: boolean;
  readonly #timeoutMs: number;
  readonly #lost: (message: LostMessage) => void;
  #messages = 0;
  #held = 0;
  #lastExpire: number | undefined;
  #round = 0;
  #failures = 0;
  #refusedPieces = 0;

  constructor(options: ReassemblerOptions) {
    this.#limits = options.limits;
    this.#ordered = options.ordered;
    this.#timeoutMs = options.timeoutMs;
    this.#lost = options.lost ?? (() => undefined);
  }

  /** Messages being put together. */
  get pending(): number {
    return this.#messages;
  }

  /** Bytes held for them (payload, and what holding each piece costs). */
  get heldBytes(): number {
    return this.#held;
  }

  /** Messages given up since creation. */
  get failures(): number {
    return this.#failures;
  }

  /** Pieces dropped without a message of their own to give up (a message given up already, an old incarnation). */
  get refusedPieces(): number {
    return this.#refusedPieces;
  }

  /**
   * Accepts a piece (or a whole message) of `peer`'s incarnation `incarnation`. Returns the complete
   * payload when this was the last piece, and undefined otherwise (pieces missing, or the piece refused).
   */
  accept(peer: PeerKey, incarnation: number, data: DataFields): Uint8Array | undefined {
    const count = data.fragmentCount;
    if (count === 0) return data.payload;
    const firstSeq = data.seq - data.fragmentIndex;
    let sender = this.#senders.get(peer);
    if (sender !== undefined && incarnation !== sender.incarnation) {
      if (incarnation < sender.incarnation) {
        this.#refusedPieces++;
        return undefined;
      }
      // A new incarnation: what the old one left half-sent will never be finished.
      this.#dropSender(peer, sender);
      sender = undefined;
    }
    if (sender === undefined) {
      sender = { incarnation, messages: new Map(), held: 0, losses: [] };
      this.#senders.set(peer, sender);
    }
    let partial = sender.messages.get(firstSeq);
    if (partial === undefined) {
      if (wasLost(sender, firstSeq)) {
        this.#refusedPieces++;
        return this.#release(peer, sender);
      }
      const ordered = this.#ordered && !data.outOfBand;
      const length = data.messageLength;
      const message = { peer, incarnation, firstSeq, count };
      // A message cannot be longer than allowed, nor have more pieces than bytes; on an ordered stream its
      // first piece comes first.
      if (length > this.#limits.maxMessageBytes || count > length || (ordered && data.fragmentIndex !== 0)) {
        this.#giveUp(sender, message);
        return this.#release(peer, sender);
      }
      if (sender.messages.size >= this.#limits.maxMessagesPerSender) this.#evictStalest(peer, sender, undefined);
      if (this.#messages >= this.#limits.maxMessages) {
        this.#giveUp(sender, message);
        return this.#release(peer, sender);
      }
      partial = { firstSeq, count, length, pieces: [], ordered, received: 0, bytes: 0, held: 0, idleMs: 0, progressedAt: this.#round };
      sender.messages.set(firstSeq, partial);
      this.#messages++;
    }
    const index = data.fragmentIndex;
    const piece = data.payload;
    if (partial.count !== count || partial.length !== data.messageLength || partial.bytes + piece.length > partial.length) {
      this.#drop(peer, sender, partial);
      return this.#release(peer, sender);
    }
    if (partial.pieces[index] !== undefined) return undefined;
    if (partial.ordered && index !== partial.received) {
      // A piece went missing on a stream that hands pieces up in order: it will not come.
      this.#drop(peer, sender, partial);
      return this.#release(peer, sender);
    }
    const cost = piece.length + PIECE_OVERHEAD_BYTES;
    while (sender.held + cost > this.#limits.maxBytesPerSender && this.#evictStalest(peer, sender, partial));
    if (sender.held + cost > this.#limits.maxBytesPerSender || this.#held + cost > this.#limits.maxBytes) {
      this.#drop(peer, sender, partial);
      return this.#release(peer, sender);
    }
    partial.pieces[index] = piece;
    partial.received++;
    partial.bytes += piece.length;
    partial.held += cost;
    partial.idleMs = 0;
    partial.progressedAt = this.#round;
    sender.held += cost;
    this.#held += cost;
    if (partial.received < count) return undefined;
    if (partial.bytes !== partial.length) {
      this.#drop(peer, sender, partial);
      return this.#release(peer, sender);
    }
    this.#remove(sender, partial);
    this.#release(peer, sender);
    const message = new Uint8Array(partial.length);
    let offset = 0;
    for (const done of partial.pieces) {
      message.set(done!, offset);
      offset += done!.length;
    }
    return message;
  }

  /**
   * Gives up messages whose pieces may come in any order and have not for `timeoutMs`. Time counts from
   * one call to the next, at most a quarter of the timeout per call: a stall of the process or a forward
   * jump of its clock alone never gives a message up.
   */
  expire(now: number): void {
    const elapsed = this.#lastExpire === undefined ? 0 : Math.min(Math.max(0, now - this.#lastExpire), this.#timeoutMs / 4);
    this.#lastExpire = now;
    this.#round++;
    for (const [peer, sender] of this.#senders) {
      for (const partial of sender.messages.values()) {
        if (partial.ordered) continue;
        partial.idleMs += elapsed;
        if (partial.idleMs > this.#timeoutMs) this.#drop(peer, sender, partial);
      }
      this.#release(peer, sender);
    }
  }

  /** `peer` (incarnation `incarnation` or older) will hand up no more of what it sent so far: its partial messages are lost. */
  cut(peer: PeerKey, incarnation: number): void {
    const sender = this.#senders.get(peer);
    if (sender === undefined || sender.incarnation > incarnation) return;
    for (const partial of [...sender.messages.values()]) this.#drop(peer, sender, partial);
    this.#release(peer, sender);
  }

  /** `peer` is gone: its partial messages are lost and nothing of it is kept. */
  forget(peer: PeerKey): void {
    const sender = this.#senders.get(peer);
    if (sender !== undefined) this.#dropSender(peer, sender);
  }

  #dropSender(peer: PeerKey, sender: SenderState): void {
    for (const partial of [...sender.messages.values()]) this.#drop(peer, sender, partial);
    this.#senders.delete(peer);
  }

  /** Gives up the sender's message that made progress longest ago (not `keep`); false when there is none. */
  #evictStalest(peer: PeerKey, sender: SenderState, keep: PartialMessage | undefined): boolean {
    let stalest: PartialMessage | undefined;
    for (const partial of sender.messages.values()) {
      if (partial !== keep && (stalest === undefined || partial.progressedAt < stalest.progressedAt)) stalest = partial;
    }
    if (stalest === undefined) return false;
    this.#drop(peer, sender, stalest);
    return true;
  }

  #drop(peer: PeerKey, sender: SenderState, partial: PartialMessage): void {
    this.#remove(sender, partial);
    this.#giveUp(sender, { peer, incarnation: sender.incarnation, firstSeq: partial.firstSeq, count: partial.count });
  }

  #giveUp(sender: SenderState, message: LostMessage): void {
    this.#failures++;
    remember(sender, message.firstSeq, message.firstSeq + message.count - 1);
    this.#lost(message);
  }

  #remove(sender: SenderState, partial: PartialMessage): void {
    sender.messages.delete(partial.firstSeq);
    sender.held -= partial.held;
    this.#held -= partial.held;
    this.#messages--;
  }

  /** A sender with nothing in progress keeps only its recent losses, and only while few senders are known. */
  #release(peer: PeerKey, sender: SenderState): undefined {
    if (sender.messages.size > 0) return undefined;
    if (sender.losses.length === 0 || this.#senders.size > this.#limits.maxMessages) this.#senders.delete(peer);
    return undefined;
  }
}

function wasLost(sender: SenderState, firstSeq: number): boolean {
  for (const [first, last] of sender.losses) if (first <= firstSeq && firstSeq <= last) return true;
  return false;
}

function remember(sender: SenderState, first: number, last: number): void {
  sender.losses.push([first, last]);
  if (sender.losses.length > REMEMBERED_LOSSES) sender.losses.shift();
}
