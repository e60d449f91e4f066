import { fromBinary } from "@bufbuild/protobuf";
import { DataSchema, Stream } from "../../../gen/activeblaze/v1/reliable_pb.ts";
import type { FecParity } from "../../../gen/activeblaze/v1/fec_pb.ts";
import { validateData } from "../../wire/codec.ts";
import { dataSize, writeData } from "../../../gen/activeblaze/v1/reliable_fast.ts";
import { type DataFields, toDataFields, writeBytes, writeUint } from "../../wire/frames.ts";
import { varintSize, writeVarint } from "../../wire/varint.ts";
import { web } from "../../web.ts";
import { MAX_K, MAX_M, MAX_SYMBOL_BYTES } from "./reed-solomon.ts";

/**
 * The bytes FEC works on. A source packet's symbol is its Data message encoded with `seq` 0 (the
 * block says the number): exactly the bytes of the Data frame a sender writes, without the frame's tag
 * and length and without the seq field, so a sender takes it from the frame it sent at no cost, and a
 * receiver writes it from the fields it received. Parity frames are written by hand, field for field
 * what the generated encoder writes, since a sender writes m of them per block.
 */

/** The most blocks one group of packets interleaves (the largest stride a receiver accepts). */
export const MAX_STRIDE = 64;

// Frame.fec_parity is field 64, length-delimited: the two-byte tag 64 << 3 | 2.
const TAG_FEC_PARITY = [0x82, 0x04] as const;
// Frame.data is field 16: the two-byte tag 16 << 3 | 2.
const TAG_DATA = [0x82, 0x01] as const;
const encoder = new web.TextEncoder();

/**
 * The symbol of a Data frame as `DatagramBuilder.addData` returns it (tag, length, Data message):
 * the message after its seq field. Undefined for anything else.
 */
export function symbolOfFrame(frame: Uint8Array): Uint8Array | undefined {
  if (frame.length < 3 || frame[0] !== TAG_DATA[0] || frame[1] !== TAG_DATA[1]) return undefined;
  let pos = skipVarint(frame, 2);
  if (pos < frame.length && frame[pos] === 1 << 3) pos = skipVarint(frame, pos + 1);
  return pos > frame.length ? undefined : frame.subarray(pos);
}

function skipVarint(bytes: Uint8Array, pos: number): number {
  while (pos < bytes.length && bytes[pos]! >= 0x80) pos++;
  return pos + 1;
}

/**
 * Writes the symbols of received Data messages (fields 2 to 16 in number order, defaults left out, as
 * the sender's encoder does). Symbols are views of one scratch buffer, valid until `reset()`.
 */
export class SymbolWriter {
  #buffer: Uint8Array = new Uint8Array(64 * 1024);
  #pos = 0;
  #destination = "";
  #destinationBytes: Uint8Array = new Uint8Array(0);

  reset(): void {
    this.#pos = 0;
  }

  write(data: DataFields): Uint8Array {
    if (data.destination !== this.#destination) {
      this.#destination = data.destination;
      this.#destinationBytes = encoder.encode(data.destination);
    }
    const destination = this.#destinationBytes;
    // Everything after the seq field, as the sender's encoder wrote it.
    const size = dataSize(data, destination, 2);
    if (this.#pos + size > this.#buffer.length) {
      // The symbols written so far stay valid in the old buffer.
      this.#buffer = new Uint8Array(Math.max(size, this.#buffer.length * 2));
      this.#pos = 0;
    }
    const buffer = this.#buffer;
    const start = this.#pos;
    const pos = writeData(buffer, start, data, destination, 2);
    this.#pos = pos;
    return buffer.subarray(start, pos);
  }
}


/**
 * The multicast Data message a rebuilt symbol holds, numbered `seq`; undefined when the bytes are not a
 * valid multicast Data message (inconsistent parity).
 */
export function readSymbol(symbol: Uint8Array, seq: number): DataFields | undefined {
  let data: DataFields | undefined;
  try {
    data = toDataFields(fromBinary(DataSchema, symbol));
  } catch {
    return undefined;
  }
  if (data === undefined || data.seq !== 0 || data.targetId.length !== 0) return undefined;
  if (validateData(data, "fec") !== undefined) return undefined;
  data.seq = seq;
  return data;
}

/** What a parity frame says, as numbers. */
export interface ParityFields {
  readonly blockFirstSeq: number;
  readonly k: number;
  readonly m: number;
  readonly parityIndex: number;
  /** 0 or 1: consecutive. */
  readonly stride: number;
  readonly parity: Uint8Array;
  readonly lengthParity: number;
}

/** Encodes a `Frame` holding a multicast-stream FecParity (the bytes the generated encoder writes). */
export function encodeParityFrame(fields: ParityFields): Uint8Array {
  const { blockFirstSeq, k, m, parityIndex, parity, lengthParity } = fields;
  const stride = fields.stride > 1 ? fields.stride : 0;
  const size =
    2 +
    1 + varintSize(blockFirstSeq) +
    1 + varintSize(k) +
    1 + varintSize(m) +
    (parityIndex === 0 ? 0 : 1 + varintSize(parityIndex)) +
    (parity.length === 0 ? 0 : 1 + varintSize(parity.length) + parity.length) +
    4 +
    (stride === 0 ? 0 : 1 + varintSize(stride));
  const frame = new Uint8Array(2 + varintSize(size) + size);
  frame[0] = TAG_FEC_PARITY[0];
  frame[1] = TAG_FEC_PARITY[1];
  let pos = writeVarint(frame, 2, size);
  frame[pos++] = 1 << 3;
  frame[pos++] = Stream.MULTICAST;
  pos = writeUint(frame, pos, 2, blockFirstSeq);
  pos = writeUint(frame, pos, 3, k);
  pos = writeUint(frame, pos, 4, m);
  pos = writeUint(frame, pos, 5, parityIndex);
  pos = writeBytes(frame, pos, 6, parity);
  frame[pos++] = (7 << 3) | 2;
  frame[pos++] = 2;
  frame[pos++] = lengthParity >>> 8;
  frame[pos++] = lengthParity & 0xff;
  writeUint(frame, pos, 8, stride);
  return frame;
}

/**
 * A received FecParity as numbers, or undefined when it is malformed: another stream, k, m or the
 * stride out of range, an index not below m, a block reaching past 2^53, a length parity that is not
 * two bytes, or parity longer than any symbol.
 */
export function parityFields(parity: FecParity): ParityFields | undefined {
  const { k, m, parityIndex } = parity;
  const stride = parity.stride === 0 ? 1 : parity.stride;
  if (parity.stream !== Stream.MULTICAST) return undefined;
  if (k < 1 || k > MAX_K || m < 1 || m > MAX_M || parityIndex >= m || stride > MAX_STRIDE) return undefined;
  if (parity.lengthParity.length !== 2 || parity.parity.length > MAX_SYMBOL_BYTES) return undefined;
  const first = parity.blockFirstSeq;
  if (first < 1n || first + BigInt((k - 1) * stride) > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return {
    blockFirstSeq: Number(first),
    k,
    m,
    parityIndex,
    stride,
    parity: parity.parity,
    lengthParity: (parity.lengthParity[0]! << 8) | parity.lengthParity[1]!,
  };
}
