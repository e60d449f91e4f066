import { describe, expect, it } from "vitest";
import { idOf, keyOf, sameId } from "./member-key.ts";

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
});
