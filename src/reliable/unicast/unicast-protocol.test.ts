import { fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FrameSchema } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import { Addressing } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import { SeededRandom } from "../../transport/seeded-random.ts";
import { runSeeds } from "../../transport/sim-run.ts";
import { VirtualClock } from "../../transport/virtual-clock.ts";
import { type DataFields, DatagramBuilder, DatagramReader, emptyDataFields, encodeEnvelopeHeader, toData, toDataFields } from "../../wire/frames.ts";
import { ackFrame, nackFrame, Stream } from "../control-frames.ts";
import { keyOf } from "../member-key.ts";
import type { OutgoingData, PeerKey } from "../protocol.ts";
import { Driver } from "../../core/driver.ts";
import type { Frame } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import { DEFAULT_UNICAST_OPTIONS, type UnicastHost, type UnicastOptions, UnicastProtocol } from "./unicast-protocol.ts";

const CLUSTER = "unicast-test";
const FILE = "src/reliable/unicast/unicast-protocol.test.ts";
// Small datagrams: each one allocates its buffer, and the payloads here stay under 1 KB.
const MAX_DATAGRAM_BYTES = 2_048;

interface LinkConditions {
  loss: number;
  duplicate: number;
  latencyMs: number;
  /** Extra random delay per datagram, which reorders them. */
  jitterMs: number;
}

const LOSSLESS: LinkConditions = { loss: 0, duplicate: 0, latencyMs: 0.5, jitterMs: 0 };

/** Carries real datagrams between members on a virtual clock, losing, duplicating and reordering them. */
class Wire {
  readonly clock = new VirtualClock();
  readonly members = new Map<PeerKey, Member>();
  readonly random: SeededRandom;
  /** Returns true to drop a datagram on purpose. */
  drop: ((from: PeerKey, to: PeerKey, datagram: Uint8Array) => boolean) | undefined;

  constructor(
    seed: number,
    public conditions: LinkConditions,
  ) {
    this.random = new SeededRandom(seed);
  }

  transmit(from: PeerKey, to: PeerKey, datagram: Uint8Array): void {
    if (this.drop?.(from, to, datagram) === true) return;
    const { loss, duplicate, latencyMs, jitterMs } = this.conditions;
    if (this.random.next() < loss) return;
    const copies = this.random.next() < duplicate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      // Whoever holds the key when the datagram lands gets it: after a restart, the new incarnation.
      this.clock.setTimer(latencyMs + this.random.next() * jitterMs, () => this.members.get(to)?.receive(datagram));
    }
  }
}

/**
 * A UnicastProtocol as its channel drives it: every input with the clock's time, and the driver told
 * (it arms the one timer for the protocol's deadlines, and flushes at the end of the turn).
 */
class Driven {
  readonly #protocol: UnicastProtocol;
  readonly #driver: Driver;
  readonly #clock: VirtualClock;

  constructor(protocol: UnicastProtocol, clock: VirtualClock) {
    this.#protocol = protocol;
    this.#clock = clock;
    this.#driver = new Driver(clock, (error) => {
      throw error;
    });
    this.#driver.add(protocol);
  }

  get stats(): UnicastProtocol["stats"] {
    return this.#protocol.stats;
  }

  canSend(peer: PeerKey, bytes: number): boolean {
    return this.#protocol.canSend(peer, bytes);
  }

  send(peer: PeerKey, incarnation: number, out: OutgoingData): number {
    const seq = this.#protocol.send(peer, incarnation, out, this.#clock.now());
    this.#driver.touch();
    return seq;
  }

  trySend(peer: PeerKey, incarnation: number, out: OutgoingData): number {
    const seq = this.#protocol.trySend(peer, incarnation, out, this.#clock.now());
    this.#driver.touch();
    return seq;
  }

  onData(peer: PeerKey, incarnation: number, data: DataFields): void {
    this.#protocol.onData(peer, incarnation, data, this.#clock.now());
    this.#driver.touch();
  }

  onControl(peer: PeerKey, incarnation: number, frame: Frame): void {
    this.#protocol.onControl(peer, incarnation, frame, this.#clock.now());
    this.#driver.touch();
  }

  onPeerUp(peer: PeerKey, incarnation: number): void {
    this.#protocol.onPeerUp(peer, incarnation);
    this.#driver.touch();
  }

  onPeerDown(peer: PeerKey): void {
    this.#protocol.onPeerDown(peer);
    this.#driver.touch();
  }

  unacked(peer: PeerKey): number {
    return this.#protocol.unacked(peer);
  }

  close(): void {
    this.#protocol.close();
    this.#driver.close();
  }
}

