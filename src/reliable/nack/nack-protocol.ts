import { create } from "@bufbuild/protobuf";
import type { Frame } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import { type Ack, type DigestEntry, DigestEntrySchema, type Heartbeat, type Nack, type SeqRange, Stream } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import { type Scheduled, Timetable } from "../../core/deadlines.ts";
import type { TimedUnit } from "../../core/driver.ts";
import { ackCumulative } from "../../wire/ack-codec.ts";
import { type DataFields, emptyDataFields, NO_BYTES } from "../../wire/frames.ts";
import { heartbeatFrame, nackFrame } from "../control-frames.ts";
import { idOf, keyOf, sameId } from "../member-key.ts";
import {
  emptyStats,
  fillData,
  type OutgoingData,
  type PeerKey,
  type ProtocolHost,
  type ProtocolStats,
  type ReliabilityProtocol,
} from "../protocol.ts";
import { ackDueNow, clearNack, type EarlyLimits, type IncomingStream, openIncomingStream, SHARED_LOSSES, takeAck } from "./receive-window.ts";
import { BUFFER_WINDOWS, EVERYONE, SendWindow } from "./send-window.ts";

/** Tuning of the NACK protocol. Every duration is in milliseconds. */
export interface NackOptions {
  /** Most messages a sender has in flight (sent, not yet received by every receiver): its window. */
  readonly windowMessages: number;
  /** Most bytes a sender has in flight. While gaps are repaired it may hold up to 4 windows for retransmission. */
  readonly windowBytes: number;
  /**
   * A gap is NACKed after a random delay in [nackDelayMinMs, nackDelayMaxMs]: a little reordering costs
   * no NACK, and receivers missing the same message ask at slightly different times (the second one
   * asking gets it sent to everyone; where losses are shared, the first one heard holds the others
   * back). For a shared loss in a group of more than four, the range's width grows by half the log2 of
   * the group's size, and most delays fall late in it (a truncated exponential draw, as NORM's backoff):
   * few receivers come due early.
   */
  readonly nackDelayMinMs: number;
  readonly nackDelayMaxMs: number;
  /** First wait before repeating an unanswered NACK; doubles up to `nackRetryMaxMs`. */
  readonly nackRetryMs: number;
  readonly nackRetryMaxMs: number;
  /** Most sequence numbers one NACK asks for. */
  readonly maxNackSeqs: number;
  /**
   * A message is not retransmitted twice within this time (several receivers NACKing one loss cost one
   * repair). The first NACK for it is answered to its sender alone (or to everyone, when the NACK went
   * to the group from a receiver whose losses are mostly shared: `Nack.shared`); a second receiver
   * asking within this time gets it sent to everyone.
   */
  readonly retransmitHoldoffMs: number;
  /** A receiver acknowledges after this many deliveries, or this many bytes delivered… */
  readonly ackThreshold: number;
  readonly ackThresholdBytes: number;
  /** …or this long after the first unacknowledged one. */
  readonly ackDelayMs: number;
  /** A receiver silent this long while holding the window back stops counting for flow control (and is reported). */
  readonly receiverTimeoutMs: number;
  /** After the last send, the sender announces its highest sequence number after this long (then backs off), so a lost last message is noticed. */
  readonly tailAnnounceMs: number;
  /** The longest wait between tail announcements. */
  readonly tailAnnounceMaxMs: number;
}

export const DEFAULT_NACK_OPTIONS: NackOptions = {
  windowMessages: 65_536,
  windowBytes: 4 * 1024 * 1024,
  nackDelayMinMs: 1,
  nackDelayMaxMs: 3,
  nackRetryMs: 10,
  nackRetryMaxMs: 320,
  maxNackSeqs: 1_024,
  retransmitHoldoffMs: 20,
  ackThreshold: 1_024,
  ackThresholdBytes: 512 * 1024,
  ackDelayMs: 10,
  receiverTimeoutMs: 5_000,
  tailAnnounceMs: 10,
  tailAnnounceMaxMs: 1_000,
};

type SenderStream = IncomingStream;

