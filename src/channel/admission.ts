import type { PeerKey } from "../reliable/protocol.ts";
import type { RandomSource } from "../transport/clock.ts";
import type { Address } from "../transport/transport.ts";
import { encodeFrame } from "../wire/frames.ts";
import type { ReceivedFrame } from "../wire/frames.ts";

/**
 * Admission of new senders: a sender becomes a peer only once it has shown that it receives at the
 * address its datagrams come from (return routability, as QUIC validates addresses). Until then it
 * sits in a small table of its own — a few hundred bytes each, the oldest evicted when full — and
 * none of its datagrams reaches a protocol: one datagram with a made-up sender id, or a spoofed source
 * address, creates no protocol state, gets no reply larger than itself, and cannot make this member
 * send to an address written inside a datagram.
 *
 * What a sender says while it waits is not lost: its first datagram and its latest one are kept
 * (within a byte budget) and handed up, in that order, once it is admitted. The first tells a reliable
 * stream where the sender stood when this member first heard it, so everything it sent from then on is
 * repaired; the latest carries what it asks now (a Join, say).
 *
 * The proof is a channel-level Ping (group "") carrying a random nonce, sent to the datagram's source;
 * the sender answers every channel-level Ping with a Pong echoing the nonce, to the Ping's source. Two
 * members that meet challenge each other at once, so admission costs about one round trip.
 */

/** Senders awaiting admission at most; past it the longest-waiting one is forgotten. */
export const MAX_PENDING_SENDERS = 256;
/** Bytes of held datagrams at most, over all pending senders: past it, new ones are not kept. */
const MAX_HELD_TOTAL_BYTES = 4 * 1024 * 1024;
/**
 * A pending sender is challenged again, on its next datagram, once this long has passed without an
 * answer. No back-off: a challenge is never larger than the datagram that caused it, and losing the
 * round trip again and again on a lossy link must not keep a live member out for long.
 */
const RECHALLENGE_MS = 10;

interface Pending {
  readonly key: PeerKey;
  readonly incarnation: number;
  readonly address: Address;
  readonly nonce: number;
  challengedAt: number;
  first: Held | undefined;
  latest: Held | undefined;
}

interface Held {
  readonly frames: readonly ReceivedFrame[];
  readonly bytes: number;
}

/** What admission decided about a datagram from a sender that is not a peer (yet). */
export type Admitted =
  | { readonly admitted: true; readonly held: ReadonlyArray<readonly ReceivedFrame[]> }
  | { readonly admitted: false };

export interface AdmissionStats {
  /** Datagrams from senders not admitted (yet): not handed to any protocol. */
  unadmittedDatagrams: number;
  /** Challenges sent to new senders. */
  challengesSent: number;
  /** Challenges answered (by us, to others). */
  challengesAnswered: number;
  /** Senders admitted as peers. */
  admitted: number;
  /** Pending senders forgotten to make room (a flood of made-up senders). */
  pendingEvicted: number;
}

export class Admission {
  readonly #pending = new Map<PeerKey, Pending>();
  #heldBytes = 0;
  readonly stats: AdmissionStats = { unadmittedDatagrams: 0, challengesSent: 0, challengesAnswered: 0, admitted: 0, pendingEvicted: 0 };

  constructor(
    private readonly random: RandomSource,
    /** Sends one encoded frame at once to an address (the source of a datagram just received), for member `receiver`. */
    private readonly reply: (to: Address, frame: Uint8Array, receiver: PeerKey) => void,
  ) {}

  /** Senders awaiting admission. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * A datagram from `key` (incarnation `incarnation`), not a peer, arrived from `from`. Answers its
   * challenges, challenges it, and says whether this datagram proves it (then it is a peer from now on).
   */
  receive(key: PeerKey, incarnation: number, from: Address, frames: readonly ReceivedFrame[], size: number, now: number): Admitted {
    let entry = this.#pending.get(key);
    if (entry !== undefined && (entry.incarnation !== incarnation || !sameAddress(entry.address, from))) {
      // Another incarnation, or another address: a new claim to prove (the old proof is void).
      this.#remove(entry);
      entry = undefined;
    }
    let proven = false;
    for (const frame of frames) {
      if (frame.case === "pong" && entry !== undefined) {
        const pong = frame.frame.kind.value as { group: string; nonce: bigint };
        if (pong.group === "" && pong.nonce === BigInt(entry.nonce)) proven = true;
      }
    }
    if (proven) {
      this.#remove(entry!);
      this.stats.admitted++;
      const held = [entry!.first, entry!.latest].flatMap((h) => (h === undefined ? [] : [h.frames]));
      return { admitted: true, held };
    }
    this.stats.unadmittedDatagrams++;
    entry ??= this.#add(key, incarnation, from);
    if (frames.some(worthHolding)) this.#hold(entry, frames, size);
    this.#challenge(entry, now);
    return { admitted: false };
  }

