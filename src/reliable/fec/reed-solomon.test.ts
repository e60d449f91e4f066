import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../transport/seeded-random.ts";
import { alphaPow, div, EXP, inv, invertMatrix, LOG, mul, mul2Word, MUL_TABLE, mulWord } from "./gf256.ts";
import { coefficient, MAX_K, MAX_M, type ParitySymbol, ReedSolomon } from "./reed-solomon.ts";

// Carry-less multiplication reduced by x^8 + x^4 + x^3 + x^2 + 1: the definition, bit by bit.
function slowMul(a: number, b: number): number {
  let product = 0;
  for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) product ^= a << bit;
  for (let bit = 15; bit >= 8; bit--) if (product & (1 << bit)) product ^= 0x11d << (bit - 8);
  return product;
}

// The reference encoder: Σ_i α^(j·i) · source_i byte by byte, with the slow multiplication.
function slowParity(sources: readonly Uint8Array[], row: number): { symbol: Uint8Array; lengthParity: number } {
  const longest = Math.max(...sources.map((s) => s.length));
  const symbol = new Uint8Array(longest);
  let lengthParity = 0;
  sources.forEach((source, i) => {
    let c = 1;
    for (let n = 0; n < row * i; n++) c = slowMul(c, 2);
    for (let b = 0; b < source.length; b++) symbol[b] = symbol[b]! ^ slowMul(c, source[b]!);
    lengthParity ^= (slowMul(c, source.length >>> 8) << 8) | slowMul(c, source.length & 0xff);
  });
  return { symbol, lengthParity };
}

function randomSources(random: SeededRandom, k: number, maxLength: number): Uint8Array[] {
  return Array.from({ length: k }, () => random.fill(new Uint8Array(random.nextInt(maxLength + 1))));
}

function encodeAll(codec: ReedSolomon, sources: readonly Uint8Array[], m: number): ParitySymbol[] {
  codec.encode(sources, m);
  return Array.from({ length: m }, (_, row) => ({ row, symbol: codec.parity(row).slice(), lengthParity: codec.lengthParity(row) }));
}

function* subsets(n: number, size: number, start = 0, chosen: number[] = []): Generator<number[]> {
  if (chosen.length === size) {
    yield [...chosen];
    return;
  }
  for (let i = start; i <= n - (size - chosen.length); i++) {
    chosen.push(i);
    yield* subsets(n, size, i + 1, chosen);
    chosen.pop();
  }
}

describe("GF(2^8)", () => {
  it("multiplies as the carry-less definition does, for every pair", () => {
    for (let a = 0; a < 256; a++) {
      for (let b = 0; b < 256; b++) {
        const expected = slowMul(a, b);
        if (mul(a, b) !== expected || MUL_TABLE[(a << 8) | b] !== expected) throw new Error(`${a}·${b}`);
      }
    }
  });

  it("has α = 2 as a generator, inverses and division", () => {
    expect(new Set(EXP.subarray(0, 255)).size).toBe(255);
    for (let a = 1; a < 256; a++) {
      expect(EXP[LOG[a]!]).toBe(a);
      expect(mul(a, inv(a))).toBe(1);
      expect(div(mul(a, 77), 77)).toBe(a);
    }
    expect(alphaPow(255)).toBe(1);
    expect(() => div(1, 0)).toThrow(RangeError);
  });

  it("multiplies four packed bytes at once (by 2 and by any constant) as byte by byte", () => {
    const random = new SeededRandom("gf-words");
    for (let n = 0; n < 2_000; n++) {
      const word = random.nextUint32();
      const c = random.nextInt(256);
      const bytes = [word & 0xff, (word >>> 8) & 0xff, (word >>> 16) & 0xff, word >>> 24];
      const pack = (f: (b: number) => number) => (f(bytes[0]!) | (f(bytes[1]!) << 8) | (f(bytes[2]!) << 16) | (f(bytes[3]!) << 24)) >>> 0;
      expect(mul2Word(word)).toBe(pack((b) => slowMul(b, 2)));
      expect(mulWord(word, c)).toBe(pack((b) => slowMul(b, c)));
    }
  });

  it("inverts matrices, and refuses singular ones", () => {
    const random = new SeededRandom("gf-matrix");
    for (let n = 1; n <= 6; n++) {
      const a = random.fill(new Uint8Array(n * n));
      const inverse = invertMatrix(a, n);
      if (inverse === undefined) continue;
      for (let r = 0; r < n; r++) {
        for (let c = 0; c < n; c++) {
          let sum = 0;
          for (let t = 0; t < n; t++) sum ^= mul(a[r * n + t]!, inverse[t * n + c]!);
          expect(sum).toBe(r === c ? 1 : 0);
        }
      }
    }
    expect(invertMatrix([1, 2, 1, 2], 2)).toBeUndefined();
  });
});