/** A NACK heard from another receiver is compared with ours only when both have at most this many ranges. */
const MAX_COMPARED_RANGES = 64;

/** NACK delays of shared losses in groups of more than four spread by log2(group size) / this (2 for 16 members). */
const NACK_SPREAD_DIVISOR = 2;
/** Weight of each gap in a stream's `sharedLosses` moving average (about the last 8 count). */
const SHARED_LOSSES_WEIGHT = 1 / 8;
/** A receiver's NACK is put off for other receivers' NACKs at most this many times in a row. */
const MAX_PUT_OFFS = 3;

/** How many peers given up for dead are remembered, in case one was only cut off. */
const MAX_RESUME_POINTS = 4_096;

/** A receiver this member has not yet told (for sure) where its stream starts for it. */
interface Joiner extends Scheduled {
  readonly peer: PeerKey;
  readonly incarnation: number;
  /** The first of our messages it is owed: our next sequence number when we first heard it. */
  readonly start: number;
  attempts: number;
  /** False once it acknowledged (or left): its next telling is not due. */
  live: boolean;
}

/**
 * NACK-based reliable multicast, in the manner of JGroups' NAKACK and NORM: every sender numbers its
 * messages; receivers deliver each sender's messages exactly once and in order, and ask the sender for
 * what is missing with NACKs after a random delay; the sender retransmits to the one receiver that
 * asked, or by multicast when a second one asks within the holdoff (so one lossy receiver's repairs
 * reach only it). A receiver whose losses are mostly shared sends its NACKs to the whole group, saying
 * so (`Nack.shared`): one that hears another's NACK for what it misses holds its own back (SRM and
 * NORM suppression), and the sender repairs it by multicast at once, so a shared loss costs about one
 * NACK and one repair.
 * Receivers acknowledge what they delivered, which both trims the sender's retransmit buffer
 * (stability) and opens its window (flow control). A sender that falls silent announces its highest
 * sequence number, so a lost last message is noticed.
 *
 * Joining: a receiver is owed a sender's messages from the first one sent after the sender heard it
 * (JGroups' join digest). The sender tells it where that is in a heartbeat sent to it alone, whose
 * digest holds an entry for the sender's own stream (`delivered`: the last message it is not owed),
 * and repeats it until the receiver acknowledges. Until then the receiver holds what it gets and
 * delivers nothing, so it never starts past a message it is owed; a stream heard from its very first
 * message needs no telling. A stream resumes where it stood when its sender comes back as the same
 * incarnation after being given up for dead (a partition).
 *
 * Every number from the wire is checked against this member's state before anything changes; a frame
 * that contradicts it is dropped and counted (`refused`). A receiver that skips messages its sender no
 * longer holds reports each run of them (`messagesLost`, with the range); from the point where its
 * stream opened, every message is delivered or reported lost, and its acknowledgements cover nothing
 * else.
 */
export class NackProtocol implements ReliabilityProtocol, TimedUnit {
  readonly name = "nack";
  readonly #host: ProtocolHost;
  readonly #options: NackOptions;
  readonly #window: SendWindow;
  readonly #streams = new Map<PeerKey, SenderStream>();
  /** Where the streams of peers given up for dead stood, by the incarnation they had. */
  readonly #resume = new Map<PeerKey, { incarnation: number; next: number }>();
  readonly #joiners = new Map<PeerKey, Joiner>();
  /** Where our stream starts for receivers given up for dead before they acknowledged it, by their incarnation. */
  readonly #untold = new Map<PeerKey, { incarnation: number; start: number }>();
  readonly #stats: ProtocolStats = emptyStats();
  readonly #localId: Uint8Array;
  readonly #localIncarnation: number;
  readonly #limits: EarlyLimits;
  /** A sequence number this far past what a receiver expects is not one a sender's buffer allows: not trusted. */
  readonly #trustSpan: number;
  /** The deadlines of the incoming streams (acknowledgement, NACK) and of the joiners (telling them again). */
  readonly #streamTimes = new Timetable<SenderStream>();
  readonly #joinerTimes = new Timetable<Joiner>();
  /** When the sender next announces its highest message (`Infinity`: all is stable). */
  #tailDue = Number.POSITIVE_INFINITY;
  #tailDelay: number;
  /** When silent receivers are next looked for. */
  #expiryDue: number;
  readonly #scratch: DataFields = emptyDataFields();

