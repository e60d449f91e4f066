import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { EnvelopeSchema, FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { Addressing, DataSchema, HeartbeatSchema } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { SeededRandom } from "../transport/seeded-random.ts";
import { encodeAckFrame } from "./ack-codec.ts";
import { createEnvelope, decodeEnvelope, encodeEnvelope } from "./codec.ts";
import {
  type DataFields,
  DatagramBuilder,
  DatagramReader,
  emptyDataFields,
  encodeEnvelopeHeader,
  encodeFrame,
  NO_BYTES,
  HandReaders,
  type ReceiveResult,
  toData,
  toDataFields,
} from "./frames.ts";

const cluster = "frames";
const senderId = new Uint8Array(16).map((_, i) => i + 1);

function data(overrides: Partial<DataFields> = {}): DataFields {
  return { ...emptyDataFields(), seq: 1, addressing: Addressing.TOPIC, destination: "news", payload: new Uint8Array([1, 2, 3]), ...overrides };
}

// What the generated decoder makes of the bytes, in the reader's result form.
function reference(bytes: Uint8Array): { ok: boolean; reason?: string; frames?: unknown[] } {
  const result = decodeEnvelope(bytes, { cluster });
  if (!result.ok) return { ok: false, reason: result.reason };
  const body = result.envelope.body;
  const frames = body.case === "bundle" ? body.value.frames.map((f) => f.kind) : [body];
  // Unknown fields are ignored by the protocol: compare Data by its known fields.
  const known = frames.map((kind) => (kind.case === "data" ? { case: "data" as const, value: toData(toDataFields(kind.value)!) } : kind));
  return { ok: true, frames: known.map((kind) => toBinary(FrameSchema, create(FrameSchema, { kind: kind as never }))) };
}

function normalise(result: ReceiveResult): { ok: boolean; reason?: string; frames?: unknown[] } {
  if (!result.ok) return { ok: false, reason: result.reason };
  return {
    ok: true,
    frames: result.datagram.frames.map((frame) =>
      frame.case === "data"
        ? toBinary(FrameSchema, create(FrameSchema, { kind: { case: "data", value: toData(frame) } }))
        : toBinary(FrameSchema, create(FrameSchema, { kind: frame.frame!.kind })),
    ),
  };
}

describe("DatagramBuilder", () => {
  const header = encodeEnvelopeHeader(cluster, senderId, 7);

  it("writes the bytes the generated encoder writes", () => {
    const builder = new DatagramBuilder(header);
    const fields = [
      data(),
      data({ seq: 2 ** 40, outOfBand: true, fragmentIndex: 1, fragmentCount: 3, messageLength: 9000, safe: true }),
      data({ addressing: Addressing.MEMBER, targetId: senderId, requestId: 12, format: 1, globalSeq: 5, ringSeq: 2, targetIncarnation: 7, streamFloor: 300 }),
      data({ destination: "ünïcødé 🎉", payload: NO_BYTES }),
    ];
    for (const f of fields) builder.addData(f);
    const datagram = builder.finish()!;
    const expected = encodeEnvelope(
      createEnvelope(
        { cluster, senderId, incarnation: 7n },
        { case: "bundle", value: { $typeName: "activeblaze.v1.Bundle", frames: fields.map((f) => create(FrameSchema, { kind: { case: "data", value: toData(f) } })) } },
      ),
    );
    expect(Buffer.from(datagram).toString("hex")).toBe(Buffer.from(expected).toString("hex"));
  });

  it("returns frame views that re-bundle into valid datagrams", () => {
    const builder = new DatagramBuilder(header);
    const frame = builder.addData(data({ seq: 99 }));
    builder.finish();
    const again = new DatagramBuilder(header);
    again.addFrame(frame);
    again.addFrame(toBinary(FrameSchema, create(FrameSchema, { kind: { case: "heartbeat", value: create(HeartbeatSchema, { highestSeq: 99n }) } })));
    const result = new DatagramReader({ cluster }).read(again.finish()!);
    expect(result.ok && result.datagram.frames.map((f) => f.case)).toEqual(["data", "heartbeat"]);
    expect(result.ok && result.datagram.frames[0]!.case === "data" && result.datagram.frames[0]!.seq).toBe(99);
  });

  it("keeps datagrams within the size limit", () => {
    const builder = new DatagramBuilder(header, 1400);
    const message = data({ payload: new Uint8Array(100) });
    let datagrams = 0;
    for (let i = 0; i < 100; i++) {
      if (!builder.fits(builder.dataFrameSize(message))) {
        expect(builder.finish()!.length).toBeLessThanOrEqual(1400);
        datagrams++;
      }
      builder.addData(message);
    }
    expect(builder.finish()!.length).toBeLessThanOrEqual(1400);
    expect(datagrams).toBeGreaterThan(5);
  });

  it("writes an acknowledgement in place as the bytes of its encoded frame, and adds none to a datagram too full for it", () => {
    const acks: Array<[stream: number, originId: Uint8Array, incarnation: number, cumulative: number, highestReceived: number]> = [
      [2, senderId, 7, 41, 0],
      [2, senderId, 2 ** 40, 2 ** 53 - 1, 0],
      [1, NO_BYTES, 0, 0, 0],
      [2, senderId, 3, 10, 300],
    ];
    const inPlace = new DatagramBuilder(header);
    const encoded = new DatagramBuilder(header);
    inPlace.addData(data());
    encoded.addData(data());
    for (const ack of acks) {
      expect(inPlace.tryAddAck(...ack)).toBe(true);
      encoded.addFrame(encodeAckFrame(...ack));
    }
    expect(Buffer.from(inPlace.finish()!).toString("hex")).toBe(Buffer.from(encoded.finish()!).toString("hex"));

    const full = new DatagramBuilder(header, 1400);
    full.addData(data({ payload: new Uint8Array(1200) }));
    let added = 0;
    while (full.tryAddAck(2, senderId, 7, 41, 0)) added++;
    const datagram = full.finish()!;
    expect(added).toBeGreaterThan(0);
    expect(datagram.length).toBeLessThanOrEqual(1400);
    expect(datagram.length + DatagramBuilder.framedSize(encodeAckFrame(2, senderId, 7, 41, 0).length)).toBeGreaterThan(1400 - 3);
    const result = new DatagramReader({ cluster }).read(datagram);
    expect(result.ok && result.datagram.frames.map((f) => f.case)).toEqual(["data", ...Array<string>(added).fill("ack")]);
  });
});

describe("DatagramReader", () => {
  const reader = new DatagramReader({ cluster });

  it("agrees with the generated decoder on a single Data body", () => {
    const bytes = encodeEnvelope(createEnvelope({ cluster, senderId, incarnation: 1n }, { case: "data", value: toData(data({ seq: 5 })) }));
    expect(normalise(reader.read(bytes))).toEqual(reference(bytes));
  });

  it("agrees with the generated decoder on 20,000 mutated datagrams", () => {
    const random = new SeededRandom(20_240_601);
    const builder = new DatagramBuilder(encodeEnvelopeHeader(cluster, senderId, 3));
    builder.addData(data({ seq: 1 }));
    builder.addData(data({ seq: 2, destination: "other", requestId: 300 }));
    builder.addFrame(toBinary(FrameSchema, create(FrameSchema, { kind: { case: "heartbeat", value: create(HeartbeatSchema, { highestSeq: 2n, intervalMs: 1000 }) } })));
    const seed = builder.finish()!;
    for (let round = 0; round < 20_000; round++) {
      const bytes = seed.slice();
      const edits = 1 + random.nextInt(3);
      for (let e = 0; e < edits; e++) bytes[random.nextInt(bytes.length)] = random.nextInt(256);
      const cut = random.next() < 0.1 ? bytes.subarray(0, random.nextInt(bytes.length)) : bytes;
      expect(normalise(reader.read(cut)), `round ${round}: ${Buffer.from(cut).toString("hex")}`).toEqual(reference(cut));
    }
  });

  it("reads an envelope split into its header and its body as it reads the whole, on 5,000 mutated bodies", () => {
    const random = new SeededRandom(20_261_203);
    const header = encodeEnvelopeHeader(cluster, senderId, 3);
    const builder = new DatagramBuilder(header);
    builder.addData(data({ seq: 1 }));
    builder.addFrame(toBinary(FrameSchema, create(FrameSchema, { kind: { case: "heartbeat", value: create(HeartbeatSchema, { highestSeq: 2n, intervalMs: 1000 }) } })));
    const bundle = builder.finish()!.subarray(header.length);
    const single = encodeEnvelope(createEnvelope({ cluster, senderId, incarnation: 3n }, { case: "data", value: toData(data({ seq: 5 })) })).subarray(header.length);
    const heartbeat = encodeEnvelope(createEnvelope({ cluster, senderId, incarnation: 3n }, { case: "heartbeat", value: create(HeartbeatSchema, { highestSeq: 9n }) })).subarray(header.length);
    let accepted = 0;
    for (let round = 0; round < 5_000; round++) {
      const body = [bundle, single, heartbeat][round % 3]!.slice();
      const edits = round < 3 ? 0 : 1 + random.nextInt(2);
      for (let e = 0; e < edits; e++) body[random.nextInt(body.length)] = random.nextInt(256);
      const whole = new Uint8Array(header.length + body.length);
      whole.set(header);
      whole.set(body, header.length);
      const split = reader.readSplit({ header, senderId, incarnation: 3, body });
      expect(normalise(split), `round ${round}: ${Buffer.from(body).toString("hex")}`).toEqual(normalise(reader.read(whole)));
      if (split.ok) {
        accepted++;
        expect(split.datagram.senderId).toEqual(senderId);
        expect(split.datagram.incarnation).toBe(3);
      }
    }
    expect(accepted).toBeGreaterThan(100);
  });

  it("reads a header it read before as a fresh reader does: alternating senders, a header followed by more header fields, the first datagram overwritten", () => {
    const warm = new DatagramReader({ cluster });
    const otherId = new Uint8Array(16).fill(9);
    const datagram = (id: Uint8Array, incarnation: number, seq: number) => {
      const builder = new DatagramBuilder(encodeEnvelopeHeader(cluster, id, incarnation));
      builder.addData(data({ seq }));
      return builder.finish()!.slice();
    };
    const first = datagram(senderId, 3, 1);
    const header = encodeEnvelopeHeader(cluster, senderId, 3);
    const body = first.subarray(header.length);
    // The same header, then a repeated incarnation field (5 << 3 = 0x28) before the body.
    const repeated = new Uint8Array([...header, 0x28, 0x07, ...body]);
    const cases = [first, datagram(otherId, 4, 1), datagram(senderId, 3, 2), repeated, datagram(senderId, 5, 1), header.slice(), datagram(senderId, 3, 3)];
    expect(warm.read(first)).toMatchObject({ ok: true, datagram: { senderId, incarnation: 3 } });
    first.fill(0);
    for (const [i, bytes] of cases.entries()) {
      const fresh = new DatagramReader({ cluster }).read(bytes);
      const result = warm.read(bytes);
      expect(normalise(result), `case ${i}`).toEqual(normalise(fresh));
      expect(normalise(result), `case ${i}`).toEqual(reference(bytes));
      if (result.ok && fresh.ok) {
        expect(result.datagram.senderId, `case ${i}`).toEqual(fresh.datagram.senderId);
        expect(result.datagram.incarnation, `case ${i}`).toBe(fresh.datagram.incarnation);
      }
    }
  });

  it("hands a frame to its kind's hand reader, and to the generated decoder where the reader declines or throws", () => {
    const builder = new DatagramBuilder(encodeEnvelopeHeader(cluster, senderId, 1));
    builder.addFrame(encodeFrame({ case: "stateAck", value: { group: "read" } }));
    builder.addFrame(encodeFrame({ case: "stateAck", value: { group: "declined" } }));
    builder.addFrame(encodeFrame({ case: "stateAck", value: { group: "thrown" } }));
    const datagram = builder.finish()!;
    const hands = new HandReaders();
    const stop = hands.set("stateAck", (bytes, start, end) => {
      const group = new TextDecoder().decode(bytes.subarray(start + 2, end));
      if (group === "thrown") throw new Error("a reader's fault");
      return group === "read" ? { group } : undefined;
    });
    const read = new DatagramReader({ cluster }, hands).read(datagram);
    expect(read.ok).toBe(true);
    const frames = read.ok ? read.datagram.frames : [];
    expect(frames[0]).toEqual({ case: "stateAck", read: { group: "read" } });
    for (const frame of frames.slice(1)) expect(frame.case === "stateAck" && frame.frame?.kind.case).toBe("stateAck");
    // A reader given no hand readers (another channel's), and this one once the reader is removed, decode every frame.
    stop();
    for (const reader of [new DatagramReader({ cluster }), new DatagramReader({ cluster }, hands)]) {
      const again = reader.read(datagram);
      expect(again.ok && again.datagram.frames.every((frame) => frame.case === "stateAck" && frame.frame?.kind.case === "stateAck")).toBe(true);
    }
  });

  it("hands out one copy of a Data's target while it stays the same, not a view into each datagram", () => {
    const warm = new DatagramReader({ cluster });
    const otherId = new Uint8Array(16).fill(9);
    const datagram = (target: Uint8Array, seq: number) => {
      const builder = new DatagramBuilder(encodeEnvelopeHeader(cluster, otherId, 2));
      builder.addData(data({ seq, addressing: Addressing.MEMBER, targetId: target }));
      return builder.finish()!.slice();
    };
    const targetOf = (bytes: Uint8Array) => {
      const result = warm.read(bytes);
      const frame = result.ok ? result.datagram.frames[0] : undefined;
      return frame?.case === "data" ? frame.targetId : undefined;
    };
    const first = datagram(senderId, 1);
    const target = targetOf(first);
    expect(target).toEqual(senderId);
    first.fill(0);
    expect(target).toEqual(senderId);
    expect(targetOf(datagram(senderId, 2))).toBe(target);
    expect(targetOf(datagram(otherId, 3))).toEqual(otherId);
    expect(targetOf(datagram(senderId, 4))).toEqual(senderId);
  });

  it("refuses another cluster, a bad version and oversize datagrams with the generated decoder's reasons", () => {
    const other = new DatagramBuilder(encodeEnvelopeHeader("elsewhere", senderId, 1));
    other.addData(data());
    expect(reader.read(other.finish()!)).toMatchObject({ ok: false, reason: "WRONG_CLUSTER" });
    const v2 = encodeEnvelope({ ...createEnvelope({ cluster, senderId, incarnation: 1n }, { case: "data", value: toData(data()) }), version: 2 });
    expect(reader.read(v2)).toMatchObject({ ok: false, reason: "UNSUPPORTED_VERSION" });
    expect(reader.read(new Uint8Array(70_000))).toMatchObject({ ok: false, reason: "OVERSIZE" });
    expect(fromBinary(EnvelopeSchema, v2).version).toBe(2);
    expect(reader.read(toBinary(DataSchema, toData(data())))).toMatchObject({ ok: false });
  });
});
