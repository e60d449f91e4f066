import { describe, expect, it } from "vitest";
import { idOf, keyOf, sameId, writeIdOf } from "./member-key.ts";

describe("member keys", () => {
  it("turn every id into lowercase hex and back", () => {
    for (let n = 0; n < 256; n++) {
      const id = Uint8Array.from({ length: 16 }, (_, i) => (n * 31 + i * 17) & 0xff);
      id[n % 16] = n;
      const key = keyOf(id);
      expect(key).toMatch(/^[0-9a-f]{32}$/);
      expect(key).toBe(Buffer.from(id).toString("hex"));
      expect(sameId(idOf(key), id)).toBe(true);
    }
  });

  it("write a key's id where asked, as idOf makes it, for keys repeated and keys new", () => {
    const ids = Array.from({ length: 7 }, (_, n) => Uint8Array.from({ length: 16 }, (_, i) => (n * 53 + i * 29 + 1) & 0xff));
    const keys = ids.map(keyOf);
    const buffer = new Uint8Array(20);
    for (const n of [0, 1, 0, 2, 3, 4, 5, 0, 6, 1, 1, 6]) {
      buffer.fill(0);
      expect(writeIdOf(keys[n]!, buffer, 3)).toBe(19);
      expect(sameId(buffer.subarray(3, 19), ids[n]!)).toBe(true);
      expect(buffer[2]).toBe(0);
      expect(buffer[19]).toBe(0);
    }
  });
});