  constructor(host: ProtocolHost, localIncarnation: number, options: Partial<NackOptions> = {}, now = 0) {
    this.#host = host;
    this.#options = { ...DEFAULT_NACK_OPTIONS, ...options };
    this.#window = new SendWindow(this.#options.windowMessages, this.#options.windowBytes);
    this.#localId = idOf(host.localKey);
    this.#localIncarnation = localIncarnation;
    // A sender keeps up to BUFFER_WINDOWS windows beyond what a receiver delivered: a receiver may have
    // to hold that much behind a gap, and never more from a sender with the same options.
    this.#limits = { messages: BUFFER_WINDOWS * this.#options.windowMessages, bytes: BUFFER_WINDOWS * this.#options.windowBytes };
    this.#trustSpan = 2 * BUFFER_WINDOWS * this.#options.windowMessages;
    this.#tailDelay = this.#options.tailAnnounceMs;
    this.#expiryDue = now + this.#options.receiverTimeoutMs / 4;
  }

  get stats(): Readonly<ProtocolStats> {
    const stats = this.#stats;
    stats.unstable = this.#window.unstable;
    stats.held = stats.heldBytes = 0;
    for (const { window } of this.#streams.values()) {
      stats.held += window.held;
      stats.heldBytes += window.heldBytes;
    }
    return stats;
  }

  canSend(bytes: number): boolean {
    return this.#window.canSend(bytes);
  }

