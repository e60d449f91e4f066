import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { type Frame, FrameSchema } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import { type FecParity, FecParitySchema } from "../../../gen/activeblaze/v1/fec_pb.ts";
import { DataSchema, Stream } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import { Channel } from "../../channel/channel.ts";
import { resolveChannelOptions } from "../../channel/options.ts";
import { isBlazeError } from "../../errors.ts";
import { SeededRandom } from "../../transport/seeded-random.ts";
import { SimulatedNetwork } from "../../transport/simulated-network.ts";
import { VirtualClock } from "../../transport/virtual-clock.ts";
import { type DataFields, DatagramBuilder, emptyDataFields, toData } from "../../wire/frames.ts";
import type { ProtocolHost } from "../protocol.ts";
import { DrivenProtocol } from "../../../test/support/driven-protocol.ts";
import { FecProtocol, type FecStats } from "./fec-protocol.ts";
import { encodeParityFrame, readSymbol, symbolOfFrame, SymbolWriter } from "./fec-wire.ts";
import { type FecOptions, fecOptionsSchema } from "./options.ts";

const SENDER = "00112233445566778899aabbccddeeff";

function randomData(random: SeededRandom, seq: number): DataFields {
  const data = emptyDataFields();
  data.seq = seq;
  data.addressing = 1 + random.nextInt(2);
  data.destination = random.next() < 0.1 ? "" : `topic/${random.nextInt(1000)}/ü`;
  data.outOfBand = random.next() < 0.2;
  if (random.next() < 0.3) {
    data.fragmentCount = 2 + random.nextInt(5000);
    data.fragmentIndex = random.nextInt(data.fragmentCount);
    data.messageLength = random.nextInt(2 ** 31);
  }
  data.requestId = random.next() < 0.2 ? random.nextInt(2 ** 40) : 0;
  data.format = random.nextInt(3);
  data.payload = random.fill(new Uint8Array(random.nextInt(random.next() < 0.1 ? 70_000 : 300)));
  data.globalSeq = random.next() < 0.1 ? random.nextInt(2 ** 45) : 0;
  data.ringSeq = random.next() < 0.1 ? random.nextInt(1000) : 0;
  data.safe = random.next() < 0.1;
  data.streamFloor = random.next() < 0.1 ? random.nextInt(2 ** 33) : 0;
  return data;
}

/** A protocol host on a virtual clock. */
type ClockedHost = ProtocolHost & { readonly clock: VirtualClock };

/** An FEC protocol on `host`, driven as a channel drives it (its time from the host's clock). */
function driven(host: ClockedHost, options: FecOptions): DrivenProtocol<FecProtocol> {
  const clock = host.clock;
  return new DrivenProtocol(new FecProtocol(host, 1, options, {}, clock.now()), clock);
}

/** A host that records what the protocol sends and delivers. */
function recordingHost(clock = new VirtualClock()) {
  const sent: Uint8Array[] = [];
  const builder = new DatagramBuilder(new Uint8Array(0), 65_507);
  const delivered: DataFields[] = [];
  const datagrams = new Map<number, number>();
  let datagram = 0;
  const host: ClockedHost = {
    clock,
    random: new SeededRandom(1),
    localKey: "ffeeddccbbaa99887766554433221100",
    multicastData(data) {
      if (!builder.fits(builder.dataFrameSize(data))) {
        builder.finish();
        datagram++;
      }
      datagrams.set(data.seq, datagram);
      return builder.addData(data).slice();
    },
    multicastFrame: (frame) => sent.push(frame),
    unicastFrame: () => undefined,
    deliver: (_, data) => delivered.push(data),
    report: () => undefined,
    writable: () => undefined,
    atEndOfTurn: (fn) => clock.defer(fn),
  };
  const parities = () =>
    sent.map((bytes) => fromBinary(FrameSchema, bytes)).flatMap((frame) => (frame.kind.case === "fecParity" ? [frame.kind.value] : []));
  return { host, sent, delivered, parities, clock, datagramOf: (seq: number) => datagrams.get(seq) };
}

function parityFrame(value: Partial<FecParity>): Frame {
  const { $typeName: _, ...fields } = value;
  return create(FrameSchema, { kind: { case: "fecParity", value: create(FecParitySchema, fields) } });
}

