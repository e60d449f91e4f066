import { describe, expect, it } from "vitest";
import { SeededRandom } from "../transport/seeded-random.ts";
import { ReplayWindow } from "./replay-window.ts";

describe("ReplayWindow", () => {
  it("accepts each counter once, in any order within the window", () => {
    const window = new ReplayWindow(64);
    for (const n of [1, 3, 2, 10, 5, 4]) expect(window.accept(n)).toBe(true);
    for (const n of [1, 2, 3, 4, 5, 10]) expect(window.accept(n)).toBe(false);
    expect(window.accept(6)).toBe(true);
    expect(window.highest).toBe(10);
  });

  it("refuses what fell out of the window, and keeps what is still in it", () => {
    const window = new ReplayWindow(64);
    expect(window.accept(100)).toBe(true);
    expect(window.fresh(36)).toBe(false); // 100 - 64
    expect(window.fresh(37)).toBe(true);
    expect(window.accept(37)).toBe(true);
    expect(window.accept(37)).toBe(false);
    // A jump far ahead forgets every bit of the old window.
    expect(window.accept(1_000_000)).toBe(true);
    expect(window.fresh(999_937)).toBe(true);
    expect(window.fresh(100)).toBe(false);
  });

  it("works at counters past 2^32 and up to 2^52", () => {
    const window = new ReplayWindow(128);
    const base = 2 ** 52 - 200;
    expect(window.accept(base)).toBe(true);
    expect(window.accept(base + 1)).toBe(true);
    expect(window.accept(base - 5)).toBe(true);
    expect(window.accept(base - 5)).toBe(false);
    expect(window.accept(2 ** 52)).toBe(true);
    expect(window.accept(2 ** 52 - 100)).toBe(true);
    expect(window.accept(2 ** 52 - 128)).toBe(false);
  });

  it("matches a set of everything seen, on a seeded stream of reordered and duplicated counters", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const random = new SeededRandom(seed);
      const size = 256;
      const window = new ReplayWindow(size);
      const seen = new Set<number>();
      let top = 0;
      for (let i = 0; i < 20_000; i++) {
        // Mostly ahead, sometimes behind (within and beyond the window), sometimes a repeat.
        const step = random.nextInt(10);
        const n = step < 6 ? top + 1 + random.nextInt(3) : Math.max(1, top - random.nextInt(size + 64));
        const expected = !seen.has(n) && n + size > top;
        expect(window.accept(n), `seed ${seed}, counter ${n}, highest ${top}`).toBe(expected);
        if (expected) seen.add(n);
        top = Math.max(top, expected ? n : top);
      }
    }
  });
});
