import type { Frame } from "../../gen/activeblaze/v1/envelope_pb.ts";
import type { Ack, SeqRange } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { MEMBER_ID_BYTES } from "./limits.ts";
import { ByteCursor, varintSize, writeVarint } from "./varint.ts";

/**
 * Acknowledgements by hand: after Data, the most frequent frame (every request and reply carries one),
 * so it is written and read without the generated code. The bytes are exactly those the generated
 * encoder writes (fields in number order, defaults omitted); anything unusual when reading is left to
 * the generated decoder.
 */

// Frame.ack is field 19, length-delimited: a two-byte tag.
const TAG_ACK = [0x9a, 0x01] as const;

function uintSize(value: number): number {
  return value === 0 ? 0 : 1 + varintSize(value);
}

function writeUint(buffer: Uint8Array, pos: number, field: number, value: number): number {
  if (value === 0) return pos;
  buffer[pos++] = field << 3;
  return writeVarint(buffer, pos, value);
}

/**
 * The Frame bytes of an acknowledgement of `stream` from `originId` (incarnation `incarnation`): all up
 * to `cumulative`, and `highestReceived` as one selective range when above it.
 */
export function encodeAckFrame(stream: number, originId: Uint8Array, incarnation: number, cumulative: number, highestReceived: number): Uint8Array {
  const rangeSize = highestReceived > cumulative ? 2 * uintSize(highestReceived) : 0;
  const ackSize =
    uintSize(stream) +
    (originId.length === 0 ? 0 : 1 + varintSize(originId.length) + originId.length) +
    uintSize(incarnation) +
    uintSize(cumulative) +
    (rangeSize === 0 ? 0 : 1 + varintSize(rangeSize) + rangeSize);
  const frame = new Uint8Array(2 + varintSize(ackSize) + ackSize);
  frame[0] = TAG_ACK[0];
  frame[1] = TAG_ACK[1];
  let pos = writeVarint(frame, 2, ackSize);
  pos = writeUint(frame, pos, 1, stream);
  if (originId.length > 0) {
    frame[pos++] = (2 << 3) | 2;
    pos = writeVarint(frame, pos, originId.length);
    frame.set(originId, pos);
    pos += originId.length;
  }
  pos = writeUint(frame, pos, 3, incarnation);
  pos = writeUint(frame, pos, 4, cumulative);
  if (rangeSize > 0) {
    frame[pos++] = (5 << 3) | 2;
    pos = writeVarint(frame, pos, rangeSize);
    pos = writeUint(frame, pos, 1, highestReceived);
    writeUint(frame, pos, 2, highestReceived);
  }
  return frame;
}

/** The most bytes `encodeAckFrame` gives for an origin id of at most `MEMBER_ID_BYTES`: 2 + 1 + 62. */
export const MAX_ACK_FRAME_BYTES = 65;

/**
 * Writes the bytes `encodeAckFrame` gives into `buffer` at `pos`, which has room for
 * `MAX_ACK_FRAME_BYTES`; returns the position after them. `originId` has at most `MEMBER_ID_BYTES`, so
 * both lengths inside take one byte each: they are filled in once the fields are written, and no size is
 * worked out first. How a sender writes its acknowledgement straight into a datagram.
 */
export function writeAckFrame(buffer: Uint8Array, pos: number, stream: number, originId: Uint8Array, incarnation: number, cumulative: number, highestReceived: number): number {
  buffer[pos] = TAG_ACK[0];
  buffer[pos + 1] = TAG_ACK[1];
  const ackStart = pos + 3;
  pos = writeUint(buffer, ackStart, 1, stream);
  const idLength = originId.length;
  if (idLength > 0) {
    buffer[pos++] = (2 << 3) | 2;
    buffer[pos++] = idLength;
    // Copied by the engine's own routine: quicker than a loop over its 16 bytes.
    buffer.set(originId, pos);
    pos += idLength;
  }
  pos = writeUint(buffer, pos, 3, incarnation);
  pos = writeUint(buffer, pos, 4, cumulative);
  if (highestReceived > cumulative) {
    buffer[pos] = (5 << 3) | 2;
    const rangeStart = pos + 2;
    pos = writeUint(buffer, rangeStart, 1, highestReceived);
    pos = writeUint(buffer, pos, 2, highestReceived);
    buffer[rangeStart - 1] = pos - rangeStart;
  }
  buffer[ackStart - 1] = pos - ackStart;
  return pos;
}

