import { web } from "../web.ts";

/**
 * Protobuf varints for JavaScript numbers up to 2^53, for the hand-written hot-path codec. Values past
 * `Number.MAX_SAFE_INTEGER` are not representable here; readers report them so the caller can fall back
 * to the generated (bigint) decoder.
 */

/** Bytes a varint of `value` (0 ≤ value ≤ 2^53) takes. */
export function varintSize(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  if (value < 0x10000000) return 4;
  // Compared, not divided: an incarnation (a time in milliseconds, past 2^40) is in every datagram.
  if (value < 0x800000000) return 5;
  if (value < 0x40000000000) return 6;
  if (value < 0x2000000000000) return 7;
  return 8;
}

/**
 * Writes `value` (0 ≤ value ≤ 2^53) at `pos`; returns the position after it. Every step is a 32-bit
 * integer operation: past 2^31 − 1 the low 28 bits are written first, as four groups, and what is left
 * fits in 32 bits. (Division and remainder of a larger number are floating-point operations, several
 * times slower, and an incarnation is in every datagram.)
 */
export function writeVarint(buffer: Uint8Array, pos: number, value: number): number {
  if (value > 0x7fffffff) {
    const high = Math.floor(value / 0x10000000);
    let low = value - high * 0x10000000;
    buffer[pos++] = (low & 0x7f) | 0x80;
    low >>>= 7;
    buffer[pos++] = (low & 0x7f) | 0x80;
    low >>>= 7;
    buffer[pos++] = (low & 0x7f) | 0x80;
    buffer[pos++] = (low >>> 7) | 0x80;
    value = high;
  }
  while (value >= 0x80) {
    buffer[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buffer[pos++] = value;
  return pos;
}

/**
 * A cursor over bytes. `read*` methods return NaN (and set `failed`) on anything the hot path does not
 * handle: truncation, a varint over 2^53 or longer than 10 bytes.
 */
export class ByteCursor {
  pos: number;
  failed = false;

  constructor(
    readonly bytes: Uint8Array,
    start: number,
    public end: number,
  ) {
    this.pos = start;
  }

  varint(): number {
    const bytes = this.bytes;
    let pos = this.pos;
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (pos >= this.end) return this.fail();
      const byte = bytes[pos++]!;
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        // Up to 56 bits fit in eight groups, but only 2^53 − 1 is exact: past it, not ours to judge.
        if (result > Number.MAX_SAFE_INTEGER) return this.fail();
        this.pos = pos;
        return result;
      }
      scale *= 0x80;
    }
    // Eight 7-bit groups hold 56 bits; anything longer is past 2^53 (or malformed): not ours to judge.
    return this.fail();
  }

  /** Reads a length prefix and returns the end of the delimited bytes. */
  delimitedEnd(): number {
    const length = this.varint();
    if (Number.isNaN(length)) return length;
    const end = this.pos + length;
    return end > this.end ? this.fail() : end;
  }

  /** A length-delimited field's bytes (a view, not a copy), the cursor moved past them; empty once it failed. */
  delimitedBytes(): Uint8Array {
    const end = this.delimitedEnd();
    const bytes = this.bytes.subarray(this.pos, end);
    this.pos = end;
    return bytes;
  }

  private fail(): number {
    this.failed = true;
    return Number.NaN;
  }
}

/** UTF-8 bytes of `text`, a lone surrogate counting as U+FFFD (as TextEncoder writes it). */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) bytes += 1;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // A surrogate pair: 4 bytes for 2 code units.
      bytes += 2;
      i++;
    } else bytes += 2;
  }
  return bytes;
}

const utf8Encoder = new web.TextEncoder();
const utf8Decoder = new web.TextDecoder("utf-8", { fatal: true });

/** Strings of at most this many bytes, all ASCII, are read by hand: quicker than the decoder. */
const SHORT_ASCII_BYTES = 64;

/** Writes `text`, `byteLength` bytes of UTF-8 (its {@link utf8Length}), at `pos`; returns the end. */
export function writeUtf8(buffer: Uint8Array, pos: number, text: string, byteLength: number): number {
  if (byteLength === text.length) {
    // ASCII: one byte a code unit.
    for (let i = 0; i < byteLength; i++) buffer[pos + i] = text.charCodeAt(i);
  } else utf8Encoder.encodeInto(text, buffer.subarray(pos, pos + byteLength));
  return pos + byteLength;
}

/** The text of the UTF-8 in `bytes` from `start` to `end`, or undefined for invalid UTF-8. */
export function readUtf8(bytes: Uint8Array, start: number, end: number): string | undefined {
  if (end - start <= SHORT_ASCII_BYTES) {
    for (let i = start; i < end; i++) if (bytes[i]! >= 0x80) return decodeUtf8(bytes.subarray(start, end));
    return asciiText(bytes, start, end);
  }
  return decodeUtf8(bytes.subarray(start, end));
}

/**
 * The text of the ASCII bytes from `start` to `end` (at most {@link SHORT_ASCII_BYTES}). Up to eight
 * are made into a string in one call, not a string a byte (each longer string a new copy, for strings
 * this short); longer ones are joined a byte at a time, which for them makes ropes, not copies.
 */
function asciiText(b: Uint8Array, s: number, end: number): string {
  switch (end - s) {
    case 0:
      return "";
    case 1:
      return String.fromCharCode(b[s]!);
    case 2:
      return String.fromCharCode(b[s]!, b[s + 1]!);
    case 3:
      return String.fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!);
    case 4:
      return String.fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!);
    case 5:
      return String.fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!);
    case 6:
      return String.fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!);
    case 7:
      return String.fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!);
    case 8:
      return String.fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!, b[s + 7]!);
  }
  let text = "";
  for (let i = s; i < end; i++) text += String.fromCharCode(b[i]!);
  return text;
}

/** Decodes UTF-8, or returns undefined for invalid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    return undefined;
  }
}
