import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { type Frame, FrameSchema } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import { DigestEntrySchema } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import { SeededRandom } from "../../transport/seeded-random.ts";
import { VirtualClock } from "../../transport/virtual-clock.ts";
import { type DataFields, emptyDataFields, toData, toDataFields } from "../../wire/frames.ts";
import { ackFrame, heartbeatFrame, nackFrame, Stream } from "../control-frames.ts";
import { idOf } from "../member-key.ts";
import type { OutgoingData, PeerKey, ProtocolEvent, ProtocolHost } from "../protocol.ts";
import { DrivenProtocol } from "../../../test/support/driven-protocol.ts";
import { DEFAULT_NACK_OPTIONS, type NackOptions, NackProtocol } from "./nack-protocol.ts";
import { type EarlyLimits, ReceiveWindow } from "./receive-window.ts";
import { BUFFER_WINDOWS } from "./send-window.ts";

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Protocol members on one virtual clock, passing real frames to each other after 0.5 ms. */
class Net {
  readonly clock = new VirtualClock();
  readonly nodes: Node[] = [];
  /** Returns true to drop a frame on purpose. */
  drop: (from: Node, to: Node, frame: Frame) => boolean = () => false;

  add(options: Partial<NackOptions> = {}, incarnation = 1): Node {
    const node = new Node(this, this.nodes.length, incarnation, options);
    this.nodes.push(node);
    return node;
  }

  /** Every pair of nodes hears of each other. */
  meetAll(): void {
    for (const a of this.nodes) for (const b of this.nodes) if (a !== b) a.protocol.onPeerUp(b.key, b.incarnation);
  }

  transmit(from: Node, to: Node, bytes: Uint8Array): void {
    const frame = fromBinary(FrameSchema, bytes);
    if (to === from || this.drop(from, to, frame)) return;
    to.received.push(frame);
    this.clock.setTimer(0.5, () => to.receive(from, frame));
  }
}

/** One member: a NackProtocol whose host sends real frames over the Net and records what it delivers and reports. */
class Node {
  readonly key: PeerKey;
  readonly protocol: DrivenProtocol<NackProtocol>;
  /** Per sender, the sequence numbers delivered, in delivery order. */
  readonly delivered = new Map<PeerKey, number[]>();
  readonly events: ProtocolEvent[] = [];
  /** Frames this node sent to one peer, and frames it received (before delay). */
  readonly unicast: Array<{ to: PeerKey; frame: Frame }> = [];
  readonly received: Frame[] = [];
  writable = 0;
  readonly #net: Net;

  constructor(
    net: Net,
    index: number,
    readonly incarnation: number,
    options: Partial<NackOptions>,
  ) {
    this.#net = net;
    this.key = (index + 1).toString(16).padStart(32, "0");
    const host: ProtocolHost = {
      random: new SeededRandom(`node-${index}`),
      localKey: this.key,
      multicastData: (data) => {
        const bytes = toBinary(FrameSchema, create(FrameSchema, { kind: { case: "data", value: toData(data) } }));
        for (const node of net.nodes) net.transmit(this, node, bytes);
        return bytes;
      },
      multicastFrame: (bytes) => {
        for (const node of net.nodes) net.transmit(this, node, bytes);
      },
      unicastFrame: (peer, bytes) => {
        this.unicast.push({ to: peer, frame: fromBinary(FrameSchema, bytes) });
        const node = net.nodes.find((n) => n.key === peer);
        if (node !== undefined) net.transmit(this, node, bytes);
      },
      deliver: (peer, data) => this.got(peer).push(data.seq),
      report: (event) => this.events.push(event),
      writable: () => this.writable++,
      atEndOfTurn: (fn) => net.clock.defer(fn),
    };
    this.protocol = new DrivenProtocol(new NackProtocol(host, incarnation, options, net.clock.now()), net.clock);
  }

  receive(from: Node, frame: Frame): void {
    if (frame.kind.case === "data") this.protocol.onData(from.key, from.incarnation, toDataFields(frame.kind.value)!);
    else this.protocol.onControl(from.key, from.incarnation, frame);
  }

  got(peer: PeerKey): number[] {
    let list = this.delivered.get(peer);
    if (list === undefined) this.delivered.set(peer, (list = []));
    return list;
  }

  send(count: number): void {
    for (let i = 0; i < count; i++) this.protocol.send(outgoing());
  }