function outgoing(payload: Uint8Array) {
  return { destination: "t", addressing: 1, format: 0, payload, outOfBand: false, fragmentIndex: 0, fragmentCount: 0, messageLength: 0, requestId: 0 };
}

describe("FEC wire", () => {
  it("takes a sent frame's symbol, writes a received message's symbol, and both are the Data message with seq 0", () => {
    const random = new SeededRandom("fec-symbols");
    const builder = new DatagramBuilder(new Uint8Array(0), 2 * 65_507);
    const writer = new SymbolWriter();
    for (let n = 0; n < 300; n++) {
      const data = randomData(random, 1 + random.nextInt(2 ** 50));
      const same = (a: Uint8Array | undefined, b: Uint8Array) => a !== undefined && Buffer.from(a).equals(b);
      const frame = builder.addData(data);
      builder.finish();
      const expected = toBinary(DataSchema, toData({ ...data, seq: 0 }));
      expect(same(symbolOfFrame(frame), expected)).toBe(true);
      expect(same(writer.write(data), expected)).toBe(true);
      const back = readSymbol(expected, data.seq)!;
      expect(same(back.payload, data.payload)).toBe(true);
      expect({ ...back, payload: undefined }).toEqual({ ...data, payload: undefined });
    }
    expect(symbolOfFrame(new Uint8Array([1, 2, 3]))).toBeUndefined();
  });

  it("refuses rebuilt bytes that are not a multicast Data message", () => {
    expect(readSymbol(new Uint8Array([0xff, 0xff, 0xff]), 1)).toBeUndefined();
    expect(readSymbol(toBinary(DataSchema, create(DataSchema, { seq: 5n })), 1)).toBeUndefined();
    expect(readSymbol(toBinary(DataSchema, create(DataSchema, { targetId: new Uint8Array(16) })), 1)).toBeUndefined();
    expect(readSymbol(toBinary(DataSchema, create(DataSchema, { fragmentCount: 2, fragmentIndex: 7 })), 1)).toBeUndefined();
  });

  it("writes parity frames exactly as the generated encoder does", () => {
    const random = new SeededRandom("fec-parity-frames");
    for (let n = 0; n < 200; n++) {
      const m = 1 + random.nextInt(3);
      const fields = {
        blockFirstSeq: 1 + random.nextInt(2 ** 50),
        k: 1 + random.nextInt(64),
        m,
        parityIndex: random.nextInt(m),
        stride: random.nextInt(65),
        parity: random.fill(new Uint8Array(random.nextInt(n < 5 ? 1 : 3000))),
        lengthParity: random.nextInt(65_536),
      };
      const expected = toBinary(
        FrameSchema,
        parityFrame({
          stream: Stream.MULTICAST,
          blockFirstSeq: BigInt(fields.blockFirstSeq),
          k: fields.k,
          m,
          parityIndex: fields.parityIndex,
          parity: fields.parity,
          lengthParity: new Uint8Array([fields.lengthParity >>> 8, fields.lengthParity & 0xff]),
          stride: fields.stride > 1 ? fields.stride : 0,
        }),
      );
      expect(Buffer.from(encodeParityFrame(fields)).equals(expected)).toBe(true);
    }
  });
});

describe("FEC options", () => {
  it("has documented defaults and names the field of an invalid option", () => {
    expect(resolveChannelOptions({ reliability: "fec" }).fec).toEqual({ k: 16, m: 2, interleaveBytes: 65_507, parityWaitMs: 2 });
    for (const [fec, field] of [
      [{ k: 0 }, "channel.fec.k"],
      [{ k: 65 }, "channel.fec.k"],
      [{ m: 4 }, "channel.fec.m"],
      [{ m: 1.5 }, "channel.fec.m"],
      [{ interleaveBytes: -1 }, "channel.fec.interleaveBytes"],
      [{ parityWaitMs: -1 }, "channel.fec.parityWaitMs"],
      [{ bogus: 1 }, "channel.fec.bogus"],
    ] as const) {
      let error: unknown;
      try {
        resolveChannelOptions({ reliability: "fec", fec: fec as never });
      } catch (e) {
        error = e;
      }
      expect(isBlazeError(error, "INVALID_OPTION"), JSON.stringify(fec)).toBe(true);
      expect((error as Error).message).toContain(`"${field}"`);
    }
    expect(fecOptionsSchema.parse({ k: 64, m: 3 })).toMatchObject({ k: 64, m: 3 });
  });
});

