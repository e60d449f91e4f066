import type { Frame } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import { type Ack, type Nack, Stream } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import { type Scheduled, Timetable } from "../../core/deadlines.ts";
import type { TimedUnit } from "../../core/driver.ts";
import { ackCumulative } from "../../wire/ack-codec.ts";
import { type DataFields, emptyDataFields, NO_BYTES } from "../../wire/frames.ts";
import { nackFrame } from "../control-frames.ts";
import { idOf, sameId } from "../member-key.ts";
import { ackDueNow, ackTaken, clearNack, type EarlyLimits, type IncomingStream, openIncomingStream } from "../nack/receive-window.ts";
import { emptyStats, fillData, type OutgoingData, type PeerKey, type ProtocolStats } from "../protocol.ts";

/** What the point-to-point streams need from the channel they run in. */
export interface UnicastHost {
  /** This member's id in hex. */
  readonly localKey: PeerKey;
  readonly localIncarnation: number;
  /** Writes a point-to-point Data frame into the next datagram to `peer`; returns the frame bytes (kept for retransmission). */
  unicastData(peer: PeerKey, data: DataFields): Uint8Array;
  /** Queues an encoded frame (a retransmission or a nack) for the next datagram to `peer`. */
  unicastFrame(peer: PeerKey, frame: Uint8Array): void;
  /** Queues an acknowledgement, the fields of `ackFrame`, for the next datagram to `peer` (written in place). */
  unicastAck(peer: PeerKey, stream: Stream, originId: Uint8Array, incarnation: number, cumulative: number, highestReceived: number): void;
  /** Hands a received message of `peer`'s incarnation `incarnation` up, in order, exactly once per (sender incarnation, receiver incarnation). */
  deliver(peer: PeerKey, data: DataFields, incarnation: number): void;
  /** The window to `peer` has room again. */
  writable(peer: PeerKey): void;
}

/** Tuning of the point-to-point streams. Every duration is in milliseconds. */
export interface UnicastOptions {
  /** Most messages sent to one peer and not yet acknowledged: the window. A receiver holds at most this many out of order per peer. */
  readonly windowMessages: number;
  /** Most bytes (encoded frames) sent to one peer and not yet acknowledged. A message always fits in an empty window. A receiver holds at most this many out of order per peer. */
  readonly windowBytes: number;
  /** A receiver acknowledges after this many messages, or this many payload bytes… */
  readonly ackThreshold: number;
  readonly ackThresholdBytes: number;
  /** …or this long after the first unacknowledged one. */
  readonly ackDelayMs: number;
  /** A gap is NACKed this long after it appears (a little reordering then costs no NACK). */
  readonly nackDelayMs: number;
  /** First wait before repeating an unanswered NACK; doubles up to `nackRetryMaxMs`. */
  readonly nackRetryMs: number;
  readonly nackRetryMaxMs: number;
  /** Most sequence numbers one NACK asks for (and a sender answers). */
  readonly maxNackSeqs: number;
  /** A message is not retransmitted twice within this time (a repeated NACK crossing a repair costs no second one). */
  readonly retransmitHoldoffMs: number;
  /** With messages unacknowledged and no acknowledgement progress for this long, the highest is resent; doubles up to `rtoMaxMs`. */
  readonly rtoMs: number;
  readonly rtoMaxMs: number;
}

/** How many peers given up for dead are remembered, in case one was only cut off. */
const MAX_RESUME_POINTS = 4_096;

export const DEFAULT_UNICAST_OPTIONS: UnicastOptions = {
  windowMessages: 16_384,
  windowBytes: 4 * 1024 * 1024,
  ackThreshold: 256,
  ackThresholdBytes: 1024 * 1024,
  ackDelayMs: 5,
  nackDelayMs: 1,
  nackRetryMs: 10,
  nackRetryMaxMs: 320,
  maxNackSeqs: 1_024,
  retransmitHoldoffMs: 20,
  rtoMs: 100,
  rtoMaxMs: 1_000,
};

/**
 * The unacknowledged frames of one send stream, by sequence number: a ring indexed by `seq mod size`,
 * doubled when full. It starts small because a member keeps one per peer it talks to, and most
 * point-to-point traffic (requests, replies) is a few messages at a time.
 */
