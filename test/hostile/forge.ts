import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema, FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { PROTOCOL_VERSION } from "../../src/wire/limits.ts";

/** Crafting datagrams as an outsider would: any field, any number up to 2^64 − 1, no protocol checks. */

export type FrameKind = MessageInitShape<typeof FrameSchema>["kind"];

export interface ForgedHeader {
  readonly cluster: string;
  readonly senderId: Uint8Array;
  readonly incarnation: bigint;
}

/** One datagram carrying `frames` as a bundle (one frame is sent bundled too, as members do). */
export function forge(header: ForgedHeader, frames: readonly FrameKind[]): Uint8Array {
  return toBinary(
    EnvelopeSchema,
    create(EnvelopeSchema, {
      version: PROTOCOL_VERSION,
      cluster: header.cluster,
      senderId: header.senderId,
      incarnation: header.incarnation,
      body: { case: "bundle", value: { frames: frames.map((kind) => ({ kind })) } },
    }),
  );
}

/** A member id of 16 bytes from a seed: made-up senders that are reproducible. */
export function fakeId(seed: number): Uint8Array {
  const id = new Uint8Array(16);
  let x = (seed * 2_654_435_761) >>> 0 || 1;
  for (let i = 0; i < 16; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    id[i] = x & 0xff;
  }
  id[0] = 0xfe; // never the id of a real member (those are random; a collision is 2^-8 less likely still)
  return id;
}

export const U64_MAX = 2n ** 64n - 1n;
export const TWO_53 = 2n ** 53n;