describe("Reed-Solomon code", () => {
  it("is MDS for every k ≤ MAX_K and m ≤ MAX_M: every square submatrix of the parity matrix is invertible", () => {
    let checked = 0;
    for (let size = 1; size <= MAX_M; size++) {
      for (const rows of subsets(MAX_M, size)) {
        for (const columns of subsets(MAX_K, size)) {
          const a = new Uint8Array(size * size);
          for (let r = 0; r < size; r++) for (let c = 0; c < size; c++) a[r * size + c] = coefficient(rows[r]!, columns[c]!);
          if (invertMatrix(a, size) === undefined) throw new Error(`singular: rows ${rows}, columns ${columns}`);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(40_000);
  });

  it("encodes as the byte-by-byte reference does (random shapes and lengths)", () => {
    const random = new SeededRandom("rs-reference");
    const codec = new ReedSolomon();
    for (let n = 0; n < 300; n++) {
      const k = 1 + random.nextInt(MAX_K);
      const m = 1 + random.nextInt(MAX_M);
      const sources = randomSources(random, k, random.next() < 0.2 ? 3 : 300);
      const longest = codec.encode(sources, m);
      expect(longest).toBe(Math.max(...sources.map((s) => s.length)));
      for (let row = 0; row < m; row++) {
        const expected = slowParity(sources, row);
        expect(codec.parity(row)).toEqual(expected.symbol);
        expect(codec.lengthParity(row)).toBe(expected.lengthParity);
      }
    }
  });

  it("rebuilds every erasure pattern of up to m packets (sources and parity) in small blocks", () => {
    const random = new SeededRandom("rs-exhaustive");
    const codec = new ReedSolomon();
    let patterns = 0;
    for (let k = 1; k <= 8; k++) {
      for (let m = 1; m <= MAX_M; m++) {
        const sources = randomSources(random, k, 40);
        const parity = encodeAll(codec, sources, m);
        // Positions 0..k-1 are sources, k..k+m-1 parity rows.
        for (let lost = 0; lost <= m; lost++) {
          for (const erased of subsets(k + m, lost)) {
            const held = sources.map((s, i) => (erased.includes(i) ? undefined : s));
            const parityHeld = parity.filter((p) => !erased.includes(k + p.row));
            const rebuilt = codec.decode(held, parityHeld);
            expect(rebuilt, `k=${k} m=${m} erased ${erased}`).toBeDefined();
            for (let i = 0; i < k; i++) {
              if (held[i] === undefined) expect(rebuilt![i]).toEqual(sources[i]);
              else expect(rebuilt![i]).toBeUndefined();
            }
            patterns++;
          }
        }
      }
    }
    expect(patterns).toBeGreaterThan(1_000);
  });

  it("rebuilds random erasure patterns in large blocks (k up to 64, symbols up to 9 KiB)", () => {
    const random = new SeededRandom("rs-random");
    const codec = new ReedSolomon();
    for (let n = 0; n < 60; n++) {
      const k = 32 + random.nextInt(MAX_K - 31);
      const m = 1 + random.nextInt(MAX_M);
      const sources = randomSources(random, k, 9_000);
      const parity = encodeAll(codec, sources, m);
      const positions = Array.from({ length: k + m }, (_, i) => i);
      for (let i = positions.length - 1; i > 0; i--) {
        const j = random.nextInt(i + 1);
        [positions[i], positions[j]] = [positions[j]!, positions[i]!];
      }
      const erased = new Set(positions.slice(0, random.nextInt(m + 1)));
      const held = sources.map((s, i) => (erased.has(i) ? undefined : s));
      const rebuilt = codec.decode(held, parity.filter((p) => !erased.has(k + p.row)));
      for (let i = 0; i < k; i++) if (erased.has(i)) expect(rebuilt![i]).toEqual(sources[i]);
    }
  });

  it("gives up when more sources are missing than parity arrived, or the parts do not fit together", () => {
    const random = new SeededRandom("rs-refuse");
    const codec = new ReedSolomon();
    const sources = randomSources(random, 6, 50).map((s) => (s.length === 0 ? new Uint8Array(1) : s));
    const parity = encodeAll(codec, sources, 2);
    const held = sources.map((s, i) => (i < 3 ? undefined : s));
    expect(codec.decode(held, parity)).toBeUndefined();
    const oneMissing = sources.map((s, i) => (i === 0 ? undefined : s));
    expect(codec.decode(oneMissing, [])).toBeUndefined();
    // Parity symbols of different lengths, a repeated row, a source longer than the parity.
    expect(codec.decode(held.slice(1), [parity[0]!, { ...parity[1]!, symbol: parity[1]!.symbol.subarray(1) }])).toBeUndefined();
    expect(codec.decode(oneMissing.map((s, i) => (i === 1 ? undefined : s)), [parity[0]!, parity[0]!])).toBeUndefined();
    const tooLong = oneMissing.map((s, i) => (i === 1 ? new Uint8Array(parity[0]!.symbol.length + 1) : s));
    expect(codec.decode(tooLong, [parity[0]!])).toBeUndefined();
    // A length parity that decodes past the symbol's length.
    expect(codec.decode(oneMissing, [{ ...parity[0]!, lengthParity: parity[0]!.lengthParity ^ 0xff00 }])).toBeUndefined();
    // Nothing missing: nothing to rebuild.
    expect(codec.decode(sources, [])?.every((x) => x === undefined)).toBe(true);
  });

  it("refuses shapes outside its range", () => {
    const codec = new ReedSolomon();
    expect(() => codec.encode([], 1)).toThrow(RangeError);
    expect(() => codec.encode([new Uint8Array(1)], MAX_M + 1)).toThrow(RangeError);
    expect(() => codec.encode(Array.from({ length: MAX_K + 1 }, () => new Uint8Array(1)), 1)).toThrow(RangeError);
    expect(() => codec.encode([new Uint8Array(65_536)], 1)).toThrow(RangeError);
  });
});