describe("FEC sender", () => {
  const defaults = fecOptionsSchema.parse({});

  function sendBurst(protocol: DrivenProtocol<FecProtocol>, count: number, size: number): void {
    for (let i = 0; i < count; i++) protocol.send(outgoing(new Uint8Array(size)));
  }

  it("interleaves bursts so that no datagram holds more than m packets of a block (1 KiB, and random sizes)", () => {
    const random = new SeededRandom("fec-layout");
    for (const sizeOf of [() => 1024, () => random.nextInt(3000), () => (random.next() < 0.9 ? random.nextInt(200) : 20_000)]) {
      const { host, parities, clock, datagramOf } = recordingHost();
      const protocol = driven(host, defaults);
      for (let i = 0; i < 600; i++) protocol.send(outgoing(new Uint8Array(sizeOf())));
      clock.runFor(0);
      const perDatagram = new Map<string, number>();
      let covered = 0;
      for (const p of parities().filter((p) => p.parityIndex === 0)) {
        const stride = p.stride === 0 ? 1 : p.stride;
        for (let i = 0; i < p.k; i++) {
          const key = `${p.blockFirstSeq}/${datagramOf(Number(p.blockFirstSeq) + i * stride)}`;
          perDatagram.set(key, (perDatagram.get(key) ?? 0) + 1);
        }
        covered += p.k;
      }
      expect(covered).toBe(600);
      expect(Math.max(...perDatagram.values())).toBeLessThanOrEqual(2);
    }
  });

  it("lays a burst of 256 messages of 1 KiB out as 31 interleaved blocks of 8 or 9", () => {
    const { host, parities, clock } = recordingHost();
    const protocol = driven(host, defaults);
    sendBurst(protocol, 256, 1024);
    clock.runFor(0);
    const parity = parities();
    // 62 frames of ~1 KiB fill a datagram: stride 31.
    expect(new Set(parity.map((p) => p.stride))).toEqual(new Set([31]));
    expect(parity.length).toBe(62);
    expect(parity.filter((p) => p.parityIndex === 0).reduce((sum, p) => sum + p.k, 0)).toBe(256);
    expect(new Set(parity.map((p) => Number(p.blockFirstSeq)))).toEqual(new Set(Array.from({ length: 31 }, (_, j) => 1 + j)));
    expect((protocol.stats as FecStats).paritySent).toBe(62);
  });

  it("closes a full group at once, and a short one when the burst ends", () => {
    const { host, parities, clock } = recordingHost();
    const protocol = driven(host, defaults);
    // Messages larger than half a datagram: no interleaving, blocks of k = 16 consecutive packets.
    sendBurst(protocol, 20, 40_000);
    expect(parities().length).toBe(2);
    expect(parities().every((p) => p.k === 16 && p.stride === 0 && p.blockFirstSeq === 1n)).toBe(true);
    clock.runFor(0);
    expect(parities().length).toBe(4);
    expect(parities().slice(2).every((p) => p.k === 4 && p.blockFirstSeq === 17n)).toBe(true);
    // A single message is a block of one.
    sendBurst(protocol, 1, 10);
    clock.runFor(0);
    expect(parities().slice(4).map((p) => [p.k, Number(p.blockFirstSeq), p.parityIndex])).toEqual([
      [1, 21, 0],
      [1, 21, 1],
    ]);
  });

  it("does not cut small messages into tiny blocks, and does not interleave with interleaveBytes 0", () => {
    const small = recordingHost();
    const protocol = driven(small.host, defaults);
    // Over 2 × 64 messages of 40 bytes share a datagram: the stride stops at 64, blocks stay full.
    sendBurst(protocol, 1000, 40);
    small.clock.runFor(0);
    expect(small.parities().every((p) => p.k >= 15 && p.stride === 64)).toBe(true);
    const off = recordingHost();
    const consecutive = driven(off.host, { ...defaults, interleaveBytes: 0 });
    sendBurst(consecutive, 64, 1024);
    off.clock.runFor(0);
    expect(off.parities().every((p) => p.stride === 0 && p.k === 16)).toBe(true);
    expect(off.parities().length).toBe(8);
  });
});

