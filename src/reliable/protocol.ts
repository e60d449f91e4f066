import type { Frame } from "../../gen/activeblaze/v1/envelope_pb.ts";
import type { DigestEntry } from "../../gen/activeblaze/v1/reliable_pb.ts";
import type { TimedUnit } from "../core/driver.ts";
import type { RandomSource } from "../transport/clock.ts";
import type { DataFields } from "../wire/frames.ts";

/**
 * The contract between a channel and its quality of service. A protocol is a state machine: the
 * channel feeds it what arrives and what the user sends, and it answers through its host (frames to
 * send, messages to deliver, events). It does no I/O and reads no clock of its own, so the same code
 * runs over UDP and on the simulated network. Best effort and NACK implement it; Totem and FEC plug in
 * the same way.
 */

/** A member's id in hex: the key protocols use for peers. */
export type PeerKey = string;

/** One message (or one fragment of a larger one) to send on the channel's multicast stream. */
export interface OutgoingData {
  readonly destination: string;
  readonly addressing: number;
  readonly format: number;
  readonly payload: Uint8Array;
  readonly outOfBand: boolean;
  readonly fragmentIndex: number;
  readonly fragmentCount: number;
  readonly messageLength: number;
  readonly requestId: number;
  /** Totem: deliver only once every ring member has the message (default: the channel's `totem.delivery`). */
  readonly safe?: boolean;
}

/** What a protocol needs from the channel it runs in. */
export interface ProtocolHost {
  readonly random: RandomSource;
  /** This member's key. */
  readonly localKey: PeerKey;
  /** Writes a Data frame into the next multicast datagram; returns the frame's bytes for retransmission. */
  multicastData(data: DataFields): Uint8Array;
  /** Queues an encoded frame for the next multicast datagram. */
  multicastFrame(frame: Uint8Array): void;
  /** Queues an encoded frame for the next datagram to one peer. */
  unicastFrame(peer: PeerKey, frame: Uint8Array): void;
  /** Hands a received message (or fragment) of `peer`'s incarnation `incarnation` up to the channel, in the protocol's delivery order. */
  deliver(peer: PeerKey, data: DataFields, incarnation: number): void;
  /** Reports something worth telling the user (loss, an unresponsive receiver). */
  report(event: ProtocolEvent): void;
  /** Called when a blocked sender may send again. */
  writable(): void;
  /** Calls `fn` once at the end of the current turn of inputs (a burst of sends is over), before its datagrams go out. */
  atEndOfTurn(fn: () => void): void;
}

export type ProtocolEvent =
  | { readonly type: "receiverUnresponsive"; readonly peer: PeerKey; readonly silentMs: number }
  | { readonly type: "receiverResponsive"; readonly peer: PeerKey }
  /** Messages `firstSeq`–`lastSeq` (`count` of them) of `peer`'s stream will never be delivered here. */
  | { readonly type: "messagesLost"; readonly peer: PeerKey; readonly count: number; readonly firstSeq: number; readonly lastSeq: number }
  /**
   * The protocol will hand up nothing more of what `peer` (incarnation `incarnation` or older) sent so far
   * (it left the ring, or this member missed part of its stream): messages of it delivered in part are lost.
   */
  | { readonly type: "streamEnded"; readonly peer: PeerKey; readonly incarnation: number };

/** Counters every protocol keeps; all are totals since start. */
export interface ProtocolStats {
  sent: number;
  delivered: number;
  duplicates: number;
  retransmitted: number;
  nacksSent: number;
  nacksReceived: number;
  /** NACKs this member did not send because another receiver's NACK, heard first, asked for the same messages. */
  nacksSuppressed: number;
  acksSent: number;
  lost: number;
  outOfWindow: number;
  /** Frames whose numbers contradict this member's state (a NACK or acknowledgement of messages never sent, an inconsistent heartbeat or stream floor): dropped unused. */
  refused: number;
  /** Messages that arrived ahead of a gap when the stream already held all it may out of order: dropped, and asked for again later. */
  earlyDropped: number;
  /** Retransmissions sent only to the one receiver that asked for them (part of `retransmitted`). */
  retransmittedToOne: number;
  /** Messages the sender still holds for retransmission (not yet stable). */
  unstable: number;
  /** Messages received out of order and held until the gaps below them fill, over all streams, and their payload bytes. */
  held: number;
  heldBytes: number;
}

