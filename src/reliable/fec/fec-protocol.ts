import type { Frame } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import type { DigestEntry } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import type { TimedUnit } from "../../core/driver.ts";
import type { DataFields } from "../../wire/frames.ts";
import { DEFAULT_NACK_OPTIONS, NackProtocol, type NackOptions } from "../nack/nack-protocol.ts";
import type { OutgoingData, PeerKey, ProtocolHost, ProtocolStats, ReliabilityProtocol } from "../protocol.ts";
import { type FecReceiveCounters, FecReceiver } from "./fec-receiver.ts";
import { FecSender } from "./fec-sender.ts";
import type { FecOptions } from "./options.ts";

/** The counters of the FEC protocol: NACK's, and what parity did. */
export interface FecStats extends ProtocolStats, FecReceiveCounters {
  /** Parity frames sent. */
  paritySent: number;
}

/**
 * Forward error correction in the manner of NORM (RFC 5740) with RFC 5510's Reed-Solomon code: NACK
 * reliability, plus m parity packets after every block of up to k of a sender's messages, so that a
 * receiver that lost up to m packets of a block rebuilds them at once, with no retransmission round
 * trip. What parity cannot repair, NACK does: its gaps are NACKed `parityWaitMs` later than plain NACK
 * would, giving parity its chance first. Delivery is NACK's: exactly once, in the sender's order.
 *
 * It is a NACK protocol with two taps: the sender side sees every Data frame the NACK sender writes
 * (through the host), the receiver side sees every Data frame and parity frame before NACK does, and
 * hands rebuilt packets to NACK as if they had arrived.
 */
export class FecProtocol implements ReliabilityProtocol, TimedUnit {
  readonly name = "fec";
  readonly #nack: NackProtocol;
  readonly #sender: FecSender;
  readonly #receiver: FecReceiver;
  readonly #stats: FecStats;
  readonly #counters: FecReceiveCounters & { paritySent: number };

  constructor(host: ProtocolHost, incarnation: number, options: FecOptions, nack: Partial<NackOptions> = {}, now = 0) {
    const counters = { paritySent: 0, parityReceived: 0, parityInvalid: 0, recovered: 0, blocksRecovered: 0, blocksUnrecovered: 0 };
    this.#sender = new FecSender(host, options, counters);
    const sender = this.#sender;
    const tapped: ProtocolHost = {
      random: host.random,
      localKey: host.localKey,
      multicastData(data) {
        const frame = host.multicastData(data);
        sender.add(data.seq, frame);
        return frame;
      },
      multicastFrame: (frame) => host.multicastFrame(frame),
      unicastFrame: (peer, frame) => host.unicastFrame(peer, frame),
      deliver: (peer, data, incarnation) => host.deliver(peer, data, incarnation),
      report: (event) => host.report(event),
      writable: () => host.writable(),
      atEndOfTurn: (fn) => host.atEndOfTurn(fn),
    };
    const wait = options.parityWaitMs;
    this.#nack = new NackProtocol(tapped, incarnation, {
      ...nack,
      nackDelayMinMs: (nack.nackDelayMinMs ?? DEFAULT_NACK_OPTIONS.nackDelayMinMs) + wait,
      nackDelayMaxMs: (nack.nackDelayMaxMs ?? DEFAULT_NACK_OPTIONS.nackDelayMaxMs) + wait,
    }, now);
    this.#receiver = new FecReceiver(counters, (peer, incarnation, data, now) => this.#nack.onData(peer, incarnation, data, now));
    this.#stats = { ...this.#nack.stats, ...counters };
    this.#counters = counters;
  }

  get stats(): Readonly<FecStats> {
    return Object.assign(this.#stats, this.#nack.stats, this.#counters);
  }

  canSend(bytes: number): boolean {
    return this.#nack.canSend(bytes);
  }

  send(data: OutgoingData, now: number): number {
    return this.#nack.send(data, now);
  }

  onData(peer: PeerKey, incarnation: number, data: DataFields, now: number): void {
    this.#receiver.onData(peer, incarnation, data, now);
  }

  onControl(peer: PeerKey, incarnation: number, frame: Frame, now: number): void {
    if (frame.kind.case === "fecParity") this.#receiver.onParity(peer, incarnation, frame.kind.value, now);
    else this.#nack.onControl(peer, incarnation, frame, now);
  }

  onPeerUp(peer: PeerKey, incarnation: number, now: number): void {
    this.#receiver.peerUp(peer, incarnation);
    this.#nack.onPeerUp(peer, incarnation, now);
  }

  onPeerDown(peer: PeerKey): void {
    this.#receiver.forget(peer);
    this.#nack.onPeerDown(peer);
  }

  onReceiverGone(peer: PeerKey, now: number): void {
    this.#nack.onReceiverGone(peer, now);
  }

  pollTimeout(): number {
    return this.#nack.pollTimeout();
  }

  handleTimeout(now: number): void {
    this.#nack.handleTimeout(now);
  }

  heartbeat(): { highestSeq: number; lowestSeq: number; digest: DigestEntry[] } {
    return this.#nack.heartbeat();
  }

  close(): void {
    this.#sender.close();
    this.#receiver.close();
    this.#nack.close();
  }
}
