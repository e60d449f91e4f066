/**
 * A fast, seeded pseudo-random generator for deterministic tests: xoshiro128** (Blackman and
 * Vigna), its 128-bit state filled from a 32-bit key by splitmix32. Not for cryptography.
 */
import { BlazeError } from "../errors.ts";
import type { RandomSource } from "./clock.ts";

const TWO_POW_32 = 4_294_967_296;
const TWO_POW_53 = 9_007_199_254_740_992;

/**
 * A seeded {@link RandomSource}. The same seed always gives the same sequence, on every runtime.
 *
 * `fork(label)` derives an independent stream from the seed and the label alone, not from how many
 * numbers were drawn before, so that giving one component its own fork keeps every other
 * component's sequence unchanged when that component starts drawing more or fewer numbers.
 */
export class SeededRandom implements RandomSource {
  /** The seed this generator was created with (for a fork: its derived 32-bit key). */
  readonly seed: number | string;
  /** The 32-bit key the state was derived from; forks derive theirs from it. */
  private readonly key: number;
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /**
   * @param seed A safe integer (negative and > 32-bit values are folded to 32 bits) or a string
   *   (hashed). Default 0.
   * @throws BlazeError `INVALID_OPTION` when `seed` is a number but not a safe integer.
   */
  constructor(seed: number | string = 0) {
    this.seed = seed;
    this.key = typeof seed === "string" ? fnv1a32(seed, 0x811c9dc5) : keyOf(seed);
    this.init(this.key);
  }

  private init(key: number): void {
    // splitmix32: successive multiples of the golden ratio added to the key, each mixed.
    const g = 0x9e3779b9;
    this.s0 = fmix32((key + g) | 0);
    this.s1 = fmix32((key + 2 * g) | 0);
    this.s2 = fmix32((key + 3 * g) | 0);
    this.s3 = fmix32((key + 4 * g) | 0);
    // fmix32 is a bijection, so the four words are distinct and never all zero (xoshiro's one
    // forbidden state).
  }

  /** An unsigned 32-bit integer, uniform in [0, 2^32). The primitive every other method uses. */
  nextUint32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A float in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67_108_864 + lo) / TWO_POW_53;
  }

  /**
   * An integer in [0, bound), without modulo bias for bounds up to 2^32.
   * @throws BlazeError `INVALID_OPTION` unless `bound` is a positive safe integer.
   */
  nextInt(bound: number): number {
    if (!Number.isSafeInteger(bound) || bound <= 0) {
      throw new BlazeError("INVALID_OPTION", `nextInt: bound must be a positive safe integer, got ${bound}`);
    }
    if (bound > TWO_POW_32) return Math.floor(this.next() * bound);
    // Reject the top partial block of 2^32 so every residue is equally likely.
    const limit = TWO_POW_32 - (TWO_POW_32 % bound);
    for (;;) {
      const r = this.nextUint32();
      if (r < limit) return r % bound;
    }
  }

  /** Fills `bytes` with random bytes and returns it. */
  fill(bytes: Uint8Array): Uint8Array {
    const n = bytes.length;
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const r = this.nextUint32();
      bytes[i] = r;
      bytes[i + 1] = r >>> 8;
      bytes[i + 2] = r >>> 16;
      bytes[i + 3] = r >>> 24;
    }
    if (i < n) {
      let r = this.nextUint32();
      for (; i < n; i++, r >>>= 8) bytes[i] = r;
    }
    return bytes;
  }

  /**
   * An independent generator named `label`, derived from this generator's seed and the label only:
   * the same label always gives the same stream, whatever was drawn from this generator before.
   * Forks can be forked again (`a.fork("x").fork("y")` differs from `a.fork("y").fork("x")`).
   */
  fork(label: string): SeededRandom {
    // The child's seed is its 32-bit key, so `new SeededRandom(fork.seed)` reproduces a fork.
    return new SeededRandom(fnv1a32(label, fmix32(this.key ^ 0x5bd1e995)));
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** MurmurHash3's 32-bit finalizer: a good bijective bit mixer. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** FNV-1a over the UTF-16 code units of `text`, from a given starting state. */
function fnv1a32(text: string, start: number): number {
  let h = start >>> 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h = Math.imul(h ^ (c & 0xff), 0x01000193);
    if (c > 0xff) h = Math.imul(h ^ (c >>> 8), 0x01000193);
  }
  return h >>> 0;
}

function keyOf(seed: number): number {
  if (!Number.isSafeInteger(seed)) {
    throw new BlazeError("INVALID_OPTION", `seed must be a safe integer or a string, got ${seed}`);
  }
  const lo = seed >>> 0;
  // Fold the high bits in (and mark negatives) so that seeds beyond 32 bits stay distinct from
  // their low half; for the usual small non-negative seeds the key is the seed itself.
  const hi = Math.floor(seed / TWO_POW_32);
  return hi === 0 ? lo : (lo ^ fmix32(hi)) >>> 0;
}