/** One member incarnation: a UnicastProtocol whose host writes and reads real datagrams. */
class Member {
  readonly key: PeerKey;
  readonly protocol: Driven;
  /** Per sender, the indices of the messages delivered, in delivery order. */
  readonly delivered = new Map<PeerKey, number[]>();
  onWritable: ((peer: PeerKey) => void) | undefined;
  readonly #wire: Wire;
  readonly #header: Uint8Array;
  readonly #builders = new Map<PeerKey, DatagramBuilder>();
  readonly #reader = new DatagramReader({ cluster: CLUSTER });
  #flushScheduled = false;

  constructor(
    wire: Wire,
    readonly id: Uint8Array,
    readonly incarnation: number,
    options: Partial<UnicastOptions> = {},
  ) {
    this.#wire = wire;
    this.key = keyOf(id);
    this.#header = encodeEnvelopeHeader(CLUSTER, id, incarnation);
    const host: UnicastHost = {
      localKey: this.key,
      localIncarnation: incarnation,
      unicastData: (peer, data) => {
        const builder = this.#builder(peer);
        if (!builder.fits(builder.dataFrameSize(data))) this.#flush(peer, builder);
        const frame = builder.addData(data);
        this.#scheduleFlush();
        return frame;
      },
      unicastFrame: (peer, frame) => {
        const builder = this.#builder(peer);
        if (!builder.fits(DatagramBuilder.framedSize(frame.length))) this.#flush(peer, builder);
        builder.addFrame(frame);
        this.#scheduleFlush();
      },
      unicastAck: (peer, stream, originId, incarnation, cumulative, highestReceived) => {
        const builder = this.#builder(peer);
        if (!builder.tryAddAck(stream, originId, incarnation, cumulative, highestReceived)) {
          this.#flush(peer, builder);
          builder.tryAddAck(stream, originId, incarnation, cumulative, highestReceived);
        }
        this.#scheduleFlush();
      },
      deliver: (peer, data) => this.#deliver(peer, data),
      writable: (peer) => this.onWritable?.(peer),
    };
    this.protocol = new Driven(new UnicastProtocol(host, options), wire.clock);
    wire.members.set(this.key, this);
  }

  receive(bytes: Uint8Array): void {
    const result = this.#reader.read(bytes);
    if (!result.ok) throw new Error(`undecodable datagram: ${result.reason} ${result.detail}`);
    const { senderId, incarnation, frames } = result.datagram;
    const peer = keyOf(senderId);
    for (const frame of frames) {
      if (frame.case === "data") {
        if (keyOf(frame.targetId) !== this.key) throw new Error("Data addressed to another member");
        this.protocol.onData(peer, incarnation, frame);
      } else if (frame.case === "ack" || frame.case === "nack") {
        this.protocol.onControl(peer, incarnation, frame.frame);
      } else {
        throw new Error(`unexpected frame ${frame.case}`);
      }
    }
  }

  received(from: PeerKey): number[] {
    return this.delivered.get(from) ?? [];
  }

