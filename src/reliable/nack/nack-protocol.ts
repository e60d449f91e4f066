import { create } from "@bufbuild/protobuf";
import type { Frame } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import { type DigestEntry, DigestEntrySchema, type Nack, Stream } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import type { TimerHandle } from "../../transport/clock.ts";
import { type DataFields, emptyDataFields, NO_BYTES } from "../../wire/frames.ts";
import { heartbeatFrame, nackFrame } from "../control-frames.ts";
import { idOf, sameId } from "../member-key.ts";
import {
  emptyStats,
  fillData,
  type OutgoingData,
  type PeerKey,
  type ProtocolHost,
  type ProtocolStats,
  type ReliabilityProtocol,
} from "../protocol.ts";
import { type Acknowledger, acknowledge, type IncomingStream, openIncomingStream, takeAck } from "./receive-window.ts";
import { BUFFER_WINDOWS, SendWindow } from "./send-window.ts";

/** Tuning of the NACK protocol. Every duration is in milliseconds. */
export interface NackOptions {
  /** Most messages a sender has in flight (sent, not yet received by every receiver): its window. */
  readonly windowMessages: number;
  /** Most bytes a sender has in flight. While gaps are repaired it may hold up to 4 windows for retransmission. */
  readonly windowBytes: number;
  /** A gap is NACKed after a random delay in [nackDelayMinMs, nackDelayMaxMs], so that one receiver's NACK can spare the others theirs. */
  readonly nackDelayMinMs: number;
  readonly nackDelayMaxMs: number;
  /** First wait before repeating an unanswered NACK; doubles up to `nackRetryMaxMs`. */
  readonly nackRetryMs: number;
  readonly nackRetryMaxMs: number;
  /** Most sequence numbers one NACK asks for. */
  readonly maxNackSeqs: number;
  /** A message is not retransmitted twice within this time (several receivers NACKing one loss cost one repair). */
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

/**
 * NACK-based reliable multicast, in the manner of JGroups' NAKACK and NORM: every sender numbers its
 * messages; receivers deliver each sender's messages exactly once and in order, and ask for what is
 * missing with multicast NACKs after a random delay (a NACK heard from another receiver holds one's
 * own back); the sender retransmits by multicast. Receivers acknowledge what they delivered, which
 * both trims the sender's retransmit buffer (stability) and opens its window (flow control). A sender
 * that falls silent announces its highest sequence number, so a lost last message is noticed.
 */
export class NackProtocol implements ReliabilityProtocol {
  readonly name = "nack";
  readonly #host: ProtocolHost;
  readonly #options: NackOptions;
  readonly #window: SendWindow;
  readonly #streams = new Map<PeerKey, SenderStream>();
  readonly #stats: ProtocolStats = emptyStats();
  readonly #localId: Uint8Array;
  readonly #localIncarnation: number;
  #tailTimer: TimerHandle | undefined;
  #tailDelay: number;
  #expiryTimer: TimerHandle | undefined;
  #closed = false;
  readonly #scratch: DataFields = emptyDataFields();

  constructor(host: ProtocolHost, localIncarnation: number, options: Partial<NackOptions> = {}) {
    this.#host = host;
    this.#options = { ...DEFAULT_NACK_OPTIONS, ...options };
    this.#window = new SendWindow(this.#options.windowMessages, this.#options.windowBytes);
    this.#localId = idOf(host.localKey);
    this.#localIncarnation = localIncarnation;
    this.#tailDelay = this.#options.tailAnnounceMs;
    this.#scheduleExpiry();
  }

  get stats(): Readonly<ProtocolStats> {
    this.#stats.unstable = this.#window.unstable;
    return this.#stats;
  }

  canSend(bytes: number): boolean {
    return this.#window.canSend(bytes);
  }

