import { alphaPow, invertMatrix, mul, MUL_TABLE } from "./gf256.ts";

// The low byte of the field's polynomial (gf256.ts), as a local: an imported binding may be read
// through an accessor on every use in a hot loop, depending on how the module was compiled.
const REDUCE = 0x1d;

/**
 * A systematic Reed-Solomon erasure code over GF(2^8), after RFC 5510: a block of k source symbols
 * (byte strings of any length up to 65,535) is sent as is, followed by m parity symbols; a receiver
 * holding any k of the k + m rebuilds the rest.
 *
 * Parity row j (0 ≤ j < m) is Σ_i α^(j·i) · source_i, the sources zero-padded to the longest. Row 0 is
 * plain XOR; every row is evaluated by Horner's rule, acc ← acc·α^j + source_i from the last source
 * to the first, where a multiplication by α is a shift and a conditional XOR applied to four bytes
 * of a 32-bit word at once. The code is MDS (every square submatrix of the parity matrix is
 * invertible) for every k ≤ MAX_K and m ≤ MAX_M; a test checks all of them.
 *
 * Each source's length is protected the same way, as a two-byte symbol (big-endian): a rebuilt
 * source gets its exact length back.
 */

/** Most source symbols in a block. */
export const MAX_K = 64;
/** Most parity symbols of a block. */
export const MAX_M = 3;
/** The longest symbol: lengths travel as two bytes. */
export const MAX_SYMBOL_BYTES = 65_535;

/** A received parity symbol: its row, its bytes, and the parity of the sources' lengths. */
export interface ParitySymbol {
  readonly row: number;
  readonly symbol: Uint8Array;
  readonly lengthParity: number;
}

/** The coefficient of source `i` in parity row `j`: α^(j·i). */
export function coefficient(j: number, i: number): number {
  return alphaPow(j * i);
}

/** The product of a two-byte symbol (a length) by `c`, byte by byte. */
function mul16(c: number, value: number): number {
  return (mul(c, value >>> 8) << 8) | mul(c, value & 0xff);
}

/**
 * An encoder and decoder with reusable scratch memory (one per protocol instance; not shared across
 * concurrent users). The sources are copied once into word-aligned rows; everything else runs on 32-bit
 * words.
 */
export class ReedSolomon {
  #words = new Uint32Array(0);
  #bytes = new Uint8Array(0);
  /** Where the parity rows of the last `encode` start, and their geometry. */
  #parityRow = 0;
  #rowWords = 0;
  #symbolBytes = 0;
  readonly #lengthParity = new Uint16Array(MAX_M);

  /**
   * Computes the `m` parity symbols of `sources` (k = sources.length, 1 ≤ k ≤ MAX_K). Returns their
   * length (the longest source's); `parity(j)` and `lengthParity(j)` give them until the next call.
   */
  encode(sources: ReadonlyArray<Uint8Array>, m: number): number {
    const k = sources.length;
    checkShape(k, m);
    let longest = 0;
    for (let i = 0; i < k; i++) longest = Math.max(longest, sources[i]!.length);
    if (longest > MAX_SYMBOL_BYTES) throw new RangeError(`a source symbol of ${longest} bytes exceeds ${MAX_SYMBOL_BYTES}`);
    const rowWords = (longest + 3) >>> 2;
    this.#reserve((k + m) * rowWords);
    this.#load(sources, k, rowWords);
    const words = this.#words;
    const first = k * rowWords;
    if (m === 1) xorRows(words, k, rowWords, first);
    else xorAndAlphaRows(words, k, rowWords, first, first + rowWords);
    for (let j = 2; j < m; j++) {
      words.fill(0, first + j * rowWords, first + (j + 1) * rowWords);
      hornerRow(words, k, rowWords, j, first + j * rowWords);
    }
    for (let j = 0; j < m; j++) {
      let length = 0;
      for (let i = 0; i < k; i++) length ^= mul16(coefficient(j, i), sources[i]!.length);
      this.#lengthParity[j] = length;
    }
    this.#parityRow = k;
    this.#rowWords = rowWords;
    this.#symbolBytes = longest;
    return longest;
  }