  #deliver(peer: PeerKey, data: DataFields): void {
    const index = checkPayload(data.payload);
    if (data.targetIncarnation !== this.incarnation) throw new Error(`delivered a message for incarnation ${data.targetIncarnation}`);
    let list = this.delivered.get(peer);
    if (list === undefined) this.delivered.set(peer, (list = []));
    list.push(index);
  }

  #builder(peer: PeerKey): DatagramBuilder {
    let builder = this.#builders.get(peer);
    if (builder === undefined) {
      builder = new DatagramBuilder(this.#header, MAX_DATAGRAM_BYTES);
      this.#builders.set(peer, builder);
    }
    return builder;
  }

  #flush(peer: PeerKey, builder: DatagramBuilder): void {
    const datagram = builder.finish();
    if (datagram !== undefined) this.#wire.transmit(this.key, peer, datagram);
  }

  // Like the endpoint: frames written in one turn share datagrams, sent once the turn is over.
  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    this.#wire.clock.defer(() => {
      this.#flushScheduled = false;
      for (const [peer, builder] of this.#builders) this.#flush(peer, builder);
    });
  }
}

/** A payload of `size` bytes (at least 4) carrying `index`, with a pattern the receiver checks. */
function payloadFor(index: number, size: number): Uint8Array {
  const payload = new Uint8Array(Math.max(4, size));
  new DataView(payload.buffer).setUint32(0, index);
  for (let i = 4; i < payload.length; i++) payload[i] = (index + i) & 0xff;
  return payload;
}

function checkPayload(payload: Uint8Array): number {
  const index = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0);
  for (let i = 4; i < payload.length; i++) {
    if (payload[i] !== ((index + i) & 0xff)) throw new Error(`payload of message ${index} corrupted at byte ${i}`);
  }
  return index;
}

function outgoing(index: number, size = 16): OutgoingData {
  return {
    destination: "",
    addressing: Addressing.MEMBER,
    format: 0,
    payload: payloadFor(index, size),
    outOfBand: false,
    fragmentIndex: 0,
    fragmentCount: 0,
    messageLength: 0,
    requestId: 0,
  };
}