class SendBuffer {
  /** The next sequence number to hand out. */
  nextSeq = 1;
  /** The lowest unacknowledged sequence number. */
  low = 1;
  /** Bytes of the frames held. */
  bytes = 0;
  #frames: Array<Uint8Array | undefined> = new Array(64);
  #resentAt = new Float64Array(64);

  /** Messages held: sent and not yet acknowledged. */
  get size(): number {
    return this.nextSeq - this.low;
  }

  /** Keeps the frame of the next message; returns its sequence number. */
  add(frame: Uint8Array): number {
    if (this.size === this.#frames.length) this.#grow();
    const seq = this.nextSeq++;
    const slot = seq % this.#frames.length;
    this.#frames[slot] = frame;
    // Never resent, so a first NACK is answered at once whatever the clock reads.
    this.#resentAt[slot] = -Infinity;
    this.bytes += frame.length;
    return seq;
  }

  /** The frame of `seq`, if still held. */
  frame(seq: number): Uint8Array | undefined {
    return seq >= this.low && seq < this.nextSeq ? this.#frames[seq % this.#frames.length] : undefined;
  }

  resentAt(seq: number): number {
    return this.#resentAt[seq % this.#frames.length]!;
  }

  markResent(seq: number, now: number): void {
    this.#resentAt[seq % this.#frames.length] = now;
  }

  /** Drops everything up to `cumulative`; returns how many messages that freed. */
  ackUpTo(cumulative: number): number {
    const last = Math.min(cumulative, this.nextSeq - 1);
    const freed = last - this.low + 1;
    if (freed <= 0) return 0;
    const frames = this.#frames;
    for (let seq = this.low; seq <= last; seq++) {
      const slot = seq % frames.length;
      this.bytes -= frames[slot]!.length;
      frames[slot] = undefined;
    }
    this.low = last + 1;
    return freed;
  }

  #grow(): void {
    const frames = this.#frames;
    const resentAt = this.#resentAt;
    this.#frames = new Array(frames.length * 2);
    this.#resentAt = new Float64Array(frames.length * 2);
    for (let seq = this.low; seq < this.nextSeq; seq++) {
      this.#frames[seq % this.#frames.length] = frames[seq % frames.length];
      this.#resentAt[seq % this.#frames.length] = resentAt[seq % frames.length]!;
    }
  }
}

/**
 * Streams by their peer's key, the one asked for last kept beside the map: a request and its reply, and
 * their acknowledgements, go to and come from one peer at a time, and each looks its streams up again
 * (to send, to acknowledge, on an acknowledgement, on data) — found here without hashing the key.
 */
class StreamTable<S> {
  readonly #streams = new Map<PeerKey, S>();
  #lastPeer: PeerKey | undefined;
  #last: S | undefined;