  send(out: OutgoingData, now: number): number {
    const window = this.#window;
    const seq = window.next();
    const data = fillData(this.#scratch, seq, out);
    window.record(seq, this.#host.multicastData(data));
    data.payload = NO_BYTES;
    window.trim();
    this.#stats.sent++;
    this.#tailDelay = this.#options.tailAnnounceMs;
    if (this.#tailDue === Number.POSITIVE_INFINITY) this.#tailDue = now + this.#tailDelay;
    return seq;
  }

  onData(peer: PeerKey, incarnation: number, data: DataFields, now: number): void {
    if (data.seq < 1) {
      this.#stats.refused++;
      return;
    }
    const stream = this.#stream(peer, incarnation);
    const window = stream.window;
    // A stream first heard of through its first message can start there: nothing before it can be owed.
    if (!window.opened && data.seq === 1 && window.highest < 1 && window.held === 0) window.open(1, stream.deliver);
    if (window.opened && data.seq - window.next >= this.#trustSpan) {
      // Further ahead than any sender's buffer allows: not trustworthy.
      this.#stats.outOfWindow++;
      return;
    }
    const receipt = window.receive(data, stream.deliver);
    if (receipt === "duplicate") {
      this.#stats.duplicates++;
      if (stream.pendingAlone && data.seq >= stream.askedFirst && data.seq <= stream.askedLast) {
        // Repaired to us, then again: a second receiver asked for it too. The gap was shared after all.
        stream.pendingAlone = false;
        learnSharedLoss(stream, 1);
      }
    } else if (receipt === "full") this.#stats.earlyDropped++;
    else if (window.opened) this.#afterProgress(stream, now);
  }

  onControl(peer: PeerKey, incarnation: number, frame: Frame, now: number): void {
    const kind = frame.kind;
    switch (kind.case) {
      case "nack": {
        const nack = kind.value;
        if (nack.stream !== Stream.MULTICAST) return;
        if (sameId(nack.originId, this.#localId)) {
          if (Number(nack.originIncarnation) === this.#localIncarnation) this.#onNack(peer, nack, now);
        } else this.#onOtherNack(nack, now);
        return;
      }
      case "ack": {
        const ack = kind.value;
        if (ack.stream === Stream.MULTICAST && sameId(ack.originId, this.#localId) && Number(ack.originIncarnation) === this.#localIncarnation) {
          this.#onAckFrame(peer, ack, now);
        }
        return;
      }
      case "heartbeat":
        this.#onHeartbeat(peer, incarnation, kind.value, now);
        return;
      default:
        return;
    }
  }

  onPeerUp(peer: PeerKey, incarnation: number, now: number): void {
    const stream = this.#streams.get(peer);
    if (stream !== undefined && stream.window.incarnation !== incarnation) this.#dropStream(peer, stream);
    if (this.#resume.get(peer)?.incarnation !== incarnation) this.#resume.delete(peer);
    // It is owed what we send from now on (or from where we told it before, if it never acknowledged
    // that), and is told so until it acknowledges.
    const earlier = this.#joiners.get(peer) ?? this.#untold.get(peer);
    this.#untold.delete(peer);
    const window = this.#window;
    window.removeReceiver(peer);
    window.addReceiver(peer, window.nextSeq, now);
    this.#stopTellingStart(peer);
    const start = earlier?.incarnation === incarnation ? earlier.start : window.nextSeq;
    const joiner: Joiner = { peer, incarnation, start, attempts: 0, live: true, queuedAt: Number.POSITIVE_INFINITY };
    this.#joiners.set(peer, joiner);
    this.#tellStart(joiner, now);
  }

  onPeerDown(peer: PeerKey): void {
    const stream = this.#streams.get(peer);
    if (stream !== undefined) {
      if (stream.window.opened) remember(this.#resume, peer, { incarnation: stream.window.incarnation, next: stream.window.next });
      this.#dropStream(peer, stream);
    }
    const joiner = this.#joiners.get(peer);
    if (joiner !== undefined) remember(this.#untold, peer, { incarnation: joiner.incarnation, start: joiner.start });
    this.#stopTellingStart(peer);
    if (this.#window.removeReceiver(peer)) this.#host.writable();
  }

  onReceiverGone(peer: PeerKey, now: number): void {
    const silentMs = this.#window.release(peer, now);
    if (silentMs === undefined) return;
    this.#host.report({ type: "receiverUnresponsive", peer, silentMs });
    this.#host.writable();
  }

  heartbeat(): { highestSeq: number; lowestSeq: number; digest: DigestEntry[] } {
    const digest: DigestEntry[] = [];
    for (const stream of this.#streams.values()) {
      const window = stream.window;
      if (!window.opened) continue;
      digest.push(
        create(DigestEntrySchema, {
          memberId: stream.originId,
          incarnation: BigInt(window.incarnation),
          delivered: BigInt(window.next - 1),
          received: BigInt(window.highestReceived),
        }),
      );
    }
    return { highestSeq: this.#window.nextSeq - 1, lowestSeq: this.#window.low, digest };
  }

  pollTimeout(): number {
    return Math.min(this.#tailDue, this.#expiryDue, this.#streamTimes.next(), this.#joinerTimes.next());
  }

  handleTimeout(now: number): void {
    if (this.#tailDue <= now) this.#announceTail(now);
    if (this.#expiryDue <= now) this.#expireReceivers(now);
    for (let stream = this.#streamTimes.popDue(now); stream !== undefined; stream = this.#streamTimes.popDue(now)) {
      if (stream.live) this.#onStreamDeadline(stream, now);
    }
    for (let joiner = this.#joinerTimes.popDue(now); joiner !== undefined; joiner = this.#joinerTimes.popDue(now)) {
      if (joiner.live) this.#tellStart(joiner, now);
    }
  }

  close(): void {
    this.#tailDue = this.#expiryDue = Number.POSITIVE_INFINITY;
    for (const [peer, stream] of this.#streams) this.#dropStream(peer, stream);
    for (const peer of [...this.#joiners.keys()]) this.#stopTellingStart(peer);
    this.#streamTimes.clear();
    this.#joinerTimes.clear();
    this.#resume.clear();
    this.#untold.clear();
  }

  // A peer's stream of this incarnation; a new one resumes where a partition left it, or waits to be told where it starts.
  #stream(peer: PeerKey, incarnation: number): SenderStream {
    let stream = this.#streams.get(peer);
    if (stream !== undefined && stream.window.incarnation === incarnation) return stream;
    if (stream !== undefined) this.#dropStream(peer, stream);
    const resume = this.#resume.get(peer);
    const first = resume?.incarnation === incarnation ? resume.next : 0;
    this.#resume.delete(peer);
    stream = openIncomingStream(peer, first, incarnation, this.#limits, this.#stats, this.#host.deliver);
    this.#streams.set(peer, stream);
    return stream;
  }

  #dropStream(peer: PeerKey, stream: SenderStream): void {
    stream.live = false;
    this.#streams.delete(peer);
  }

  #onHeartbeat(peer: PeerKey, incarnation: number, heartbeat: Heartbeat, now: number): void {
    if (!this.#consistent(peer, incarnation, heartbeat)) {
      this.#stats.refused++;
      return;
    }
    const highest = Number(heartbeat.highestSeq);
    const origin = idOf(peer);
    for (const entry of heartbeat.digest) {
      if (Number(entry.incarnation) === this.#localIncarnation && sameId(entry.memberId, this.#localId)) {
        // What the peer has of our stream.
        this.#onAck(peer, Number(entry.delivered), Number(entry.received), now);
      } else if (Number(entry.incarnation) === incarnation && sameId(entry.memberId, origin)) {
        // The peer's own stream: where it starts for us.
        this.#onStart(peer, incarnation, Number(entry.delivered) + 1);
      }
    }
    // A stream given up for dead resumes on the peer's heartbeat too, so that an idle sender still moves
    // it on; a sender that has sent something is remembered as having done so.
    const known = this.#streams.get(peer)?.window.incarnation === incarnation;
    if (!known && highest === 0 && this.#resume.get(peer)?.incarnation !== incarnation) return;
    const stream = this.#stream(peer, incarnation);
    const window = stream.window;
    window.announce(highest);
    if (!window.opened) return;
    // Below its lowest the sender holds nothing: what is missing there is lost.
    const lowest = Number(heartbeat.lowestSeq);
    if (lowest > window.next) this.#skipTo(peer, stream, lowest);
    this.#afterProgress(stream, now);
  }

  /**
   * True when a heartbeat's numbers can be its sender's: it holds lowest..highest (never more than a
   * buffer, lowest at most one past highest), and its digest acknowledges only what we sent and starts
   * its own stream for us no later than one past its highest.
   */
  #consistent(peer: PeerKey, incarnation: number, heartbeat: Heartbeat): boolean {
    const { highestSeq, lowestSeq } = heartbeat;
    if (lowestSeq < 1n || lowestSeq > highestSeq + 1n || highestSeq + 1n - lowestSeq > BigInt(this.#trustSpan)) return false;
    const sent = BigInt(this.#window.nextSeq);
    let origin: Uint8Array | undefined;
    for (const entry of heartbeat.digest) {
      if (Number(entry.incarnation) === this.#localIncarnation && sameId(entry.memberId, this.#localId)) {
        if (entry.delivered >= sent || entry.received >= sent) return false;
      } else if (Number(entry.incarnation) === incarnation && sameId(entry.memberId, (origin ??= idOf(peer)))) {
        if (entry.delivered > highestSeq) return false;
      }
    }
    return true;
  }

  // The sender told us where its stream starts for us: open there (unless open already), and say so.
  #onStart(peer: PeerKey, incarnation: number, start: number): void {
    const stream = this.#stream(peer, incarnation);
    if (!stream.window.opened) stream.window.open(start, stream.deliver);
    this.#sendAck(stream);
  }

  #skipTo(peer: PeerKey, stream: SenderStream, lowest: number): void {
    const lost = stream.window.skipTo(lowest, stream.deliver, (firstSeq, lastSeq) =>
      this.#host.report({ type: "messagesLost", peer, count: lastSeq - firstSeq + 1, firstSeq, lastSeq }),
    );
    this.#stats.lost += lost;
  }

  #afterProgress(stream: SenderStream, now: number): void {
    const window = stream.window;
    if (!window.hasGap) {
      if (stream.nackDue !== Number.POSITIVE_INFINITY) this.#gapFilled(stream, now);
      clearNack(stream);
    } else if (stream.nackDue === Number.POSITIVE_INFINITY) {
      if (stream.pendingAlone) {
        stream.pendingAlone = false;
        learnSharedLoss(stream, 0);
      }
      stream.gapSince = now;
      stream.nackDue = now + this.#nackDelay(stream);
    }
    if (ackDueNow(stream, this.#options, now)) this.#sendAck(stream);
    this.#streamTimes.schedule(stream, Math.min(stream.ackDue, stream.nackDue));
  }

  #onStreamDeadline(stream: SenderStream, now: number): void {
    const window = stream.window;
    if (stream.ackDue <= now) {
      if (window.unacked > 0) this.#sendAck(stream);
      else stream.ackDue = Number.POSITIVE_INFINITY;
    }
    if (stream.nackDue <= now) {
      const missing = window.hasGap ? window.missing(this.#options.maxNackSeqs) : [];
      if (missing.length === 0) clearNack(stream);
      else {
        // Losses shared: to the whole group, where receivers missing the same messages hear it and hold
        // their own NACK back (#onOtherNack), asking the sender to repair to everyone — but a new stream's
        // first gap (at the threshold: nothing judged yet), whose repair goes to us alone unless another
        // receiver asks too: a lone lossy receiver's first repair costs the others nothing. Otherwise to
        // the sender alone.
        stream.askedFirst = missing[0]![0];
        stream.askedLast = missing.at(-1)![1];
        const nack = nackFrame(Stream.MULTICAST, stream.originId, window.incarnation, missing, stream.sharedLosses > SHARED_LOSSES);
        if (stream.sharedLosses >= SHARED_LOSSES) this.#host.multicastFrame(nack);
        else this.#host.unicastFrame(stream.peer, nack);
        this.#stats.nacksSent++;
        stream.nackAttempts++;
        stream.nackPutOffs = 0;
        stream.nackDue = now + this.#retryDelay(stream.nackAttempts);
      }
    }
    this.#streamTimes.schedule(stream, Math.min(stream.ackDue, stream.nackDue));
  }

  #sendAck(stream: SenderStream): void {
    this.#host.unicastFrame(stream.peer, takeAck(stream, Stream.MULTICAST));
    this.#stats.acksSent++;
  }

  // Where losses are shared, in a group of more than four NACKs of one loss spread wider (by the log of
  // its size), and most fall late in the range (NORM's truncated exponential backoff, λ = ln(group
  // size) + 1): few receivers come due early, so that the first NACK is heard before the next is due.
  // Drawn uniformly, one in six of 16 would come due in the first sixth of the range.
  #nackDelay(stream: SenderStream): number {
    const { nackDelayMinMs, nackDelayMaxMs } = this.#options;
    const groupSize = this.#window.receivers + 1;
    let draw = this.#host.random.next();
    let spread = 1;
    if (stream.sharedLosses >= SHARED_LOSSES && groupSize > 4) {
      spread = Math.log2(groupSize) / NACK_SPREAD_DIVISOR;
      const lambda = Math.log(groupSize) + 1;
      draw = Math.log1p(draw * Math.expm1(lambda)) / lambda;
    }
    return nackDelayMinMs + draw * (nackDelayMaxMs - nackDelayMinMs) * spread;
  }

  // A gap closed: learn whether another receiver had it repaired too. Filled before we asked (and too
  // late to be reordering), or after our NACK was put off for another's: shared. Filled after we asked
  // ourselves: ours alone, as far as we can tell — unless the repair comes again before the next gap
  // opens (onData), as it does when a second receiver asks for what was repaired to us alone: a
  // receiver whose NACKs go to the sender alone, being first to ask for shared losses (its NACK delays
  // do not spread), would otherwise learn they are its own, and stay so.
  #gapFilled(stream: SenderStream, now: number): void {
    if (stream.othersAsked) learnSharedLoss(stream, 1);
    else if (stream.nackAttempts > 0) stream.pendingAlone = true;
    else if (now - stream.gapSince >= this.#options.nackDelayMinMs) learnSharedLoss(stream, 1);
  }

  /**
   * Another receiver's NACK for a stream we receive (SRM's and NORM's suppression): when it asks for
   * every message our own pending NACK would, ours waits as long as a NACK of ours would wait for its
   * answer — the repair that NACK brings, if it goes to everyone, fills our gap too. A NACK is put off
   * at most MAX_PUT_OFFS times in a row, so nobody can hold it back for long. One already due but not
   * yet sent is put off too: a process descheduled for a while reads the others' NACKs before its late
   * timer runs.
   */
  #onOtherNack(nack: Nack, now: number): void {
    const stream = this.#streams.get(keyOf(nack.originId));
    if (stream === undefined || stream.nackPutOffs >= MAX_PUT_OFFS || stream.nackDue === Number.POSITIVE_INFINITY) return;
    const window = stream.window;
    if (Number(nack.originIncarnation) !== window.incarnation || !window.hasGap || nack.missing.length > MAX_COMPARED_RANGES) return;
    const ours = window.missing(this.#options.maxNackSeqs);
    if (ours.length > MAX_COMPARED_RANGES) return;
    const covered = ours.every(([first, last]) => nack.missing.some((range) => range.first <= BigInt(first) && BigInt(last) <= range.last));
    if (!covered) return;
    stream.nackPutOffs++;
    stream.othersAsked = true;
    // With a fresh random delay on top: receivers put off by the same NACK must not all come due together.
    stream.nackDue = now + this.#retryDelay(stream.nackAttempts + 1) + this.#nackDelay(stream);
    this.#stats.nacksSuppressed++;
    this.#streamTimes.schedule(stream, Math.min(stream.ackDue, stream.nackDue));
  }

  #retryDelay(attempts: number): number {
    const { nackRetryMs, nackRetryMaxMs } = this.#options;
    return Math.min(nackRetryMaxMs, nackRetryMs * 2 ** Math.min(attempts - 1, 10));
  }

  // A NACK for our own stream: retransmit what is asked for (each message at most once per holdoff to
  // each asker), and tell the asker where our buffer starts if it asks for messages already dropped.
  #onNack(peer: PeerKey, nack: Nack, now: number): void {
    const window = this.#window;
    if (!nack.missing.every((range) => this.#sent(range))) {
      this.#stats.refused++;
      return;
    }
    this.#stats.nacksReceived++;
    window.ack(peer, 0, 0, now);
    let belowBuffer = false;
    let budget = this.#options.maxNackSeqs;
    const scope = nack.shared ? "everyone" : "one";
    for (const range of nack.missing) {
      let first = Number(range.first);
      const last = Number(range.last);
      if (first < window.low) {
        belowBuffer = true;
        first = window.low;
      }
      for (let seq = first; seq <= last && budget > 0; seq++, budget--) this.#retransmit(peer, seq, now, scope);
      if (budget === 0) break;
    }
    if (belowBuffer) this.#host.unicastFrame(peer, this.#tailFrame());
  }

  /** True when `range` is a run of messages this member sent. */
  #sent(range: SeqRange): boolean {
    return range.first >= 1n && range.first <= range.last && range.last < BigInt(this.#window.nextSeq);
  }

  // The first receiver asking for `seq` within the holdoff gets it alone — unless its NACK went to the
  // group for a loss others share (`Nack.shared`) — and a second one makes it go to everyone (several
  // receivers lost it); then nobody gets it again within the holdoff.
  #retransmit(peer: PeerKey, seq: number, now: number, scope: "one" | "everyone"): void {
    const window = this.#window;
    const frame = window.frame(seq)!;
    if (now - window.resentAt(seq) >= this.#options.retransmitHoldoffMs) {
      if (scope === "everyone") {
        window.markResent(seq, now, EVERYONE);
        this.#host.multicastFrame(frame);
      } else {
        window.markResent(seq, now, peer);
        this.#host.unicastFrame(peer, frame);
        this.#stats.retransmittedToOne++;
      }
    } else {
      const to = window.resentTo(seq);
      if (to === peer || to === EVERYONE) return;
      window.markResent(seq, now, EVERYONE);
      this.#host.multicastFrame(frame);
    }
    this.#stats.retransmitted++;
  }

  #onAckFrame(peer: PeerKey, ack: Ack, now: number): void {
    const cumulative = ackCumulative(ack);
    let received = cumulative;
    const valid = cumulative < this.#window.nextSeq && ack.received.every((range) => this.#sent(range));
    if (!valid) {
      this.#stats.refused++;
      return;
    }
    for (const range of ack.received) received = Math.max(received, Number(range.last));
    this.#onAck(peer, cumulative, received, now);
  }

  #onAck(peer: PeerKey, cumulative: number, received: number, now: number): void {
    // Any acknowledgement shows the receiver's stream of ours is open: it needs no more telling where it starts.
    this.#stopTellingStart(peer);
    const window = this.#window;
    if (!window.hasReceiver(peer)) return;
    const before = window.unstable + window.inFlight;
    if (window.ack(peer, cumulative, received, now)) {
      this.#host.report({ type: "receiverResponsive", peer });
    }
    if (window.unstable + window.inFlight < before) this.#host.writable();
  }

  // Tells a receiver where our stream starts for it, again and again (backing off) until it acknowledges.
  #tellStart(joiner: Joiner, now: number): void {
    const entry = create(DigestEntrySchema, {
      memberId: this.#localId,
      incarnation: BigInt(this.#localIncarnation),
      delivered: BigInt(joiner.start - 1),
      received: BigInt(joiner.start - 1),
    });
    this.#host.unicastFrame(joiner.peer, this.#tailFrame([entry]));
    joiner.attempts++;
    this.#joinerTimes.schedule(joiner, now + this.#retryDelay(joiner.attempts));
  }

  #stopTellingStart(peer: PeerKey): void {
    const joiner = this.#joiners.get(peer);
    if (joiner === undefined) return;
    joiner.live = false;
    this.#joiners.delete(peer);
  }

  /** A heartbeat of our stream's highest and lowest held message (and `digest`), between the periodic ones. */
  #tailFrame(digest: DigestEntry[] = []): Uint8Array {
    return heartbeatFrame({ highestSeq: this.#window.nextSeq - 1, lowestSeq: this.#window.low, intervalMs: 0, digest });
  }

  // While messages are unacknowledged, keep telling receivers the highest sequence number (backing off),
  // so that a receiver that lost the last messages notices and NACKs them.
  #announceTail(now: number): void {
    if (this.#window.unstable === 0) {
      this.#tailDue = Number.POSITIVE_INFINITY;
      return;
    }
    this.#host.multicastFrame(this.#tailFrame());
    this.#tailDelay = Math.min(this.#tailDelay * 2, this.#options.tailAnnounceMaxMs);
    this.#tailDue = now + this.#tailDelay;
  }

  #expireReceivers(now: number): void {
    const timeout = this.#options.receiverTimeoutMs;
    this.#expiryDue = now + timeout / 4;
    const expired = this.#window.expire(now, timeout);
    for (const { peer, silentMs } of expired) this.#host.report({ type: "receiverUnresponsive", peer, silentMs });
    if (expired.length > 0) this.#host.writable();
  }
}

/** One more gap judged shared (1) or ours alone (0), in the stream's moving average. */
function learnSharedLoss(stream: SenderStream, shared: 0 | 1): void {
  stream.sharedLosses += (shared - stream.sharedLosses) * SHARED_LOSSES_WEIGHT;
}

/** Remembers `point` for `peer`, forgetting the oldest one past {@link MAX_RESUME_POINTS}. */
function remember<T>(points: Map<PeerKey, T>, peer: PeerKey, point: T): void {
  points.delete(peer);
  if (points.size >= MAX_RESUME_POINTS) points.delete(points.keys().next().value!);
  points.set(peer, point);
}