/** A point-to-point Data message to `to` (incarnation 1) with sequence number `seq`, carrying `index`. */
function message(to: Member, seq: number, index: number, size = 16): DataFields {
  return { ...emptyDataFields(), ...outgoing(index, size), seq, targetId: to.id, targetIncarnation: 1 };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

function memberId(random: SeededRandom): Uint8Array {
  return random.fill(new Uint8Array(16));
}

/** Two members that know each other, incarnation 1 each. */
function pair(seed: number, conditions: LinkConditions, options: Partial<UnicastOptions> = {}): { wire: Wire; a: Member; b: Member } {
  const wire = new Wire(seed, conditions);
  const a = new Member(wire, memberId(wire.random), 1, options);
  const b = new Member(wire, memberId(wire.random), 1, options);
  a.protocol.onPeerUp(b.key, 1);
  b.protocol.onPeerUp(a.key, 1);
  return { wire, a, b };
}

interface SeedOutcome {
  loss: number;
  members: number;
  messages: number;
  retransmitted: number;
  smallWindow: boolean;
}

/**
 * Every ordered pair of 2 or 3 members streams a random number of messages of random sizes, released
 * in random bursts, over a link with up to 30 % loss, duplication and reordering, with windows small
 * enough, on some seeds, for flow control to block the senders.
 */
function runRandomScenario(seed: number): SeedOutcome {
  const setup = new SeededRandom(seed).fork("setup");
  const conditions: LinkConditions = {
    loss: setup.next() * 0.3,
    duplicate: setup.next() * 0.05,
    latencyMs: 0.05 + setup.next() * 2,
    jitterMs: setup.next() < 0.5 ? 0 : setup.next() * 5,
  };
  const smallWindow = setup.next() < 0.4;
  const options: Partial<UnicastOptions> = smallWindow
    ? { windowMessages: 2 + setup.nextInt(30), windowBytes: 1_024 + setup.nextInt(16_384), ackThreshold: 1 + setup.nextInt(16) }
    : {};
  const wire = new Wire(seed, conditions);
  const count = 2 + setup.nextInt(2);
  const members = Array.from({ length: count }, () => new Member(wire, memberId(setup), 1 + setup.nextInt(1_000), options));
  for (const member of members) for (const other of members) if (other !== member) member.protocol.onPeerUp(other.key, other.incarnation);

  interface Flow {
    readonly from: Member;
    readonly to: Member;
    readonly total: number;
    /** Messages released by the producer so far; `sent` of them were accepted by the protocol. */
    released: number;
    sent: number;
  }
  const flows: Flow[] = [];
  for (const from of members) {
    for (const to of members) {
      if (from !== to) flows.push({ from, to, total: 50 + setup.nextInt(250), released: 0, sent: 0 });
    }
  }
  const sizes = wire.random.fork("sizes");
  const pump = (flow: Flow): void => {
    while (flow.sent < flow.released) {
      const size = 4 + sizes.nextInt(1_000);
      if (!flow.from.protocol.canSend(flow.to.key, size)) return;
      const seq = flow.from.protocol.send(flow.to.key, flow.to.incarnation, outgoing(flow.sent, size));
      flow.sent++;
      if (seq !== flow.sent) throw new Error(`message ${flow.sent} got sequence number ${seq}`);
    }
  };
  for (const member of members) {
    member.onWritable = (peer) => {
      for (const flow of flows) if (flow.from === member && flow.to.key === peer) pump(flow);
    };
  }
  // Each flow's producer releases bursts of 1–20 messages at random intervals.
  const producers = wire.random.fork("producers");
  for (const flow of flows) {
    const release = (): void => {
      flow.released = Math.min(flow.total, flow.released + 1 + producers.nextInt(20));
      pump(flow);
      if (flow.released < flow.total) wire.clock.setTimer(producers.next() * 10, release);
    };
    wire.clock.setTimer(producers.next() * 5, release);
  }

  const done = (): boolean =>
    flows.every((flow) => flow.sent === flow.total && flow.to.received(flow.from.key).length === flow.total && flow.from.protocol.unacked(flow.to.key) === 0);
  wire.clock.runUntil(done, { maxMs: 600_000 });
  // Every timer stops once the streams are quiet; late duplicates change nothing.
  wire.clock.runUntilIdle({ maxMs: 600_000 });

  let messages = 0;
  for (const flow of flows) {
    expect(flow.to.received(flow.from.key)).toEqual(range(0, flow.total));
    expect(flow.from.protocol.unacked(flow.to.key)).toBe(0);
    messages += flow.total;
  }
  let retransmitted = 0;
  for (const member of members) {
    expect(member.protocol.stats.unstable).toBe(0);
    expect(member.protocol.stats.delivered).toBe(flows.filter((f) => f.to === member).reduce((sum, f) => sum + f.total, 0));
    retransmitted += member.protocol.stats.retransmitted;
  }
  return { loss: conditions.loss, members: count, messages, retransmitted, smallWindow };
}

describe("UnicastProtocol", () => {
  it("delivers every message exactly once, in order, per direction, under loss, duplication and reordering (200 seeds)", async () => {
    const outcomes: SeedOutcome[] = [];
    await runSeeds({
      seeds: { from: 1, count: 200 },
      run: (seed) => void outcomes.push(runRandomScenario(seed)),
      file: FILE,
    });
    // The seeds must exercise what the test claims: heavy loss, three members, flow control, repair.
    if (outcomes.length === 200) {
      expect(outcomes.filter((o) => o.loss > 0.2).length).toBeGreaterThan(40);
      expect(outcomes.filter((o) => o.members === 3).length).toBeGreaterThan(50);
      expect(outcomes.filter((o) => o.smallWindow).length).toBeGreaterThan(50);
      expect(outcomes.reduce((sum, o) => sum + o.retransmitted, 0)).toBeGreaterThan(10_000);
    }
  });

  it("retransmits nothing on a lossless link, and acknowledges everything", () => {
    const { wire, a, b } = pair(1, LOSSLESS);
    for (let i = 0; i < 5_000; i++) {
      a.protocol.send(b.key, 1, outgoing(i, 1 + (i % 500)));
      if (i % 7 === 0) b.protocol.send(a.key, 1, outgoing(i / 7));
      if (i % 100 === 0) wire.clock.advance(1);
    }
    wire.clock.runUntilIdle();
    expect(b.received(a.key)).toEqual(range(0, 5_000));
    expect(a.received(b.key)).toEqual(range(0, 715));
    for (const member of [a, b]) {
      const stats = member.protocol.stats;
      expect(stats.retransmitted).toBe(0);
      expect(stats.nacksSent).toBe(0);
      expect(stats.duplicates).toBe(0);
      expect(stats.unstable).toBe(0);
      expect(stats.acksSent).toBeGreaterThan(0);
    }
  });

  it("recovers a lost last message through the retransmission timer", () => {
    const { wire, a, b } = pair(2, LOSSLESS);
    const reader = new DatagramReader({ cluster: CLUSTER });
    const carriesSeq = (datagram: Uint8Array, seq: number): boolean => {
      const result = reader.read(datagram);
      return result.ok && result.datagram.frames.some((frame) => frame.case === "data" && frame.seq === seq);
    };
    let dropped = 0;
    wire.drop = (from, _to, datagram) => {
      if (from !== a.key || dropped > 0 || !carriesSeq(datagram, 10)) return false;
      dropped++;
      return true;
    };
    for (let i = 0; i < 9; i++) a.protocol.send(b.key, 1, outgoing(i));
    wire.clock.advance(20);
    expect(b.received(a.key)).toEqual(range(0, 9));
    expect(a.protocol.unacked(b.key)).toBe(0);
    a.protocol.send(b.key, 1, outgoing(9));
    const rto = DEFAULT_UNICAST_OPTIONS.rtoMs;
    wire.clock.advance(rto - 10);
    expect(dropped).toBe(1);
    expect(b.received(a.key)).toEqual(range(0, 9));
    // The rto (counted from the send) resends it.
    wire.clock.advance(20);
    expect(b.received(a.key)).toEqual(range(0, 10));
    wire.clock.runUntilIdle();
    expect(a.protocol.stats.retransmitted).toBe(1);
    expect(a.protocol.unacked(b.key)).toBe(0);
  });

  it("recovers a lost tail of several messages: the resent highest reveals the gap, which is NACKed", () => {
    const { wire, a, b } = pair(3, LOSSLESS);
    let blocked = true;
    wire.drop = (from) => blocked && from === a.key;
    for (let i = 0; i < 5; i++) a.protocol.send(b.key, 1, outgoing(i));
    wire.clock.advance(10);
    blocked = false;
    wire.clock.runUntilIdle();
    expect(b.received(a.key)).toEqual(range(0, 5));
    expect(b.protocol.stats.nacksSent).toBeGreaterThanOrEqual(1);
    expect(a.protocol.stats.retransmitted).toBe(5);
    expect(a.protocol.unacked(b.key)).toBe(0);
  });

  it("does not deliver to a restarted receiver what was sent to its previous incarnation; the new stream starts at 1", () => {
    const { wire, a, b } = pair(4, { ...LOSSLESS, latencyMs: 5 });
    for (let i = 0; i < 5; i++) a.protocol.send(b.key, 1, outgoing(i));
    for (let i = 0; i < 3; i++) b.protocol.send(a.key, 1, outgoing(i));
    wire.clock.runUntilIdle();
    expect(b.received(a.key)).toEqual(range(0, 5));
    expect(a.received(b.key)).toEqual(range(0, 3));

    // Messages 6–8 to B are on the wire when B restarts as incarnation 2 (same id).
    for (let i = 5; i < 8; i++) a.protocol.send(b.key, 1, outgoing(i));
    wire.clock.advance(1);
    const b2 = new Member(wire, b.id, 2);
    b2.protocol.onPeerUp(a.key, 1);
    wire.clock.advance(100);
    expect(b2.received(a.key)).toEqual([]);
    expect(b2.protocol.stats.outOfWindow).toBeGreaterThanOrEqual(3);
    expect(b2.protocol.stats.acksSent).toBe(0);
    // A keeps them (no acknowledgement came) until it learns of the new incarnation.
    expect(a.protocol.unacked(b.key)).toBe(3);

    let writable = 0;
    a.onWritable = () => writable++;
    a.protocol.onPeerUp(b.key, 2);
    expect(a.protocol.unacked(b.key)).toBe(0);
    expect(a.protocol.stats.unstable).toBe(0);
    expect(writable).toBe(1);

    expect(a.protocol.send(b.key, 2, outgoing(100))).toBe(1);
    expect(a.protocol.send(b.key, 2, outgoing(101))).toBe(2);
    // B2's stream to A starts at 1 too, and A delivers it although it had delivered B1's 1–3.
    expect(b2.protocol.send(a.key, 1, outgoing(200))).toBe(1);
    wire.clock.runUntilIdle();
    expect(b2.received(a.key)).toEqual([100, 101]);
    expect(a.received(b.key)).toEqual([0, 1, 2, 200]);
    expect(a.protocol.unacked(b.key)).toBe(0);
    expect(b2.protocol.unacked(a.key)).toBe(0);
  });

  it("drops Data from an older incarnation of the sender, and acks from another incarnation of the receiver", () => {
    const { wire, a, b } = pair(5, { ...LOSSLESS, latencyMs: 5 });
    // B1's messages are on the wire when A learns that B restarted.
    for (let i = 0; i < 3; i++) b.protocol.send(a.key, 1, outgoing(i));
    wire.clock.advance(1);
    a.protocol.onPeerUp(b.key, 2);
    wire.clock.advance(10);
    expect(a.received(b.key)).toEqual([]);
    expect(a.protocol.stats.outOfWindow).toBe(3);

    // A stream to B2 that B2 never answers (the wire drops everything): only B2's acknowledgement counts.
    wire.drop = () => true;
    for (let i = 0; i < 3; i++) a.protocol.send(b.key, 2, outgoing(i));
    const ack = (receiverIncarnation: number, streamIncarnation: number): void => {
      const frame = fromBinary(FrameSchema, ackFrame(Stream.UNICAST, a.id, streamIncarnation, 3, 3));
      a.protocol.onControl(b.key, receiverIncarnation, frame);
    };
    ack(1, 1);
    expect(a.protocol.unacked(b.key)).toBe(3);
    // From B2, but about an earlier life of A's stream.
    ack(2, 7);
    expect(a.protocol.unacked(b.key)).toBe(3);
    ack(2, 1);
    expect(a.protocol.unacked(b.key)).toBe(0);
    // B1 is gone: its stream to A would retry forever.
    b.protocol.close();
    wire.clock.runUntilIdle();
  });

  it("forgets a peer that goes down: unacknowledged messages are discarded, and the streams resume past them", () => {
    const { wire, a, b } = pair(6, LOSSLESS);
    // B gets A's 2 and 3 but not 1, then hears nothing more from A.
    let firstDropped = false;
    wire.drop = (from) => from === a.key && !firstDropped && (firstDropped = true);
    a.protocol.send(b.key, 1, outgoing(0));
    wire.clock.advance(0.1);
    a.protocol.send(b.key, 1, outgoing(1));
    a.protocol.send(b.key, 1, outgoing(2));
    wire.clock.advance(0.9);
    expect(b.received(a.key)).toEqual([]);
    wire.drop = () => true;
    a.protocol.send(b.key, 1, outgoing(3));
    a.protocol.send(b.key, 1, outgoing(4));
    wire.clock.advance(10);
    expect(a.protocol.unacked(b.key)).toBe(5);
    expect(a.protocol.stats.unstable).toBe(5);

    a.protocol.onPeerDown(b.key);
    b.protocol.onPeerDown(a.key);
    expect(a.protocol.unacked(b.key)).toBe(0);
    expect(a.protocol.stats.unstable).toBe(0);
    // No timer of the dropped streams sends anything.
    const before = [a.protocol.stats.retransmitted, b.protocol.stats.nacksSent];
    wire.clock.runUntilIdle();
    expect([a.protocol.stats.retransmitted, b.protocol.stats.nacksSent]).toEqual(before);

    // Back up as the same incarnation: numbering goes on past the abandoned 1–5, which B skips.
    wire.drop = undefined;
    a.protocol.onPeerUp(b.key, 1);
    b.protocol.onPeerUp(a.key, 1);
    expect(a.protocol.send(b.key, 1, outgoing(100))).toBe(6);
    expect(a.protocol.send(b.key, 1, outgoing(101))).toBe(7);
    wire.clock.runUntilIdle();
    expect(b.received(a.key)).toEqual([100, 101]);
    expect(a.protocol.unacked(b.key)).toBe(0);
  });

  it("goes on when only one side gave the other up (a partition healed between the two timeouts)", () => {
    const { wire, a, b } = pair(8, LOSSLESS);
    for (let i = 0; i < 5; i++) a.protocol.send(b.key, 1, outgoing(i));
    for (let i = 0; i < 3; i++) b.protocol.send(a.key, 1, outgoing(50 + i));
    wire.clock.runUntilIdle();
    // A gives B up; B never noticed anything.
    a.protocol.onPeerDown(b.key);
    a.protocol.onPeerUp(b.key, 1);
    for (let i = 5; i < 8; i++) a.protocol.send(b.key, 1, outgoing(i));
    for (let i = 3; i < 6; i++) b.protocol.send(a.key, 1, outgoing(50 + i));
    wire.clock.runUntilIdle();
    expect(b.received(a.key)).toEqual(range(0, 8));
    expect(a.received(b.key)).toEqual(range(50, 56));
    // Now a message A had not got acknowledged is abandoned when it gives B up: B skips it, no stall.
    wire.drop = (from) => from === a.key;
    a.protocol.send(b.key, 1, outgoing(8));
    wire.clock.advance(5);
    a.protocol.onPeerDown(b.key);
    a.protocol.onPeerUp(b.key, 1);
    wire.drop = undefined;
    a.protocol.send(b.key, 1, outgoing(9));
    wire.clock.runUntilIdle();
    expect(b.received(a.key)).toEqual([...range(0, 8), 9]);
    expect(b.protocol.stats.lost).toBe(1);
    expect(a.protocol.unacked(b.key)).toBe(0);
  });

  it("blocks at the window and signals writable when acknowledgements free it", () => {
    const { wire, a, b } = pair(7, LOSSLESS, { windowMessages: 4, windowBytes: 1 << 20 });
    const writable: PeerKey[] = [];
    a.onWritable = (peer) => writable.push(peer);
    let sent = 0;
    while (a.protocol.canSend(b.key, 16)) a.protocol.send(b.key, 1, outgoing(sent++));
    expect(sent).toBe(4);
    wire.clock.runUntilIdle();
    expect(writable).toEqual([b.key]);
    expect(a.protocol.canSend(b.key, 16)).toBe(true);
    expect(b.received(a.key)).toEqual(range(0, 4));
  });

  it("sends through trySend while the window has room, and sends nothing when it is full", () => {
    const { wire, a, b } = pair(8, LOSSLESS, { windowMessages: 4, windowBytes: 1 << 20 });
    const seqs: number[] = [];
    for (let i = 0; i < 4; i++) seqs.push(a.protocol.trySend(b.key, 1, outgoing(i)));
    expect(seqs).toEqual([1, 2, 3, 4]);
    expect(a.protocol.trySend(b.key, 1, outgoing(4))).toBe(0);
    expect(a.protocol.unacked(b.key)).toBe(4);
    wire.clock.runUntilIdle();
    expect(b.received(a.key)).toEqual(range(0, 4));
    expect(a.protocol.trySend(b.key, 1, outgoing(4))).toBe(5);
    wire.clock.runUntilIdle();
    expect(b.received(a.key)).toEqual(range(0, 5));
  });

  it("refuses a floor above its own message, and acknowledgements and NACKs of messages never sent, counting them", () => {
    const { wire, a, b } = pair(9, LOSSLESS);
    for (let i = 0; i < 3; i++) a.protocol.send(b.key, 1, outgoing(i));
    wire.clock.runUntilIdle();
    expect(b.received(a.key)).toEqual(range(0, 3));
    const hostile = (seq: number, streamFloor: number): DataFields => ({ ...toDataFields(toData(message(b, seq, 50)))!, streamFloor });
    b.protocol.onData(a.key, 1, hostile(5, 6));
    b.protocol.onData(a.key, 1, hostile(0, 0));
    expect(b.protocol.stats).toMatchObject({ refused: 2, lost: 0 });
    // Still in step: the next message is 4.
    b.protocol.onData(a.key, 1, hostile(4, 0));
    expect(b.received(a.key)).toEqual([...range(0, 3), 50]);

    wire.drop = () => true;
    a.protocol.send(b.key, 1, outgoing(3));
    const control = (frame: Uint8Array) => a.protocol.onControl(b.key, 1, fromBinary(FrameSchema, frame));
    control(ackFrame(Stream.UNICAST, a.id, 1, 5, 5));
    control(nackFrame(Stream.UNICAST, a.id, 1, [[4, 5]]));
    control(nackFrame(Stream.UNICAST, a.id, 1, [[4, 3]]));
    control(nackFrame(Stream.UNICAST, a.id, 1, [[0, 4]]));
    expect(a.protocol.stats).toMatchObject({ refused: 4, retransmitted: 0 });
    expect(a.protocol.unacked(b.key)).toBe(1);
    control(ackFrame(Stream.UNICAST, a.id, 1, 4, 4));
    expect(a.protocol.unacked(b.key)).toBe(0);
  });

  it("skips to a floor of 2^53 − 1 in one step, delivering what it holds and counting the rest lost", () => {
    const { a, b } = pair(10, LOSSLESS);
    const top = Number.MAX_SAFE_INTEGER;
    b.protocol.onData(a.key, 1, toDataFields(toData(message(b, 3, 30)))!);
    expect(b.protocol.stats.held).toBe(1);
    b.protocol.onData(a.key, 1, { ...toDataFields(toData(message(b, top, 31)))!, streamFloor: top });
    expect(b.received(a.key)).toEqual([30, 31]);
    expect(b.protocol.stats).toMatchObject({ lost: top - 2, held: 0 });
    // Anything below the floor is behind the stream now.
    b.protocol.onData(a.key, 1, { ...toDataFields(toData(message(b, 100, 32)))!, streamFloor: 0 });
    expect(b.protocol.stats).toMatchObject({ duplicates: 1, held: 0 });
  });

  it("holds at most a window of one peer's messages out of order, by count and by bytes", () => {
    const { a, b } = pair(11, LOSSLESS, { windowMessages: 8, windowBytes: 4_096 });
    for (let seq = 2; seq <= 20; seq++) b.protocol.onData(a.key, 1, toDataFields(toData(message(b, seq, seq, 100)))!);
    expect(b.protocol.stats).toMatchObject({ held: 7, earlyDropped: 12 });
    const { a: c, b: d } = pair(12, LOSSLESS, { windowMessages: 8, windowBytes: 4_096 });
    for (let seq = 2; seq <= 5; seq++) d.protocol.onData(c.key, 1, toDataFields(toData(message(d, seq, seq, 1_500)))!);
    expect(d.protocol.stats).toMatchObject({ held: 2, earlyDropped: 2, heldBytes: 3_000 });
  });

  it("stops every timer on close", () => {
    const { wire, a, b } = pair(8, LOSSLESS);
    wire.drop = () => true;
    a.protocol.send(b.key, 1, outgoing(0));
    a.protocol.close();
    wire.clock.runUntilIdle();
    expect(a.protocol.stats.retransmitted).toBe(0);
  });
});