  lost(): Array<[number, number]> {
    return this.events.flatMap((e) => (e.type === "messagesLost" ? [[e.firstSeq, e.lastSeq] as [number, number]] : []));
  }

  /** The cumulative acknowledgements this node sent for `origin`'s stream. */
  acksFor(origin: Node): number[] {
    return this.unicast.flatMap(({ to, frame }) => (to === origin.key && frame.kind.case === "ack" ? [Number(frame.kind.value.cumulative)] : []));
  }

  get net(): Net {
    return this.#net;
  }
}

function outgoing(payload: Uint8Array = new Uint8Array(8), outOfBand = false): OutgoingData {
  return { destination: "t", addressing: 1, format: 0, payload, outOfBand, fragmentIndex: 0, fragmentCount: 0, messageLength: 0, requestId: 0 };
}

function data(seq: number, payloadBytes = 8): DataFields {
  return { ...emptyDataFields(), seq, addressing: 1, destination: "t", payload: new Uint8Array(payloadBytes) };
}

function heartbeat(highestSeq: number, lowestSeq: number, digest: Array<{ memberId: Uint8Array; incarnation: number; delivered: number; received?: number }> = []): Frame {
  const entries = digest.map((e) =>
    create(DigestEntrySchema, { memberId: e.memberId, incarnation: BigInt(e.incarnation), delivered: BigInt(e.delivered), received: BigInt(e.received ?? e.delivered) }),
  );
  return fromBinary(FrameSchema, heartbeatFrame({ highestSeq, lowestSeq, intervalMs: 0, digest: entries }));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** A receiver whose stream from `sender` opened at 1 (it heard message 1). */
function openReceiver(options: Partial<NackOptions> = {}): { net: Net; sender: Node; receiver: Node } {
  const net = new Net();
  const sender = net.add();
  const receiver = net.add(options);
  receiver.protocol.onData(sender.key, 1, data(1));
  return { net, sender, receiver };
}

describe("ReceiveWindow with hostile numbers", () => {
  const limits: EarlyLimits = { messages: 65_536, bytes: 4 * 1024 * 1024 };

  it("skips to 2^53 − 2 in one step, delivering what it holds and reporting each missing run in order", () => {
    const window = new ReceiveWindow(1, 1, limits);
    const log: string[] = [];
    const deliver = (d: DataFields) => log.push(`deliver ${d.seq}`);
    window.receive(data(1), deliver);
    window.receive(data(5), deliver);
    window.receive(data(9), deliver);
    expect(window.held).toBe(2);
    const lost = window.skipTo(MAX_SAFE - 1, deliver, (first, last) => log.push(`lost ${first}-${last}`));
    expect(log).toEqual(["deliver 1", "lost 2-4", "deliver 5", "lost 6-8", "deliver 9", `lost 10-${MAX_SAFE - 2}`]);
    // 2 … 2^53 − 3, but for the two held.
    expect(lost).toBe(MAX_SAFE - 3 - 2);
    expect(window.next).toBe(MAX_SAFE - 1);
    expect(window.held).toBe(0);
    expect(window.heldBytes).toBe(0);
    expect(window.receive(data(MAX_SAFE - 1), deliver)).toBe("taken");
    expect(log.at(-1)).toBe(`deliver ${MAX_SAFE - 1}`);
  });

  it("holds only what it holds: sequence numbers far apart cost one entry each, and too far ahead are dropped", () => {
    const window = new ReceiveWindow(1, 1, limits);
    const deliver = () => undefined;
    for (const seq of [2, 3, 60_000]) expect(window.receive(data(seq), deliver)).toBe("taken");
    // Past the window above the next one to deliver: never held.
    expect(window.receive(data(524_000), deliver)).toBe("full");
    expect(window.receive(data(MAX_SAFE), deliver)).toBe("full");
    expect(window.held).toBe(3);
    expect(window.heldBytes).toBe(24);
    expect(window.highestReceived).toBe(60_000);
  });

  it("caps what it holds by messages and by payload bytes; one message always fits", () => {
    const window = new ReceiveWindow(1, 1, { messages: 16, bytes: 10_000 });
    const deliver = () => undefined;
    // Messages: the span above the next one to deliver.
    const receipts = range(2, 40).map((seq) => window.receive(data(seq), deliver));
    expect(receipts.filter((r) => r === "taken")).toHaveLength(15);
    expect(window.held).toBe(15);
    const bytes = new ReceiveWindow(1, 1, { messages: 16, bytes: 10_000 });
    expect(bytes.receive(data(2, 30_000), deliver)).toBe("taken");
    expect(bytes.receive(data(3, 1), deliver)).toBe("full");
    const some = new ReceiveWindow(1, 1, { messages: 16, bytes: 10_000 });
    expect(range(2, 6).map((seq) => some.receive(data(seq, 3_000), deliver))).toEqual(["taken", "taken", "taken", "full", "full"]);
    expect(some.heldBytes).toBe(9_000);
  });

  it("keeps no more of a datagram than the payload it holds", () => {
    const window = new ReceiveWindow(1, 1, limits);
    const datagram = new Uint8Array(65_000);
    const message = { ...data(3), payload: datagram.subarray(100, 110) };
    window.receive(message, () => undefined);
    expect(message.payload.buffer.byteLength).toBe(10);
  });

  it("holds everything while not opened, bounded by count, and keeps what is at or above the start when opened", () => {
    const window = new ReceiveWindow(0, 1, { messages: 4, bytes: 1_000 });
    const delivered: number[] = [];
    const deliver = (d: DataFields) => delivered.push(d.seq);
    for (const seq of [MAX_SAFE, 7, 9, 3]) expect(window.receive(data(seq), deliver)).toBe("taken");
    expect(window.receive(data(8), deliver)).toBe("full");
    expect(window.hasGap).toBe(false);
    expect(delivered).toEqual([]);
    window.open(7, deliver);
    expect(delivered).toEqual([7]);
    expect(window.held).toBe(1);
    expect(window.missing(10)).toEqual([[8, 8]]);
  });
});

describe("NackProtocol with hostile numbers", () => {
  it("skips to a heartbeat's lowest sequence of 2^53 − 2 at once and reports the exact ranges lost", () => {
    const { sender, receiver } = openReceiver();
    receiver.protocol.onData(sender.key, 1, data(4));
    receiver.protocol.onControl(sender.key, 1, heartbeat(MAX_SAFE - 2, MAX_SAFE - 2));
    expect(receiver.got(sender.key)).toEqual([1, 4]);
    expect(receiver.lost()).toEqual([
      [2, 3],
      [5, MAX_SAFE - 3],
    ]);
    expect(receiver.events).toContainEqual({ type: "messagesLost", peer: sender.key, count: 2, firstSeq: 2, lastSeq: 3 });
    expect(receiver.protocol.stats.lost).toBe(MAX_SAFE - 3 - 2);
    expect(receiver.protocol.stats.held).toBe(0);
  });

  it("holds an 88-byte datagram's sequence numbers 1, 3 and 524,000 in two entries at most", () => {
    const net = new Net();
    const sender = net.add();
    const receiver = net.add();
    for (const seq of [1, 3, 524_000]) receiver.protocol.onData(sender.key, 1, data(seq));
    const stats = receiver.protocol.stats;
    expect(stats.held).toBe(1);
    expect(stats.earlyDropped).toBe(1);
    // A fresh stream not yet told where it starts holds what comes, bounded by the window.
    const other = net.add();
    for (const seq of [3, 524_000, 2 ** 40, MAX_SAFE]) receiver.protocol.onData(other.key, 1, data(seq));
    expect(receiver.protocol.stats.held).toBe(5);
    expect(receiver.got(other.key)).toEqual([]);
  });

  it("caps a sender's held messages at the four windows it may keep, counts what it drops, and gets it again once the gap fills", () => {
    const net = new Net();
    const sender = net.add({ windowMessages: 16, windowBytes: 64 * 1024 });
    const receiver = net.add({ windowMessages: 16, windowBytes: 64 * 1024 });
    net.meetAll();
    net.clock.runFor(5);
    // Message 1 is missing while 2–100 arrive (as from a sender with a larger window).
    for (let seq = 2; seq <= 100; seq++) receiver.protocol.onData(sender.key, 1, data(seq));
    expect(receiver.protocol.stats.held).toBe(63);
    expect(receiver.protocol.stats.earlyDropped).toBe(36);
    receiver.protocol.onData(sender.key, 1, data(1));
    expect(receiver.got(sender.key)).toEqual(range(1, 64));
    for (let seq = 65; seq <= 100; seq++) receiver.protocol.onData(sender.key, 1, data(seq));
    expect(receiver.got(sender.key)).toEqual(range(1, 100));
  });

  it("refuses NACKs, acknowledgements and digests of messages it never sent, counting them and changing nothing", () => {
    const net = new Net();
    const sender = net.add();
    const receiver = net.add();
    net.meetAll();
    sender.send(10);
    net.drop = () => true;
    const refuse = (frame: Frame) => {
      const before = { ...sender.protocol.stats };
      sender.protocol.onControl(receiver.key, 1, frame);
      const after = sender.protocol.stats;
      expect(after.refused).toBe(before.refused + 1);
      expect(after.retransmitted).toBe(before.retransmitted);
      expect(after.unstable).toBe(10);
      expect(sender.protocol.canSend(1)).toBe(true);
    };
    const id = idOf(sender.key);
    const parse = (bytes: Uint8Array) => fromBinary(FrameSchema, bytes);
    refuse(parse(nackFrame(Stream.MULTICAST, id, 1, [[0, 1]])));
    refuse(parse(nackFrame(Stream.MULTICAST, id, 1, [[5, 4]])));
    refuse(parse(nackFrame(Stream.MULTICAST, id, 1, [[3, 11]])));
    refuse(parse(nackFrame(Stream.MULTICAST, id, 1, [[1, 1], [2, MAX_SAFE]])));
    refuse(parse(ackFrame(Stream.MULTICAST, id, 1, 11, 11)));
    refuse(parse(ackFrame(Stream.MULTICAST, id, 1, 3, MAX_SAFE)));
    refuse(heartbeat(0, 1, [{ memberId: id, incarnation: 1, delivered: 11 }]));
    refuse(heartbeat(0, 1, [{ memberId: id, incarnation: 1, delivered: 2, received: 2 ** 40 }]));
    // The same numbers for another incarnation of the sender are about a stream that is not this one.
    const stale = parse(ackFrame(Stream.MULTICAST, id, 2, 5, 5));
    sender.protocol.onControl(receiver.key, 1, stale);
    expect(sender.protocol.stats.unstable).toBe(10);
    // A valid acknowledgement still counts.
    sender.protocol.onControl(receiver.key, 1, parse(ackFrame(Stream.MULTICAST, id, 1, 10, 10)));
    expect(sender.protocol.stats.unstable).toBe(0);
  });

  it("refuses heartbeats and data whose numbers cannot be a sender's, counting them and changing nothing", () => {
    const { sender, receiver } = openReceiver();
    const own = idOf(sender.key);
    const counts = () => ({ refused: receiver.protocol.stats.refused, outOfWindow: receiver.protocol.stats.outOfWindow, lost: receiver.protocol.stats.lost });
    const span = 2 * BUFFER_WINDOWS * DEFAULT_NACK_OPTIONS.windowMessages;
    const hostile: Frame[] = [
      // The lowest held above one past the highest sent.
      heartbeat(10, 12),
      // 0: a sender always holds from 1 up, or announces its next sequence number.
      heartbeat(10, 0),
      // More held than any sender's buffer.
      heartbeat(span + 10, 10),
      heartbeat(MAX_SAFE, 1),
      // Its stream starting for us past what it sent.
      heartbeat(10, 11, [{ memberId: own, incarnation: 1, delivered: 11 }]),
    ];
    for (const [i, frame] of hostile.entries()) {
      receiver.protocol.onControl(sender.key, 1, frame);
      expect(counts()).toEqual({ refused: i + 1, outOfWindow: 0, lost: 0 });
    }
    receiver.protocol.onData(sender.key, 1, data(0));
    expect(counts()).toEqual({ refused: hostile.length + 1, outOfWindow: 0, lost: 0 });
    receiver.protocol.onData(sender.key, 1, data(2 + span));
    expect(counts()).toEqual({ refused: hostile.length + 1, outOfWindow: 1, lost: 0 });
    expect(receiver.events).toEqual([]);
    receiver.protocol.onData(sender.key, 1, data(2));
    expect(receiver.got(sender.key)).toEqual([1, 2]);
  });
});

describe("NackProtocol joiners, low-water mark, partitions and repairs", () => {
  it("owes a late joiner what is sent after it was heard, tells it so until it acknowledges, and it never skips one", () => {
    const net = new Net();
    const sender = net.add();
    sender.send(50);
    net.clock.runFor(5);
    const joiner = net.add();
    // Heard now: owed 51 on. The first two notices and message 51 are lost on the way to it.
    let notices = 0;
    net.drop = (from, to, frame) => {
      if (from !== sender || to !== joiner) return false;
      if (frame.kind.case === "heartbeat" && frame.kind.value.digest.length > 0) return ++notices <= 2;
      return frame.kind.case === "data" && frame.kind.value.seq === 51n && notices <= 2;
    };
    sender.protocol.onPeerUp(joiner.key, 1);
    joiner.protocol.onPeerUp(sender.key, 1);
    sender.send(10);
    net.clock.runFor(5);
    // It holds what it hears, delivers nothing and acknowledges nothing until told where to start.
    expect(joiner.got(sender.key)).toEqual([]);
    expect(joiner.acksFor(sender)).toEqual([]);
    expect(joiner.protocol.stats.held).toBe(9);
    net.clock.runFor(100);
    expect(notices).toBe(3);
    expect(joiner.got(sender.key)).toEqual(range(51, 60));
    expect(joiner.lost()).toEqual([]);
    // Its acknowledgements claim only what it delivered.
    const acks = joiner.acksFor(sender);
    expect(acks[0]).toBe(50);
    expect(Math.max(...acks)).toBe(60);
    net.clock.runFor(2_000);
    expect(notices).toBe(3);
    expect(sender.protocol.stats.unstable).toBe(0);
  });

  it("tells a receiver given up before it acknowledged the same start when it is back, and it reports what it missed", () => {
    const net = new Net();
    const sender = net.add();
    sender.send(5);
    net.clock.runFor(5);
    const joiner = net.add();
    // Heard (owed 6 on), then cut off before it hears anything and given up.
    net.drop = (from, to) => from === joiner || to === joiner;
    sender.protocol.onPeerUp(joiner.key, 1);
    sender.send(5);
    net.clock.runFor(50);
    sender.protocol.onPeerDown(joiner.key);
    expect(sender.protocol.stats.unstable).toBe(0);
    net.drop = () => false;
    sender.protocol.onPeerUp(joiner.key, 1);
    sender.send(2);
    net.clock.runFor(500);
    const starts = sender.unicast.flatMap(({ to, frame }) =>
      to === joiner.key && frame.kind.case === "heartbeat" ? frame.kind.value.digest.map((entry) => Number(entry.delivered) + 1) : [],
    );
    expect(new Set(starts)).toEqual(new Set([6]));
    expect(joiner.got(sender.key)).toEqual([11, 12]);
    expect(joiner.lost()).toEqual([[6, 10]]);
  });

  it("delivers a stream heard from its first message at once, with no notice needed", () => {
    const net = new Net();
    const sender = net.add();
    const receiver = net.add();
    net.drop = (_from, _to, frame) => frame.kind.case === "heartbeat";
    sender.protocol.onPeerUp(receiver.key, 1);
    sender.send(3);
    net.clock.runFor(5);
    expect(receiver.got(sender.key)).toEqual([1, 2, 3]);
  });

  it("announces its true lowest: with nothing held, its next sequence number, so a receiver behind a dropped gap moves on", () => {
    const net = new Net();
    const sender = net.add({ receiverTimeoutMs: 100 });
    const behind = net.add();
    const other = net.add();
    net.meetAll();
    net.clock.runFor(5);
    sender.send(4);
    net.clock.runFor(50);
    expect(sender.protocol.heartbeat().lowestSeq).toBe(5);
    // The receiver falls silent and misses 5–10; the sender stops waiting for it and drops them.
    net.drop = (from, to) => from === behind || to === behind;
    sender.send(6);
    net.clock.runFor(500);
    expect(sender.protocol.stats.unstable).toBe(0);
    const { highestSeq, lowestSeq } = sender.protocol.heartbeat();
    expect([highestSeq, lowestSeq]).toEqual([10, 11]);
    // The sender idles; its next heartbeat moves the receiver on.
    net.drop = () => false;
    behind.protocol.onControl(sender.key, 1, heartbeat(highestSeq, lowestSeq));
    expect(behind.got(sender.key)).toEqual([1, 2, 3, 4]);
    expect(behind.lost()).toEqual([[5, 10]]);
    expect(other.got(sender.key)).toEqual(range(1, 10));
  });

  it("resumes a stream where a partition left it when the sender comes back as the same incarnation: repairs what is held, reports the rest exactly", () => {
    const net = new Net();
    const sender = net.add();
    const cut = net.add();
    const other = net.add();
    net.meetAll();
    sender.send(5);
    net.clock.runFor(50);
    // Cut off; both sides give each other up while the sender goes on to 20, all acknowledged by the other.
    net.drop = (from, to) => from === cut || to === cut;
    sender.send(15);
    net.clock.runFor(50);
    sender.protocol.onPeerDown(cut.key);
    cut.protocol.onPeerDown(sender.key);
    net.clock.runFor(50);
    expect(sender.protocol.stats.unstable).toBe(0);
    // 21–22 go out while the sides are still apart, and the other does not acknowledge them yet.
    net.drop = (from, to) => from === cut || to === cut || (from === other && to === sender);
    sender.send(2);
    net.clock.runFor(5);
    net.drop = () => false;
    sender.protocol.onPeerUp(cut.key, 1);
    cut.protocol.onPeerUp(sender.key, 1);
    sender.send(3);
    net.clock.runFor(1_000);
    expect(cut.got(sender.key)).toEqual([...range(1, 5), ...range(21, 25)]);
    expect(cut.lost()).toEqual([[6, 20]]);
    expect(cut.protocol.stats.lost).toBe(15);
  });

  it("stops waiting for a receiver removed from the view at once; its acknowledgement brings it back", () => {
    const net = new Net();
    const sender = net.add({ windowMessages: 16 });
    const crashed = net.add();
    net.add();
    net.meetAll();
    net.clock.runFor(5);
    net.drop = (from, to) => from === crashed || to === crashed;
    sender.send(16);
    net.clock.runFor(50);
    expect(sender.protocol.canSend(1)).toBe(false);
    const writable = sender.writable;
    sender.protocol.onReceiverGone(crashed.key);
    expect(sender.writable).toBe(writable + 1);
    expect(sender.protocol.canSend(1)).toBe(true);
    expect(sender.events).toEqual([{ type: "receiverUnresponsive", peer: crashed.key, silentMs: expect.any(Number) }]);
    net.clock.runFor(50);
    expect(sender.protocol.stats.unstable).toBe(0);
    sender.protocol.onControl(crashed.key, 1, fromBinary(FrameSchema, ackFrame(Stream.MULTICAST, idOf(sender.key), 1, 16, 16)));
    expect(sender.events.at(-1)).toEqual({ type: "receiverResponsive", peer: crashed.key });
  });

  it("repairs a loss only one receiver reports to it alone, and to everyone when a second one asks within the holdoff", () => {
    const net = new Net();
    const sender = net.add();
    const [lossy, second, third] = [net.add(), net.add(), net.add()];
    net.meetAll();
    net.clock.runFor(5);
    const lose = new Map<bigint, Node[]>([
      [3n, [lossy]],
      [7n, [lossy, second]],
    ]);
    const dropped = new Set<string>();
    net.drop = (from, to, frame) => {
      if (from !== sender || frame.kind.case !== "data" || lose.get(frame.kind.value.seq)?.includes(to) !== true) return false;
      // The first copy only.
      const key = `${frame.kind.value.seq}/${to.key}`;
      if (dropped.has(key)) return false;
      dropped.add(key);
      return true;
    };
    sender.send(10);
    net.clock.runFor(200);
    for (const node of [lossy, second, third]) expect(node.got(sender.key)).toEqual(range(1, 10));
    const stats = sender.protocol.stats;
    expect(stats.retransmittedToOne).toBe(2);
    expect(stats.retransmitted).toBe(3);
    // The receiver that lost nothing heard the one repair that went to everyone, and no other.
    expect(third.protocol.stats.duplicates).toBe(1);
  });

  it("repairs a NACK that says its asker's losses are shared to everyone at once, once within the holdoff", () => {
    const net = new Net();
    const sender = net.add();
    const [asker, other, third] = [net.add(), net.add(), net.add()];
    net.meetAll();
    net.clock.runFor(5);
    sender.send(10);
    net.clock.runFor(5);
    const nack = (from: Node) => sender.protocol.onControl(from.key, from.incarnation, fromBinary(FrameSchema, nackFrame(Stream.MULTICAST, idOf(sender.key), sender.incarnation, [[3, 4]], true)));
    nack(asker);
    nack(other);
    net.clock.runFor(5);
    const stats = sender.protocol.stats;
    expect(stats.retransmitted).toBe(2);
    expect(stats.retransmittedToOne).toBe(0);
    for (const node of [asker, other, third]) expect(node.protocol.stats.duplicates).toBe(2);
  });

  /** Sends 10 messages `rounds` times; the first copy of message 3 of each round is lost on the way to `losers`. */
  function lossRounds(losers: (net: Net, sender: Node) => Node[], rounds: number): { sender: Node; nacks: Array<{ round: number; shared: boolean; to: "group" | "sender" }> } {
    const net = new Net();
    const sender = net.add();
    for (let i = 0; i < 4; i++) net.add();
    net.meetAll();
    net.clock.runFor(5);
    const lose = new Set(losers(net, sender));
    const dropped = new Set<string>();
    net.drop = (from, to, frame) => {
      if (from !== sender || frame.kind.case !== "data" || frame.kind.value.seq % 10n !== 3n || !lose.has(to)) return false;
      const key = `${frame.kind.value.seq}/${to.key}`;
      if (dropped.has(key)) return false;
      dropped.add(key);
      return true;
    };
    // Every NACK reaches the sender; those some receiver sent it alone went to the sender, the rest to the group.
    const nacks: Array<{ round: number; shared: boolean; to: "group" | "sender" }> = [];
    for (let round = 0; round < rounds; round++) {
      const heardBefore = sender.received.length;
      const sentBefore = net.nodes.map((node) => node.unicast.length);
      sender.send(10);
      net.clock.runFor(200);
      const unicast = new Set(net.nodes.flatMap((node, i) => node.unicast.slice(sentBefore[i]).flatMap(({ to, frame }) => (to === sender.key && frame.kind.case === "nack" ? [frame] : []))));
      for (const frame of sender.received.slice(heardBefore)) {
        if (frame.kind.case !== "nack") continue;
        const to = [...unicast].some((sent) => toBinary(FrameSchema, sent).join() === toBinary(FrameSchema, frame).join()) ? "sender" : "group";
        nacks.push({ round, shared: frame.kind.value.shared, to });
      }
    }
    for (const node of net.nodes.slice(1)) expect(node.got(sender.key)).toEqual(range(1, 10 * rounds));
    return { sender, nacks };
  }

  it("asks for the repair of a loss every receiver shares to go to everyone once its gaps were shared: each loss repaired once, by multicast", () => {
    const { sender, nacks } = lossRounds((net, sender) => net.nodes.filter((node) => node !== sender), 8);
    // The stream's first gap: its NACK goes to the group (the others hold theirs back) but asks for the
    // repair for its asker alone; the others, put off by it, learn that their losses are shared, and the
    // asker learns it when the repair comes again for the second asker.
    expect(nacks.filter((n) => n.round === 0).every((n) => n.to === "group" && !n.shared)).toBe(true);
    // Just past the threshold, a receiver first to ask may count one gap as its own and ask the sender
    // alone once; the repair coming again sets it right.
    expect(nacks.filter((n) => n.round >= 3).every((n) => n.to === "group" && n.shared)).toBe(true);
    const { retransmitted, retransmittedToOne } = sender.protocol.stats;
    expect(retransmittedToOne).toBeLessThanOrEqual(2);
    // Each loss once to everyone, and a loss first repaired to one receiver once more.
    expect(retransmitted).toBe(8 + retransmittedToOne);
  });

  it("sends a lone lossy receiver's NACKs to the sender alone after its first, never asking for repairs to everyone", () => {
    const { sender, nacks } = lossRounds((net) => [net.nodes[1]!], 8);
    expect(nacks.length).toBe(8);
    expect(nacks.every((n) => !n.shared)).toBe(true);
    expect(nacks.filter((n) => n.to === "group").length).toBe(1);
    expect(sender.protocol.stats.retransmittedToOne).toBe(8);
    expect(sender.protocol.stats.retransmitted).toBe(8);
  });

  it("learns that a gap repaired to it was shared after all when the repair comes again (a second receiver asked), and that it was its own when not", () => {
    /** The NACK of the gap at 4 after the one at 2 was repaired (and repaired again, with `again`). */
    const secondNack = (again: boolean) => {
      const { net, sender, receiver } = openReceiver();
      net.add();
      const nacks = () => sender.received.filter((frame) => frame.kind.case === "nack");
      receiver.protocol.onData(sender.key, 1, data(3));
      net.clock.runFor(5);
      // A new stream's first NACK: to the group, asking for the repair for itself.
      expect(nacks().map((frame) => frame.kind.case === "nack" && frame.kind.value.shared)).toEqual([false]);
      expect(receiver.unicast.filter(({ frame }) => frame.kind.case === "nack")).toEqual([]);
      receiver.protocol.onData(sender.key, 1, data(2));
      if (again) receiver.protocol.onData(sender.key, 1, data(2));
      receiver.protocol.onData(sender.key, 1, data(5));
      net.clock.runFor(5);
      const nack = nacks()[1]!;
      return {
        toSenderAlone: receiver.unicast.some(({ frame }) => frame.kind.case === "nack"),
        shared: nack.kind.case === "nack" && nack.kind.value.shared,
      };
    };
    expect(secondNack(false)).toEqual({ toSenderAlone: true, shared: false });
    expect(secondNack(true)).toEqual({ toSenderAlone: false, shared: true });
  });
});

describe("NackProtocol: NACKs other receivers hear", () => {
  /** A receiver missing message 2 of `sender`'s stream, its NACK pending; `other` is a third member. */
  function gapPending(): { net: Net; sender: Node; receiver: Node; other: Node; nacksSent: () => number } {
    const { net, sender, receiver } = openReceiver();
    const other = net.add();
    receiver.protocol.onData(sender.key, 1, data(3));
    const nacksSent = () => receiver.protocol.stats.nacksSent;
    return { net, sender, receiver, other, nacksSent };
  }

  const heard = (from: Node, to: Node, origin: Node, ranges: ReadonlyArray<readonly [number, number]>) =>
    to.protocol.onControl(from.key, from.incarnation, fromBinary(FrameSchema, nackFrame(Stream.MULTICAST, idOf(origin.key), origin.incarnation, ranges)));

  it("puts its own NACK off when another receiver's asks for every message it would, and sends it when the gap stays", () => {
    const { net, sender, receiver, other, nacksSent } = gapPending();
    heard(other, receiver, sender, [[2, 2]]);
    expect(receiver.protocol.stats.nacksSuppressed).toBe(1);
    net.clock.runFor(5);
    // Without the other NACK it would have gone within nackDelayMaxMs (3 ms).
    expect(nacksSent()).toBe(0);
    // It waits about as long as a NACK of its own would for its answer (nackRetryMs), then asks.
    net.clock.runFor(20);
    expect(nacksSent()).toBeGreaterThan(0);
  });

  it("puts off a NACK already due but not yet sent: a receiver whose timer runs late reads the other NACK first", () => {
    const { receiver, sender, other, nacksSent } = gapPending();
    const nack = receiver.protocol.inner;
    // Due within nackDelayMaxMs (3 ms); the process was descheduled for 10 ms, and reads the other
    // receiver's NACK before its timer runs.
    nack.onControl(other.key, other.incarnation, fromBinary(FrameSchema, nackFrame(Stream.MULTICAST, idOf(sender.key), sender.incarnation, [[2, 2]])), 10);
    nack.handleTimeout(10);
    expect(receiver.protocol.stats.nacksSuppressed).toBe(1);
    expect(nacksSent()).toBe(0);
    // The gap stays: it asks once the put-off (nackRetryMs and a fresh delay) has run out.
    nack.handleTimeout(40);
    expect(nacksSent()).toBe(1);
  });

  it("does not put it off for a NACK that asks for less, for another incarnation, or lists too many ranges", () => {
    const { net, sender, receiver, other, nacksSent } = gapPending();
    receiver.protocol.onData(sender.key, 1, data(6));
    // Missing 2 and 4–5: a NACK for 2 alone covers part of it.
    heard(other, receiver, sender, [[2, 2]]);
    receiver.protocol.onControl(other.key, 1, fromBinary(FrameSchema, nackFrame(Stream.MULTICAST, idOf(sender.key), 7, [[1, 10]])));
    heard(other, receiver, sender, Array.from({ length: 65 }, (_, i) => [2 * i + 1, 2 * i + 2] as const));
    expect(receiver.protocol.stats.nacksSuppressed).toBe(0);
    net.clock.runFor(4);
    expect(nacksSent()).toBe(1);
  });

  it("is put off at most three times in a row: heard NACKs cannot hold it back for long", () => {
    const { net, sender, receiver, other, nacksSent } = gapPending();
    for (let i = 0; i < 6; i++) {
      heard(other, receiver, sender, [[1, 100]]);
      net.clock.runFor(0.5);
    }
    expect(receiver.protocol.stats.nacksSuppressed).toBe(3);
    net.clock.runFor(40);
    expect(nacksSent()).toBeGreaterThan(0);
  });
});