  get(peer: PeerKey): S | undefined {
    if (peer === this.#lastPeer) return this.#last;
    const stream = this.#streams.get(peer);
    this.#lastPeer = peer;
    this.#last = stream;
    return stream;
  }

  set(peer: PeerKey, stream: S): void {
    this.#streams.set(peer, stream);
    if (peer === this.#lastPeer) this.#last = stream;
  }

  delete(peer: PeerKey): void {
    this.#streams.delete(peer);
    if (peer === this.#lastPeer) this.#last = undefined;
  }

  clear(): void {
    this.#streams.clear();
    this.#lastPeer = undefined;
    this.#last = undefined;
  }

  values(): IterableIterator<S> {
    return this.#streams.values();
  }
}

/** Our stream to one incarnation of a peer. */
interface SendStream extends Scheduled {
  readonly peer: PeerKey;
  readonly incarnation: number;
  readonly targetId: Uint8Array;
  readonly buffer: SendBuffer;
  /** When the highest unacknowledged message is resent (`Infinity`: none is unacknowledged). */
  rtoDue: number;
  /** The current retransmission timeout (backs off while no acknowledgement comes). */
  rto: number;
  live: boolean;
}

/** One incarnation of a peer's stream to us. */
type ReceiveStream = IncomingStream;

/**
 * Reliable point-to-point streams, in the manner of JGroups' UNICAST3: one numbered stream per ordered
 * pair of member incarnations. The receiver delivers in order, exactly once, acknowledges cumulatively
 * (after a few messages or a few milliseconds — or at once with the next message it sends that peer,
 * a reply say, which carries the acknowledgement in the same datagram) and NACKs gaps; the sender keeps
 * frames until they are acknowledged and retransmits what is NACKed. A lost tail has no later message
 * to reveal it, so when acknowledgements stall for the retransmission timeout the sender resends its
 * highest unacknowledged message: the receiver then sees the gap below it (and NACKs it) or a
 * duplicate (and acknowledges again).
 *
 * A Data frame names the receiver incarnation its stream was opened to (`targetIncarnation`): a member
 * that restarted drops what was meant for its previous life, so a stream is never confused with the
 * next one, which starts again at 1. Received Data for another incarnation of this member, from an
 * older incarnation of its sender, or too far ahead of the window is counted in `stats.outOfWindow`;
 * acknowledgements and NACKs of messages never sent, and a stream floor above its own message, in
 * `stats.refused`. A floor far ahead is skipped to in one step, the messages below it counted lost.
 *
 * A deadline-driven unit: it reads no clock and arms no timer; every input comes with `now`, and its
 * driver calls `handleTimeout` when `pollTimeout` says.
 */
export class UnicastProtocol implements TimedUnit {
  readonly #host: UnicastHost;
  readonly #options: UnicastOptions;
  readonly #localId: Uint8Array;
  readonly #localIncarnation: bigint;
  readonly #sendStreams = new StreamTable<SendStream>();
  readonly #receiveStreams = new StreamTable<ReceiveStream>();
  /** The deadlines of the send streams (retransmission) and of the receive streams (acknowledgement, NACK). */
  readonly #sending = new Timetable<SendStream>();
  readonly #receiving = new Timetable<ReceiveStream>();
  /** Each peer's newest incarnation heard of (onPeerUp, or Data). */
  readonly #incarnations = new Map<PeerKey, number>();
  /**
   * Where the streams with a peer given up for dead stood, for the case it was not dead (a partition)
   * and comes back as the same incarnation: its side kept its streams, so ours resume where they were.
   */
  readonly #resume = new Map<PeerKey, { incarnation: number; nextSend: number; nextReceive: number }>();
  readonly #stats: ProtocolStats = emptyStats();
  readonly #limits: EarlyLimits;
  #unackedTotal = 0;
  readonly #scratch: DataFields = emptyDataFields();

  constructor(host: UnicastHost, options: Partial<UnicastOptions> = {}) {
    this.#host = host;
    this.#options = { ...DEFAULT_UNICAST_OPTIONS, ...options };
    this.#localId = idOf(host.localKey);
    this.#localIncarnation = BigInt(host.localIncarnation);
    this.#limits = { messages: this.#options.windowMessages, bytes: this.#options.windowBytes };
  }

  get stats(): Readonly<ProtocolStats> {
    const stats = this.#stats;
    stats.unstable = this.#unackedTotal;
    stats.held = stats.heldBytes = 0;
    for (const { window } of this.#receiveStreams.values()) {
      stats.held += window.held;
      stats.heldBytes += window.heldBytes;
    }
    return stats;
  }

  canSend(peer: PeerKey, bytes: number): boolean {
    return this.#hasRoom(this.#sendStreams.get(peer), bytes);
  }

  send(peer: PeerKey, peerIncarnation: number, out: OutgoingData, now: number): number {
    return this.#send(peer, this.#sendStreams.get(peer), peerIncarnation, out, now);
  }

  /**
   * Sends `out` if the window to `peer` has room for it (`canSend` and `send` in one, the stream looked
   * up once for both); returns its sequence number, or 0 when the window is full and nothing was sent.
   */
  trySend(peer: PeerKey, peerIncarnation: number, out: OutgoingData, now: number): number {
    const stream = this.#sendStreams.get(peer);
    return this.#hasRoom(stream, out.payload.length) ? this.#send(peer, stream, peerIncarnation, out, now) : 0;
  }

  // Whether the window of `stream` (the peer's current one, of whatever incarnation) has room for `bytes` more.
  #hasRoom(stream: SendStream | undefined, bytes: number): boolean {
    const buffer = stream?.buffer;
    if (buffer === undefined || buffer.size === 0) return true;
    return buffer.size < this.#options.windowMessages && buffer.bytes + bytes <= this.#options.windowBytes;
  }

  // `current`: the peer's send stream, as looked up by the caller.
  #send(peer: PeerKey, current: SendStream | undefined, peerIncarnation: number, out: OutgoingData, now: number): number {
    let stream = current;
    if (stream === undefined || stream.incarnation !== peerIncarnation) stream = this.#openSend(peer, peerIncarnation);
    // What we owe the peer's stream to us rides along (a reply acknowledges its request).
    const receiving = this.#receiveStreams.get(peer);
    if (receiving !== undefined && receiving.window.unacked > 0 && receiving.window.incarnation === peerIncarnation) this.#sendAck(receiving);
    const buffer = stream.buffer;
    const data = fillData(this.#scratch, buffer.nextSeq, out);
    data.targetId = stream.targetId;
    data.targetIncarnation = peerIncarnation;
    // Below the oldest message held, nothing will be resent: the receiver must not wait for it.
    data.streamFloor = buffer.low > 1 ? buffer.low : 0;
    const seq = buffer.add(this.#host.unicastData(peer, data));
    data.payload = NO_BYTES;
    this.#unackedTotal++;
    this.#stats.sent++;
    // The first unacknowledged message starts the rto.
    if (stream.rtoDue === Number.POSITIVE_INFINITY) {
      stream.rtoDue = now + stream.rto;
      this.#sending.schedule(stream, stream.rtoDue);
    }
    return seq;
  }

  onData(peer: PeerKey, incarnation: number, data: DataFields, now: number): void {
    if (data.targetIncarnation !== this.#host.localIncarnation) {
      // Meant for an earlier (or later) life of this member: that stream is not ours.
      this.#stats.outOfWindow++;
      return;
    }
    if (data.seq < 1 || data.streamFloor > data.seq) {
      // The sender holds the message itself, so its floor cannot be above it.
      this.#stats.refused++;
      return;
    }
    let stream = this.#receiveStreams.get(peer);
    if (stream === undefined || stream.window.incarnation !== incarnation) {
      const known = this.#incarnations.get(peer);
      if (known !== undefined && incarnation < known) {
        this.#stats.outOfWindow++;
        return;
      }
      // A newer incarnation heard before the channel reported it: its older streams go now.
      if (known !== incarnation) this.onPeerUp(peer, incarnation);
      stream = this.#openReceive(peer, incarnation);
    }
    const window = stream.window;
    if (data.seq - Math.max(window.next, data.streamFloor) >= 4 * this.#options.windowMessages) {
      // Further ahead than a sender's window allows: not trustworthy.
      this.#stats.outOfWindow++;
      return;
    }
    if (data.streamFloor > window.next) {
      // The sender gave us up for a while and abandoned what it had not got acknowledged: skip it.
      this.#stats.lost += window.skipTo(data.streamFloor, stream.deliver);
    }
    const receipt = window.receive(data, stream.deliver);
    if (receipt === "duplicate") {
      this.#stats.duplicates++;
      // A duplicate (typically the sender's rto resend) means our acknowledgement may have been lost: send it again.
      window.unacked++;
    } else if (receipt === "full") {
      this.#stats.earlyDropped++;
    }
    this.#afterReceive(stream, now);
  }

  onControl(peer: PeerKey, incarnation: number, frame: Frame, now: number): void {
    const kind = frame.kind;
    if (kind.case !== "ack" && kind.case !== "nack") return;
    const control: Ack | Nack = kind.value;
    if (control.stream !== Stream.UNICAST || !sameId(control.originId, this.#localId)) return;
    // Compared as bigints: the decoder hands out one for the incarnation it read last, and converting it
    // to a number costs more than comparing it.
    if (control.originIncarnation !== this.#localIncarnation) return;
    const stream = this.#sendStreams.get(peer);
    // From another incarnation of the receiver than the one the stream goes to: not about this stream.
    if (stream === undefined || stream.incarnation !== incarnation) return;
    // Nothing past what was sent on the stream can be acknowledged or missing. An acknowledgement is
    // compared as a number, no bigint made: past 2^53 one rounds to 2^53 or more, never below what was sent.
    const sent = stream.buffer.nextSeq;
    if (kind.case === "ack") {
      const cumulative = ackCumulative(kind.value);
      if (cumulative < sent) this.#onAck(stream, cumulative, now);
      else this.#stats.refused++;
    } else {
      const limit = BigInt(sent);
      if (kind.value.missing.every((range) => range.first >= 1n && range.first <= range.last && range.last < limit)) this.#onNack(stream, kind.value, now);
      else this.#stats.refused++;
    }
  }

  onPeerUp(peer: PeerKey, incarnation: number): void {
    const known = this.#incarnations.get(peer);
    if (known !== undefined && incarnation < known) return;
    this.#incarnations.set(peer, incarnation);
    const receiving = this.#receiveStreams.get(peer);
    if (receiving !== undefined && receiving.window.incarnation !== incarnation) this.#dropReceive(peer, receiving);
    const sending = this.#sendStreams.get(peer);
    if (sending !== undefined && sending.incarnation !== incarnation) this.#dropSend(peer, sending);
  }

  onPeerDown(peer: PeerKey): void {
    const incarnation = this.#incarnations.get(peer);
    this.#incarnations.delete(peer);
    const receiving = this.#receiveStreams.get(peer);
    const sending = this.#sendStreams.get(peer);
    if (incarnation !== undefined && (receiving !== undefined || sending !== undefined)) {
      if (this.#resume.size >= MAX_RESUME_POINTS) this.#resume.delete(this.#resume.keys().next().value!);
      this.#resume.set(peer, {
        incarnation,
        nextSend: sending?.incarnation === incarnation ? sending.buffer.nextSeq : 1,
        nextReceive: receiving?.window.incarnation === incarnation ? receiving.window.next : 1,
      });
    }
    if (receiving !== undefined) this.#dropReceive(peer, receiving);
    if (sending !== undefined) this.#dropSend(peer, sending);
  }

  unacked(peer: PeerKey): number {
    return this.#sendStreams.get(peer)?.buffer.size ?? 0;
  }

  pollTimeout(): number {
    return Math.min(this.#sending.next(), this.#receiving.next());
  }

  handleTimeout(now: number): void {
    for (let stream = this.#sending.popDue(now); stream !== undefined; stream = this.#sending.popDue(now)) {
      if (stream.live) this.#onRto(stream, now);
    }
    for (let stream = this.#receiving.popDue(now); stream !== undefined; stream = this.#receiving.popDue(now)) {
      if (stream.live) this.#onReceiveDeadline(stream, now);
    }
  }

  close(): void {
    this.#resume.clear();
    for (const stream of this.#sendStreams.values()) stream.live = false;
    for (const stream of this.#receiveStreams.values()) stream.live = false;
    this.#sendStreams.clear();
    this.#receiveStreams.clear();
    this.#sending.clear();
    this.#receiving.clear();
    this.#incarnations.clear();
    this.#unackedTotal = 0;
  }

  // Replaces any stream to another incarnation of `peer` (its messages are discarded): the caller is
  // sending, so it needs no writable() call, which could re-enter send() before the new stream exists.
  #openSend(peer: PeerKey, incarnation: number): SendStream {
    const old = this.#sendStreams.get(peer);
    if (old !== undefined) this.#discard(old);
    const buffer = new SendBuffer();
    const resume = this.#resume.get(peer);
    if (resume?.incarnation === incarnation) {
      // Numbering goes on where it stopped; what was abandoned is below the floor the next message carries.
      buffer.nextSeq = buffer.low = resume.nextSend;
      resume.nextSend = 1;
    }
    const stream: SendStream = {
      peer,
      incarnation,
      targetId: idOf(peer),
      buffer,
      rtoDue: Number.POSITIVE_INFINITY,
      rto: this.#options.rtoMs,
      live: true,
      queuedAt: Number.POSITIVE_INFINITY,
    };
    this.#sendStreams.set(peer, stream);
    return stream;
  }

  // Called last by the peer events, after every other change: writable() may re-enter send().
  #dropSend(peer: PeerKey, stream: SendStream): void {
    this.#sendStreams.delete(peer);
    // A sender blocked on the old stream's window may go on (to the new incarnation, or to fail).
    if (this.#discard(stream) > 0) this.#host.writable(peer);
  }

  /** Stops a send stream and forgets its unacknowledged messages; returns how many there were. */
  #discard(stream: SendStream): number {
    stream.live = false;
    const discarded = stream.buffer.size;
    this.#unackedTotal -= discarded;
    return discarded;
  }

  #openReceive(peer: PeerKey, incarnation: number): ReceiveStream {
    const resume = this.#resume.get(peer);
    let first = 1;
    if (resume?.incarnation === incarnation) {
      // What was delivered before the peer was given up must not be delivered again.
      first = resume.nextReceive;
      resume.nextReceive = 1;
    }
    const stream = openIncomingStream(peer, first, incarnation, this.#limits, this.#stats, this.#host.deliver);
    this.#receiveStreams.set(peer, stream);
    return stream;
  }

  #dropReceive(peer: PeerKey, stream: ReceiveStream): void {
    stream.live = false;
    this.#receiveStreams.delete(peer);
  }

  #afterReceive(stream: ReceiveStream, now: number): void {
    const window = stream.window;
    if (!window.hasGap) clearNack(stream);
    else if (stream.nackDue === Number.POSITIVE_INFINITY) stream.nackDue = now + this.#options.nackDelayMs;
    if (ackDueNow(stream, this.#options, now)) this.#sendAck(stream);
    this.#receiving.schedule(stream, Math.min(stream.ackDue, stream.nackDue));
  }

  #onReceiveDeadline(stream: ReceiveStream, now: number): void {
    const window = stream.window;
    if (stream.ackDue <= now) {
      if (window.unacked > 0) this.#sendAck(stream);
      else stream.ackDue = Number.POSITIVE_INFINITY;
    }
    if (stream.nackDue <= now) {
      if (!window.hasGap) clearNack(stream);
      else {
        this.#host.unicastFrame(stream.peer, nackFrame(Stream.UNICAST, stream.originId, window.incarnation, window.missing(this.#options.maxNackSeqs)));
        this.#stats.nacksSent++;
        stream.nackAttempts++;
        const { nackRetryMs, nackRetryMaxMs } = this.#options;
        stream.nackDue = now + Math.min(nackRetryMaxMs, nackRetryMs * 2 ** Math.min(stream.nackAttempts - 1, 10));
      }
    }
    this.#receiving.schedule(stream, Math.min(stream.ackDue, stream.nackDue));
  }

  #sendAck(stream: ReceiveStream): void {
    const window = stream.window;
    this.#host.unicastAck(stream.peer, Stream.UNICAST, stream.originId, window.incarnation, window.next - 1, window.highestReceived);
    ackTaken(stream);
    this.#stats.acksSent++;
  }

  #onAck(stream: SendStream, cumulative: number, now: number): void {
    const freed = stream.buffer.ackUpTo(cumulative);
    if (freed === 0) return;
    this.#unackedTotal -= freed;
    stream.rto = this.#options.rtoMs;
    // Moved later, or done: the timetable finds out when the old deadline comes.
    stream.rtoDue = stream.buffer.size > 0 ? now + stream.rto : Number.POSITIVE_INFINITY;
    this.#sending.schedule(stream, stream.rtoDue);
    this.#host.writable(stream.peer);
  }

  // Retransmits what is asked for, each message at most once per holdoff.
  #onNack(stream: SendStream, nack: Nack, now: number): void {
    this.#stats.nacksReceived++;
    const buffer = stream.buffer;
    const holdoff = this.#options.retransmitHoldoffMs;
    let budget = this.#options.maxNackSeqs;
    for (const range of nack.missing) {
      const first = Math.max(Number(range.first), buffer.low);
      const last = Math.min(Number(range.last), buffer.nextSeq - 1, first + budget - 1);
      for (let seq = first; seq <= last; seq++) {
        budget--;
        if (now - buffer.resentAt(seq) < holdoff) continue;
        buffer.markResent(seq, now);
        this.#host.unicastFrame(stream.peer, buffer.frame(seq)!);
        this.#stats.retransmitted++;
      }
      if (budget <= 0) return;
    }
  }

  // No acknowledgement progress for the rto while messages are unacknowledged: the tail may be lost, so
  // resend the highest message (the receiver NACKs anything missing below it), and back off.
  #onRto(stream: SendStream, now: number): void {
    if (stream.rtoDue > now) {
      // Moved later by an acknowledgement since this deadline was queued.
      this.#sending.schedule(stream, stream.rtoDue);
      return;
    }
    const buffer = stream.buffer;
    const highest = buffer.nextSeq - 1;
    if (now - buffer.resentAt(highest) >= this.#options.retransmitHoldoffMs) {
      buffer.markResent(highest, now);
      this.#host.unicastFrame(stream.peer, buffer.frame(highest)!);
      this.#stats.retransmitted++;
    }
    stream.rto = Math.min(stream.rto * 2, this.#options.rtoMaxMs);
    stream.rtoDue = now + stream.rto;
    this.#sending.schedule(stream, stream.rtoDue);
  }
}