describe("FEC receiver", () => {
  const defaults = fecOptionsSchema.parse({});

  // A sender's frames and parity for `count` messages, through a recording host.
  function sentBlock(count: number, options = defaults) {
    const { host, sent, parities, clock } = recordingHost();
    const sender = driven(host, options);
    const frames: Uint8Array[] = [];
    const original = host.multicastData;
    host.multicastData = (data) => {
      const frame = original(data);
      frames.push(frame);
      return frame;
    };
    const random = new SeededRandom(`block-${count}`);
    for (let i = 0; i < count; i++) sender.send(outgoing(random.fill(new Uint8Array(random.nextInt(500)))));
    clock.runFor(0);
    const data = frames.map((frame) => readSymbol(symbolOfFrame(frame)!, 0)!).map((d, i) => ({ ...d, seq: i + 1 }));
    return { data, parity: parities(), sent };
  }

  it("rebuilds up to m lost packets of a block from parity, with no NACK, and delivers in order", () => {
    const { data, parity } = sentBlock(16, { ...defaults, interleaveBytes: 0 });
    const { host, delivered, clock } = recordingHost();
    const receiver = driven(host, defaults);
    receiver.onPeerUp(SENDER, 7);
    for (const d of data) if (d.seq !== 4 && d.seq !== 9) receiver.onData(SENDER, 7, d);
    for (const p of parity) receiver.onControl(SENDER, 7, parityFrame(p));
    clock.runFor(100);
    expect(delivered.map((d) => d.seq)).toEqual(data.map((d) => d.seq));
    expect(delivered[3]).toEqual(data[3]);
    expect(delivered[8]).toEqual(data[8]);
    const stats = receiver.stats;
    expect(stats).toMatchObject({ recovered: 2, blocksRecovered: 1, blocksUnrecovered: 0, nacksSent: 0, parityReceived: 2, parityInvalid: 0 });
  });

  it("leaves a block that lost more than m packets to NACK, and finishes it from parity once enough arrived", () => {
    const { data, parity } = sentBlock(16, { ...defaults, interleaveBytes: 0 });
    const { host, delivered, clock } = recordingHost();
    const receiver = driven(host, defaults);
    receiver.onPeerUp(SENDER, 7);
    const lost = new Set([2, 5, 11]);
    for (const d of data) if (!lost.has(d.seq)) receiver.onData(SENDER, 7, d);
    for (const p of parity) receiver.onControl(SENDER, 7, parityFrame(p));
    expect(receiver.stats.recovered).toBe(0);
    clock.runFor(50);
    expect(receiver.stats.nacksSent).toBeGreaterThan(0);
    // The retransmission of one makes the other two rebuildable.
    receiver.onData(SENDER, 7, data[4]!);
    expect(delivered.map((d) => d.seq)).toEqual(data.map((d) => d.seq));
    expect(receiver.stats).toMatchObject({ recovered: 2, blocksRecovered: 0, blocksUnrecovered: 1 });
  });

  it("drops and counts malformed or inconsistent parity, never throwing and never delivering garbage", () => {
    const { data, parity } = sentBlock(16, { ...defaults, interleaveBytes: 0 });
    const good = parity[0]!;
    const bad: Array<Partial<FecParity>> = [
      { ...good, stream: Stream.UNICAST },
      { ...good, k: 0 },
      { ...good, k: 65 },
      { ...good, m: 4 },
      { ...good, parityIndex: 2 },
      { ...good, stride: 65 },
      { ...good, blockFirstSeq: 0n },
      { ...good, blockFirstSeq: 2n ** 53n },
      { ...good, lengthParity: new Uint8Array(1) },
      { ...good, parity: new Uint8Array(65_536) },
    ];
    const { host, delivered } = recordingHost();
    const receiver = driven(host, defaults);
    receiver.onPeerUp(SENDER, 7);
    for (const d of data) if (d.seq === 1 || d.seq > 4) receiver.onData(SENDER, 7, d);
    for (const p of bad) expect(() => receiver.onControl(SENDER, 7, parityFrame(p))).not.toThrow();
    expect(receiver.stats.parityInvalid).toBe(bad.length);
    // A block of three missing waits; parity of another shape for it is inconsistent.
    receiver.onControl(SENDER, 7, parityFrame(good));
    receiver.onControl(SENDER, 7, parityFrame({ ...parity[1]!, k: 15 }));
    receiver.onControl(SENDER, 7, parityFrame({ ...parity[1]!, parity: parity[1]!.parity.subarray(1) }));
    expect(receiver.stats.parityInvalid).toBe(bad.length + 2);
    // Parity whose bytes were damaged rebuilds garbage: refused, not delivered.
    const { data: other, parity: otherParity } = sentBlock(16, { ...defaults, interleaveBytes: 0 });
    const { host: host2, delivered: delivered2 } = recordingHost();
    const receiver2 = driven(host2, defaults);
    receiver2.onPeerUp(SENDER, 7);
    for (const d of other) if (d.seq !== 16) receiver2.onData(SENDER, 7, d);
    const damaged = otherParity[0]!.parity.slice();
    damaged.fill(0xff, 0, 8);
    receiver2.onControl(SENDER, 7, parityFrame({ ...otherParity[0]!, parity: damaged }));
    expect(receiver2.stats.parityInvalid).toBe(1);
    expect(delivered2.length).toBe(15);
    expect(delivered.map((d) => d.seq)).toEqual([1]);
  });

  it("ignores parity of a sender not heard yet and of another incarnation", () => {
    const { data, parity } = sentBlock(4, { ...defaults, interleaveBytes: 0 });
    const { host, delivered } = recordingHost();
    const receiver = driven(host, defaults);
    for (const p of parity) receiver.onControl(SENDER, 7, parityFrame(p));
    receiver.onData(SENDER, 7, data[0]!);
    for (const p of parity) receiver.onControl(SENDER, 8, parityFrame(p));
    expect(receiver.stats.recovered).toBe(0);
    expect(delivered.length).toBe(1);
  });
});