/**
 * A quality of service as the channel drives it. Inputs come with `now` (the driver's clock); a
 * protocol with deadlines of its own is a {@link TimedUnit} (`pollTimeout`/`handleTimeout`) and reads
 * no clock and arms no timer.
 */
export interface ReliabilityProtocol extends Partial<TimedUnit> {
  readonly name: string;
  /**
   * True when the protocol hands this member's own messages up through `deliver`, in its delivery
   * order (total order); the channel then delivers no separate local copy.
   */
  readonly deliversOwnMessages?: boolean;
  /**
   * True when the protocol says where each sender's stream ends (`streamEnded`), at the same place of its
   * delivery order at every member (total order); the channel then leaves a departed peer's partly
   * delivered messages to it instead of dropping them when the peer goes.
   */
  readonly endsStreams?: boolean;
  /** Bytes the protocol may wrap around a message it sends again (a relay); pieces leave that much room. */
  readonly relayOverheadBytes?: number;
  /** True when `send` would accept a message of `bytes` bytes now. */
  canSend(bytes: number): boolean;
  /** Sends one message or fragment; the caller checks `canSend` first. Returns its sequence number. */
  send(data: OutgoingData, now: number): number;
  /** A Data frame arrived from `peer` (incarnation `incarnation`). */
  onData(peer: PeerKey, incarnation: number, data: DataFields, now: number): void;
  /** A control frame (Nack, Ack, Heartbeat, …) arrived from `peer`. */
  onControl(peer: PeerKey, incarnation: number, frame: Frame, now: number): void;
  /** A peer was heard for the first time, or with a new incarnation. */
  onPeerUp(peer: PeerKey, incarnation: number, now: number): void;
  /** A peer left or was declared dead: forget its streams. */
  onPeerDown(peer: PeerKey, now: number): void;
  /**
   * A peer was removed from the group's view while it may still be a peer here (a crash the group
   * noticed first): it stops holding this member's sends back at once.
   */
  onReceiverGone?(peer: PeerKey, now: number): void;
  /** What this member's periodic heartbeat says for the protocol. */
  heartbeat(): { highestSeq: number; lowestSeq: number; digest: DigestEntry[] };
  readonly stats: Readonly<ProtocolStats>;
  close(): void;
}

export function emptyStats(): ProtocolStats {
  return {
    sent: 0,
    delivered: 0,
    duplicates: 0,
    retransmitted: 0,
    nacksSent: 0,
    nacksReceived: 0,
    nacksSuppressed: 0,
    acksSent: 0,
    lost: 0,
    outOfWindow: 0,
    refused: 0,
    earlyDropped: 0,
    retransmittedToOne: 0,
    unstable: 0,
    held: 0,
    heldBytes: 0,
  };
}

/**
 * Copies what a protocol sends of `out` into its scratch Data (the protocol's own fields — sequence
 * number, target — are set by the caller). Frames are encoded at once, so one scratch object serves
 * every message.
 */
export function fillData(data: DataFields, seq: number, out: OutgoingData): DataFields {
  data.seq = seq;
  data.addressing = out.addressing;
  data.destination = out.destination;
  data.outOfBand = out.outOfBand;
  data.fragmentIndex = out.fragmentIndex;
  data.fragmentCount = out.fragmentCount;
  data.messageLength = out.messageLength;
  data.requestId = out.requestId;
  data.format = out.format;
  data.payload = out.payload;
  return data;
}