  #hold(entry: Pending, frames: readonly ReceivedFrame[], size: number): void {
    const slot = entry.first === undefined ? "first" : "latest";
    const replaced = entry[slot]?.bytes ?? 0;
    if (this.#heldBytes - replaced + size > MAX_HELD_TOTAL_BYTES) return;
    this.#heldBytes += size - replaced;
    entry[slot] = { frames, bytes: size };
  }

  #remove(entry: Pending): void {
    this.#pending.delete(entry.key);
    this.#heldBytes -= (entry.first?.bytes ?? 0) + (entry.latest?.bytes ?? 0);
  }

  #add(key: PeerKey, incarnation: number, address: Address): Pending {
    if (this.#pending.size >= MAX_PENDING_SENDERS) {
      this.#remove(this.#pending.values().next().value!);
      this.stats.pendingEvicted++;
    }
    const entry: Pending = { key, incarnation, address, nonce: this.#nonce(), challengedAt: -Infinity, first: undefined, latest: undefined };
    this.#pending.set(key, entry);
    return entry;
  }

  #challenge(entry: Pending, now: number): void {
    if (now - entry.challengedAt < RECHALLENGE_MS) return;
    entry.challengedAt = now;
    this.reply(entry.address, challengeFrame(entry.nonce), entry.key);
    this.stats.challengesSent++;
  }

  /**
   * Challenges `key` at an address others gave for it (it has not spoken to us yet). Its answer admits
   * it as if it had spoken first. At most one challenge per address a `RECHALLENGE_MS`.
   */
  introduce(key: PeerKey, incarnation: number, address: Address, now: number): void {
    let entry = this.#pending.get(key);
    if (entry !== undefined && (entry.incarnation !== incarnation || !sameAddress(entry.address, address))) {
      if (entry.incarnation > incarnation) return;
      this.#remove(entry);
      entry = undefined;
    }
    if (entry === undefined) entry = this.#add(key, incarnation, address);
    this.#challenge(entry, now);
  }

  /** Answers channel-level challenges among `frames` from `sender` (anyone: it is how others admit us). */
  answer(from: Address, sender: PeerKey, frames: readonly ReceivedFrame[]): void {
    for (const frame of frames) {
      if (frame.case !== "ping") continue;
      const ping = frame.frame.kind.value as { group: string; nonce: bigint };
      if (ping.group !== "") continue;
      this.reply(from, answerFrame(ping.nonce), sender);
      this.stats.challengesAnswered++;
    }
  }

  clear(): void {
    this.#pending.clear();
    this.#heldBytes = 0;
  }

  // Below 2^53, as every number on the wire.
  #nonce(): number {
    return this.random.nextInt(2 ** 31) * 2 ** 21 + this.random.nextInt(2 ** 21) + 1;
  }
}

/** True for channel-level challenge frames (a Ping or Pong of no group): admission's, never handed up. */
export function isChallenge(frame: ReceivedFrame): boolean {
  return (frame.case === "ping" || frame.case === "pong") && (frame.frame.kind.value as { group: string }).group === "";
}

// A challenge alone is not worth handing up once admitted; anything else may be (a Join, a Discovery).
function worthHolding(frame: ReceivedFrame): boolean {
  return !isChallenge(frame);
}

function challengeFrame(nonce: number): Uint8Array {
  return encodeFrame({ case: "ping", value: { nonce: BigInt(nonce) } });
}

function answerFrame(nonce: bigint): Uint8Array {
  return encodeFrame({ case: "pong", value: { nonce } });
}

function sameAddress(a: Address, b: Address): boolean {
  return a.port === b.port && a.host === b.host;
}