  /** Parity symbol `j` of the last `encode` (a view of scratch memory). */
  parity(j: number): Uint8Array {
    const start = (this.#parityRow + j) * this.#rowWords * 4;
    return this.#bytes.subarray(start, start + this.#symbolBytes);
  }

  /** The length parity of row `j` of the last `encode`. */
  lengthParity(j: number): number {
    return this.#lengthParity[j]!;
  }

  /**
   * Rebuilds the missing sources of a block: `sources[i]` is source i or undefined when missing
   * (k = sources.length), `parity` the parity symbols received (distinct rows below MAX_M). Returns
   * an array with a fresh, exact-length symbol at each missing index (empty when nothing is missing),
   * or undefined when more sources are missing than parity symbols were given, or when the symbols do
   * not fit together (lengths that disagree).
   */
  decode(sources: ReadonlyArray<Uint8Array | undefined>, parity: ReadonlyArray<ParitySymbol>): Array<Uint8Array | undefined> | undefined {
    const k = sources.length;
    const missing: number[] = [];
    for (let i = 0; i < k; i++) if (sources[i] === undefined) missing.push(i);
    const rebuilt: Array<Uint8Array | undefined> = new Array(k);
    const e = missing.length;
    if (e === 0) return rebuilt;
    if (e > parity.length || k > MAX_K) return undefined;
    const symbolBytes = parity[0]!.symbol.length;
    for (let t = 0; t < e; t++) {
      const p = parity[t]!;
      if (p.symbol.length !== symbolBytes || p.row < 0 || p.row >= MAX_M) return undefined;
      for (let u = 0; u < t; u++) if (parity[u]!.row === p.row) return undefined;
    }
    if (symbolBytes > MAX_SYMBOL_BYTES) return undefined;
    for (const source of sources) if (source !== undefined && source.length > symbolBytes) return undefined;

    const rowWords = (symbolBytes + 3) >>> 2;
    this.#reserve((k + e) * rowWords);
    this.#load(sources, k, rowWords);
    const words = this.#words;
    const bytes = this.#bytes;
    const table = MUL_TABLE;
    // Syndromes: each used parity row minus the present sources' share leaves Σ over the missing ones.
    const syndromes = k * rowWords;
    const lengthSyndromes: number[] = [];
    for (let t = 0; t < e; t++) {
      const { row, symbol, lengthParity } = parity[t]!;
      const offset = syndromes + t * rowWords;
      words.fill(0, offset, offset + rowWords);
      bytes.set(symbol, offset * 4);
      hornerRow(words, k, rowWords, row, offset);
      let lengths = lengthParity;
      for (let i = 0; i < k; i++) {
        const source = sources[i];
        if (source !== undefined) lengths ^= mul16(coefficient(row, i), source.length);
      }
      lengthSyndromes.push(lengths);
    }
    // Solve A·x = syndromes with A[t][u] = α^(row_t · missing_u).
    const a = new Uint8Array(e * e);
    for (let t = 0; t < e; t++) for (let u = 0; u < e; u++) a[t * e + u] = coefficient(parity[t]!.row, missing[u]!);
    const inverse = invertMatrix(a, e);
    if (inverse === undefined) return undefined;
    for (let u = 0; u < e; u++) {
      let length = 0;
      for (let t = 0; t < e; t++) length ^= mul16(inverse[u * e + t]!, lengthSyndromes[t]!);
      if (length > symbolBytes) return undefined;
      // The missing source's row is zero (it was loaded as missing): accumulate into it.
      const target = missing[u]! * rowWords;
      for (let t = 0; t < e; t++) {
        const c = inverse[u * e + t]!;
        if (c === 0) continue;
        const offset = syndromes + t * rowWords;
        if (c === 1) {
          for (let w = 0; w < rowWords; w++) words[target + w] = words[target + w]! ^ words[offset + w]!;
        } else {
          // A general constant: one lookup a byte in its row of the product table.
          const row = c << 8;
          const from = offset * 4;
          const to = target * 4;
          for (let b = 0; b < length; b++) bytes[to + b] = bytes[to + b]! ^ table[row | bytes[from + b]!]!;
        }
      }
      rebuilt[missing[u]!] = bytes.slice(target * 4, target * 4 + length);
    }
    return rebuilt;
  }

  #reserve(words: number): void {
    if (this.#words.length >= words) return;
    const size = Math.max(words, this.#words.length * 2);
    this.#words = new Uint32Array(size);
    this.#bytes = new Uint8Array(this.#words.buffer);
  }

  // Copies each source into its word-aligned row, zero-padded; a missing one becomes a zero row.
  #load(sources: ReadonlyArray<Uint8Array | undefined>, k: number, rowWords: number): void {
    const bytes = this.#bytes;
    const rowBytes = rowWords * 4;
    for (let i = 0; i < k; i++) {
      const source = sources[i];
      const start = i * rowBytes;
      const length = source === undefined ? 0 : source.length;
      if (source !== undefined) bytes.set(source, start);
      bytes.fill(0, start + length, start + rowBytes);
    }
  }
}

function checkShape(k: number, m: number): void {
  if (!Number.isInteger(k) || k < 1 || k > MAX_K) throw new RangeError(`k must be from 1 to ${MAX_K}, got ${k}`);
  if (!Number.isInteger(m) || m < 1 || m > MAX_M) throw new RangeError(`m must be from 1 to ${MAX_M}, got ${m}`);
}

// Row 0 alone: the XOR of the k source rows into `out`.
function xorRows(words: Uint32Array, k: number, rowWords: number, out: number): void {
  for (let w = 0; w < rowWords; w++) {
    let acc = 0;
    for (let i = w; i < k * rowWords; i += rowWords) acc ^= words[i]!;
    words[out + w] = acc;
  }
}

// Rows 0 and 1 in one pass over the sources (the default m = 2): XOR, and Horner's rule with α.
function xorAndAlphaRows(words: Uint32Array, k: number, rowWords: number, out0: number, out1: number): void {
  const last = (k - 1) * rowWords;
  for (let w = 0; w < rowWords; w++) {
    let a0 = 0;
    let a1 = 0;
    for (let i = last + w; i >= 0; i -= rowWords) {
      const x = words[i]!;
      a0 ^= x;
      a1 = ((a1 & 0x7f7f7f7f) << 1) ^ (((a1 >>> 7) & 0x01010101) * REDUCE) ^ x;
    }
    words[out0 + w] = a0;
    words[out1 + w] = a1;
  }
}

// Adds parity row `row` (0, 1 or 2) of the k source rows into `out` (XOR), by Horner's rule with α^row.
function hornerRow(words: Uint32Array, k: number, rowWords: number, row: number, out: number): void {
  const last = (k - 1) * rowWords;
  for (let w = 0; w < rowWords; w++) {
    let acc = 0;
    if (row === 0) {
      for (let i = last + w; i >= 0; i -= rowWords) acc ^= words[i]!;
    } else if (row === 1) {
      for (let i = last + w; i >= 0; i -= rowWords) acc = ((acc & 0x7f7f7f7f) << 1) ^ (((acc >>> 7) & 0x01010101) * REDUCE) ^ words[i]!;
    } else {
      for (let i = last + w; i >= 0; i -= rowWords) {
        acc = ((acc & 0x7f7f7f7f) << 1) ^ (((acc >>> 7) & 0x01010101) * REDUCE);
        acc = ((acc & 0x7f7f7f7f) << 1) ^ (((acc >>> 7) & 0x01010101) * REDUCE) ^ words[i]!;
      }
    }
    words[out + w] = words[out + w]! ^ acc;
  }
}
