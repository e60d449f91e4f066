import { describe, expect, it } from "vitest";
import { isBlazeError } from "../errors.ts";
import { SeededRandom } from "./seeded-random.ts";

function draws(r: SeededRandom, n: number): number[] {
  return Array.from({ length: n }, () => r.nextUint32());
}

describe("SeededRandom", () => {
  it("is xoshiro128** (reference vector from state 1,2,3,4)", () => {
    const r = new SeededRandom(0);
    Object.assign(r as object, { s0: 1, s1: 2, s2: 3, s3: 4 });
    expect(draws(r, 6)).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
  });

  it("pins its seeding, so recorded seeds keep replaying the same runs", () => {
    const r = new SeededRandom(42);
    expect(r.nextUint32()).toBe(2837322924);
    expect(r.next()).toBe(0.12688010269181393);
    expect(r.nextInt(10)).toBe(2);
  });

  it("gives the same sequence for the same seed and different ones for different seeds", () => {
    expect(draws(new SeededRandom(7), 100)).toEqual(draws(new SeededRandom(7), 100));
    expect(draws(new SeededRandom(7), 100)).not.toEqual(draws(new SeededRandom(8), 100));
    expect(draws(new SeededRandom("abc"), 10)).toEqual(draws(new SeededRandom("abc"), 10));
    expect(draws(new SeededRandom("abc"), 10)).not.toEqual(draws(new SeededRandom("abd"), 10));
    // Seeds beyond 32 bits and negative seeds stay distinct from their low half.
    expect(draws(new SeededRandom(2 ** 32 + 5), 10)).not.toEqual(draws(new SeededRandom(5), 10));
    expect(draws(new SeededRandom(-1), 10)).not.toEqual(draws(new SeededRandom(2 ** 32 - 1), 10));
  });

  it("rejects seeds that are not safe integers", () => {
    expect(() => new SeededRandom(1.5)).toThrow(expect.objectContaining({ code: "INVALID_OPTION" }));
    expect(() => new SeededRandom(Number.NaN)).toThrow(expect.objectContaining({ code: "INVALID_OPTION" }));
  });

  it("next() is in [0, 1) and roughly uniform", () => {
    const r = new SeededRandom(1);
    const buckets = new Array<number>(10).fill(0);
    let outOfRange = 0;
    for (let i = 0; i < 100_000; i++) {
      const x = r.next();
      if (!(x >= 0 && x < 1)) outOfRange++;
      buckets[Math.floor(x * 10)]!++;
    }
    expect(outOfRange).toBe(0);
    for (const b of buckets) expect(Math.abs(b - 10_000)).toBeLessThan(500);
  });

  it("nextInt covers [0, bound) evenly and validates the bound", () => {
    const r = new SeededRandom(2);
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < 60_000; i++) counts[r.nextInt(6)]!++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
    expect(r.nextInt(1)).toBe(0);
    const big = r.nextInt(2 ** 40);
    expect(Number.isInteger(big) && big >= 0 && big < 2 ** 40).toBe(true);
    for (const bad of [0, -1, 2.5, Number.NaN, Infinity]) {
      let caught: unknown;
      try {
        r.nextInt(bad);
      } catch (e) {
        caught = e;
      }
      expect(isBlazeError(caught, "INVALID_OPTION")).toBe(true);
    }
  });

  it("fill writes every byte, for lengths that are not multiples of 4", () => {
    for (const n of [0, 1, 3, 4, 7, 1000]) {
      const bytes = new SeededRandom(3).fill(new Uint8Array(n));
      expect(bytes.length).toBe(n);
    }
    // Bytes come little-endian from successive 32-bit draws; a partial word uses its low bytes.
    const words = draws(new SeededRandom(3), 2);
    const le = words.flatMap((w) => [w & 255, (w >>> 8) & 255, (w >>> 16) & 255, w >>> 24]);
    expect([...new SeededRandom(3).fill(new Uint8Array(7))]).toEqual(le.slice(0, 7));
    expect(new Set(new SeededRandom(3).fill(new Uint8Array(1003))).size).toBeGreaterThan(230);
    // The same seed fills the same bytes.
    expect(new SeededRandom(9).fill(new Uint8Array(33))).toEqual(new SeededRandom(9).fill(new Uint8Array(33)));
  });

  it("fork(label) depends on the seed and label only, not on draws made before", () => {
    const a = new SeededRandom(5);
    const b = new SeededRandom(5);
    draws(b, 1000);
    expect(draws(a.fork("x"), 20)).toEqual(draws(b.fork("x"), 20));
    expect(draws(a.fork("x"), 20)).not.toEqual(draws(a.fork("y"), 20));
    expect(draws(a.fork("x"), 20)).not.toEqual(draws(new SeededRandom(6).fork("x"), 20));
    expect(draws(a.fork("x").fork("y"), 20)).not.toEqual(draws(a.fork("y").fork("x"), 20));
    // A fork neither draws from nor disturbs its parent.
    const c = new SeededRandom(5);
    c.fork("x").nextUint32();
    expect(draws(c, 10)).toEqual(draws(new SeededRandom(5), 10));
    // A fork's seed reproduces it.
    const f = a.fork("node-1");
    expect(draws(new SeededRandom(f.seed), 10)).toEqual(draws(a.fork("node-1"), 10));
  });
});
