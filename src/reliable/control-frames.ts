import { type DigestEntry, Stream } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { encodeAckFrame } from "../wire/ack-codec.ts";
import { encodeFrame } from "../wire/frames.ts";

/**
 * Encoders of the control frames the reliable protocols exchange, through the compiled frame codec
 * (`src/wire/fast-codec.ts`) — but for acknowledgements, which ride on every request and reply and are
 * written by hand (`src/wire/ack-codec.ts`).
 */

/** A NACK; `shared`: the asker's losses are mostly shared, and the repair is asked for the whole group (`Nack.shared`). */
export function nackFrame(stream: Stream, originId: Uint8Array, incarnation: number, missing: ReadonlyArray<readonly [number, number]>, shared = false): Uint8Array {
  return encodeFrame({
    case: "nack",
    value: { stream, originId, originIncarnation: BigInt(incarnation), missing: missing.map(([first, last]) => ({ first: BigInt(first), last: BigInt(last) })), shared },
  });
}

/** A cumulative acknowledgement; `highestReceived` above it is reported as one selective range. */
export function ackFrame(stream: Stream, originId: Uint8Array, incarnation: number, cumulative: number, highestReceived: number): Uint8Array {
  return encodeAckFrame(stream, originId, incarnation, cumulative, highestReceived);
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
  return encodeFrame({
    case: "heartbeat",
    value: {
      highestSeq: BigInt(fields.highestSeq),
      lowestSeq: BigInt(fields.lowestSeq),
      intervalMs: fields.intervalMs,
      digest: fields.digest,
      group: fields.group ?? "",
      queues: [...(fields.queues ?? [])],
    },
  });
}

export { Stream };
