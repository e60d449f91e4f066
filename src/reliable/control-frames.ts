import { create, toBinary } from "@bufbuild/protobuf";
import { FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import {
  AckSchema,
  type DigestEntry,
  HeartbeatSchema,
  NackSchema,
  SeqRangeSchema,
  Stream,
} from "../../gen/activeblaze/v1/reliable_pb.ts";

/**
 * Encoders of the control frames the reliable protocols exchange. Control traffic is a small fraction
 * of the datagrams, so these go through the generated code.
 */

export function nackFrame(stream: Stream, originId: Uint8Array, incarnation: number, missing: ReadonlyArray<readonly [number, number]>): Uint8Array {
  return toBinary(
    FrameSchema,
    create(FrameSchema, {
      kind: {
        case: "nack",
        value: create(NackSchema, {
          stream,
          originId,
          originIncarnation: BigInt(incarnation),
          missing: missing.map(([first, last]) => create(SeqRangeSchema, { first: BigInt(first), last: BigInt(last) })),
        }),
      },
    }),
  );
}

/** A cumulative acknowledgement; `highestReceived` above it is reported as one selective range. */
export function ackFrame(stream: Stream, originId: Uint8Array, incarnation: number, cumulative: number, highestReceived: number): Uint8Array {
  const received = highestReceived > cumulative ? [create(SeqRangeSchema, { first: BigInt(highestReceived), last: BigInt(highestReceived) })] : [];
  return toBinary(
    FrameSchema,
    create(FrameSchema, {
      kind: {
        case: "ack",
        value: create(AckSchema, { stream, originId, originIncarnation: BigInt(incarnation), cumulative: BigInt(cumulative), received }),
      },
    }),
  );
}

export interface HeartbeatFields {
  readonly highestSeq: number;
  readonly lowestSeq: number;
  readonly intervalMs: number;
  readonly digest: DigestEntry[];
  readonly group?: string;
  /** The queues the sender consumes from. */
  readonly queues?: readonly string[];
}

export function heartbeatFrame(fields: HeartbeatFields): Uint8Array {
  return toBinary(
    FrameSchema,
    create(FrameSchema, {
      kind: {
        case: "heartbeat",
        value: create(HeartbeatSchema, {
          highestSeq: BigInt(fields.highestSeq),
          lowestSeq: BigInt(fields.lowestSeq),
          intervalMs: fields.intervalMs,
          digest: fields.digest,
          group: fields.group ?? "",
          queues: [...(fields.queues ?? [])],
        }),
      },
    }),
  );
}

export { Stream };