describe("FEC channels", () => {
  it("fit parity of the largest fragments in a datagram, and repair loss of them (small datagrams, long topic)", async () => {
    const net = new SimulatedNetwork({ seed: 11, defaultLink: { loss: 0.05 } });
    const channels: Channel[] = [];
    const errors: string[] = [];
    for (let i = 0; i < 3; i++) {
      const channel = new Channel({
        transport: net.transportFactory(`h${i}`),
        clock: net.clock,
        random: net.random.fork(`m${i}`),
        incarnation: 1,
        reliability: "fec",
        maxDatagramBytes: 1_024,
        heartbeatIntervalMs: 100,
        peerTimeoutMs: 600_000,
      });
      channel.on("error", ({ error, stage }) => errors.push(`${stage}: ${error.message}`));
      await channel.start();
      channels.push(channel);
    }
    net.clock.runUntil(() => channels.every((c) => c.peers.length === 2), { maxMs: 10_000 });
    const topic = "t".repeat(255);
    const got: Uint8Array[][] = [[], []];
    channels[1]!.onTopic(topic, (m) => got[0]!.push(m.payload));
    channels[2]!.onTopic(topic, (m) => got[1]!.push(m.payload));
    const random = new SeededRandom("fragments");
    const messages = Array.from({ length: 30 }, () => random.fill(new Uint8Array(20_000 + random.nextInt(20_000))));
    for (const message of messages) void channels[0]!.broadcast(topic, message, { outOfBand: random.next() < 0.3 });
    net.clock.runUntil(() => got.every((g) => g.length === messages.length), { maxMs: 60_000 });
    for (const g of got) expect(new Set(g.map((m) => messages.findIndex((x) => x.length === m.length && x.every((v, i) => v === m[i]))))).toEqual(new Set(messages.map((_, i) => i)));
    expect(errors).toEqual([]);
    for (const channel of channels.slice(1)) {
      expect(Object.values(channel.stats.dropped).every((n) => n === 0)).toBe(true);
      expect((channel.stats.protocol as FecStats).parityReceived).toBeGreaterThan(0);
    }
    expect((channels[1]!.stats.protocol as FecStats).recovered + (channels[2]!.stats.protocol as FecStats).recovered).toBeGreaterThan(10);
    for (const channel of channels) await channel.shutDown();
  });
});
