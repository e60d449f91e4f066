import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { AckSchema, SeqRangeSchema } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { SeededRandom } from "../transport/seeded-random.ts";
import { ackCumulative, encodeAckFrame, MAX_ACK_FRAME_BYTES, readAckFrame, writeAckFrame } from "./ack-codec.ts";

function generated(stream: number, originId: Uint8Array, incarnation: number, cumulative: number, highest: number): Uint8Array {
  const received = highest > cumulative ? [create(SeqRangeSchema, { first: BigInt(highest), last: BigInt(highest) })] : [];
  const value = create(AckSchema, { stream, originId, originIncarnation: BigInt(incarnation), cumulative: BigInt(cumulative), received });
  return toBinary(FrameSchema, create(FrameSchema, { kind: { case: "ack", value } }));
}

describe("acknowledgements by hand", () => {
  it("writes exactly the bytes the generated encoder writes, and reads back what the generated decoder reads (5,000 random ones)", () => {
    const random = new SeededRandom(1);
    const pick = () => [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 53 - 1, random.nextInt(2 ** 32)][random.nextInt(9)]!;
    for (let i = 0; i < 5_000; i++) {
      const id = random.nextInt(10) === 0 ? new Uint8Array(0) : random.fill(new Uint8Array(16));
      const args = [random.nextInt(3), id, pick(), pick(), pick()] as const;
      const bytes = encodeAckFrame(...args);
      expect(bytes).toEqual(generated(...args));
      expect(readAckFrame(bytes, 0, bytes.length)).toEqual(fromBinary(FrameSchema, bytes));
    }
  });

  it("gives an Ack's cumulative count as a number: the one it read for the Ack it read last, converted for any other", () => {
    const read = (cumulative: number) => {
      const bytes = encodeAckFrame(1, new Uint8Array(16), 5, cumulative, 0);
      const frame = readAckFrame(bytes, 0, bytes.length);
      return (frame?.kind.case === "ack" ? frame.kind.value : undefined)!;
    };
    const first = read(2 ** 40 + 3);
    const last = read(77);
    expect(ackCumulative(last)).toBe(77);
    expect(ackCumulative(first)).toBe(2 ** 40 + 3);
    expect(ackCumulative(create(AckSchema, { cumulative: 9n }))).toBe(9);
  });

  it("writes in place the bytes it encodes, within MAX_ACK_FRAME_BYTES (5,000 random ones, the largest numbers among them)", () => {
    const random = new SeededRandom(2);
    const pick = () => [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 53 - 1, random.nextInt(2 ** 32)][random.nextInt(9)]!;
    const buffer = new Uint8Array(3 + MAX_ACK_FRAME_BYTES + 3).fill(0xee);
    for (let i = 0; i < 5_000; i++) {
      const id = random.nextInt(10) === 0 ? new Uint8Array(0) : random.fill(new Uint8Array(16));
      const args = [random.nextInt(3), id, pick(), pick(), pick()] as const;
      const end = writeAckFrame(buffer, 3, ...args);
      expect(buffer.subarray(3, end)).toEqual(encodeAckFrame(...args));
      expect(end - 3).toBeLessThanOrEqual(MAX_ACK_FRAME_BYTES);
    }
    const largest = writeAckFrame(buffer, 3, 2, new Uint8Array(16).fill(9), 2 ** 53 - 1, 2 ** 53 - 2, 2 ** 53 - 1);
    expect(largest - 3).toBe(encodeAckFrame(2, new Uint8Array(16).fill(9), 2 ** 53 - 1, 2 ** 53 - 2, 2 ** 53 - 1).length);
    expect(buffer.subarray(0, 3)).toEqual(new Uint8Array(3).fill(0xee));
  });

  it("leaves unusual shapes to the generated decoder: a repeated field, an unknown one, a number past 2^53 − 1", () => {
    const ack = encodeAckFrame(1, new Uint8Array(16).fill(3), 5, 9, 0);
    const repeated = new Uint8Array([0x9a, 0x01, 4, 0x20, 1, 0x20, 2]);
    const unknown = new Uint8Array([0x9a, 0x01, 2, 0x38, 1]);
    const huge = new Uint8Array([0x9a, 0x01, 9, 0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    expect(readAckFrame(ack, 0, ack.length)).toBeDefined();
    for (const bytes of [repeated, unknown, huge]) expect(readAckFrame(bytes, 0, bytes.length)).toBeUndefined();
  });
});
