import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../transport/seeded-random.ts";
import { ByteCursor, readUtf8, varintSize, writeVarint } from "./varint.ts";

// The protobuf library's own encoding of an unsigned 64-bit varint.
function reference(value: number): Uint8Array {
  return new BinaryWriter().uint64(BigInt(value)).finish();
}

describe("varints of numbers up to 2^53", () => {
  const boundaries = Array.from({ length: 54 }, (_, k) => [2 ** k - 1, 2 ** k]).flat();
  const random = new SeededRandom(3);
  const randoms = Array.from({ length: 2_000 }, () => Math.floor(random.next() * 2 ** (1 + random.nextInt(53))));

  it("writes the bytes the protobuf encoder writes, sized as varintSize says, read back as written (every power of two and its predecessor, 2,000 random ones)", () => {
    const buffer = new Uint8Array(12);
    for (const value of [...boundaries, ...randoms, Number.MAX_SAFE_INTEGER, 1_764_892_000_123]) {
      const end = writeVarint(buffer, 1, value);
      expect(buffer.subarray(1, end)).toEqual(reference(value));
      expect(varintSize(value)).toBe(end - 1);
      // The reader takes numbers up to 2^53 − 1 only.
      if (value <= Number.MAX_SAFE_INTEGER) expect(new ByteCursor(buffer, 1, end).varint()).toBe(value);
    }
  });
});

describe("UTF-8 text read from a buffer", () => {
  it("reads text of every length around the short ASCII paths as the decoder does, and refuses invalid UTF-8", () => {
    const encoder = new TextEncoder();
    for (let length = 0; length <= 70; length++) {
      for (const text of ["k".repeat(length), Array.from({ length }, (_, i) => String.fromCharCode(32 + ((i * 7) % 95))).join(""), "é".repeat(length)]) {
        const bytes = encoder.encode(text);
        const buffer = new Uint8Array(bytes.length + 6);
        buffer.set(bytes, 3);
        expect(readUtf8(buffer, 3, 3 + bytes.length)).toBe(text);
      }
    }
    expect(readUtf8(new Uint8Array([0x6b, 0xc3]), 0, 2)).toBeUndefined();
    expect(readUtf8(new Uint8Array([0x6b, 0xff, 0x6b]), 0, 3)).toBeUndefined();
  });
});