/** True when the frame at `bytes[start, end)` is an Ack (its two-byte tag). */
export function isAckFrame(bytes: Uint8Array, start: number, end: number): boolean {
  return end - start > 2 && bytes[start] === TAG_ACK[0] && bytes[start + 1] === TAG_ACK[1];
}

/**
 * Reads the Ack frame at `bytes[start, end)` into the generated message's shape; undefined when it is
 * not the usual shape (a field repeated or unknown, a wrong wire type, a number past 2^53 − 1), for the
 * generated decoder to judge.
 */
export function readAckFrame(bytes: Uint8Array, start: number, end: number): Frame | undefined {
  const cursor = new ByteCursor(bytes, start + 2, end);
  const ackEnd = cursor.delimitedEnd();
  if (cursor.failed || ackEnd !== end) return undefined;
  let stream = 0;
  let originId: Uint8Array = EMPTY;
  let incarnation = 0;
  let cumulative = 0;
  const received: SeqRange[] = [];
  let seen = 0;
  while (cursor.pos < ackEnd) {
    const tag = cursor.varint();
    const field = tag >>> 3;
    if (field !== 5) {
      if (field < 1 || field > 4 || (seen & (1 << field)) !== 0) return undefined;
      seen |= 1 << field;
    }
    switch (tag) {
      case (1 << 3) | 0:
        stream = cursor.varint();
        // An enum is an int32 on the wire: past 2^31 it is negative, not ours to judge.
        if (stream > 0x7fffffff) return undefined;
        break;
      case (2 << 3) | 2: {
        originId = cursor.delimitedBytes();
        if (cursor.failed) return undefined;
        break;
      }
      case (3 << 3) | 0:
        incarnation = cursor.varint();
        break;
      case (4 << 3) | 0:
        cumulative = cursor.varint();
        break;
      case (5 << 3) | 2: {
        const rangeEnd = cursor.delimitedEnd();
        if (cursor.failed) return undefined;
        const range = readRange(bytes, cursor.pos, rangeEnd);
        if (range === undefined) return undefined;
        received.push(range);
        cursor.pos = rangeEnd;
        break;
      }
      default:
        return undefined;
    }
    if (cursor.failed) return undefined;
  }
  if (originId.length !== 0 && originId.length !== MEMBER_ID_BYTES) return undefined;
  const ack: Ack = {
    $typeName: "activeblaze.v1.Ack",
    stream,
    originId,
    originIncarnation: incarnation === lastIncarnation ? lastIncarnationBig : incarnationBig(incarnation),
    cumulative: BigInt(cumulative),
    received,
  };
  lastAck = ack;
  lastCumulative = cumulative;
  return { $typeName: "activeblaze.v1.Frame", kind: { case: "ack", value: ack } };
}

function readRange(bytes: Uint8Array, start: number, end: number): SeqRange | undefined {
  const cursor = new ByteCursor(bytes, start, end);
  let first = 0;
  let last = 0;
  let seen = 0;
  while (cursor.pos < end) {
    const tag = cursor.varint();
    if (tag === ((1 << 3) | 0) && (seen & 1) === 0) {
      first = cursor.varint();
      seen |= 1;
    } else if (tag === ((2 << 3) | 0) && (seen & 2) === 0) {
      last = cursor.varint();
      seen |= 2;
    } else return undefined;
    if (cursor.failed) return undefined;
  }
  return { $typeName: "activeblaze.v1.SeqRange", first: BigInt(first), last: BigInt(last) };
}

const EMPTY = new Uint8Array(0);

// The Ack read last and its cumulative count as read: the protocol that handles it next takes the number
// from here, not converted back from the bigint the message holds.
let lastAck: Ack | undefined;
let lastCumulative = 0;

/** An Ack's cumulative count as a number (past 2^53 − 1, rounded). */
export function ackCumulative(ack: Ack): number {
  return ack === lastAck ? lastCumulative : Number(ack.cumulative);
}

// The acknowledgements a member receives all name its own incarnation (as the origin of the stream they
// acknowledge): the bigint of the last one read is kept and handed out again while it is the same.
let lastIncarnation = 0;
let lastIncarnationBig = 0n;

function incarnationBig(incarnation: number): bigint {
  lastIncarnation = incarnation;
  lastIncarnationBig = BigInt(incarnation);
  return lastIncarnationBig;
}