  send(out: OutgoingData): number {
    const window = this.#window;
    const seq = window.next();
    const data = fillData(this.#scratch, seq, out);
    window.record(seq, this.#host.multicastData(data));
    data.payload = NO_BYTES;
    window.trim();
    this.#stats.sent++;
    this.#tailDelay = this.#options.tailAnnounceMs;
    if (this.#tailTimer === undefined) this.#scheduleTail();
    return seq;
  }

  onData(peer: PeerKey, incarnation: number, data: DataFields): void {
    const stream = this.#stream(peer, incarnation, data.seq);
    const window = stream.window;
    if (data.seq >= window.next + 2 * BUFFER_WINDOWS * this.#options.windowMessages) {
      // Further ahead than any sender's window allows: not trustworthy.
      this.#stats.outOfWindow++;
      return;
    }
    if (!window.receive(data, stream.deliver)) {
      this.#stats.duplicates++;
      return;
    }
    this.#afterProgress(peer, stream);
  }

  onControl(peer: PeerKey, incarnation: number, frame: Frame): void {
    const kind = frame.kind;
    switch (kind.case) {
      case "nack":
        if (kind.value.stream !== Stream.MULTICAST) return;
        if (sameId(kind.value.originId, this.#localId)) this.#onNack(peer, kind.value);
        else this.#onOthersNack(kind.value);
        return;
      case "ack":
        if (kind.value.stream === Stream.MULTICAST && sameId(kind.value.originId, this.#localId)) {
          const cumulative = Number(kind.value.cumulative);
          const received = kind.value.received.reduce((max, range) => Math.max(max, Number(range.last)), cumulative);
          this.#onAck(peer, cumulative, received);
        }
        return;
      case "heartbeat": {
        const heartbeat = kind.value;
        const highest = Number(heartbeat.highestSeq);
        const stream = this.#stream(peer, incarnation, highest + 1);
        stream.window.announce(highest);
        const lowest = Number(heartbeat.lowestSeq);
        if (lowest > stream.window.next) {
          const lost = stream.window.skipTo(lowest, stream.deliver);
          if (lost > 0) {
            this.#stats.lost += lost;
            this.#host.report({ type: "messagesLost", peer, count: lost, firstSeq: lowest - lost });
          }
        }
        for (const entry of heartbeat.digest) {
          if (sameId(entry.memberId, this.#localId) && Number(entry.incarnation) === this.#localIncarnation) {
            this.#onAck(peer, Number(entry.delivered), Number(entry.received));
          }
        }
        this.#afterProgress(peer, stream);
        return;
      }
      default:
        return;
    }
  }

  onPeerUp(peer: PeerKey, incarnation: number): void {
    const stream = this.#streams.get(peer);
    if (stream !== undefined && stream.window.incarnation !== incarnation) this.#dropStream(peer, stream);
    this.#window.removeReceiver(peer);
    this.#window.addReceiver(peer, this.#window.nextSeq, this.#host.clock.now());
  }

  onPeerDown(peer: PeerKey): void {
    const stream = this.#streams.get(peer);
    if (stream !== undefined) this.#dropStream(peer, stream);
    if (this.#window.removeReceiver(peer)) this.#host.writable();
  }

  heartbeat(): { highestSeq: number; lowestSeq: number; digest: DigestEntry[] } {
    const digest: DigestEntry[] = [];
    for (const stream of this.#streams.values()) {
      digest.push(
        create(DigestEntrySchema, {
          memberId: stream.originId,
          incarnation: BigInt(stream.window.incarnation),
          delivered: BigInt(stream.window.next - 1),
          received: BigInt(stream.window.highestReceived),
        }),
      );
    }
    return { highestSeq: this.#window.nextSeq - 1, lowestSeq: this.#lowestHeld(), digest };
  }

  close(): void {
    this.#closed = true;
    this.#tailTimer?.cancel();
    this.#expiryTimer?.cancel();
    for (const [peer, stream] of this.#streams) this.#dropStream(peer, stream);
  }

  #lowestHeld(): number {
    return this.#window.unstable > 0 ? this.#window.low : 0;
  }

  #stream(peer: PeerKey, incarnation: number, first: number): SenderStream {
    let stream = this.#streams.get(peer);
    if (stream !== undefined && stream.window.incarnation === incarnation) return stream;
    if (stream !== undefined) this.#dropStream(peer, stream);
    // A receiver delivers a sender's messages from the first one it hears of: the next one after an
    // announced highest sequence number, or the first message that arrives.
    stream = openIncomingStream(peer, Math.max(1, first), incarnation, this.#stats, this.#host.deliver);
    this.#streams.set(peer, stream);
    return stream;
  }

  #dropStream(peer: PeerKey, stream: SenderStream): void {
    stream.window.cancelTimers();
    this.#streams.delete(peer);
  }

  #afterProgress(peer: PeerKey, stream: SenderStream): void {
    const window = stream.window;
    if (!window.hasGap) window.clearNack();
    else if (window.nackTimer === undefined) this.#scheduleNack(peer, stream, this.#nackDelay());
    acknowledge(peer, stream, this.#options, this.#host.clock, this.#acknowledger);
  }

  readonly #acknowledger: Acknowledger = {
    send: (peer, stream) => this.#sendAck(peer, stream),
    current: (peer, stream) => this.#streams.get(peer) === stream,
  };

  #sendAck(peer: PeerKey, stream: SenderStream): void {
    this.#host.unicastFrame(peer, takeAck(stream, Stream.MULTICAST));
    this.#stats.acksSent++;
  }

  #nackDelay(): number {
    const { nackDelayMinMs, nackDelayMaxMs } = this.#options;
    return nackDelayMinMs + this.#host.random.next() * (nackDelayMaxMs - nackDelayMinMs);
  }

  #scheduleNack(peer: PeerKey, stream: SenderStream, delayMs: number): void {
    const window = stream.window;
    window.nackTimer = this.#host.clock.setTimer(delayMs, () => {
      window.nackTimer = undefined;
      if (this.#closed || this.#streams.get(peer) !== stream || !window.hasGap) {
        window.nackAttempts = 0;
        return;
      }
      const missing = window.missing(this.#options.maxNackSeqs);
      if (missing.length === 0) return;
      // Multicast, so that receivers missing the same messages hold their own NACKs back.
      this.#host.multicastFrame(nackFrame(Stream.MULTICAST, stream.originId, window.incarnation, missing));
      this.#stats.nacksSent++;
      window.nackAttempts++;
      this.#scheduleNack(peer, stream, this.#retryDelay(window.nackAttempts));
    });
  }

  #retryDelay(attempts: number): number {
    const { nackRetryMs, nackRetryMaxMs } = this.#options;
    return Math.min(nackRetryMaxMs, nackRetryMs * 2 ** Math.min(attempts - 1, 10));
  }

  // A NACK for our own stream: retransmit what is asked for (each message at most once per holdoff),
  // and tell the asker where our buffer starts if it asks for messages already dropped.
  #onNack(peer: PeerKey, nack: Nack): void {
    this.#stats.nacksReceived++;
    const window = this.#window;
    const now = this.#host.clock.now();
    window.ack(peer, 0, 0, now);
    let belowBuffer = false;
    let budget = this.#options.maxNackSeqs;
    for (const range of nack.missing) {
      const first = Number(range.first);
      const last = Math.min(Number(range.last), window.nextSeq - 1, first + budget - 1);
      for (let seq = first; seq <= last; seq++) {
        budget--;
        const frame = window.frame(seq);
        if (frame === undefined) {
          if (seq < window.low) belowBuffer = true;
          continue;
        }
        if (now - window.sentAt(seq) < this.#options.retransmitHoldoffMs) continue;
        window.markResent(seq, now);
        this.#host.multicastFrame(frame);
        this.#stats.retransmitted++;
      }
      if (budget <= 0) break;
    }
    if (belowBuffer) this.#host.unicastFrame(peer, this.#tailFrame());
  }

  // Another receiver's NACK for a stream we also read: if it asks for everything we miss, wait for the
  // repair it will bring instead of sending the same NACK.
  #onOthersNack(nack: Nack): void {
    for (const [peer, stream] of this.#streams) {
      if (!sameId(stream.originId, nack.originId)) continue;
      const window = stream.window;
      if (window.nackTimer === undefined || window.nackAttempts > 0) return;
      const asked = nack.missing.map((r) => [Number(r.first), Number(r.last)] as const);
      const covered = window
        .missing(this.#options.maxNackSeqs)
        .every(([first, last]) => asked.some(([a, b]) => a <= first && last <= b));
      if (!covered) return;
      window.nackTimer.cancel();
      window.nackAttempts = 1;
      this.#scheduleNack(peer, stream, this.#retryDelay(1));
      return;
    }
  }

  #onAck(peer: PeerKey, cumulative: number, received: number): void {
    const window = this.#window;
    if (!window.hasReceiver(peer)) return;
    const before = window.unstable + window.inFlight;
    if (window.ack(peer, cumulative, received, this.#host.clock.now())) {
      this.#host.report({ type: "receiverResponsive", peer });
    }
    if (window.unstable + window.inFlight < before) this.#host.writable();
  }

  #tailFrame(): Uint8Array {
    return heartbeatFrame({
      highestSeq: this.#window.nextSeq - 1,
      lowestSeq: this.#lowestHeld(),
      intervalMs: 0,
      digest: [],
    });
  }

  // While messages are unacknowledged, keep telling receivers the highest sequence number (backing off),
  // so that a receiver that lost the last messages notices and NACKs them.
  #scheduleTail(): void {
    this.#tailTimer = this.#host.clock.setTimer(this.#tailDelay, () => {
      this.#tailTimer = undefined;
      if (this.#closed || this.#window.unstable === 0) return;
      this.#host.multicastFrame(this.#tailFrame());
      this.#tailDelay = Math.min(this.#tailDelay * 2, this.#options.tailAnnounceMaxMs);
      this.#scheduleTail();
    });
  }

  #scheduleExpiry(): void {
    const timeout = this.#options.receiverTimeoutMs;
    this.#expiryTimer = this.#host.clock.setTimer(timeout / 4, () => {
      if (this.#closed) return;
      const expired = this.#window.expire(this.#host.clock.now(), timeout);
      for (const { peer, silentMs } of expired) this.#host.report({ type: "receiverUnresponsive", peer, silentMs });
      if (expired.length > 0) this.#host.writable();
      this.#scheduleExpiry();
    });
  }
}
