import type { Frame } from "../../gen/activeblaze/v1/envelope_pb.ts";
import type { DigestEntry } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { type DataFields, emptyDataFields, NO_BYTES } from "../wire/frames.ts";
import {
  emptyStats,
  fillData,
  type OutgoingData,
  type PeerKey,
  type ProtocolHost,
  type ProtocolStats,
  type ReliabilityProtocol,
} from "./protocol.ts";

/** How many recent sequence numbers per sender are remembered to drop duplicates. */
const DUPLICATE_WINDOW = 4_096;

interface SenderState {
  readonly incarnation: number;
  highest: number;
  readonly seen: Float64Array;
}

/**
 * Best effort: each message is sent once and delivered when (and if) it arrives, in arrival order.
 * No retransmission, no flow control, nothing held: the lowest latency. Messages are still numbered,
 * so that duplicated datagrams are delivered once and fragments can be put back together.
 */
export class BestEffortProtocol implements ReliabilityProtocol {
  readonly name = "best-effort";
  readonly #host: ProtocolHost;
  readonly #senders = new Map<PeerKey, SenderState>();
  readonly #stats: ProtocolStats = emptyStats();
  #nextSeq = 1;
  // Frames are encoded at once, so one scratch object serves every message.
  readonly #scratch: DataFields = emptyDataFields();

  constructor(host: ProtocolHost) {
    this.#host = host;
  }

  get stats(): Readonly<ProtocolStats> {
    return this.#stats;
  }

  canSend(): boolean {
    return true;
  }

  send(out: OutgoingData): number {
    const seq = this.#nextSeq++;
    const data = fillData(this.#scratch, seq, out);
    this.#host.multicastData(data);
    data.payload = NO_BYTES;
    this.#stats.sent++;
    return seq;
  }

  onData(peer: PeerKey, incarnation: number, data: DataFields): void {
    let sender = this.#senders.get(peer);
    if (sender === undefined || sender.incarnation !== incarnation) {
      sender = { incarnation, highest: 0, seen: new Float64Array(DUPLICATE_WINDOW) };
      this.#senders.set(peer, sender);
    }
    const seq = data.seq;
    const slot = seq % DUPLICATE_WINDOW;
    if (seq + DUPLICATE_WINDOW <= sender.highest) {
      this.#stats.outOfWindow++;
      return;
    }
    if (sender.seen[slot] === seq) {
      this.#stats.duplicates++;
      return;
    }
    sender.seen[slot] = seq;
    if (seq > sender.highest) sender.highest = seq;
    this.#stats.delivered++;
    this.#host.deliver(peer, data, incarnation);
  }

  onControl(_peer: PeerKey, _incarnation: number, _frame: Frame): void {}

  onPeerUp(): void {}

  onPeerDown(peer: PeerKey): void {
    this.#senders.delete(peer);
  }

  heartbeat(): { highestSeq: number; lowestSeq: number; digest: DigestEntry[] } {
    return { highestSeq: this.#nextSeq - 1, lowestSeq: 0, digest: [] };
  }

  close(): void {
    this.#senders.clear();
  }
}
