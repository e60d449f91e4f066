/**
 * Arithmetic in GF(2^8) with the primitive polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d), the field of
 * RFC 5510's Reed-Solomon codes, with α = 2 as generator. Addition is XOR. Scalar products go through
 * log/exp tables; products of a packed word of four field elements (one per byte) by a constant are
 * done four at a time (SWAR), which is what makes encoding fast in JavaScript.
 */

/** The reduction polynomial without its x^8 term. */
export const POLYNOMIAL = 0x1d;

/** EXP[i] = α^i, for i in [0, 510): doubled so that EXP[LOG[a] + LOG[b]] needs no reduction mod 255. */
export const EXP: Uint8Array = new Uint8Array(510);
/** LOG[a] = i with α^i = a, for a ≠ 0 (LOG[0] is unused). */
export const LOG: Uint8Array = new Uint8Array(256);

{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    EXP[i + 255] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x100 | POLYNOMIAL;
  }
}

/** MUL_TABLE[(a << 8) | b] = a · b: 64 KiB, for loops that multiply many bytes by one constant. */
export const MUL_TABLE: Uint8Array = new Uint8Array(65_536);
for (let a = 1; a < 256; a++) for (let b = 1; b < 256; b++) MUL_TABLE[(a << 8) | b] = EXP[LOG[a]! + LOG[b]!]!;

/** a · b. */
export function mul(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : EXP[LOG[a]! + LOG[b]!]!;
}

/** a / b, for b ≠ 0. */
export function div(a: number, b: number): number {
  if (b === 0) throw new RangeError("division by zero in GF(2^8)");
  return a === 0 ? 0 : EXP[LOG[a]! + 255 - LOG[b]!]!;
}

/** 1 / a, for a ≠ 0. */
export function inv(a: number): number {
  return div(1, a);
}

/** α^n, for any n ≥ 0. */
export function alphaPow(n: number): number {
  return EXP[n % 255]!;
}

/** Each byte of the packed word `x` multiplied by α (= 2): shift left, and reduce the bytes that overflowed. */
export function mul2Word(x: number): number {
  return (((x & 0x7f7f7f7f) << 1) ^ (((x >>> 7) & 0x01010101) * POLYNOMIAL)) >>> 0;
}

/** Each byte of the packed word `x` multiplied by the constant `c`: the sum of x·2^b over the set bits b of c. */
export function mulWord(x: number, c: number): number {
  let product = 0;
  while (c !== 0) {
    if (c & 1) product ^= x;
    c >>>= 1;
    if (c !== 0) x = ((x & 0x7f7f7f7f) << 1) ^ (((x >>> 7) & 0x01010101) * POLYNOMIAL);
  }
  return product >>> 0;
}

/**
 * Inverts the n×n matrix `matrix` (row-major, n ≤ 255) by Gauss-Jordan elimination. Returns undefined
 * when it is singular.
 */
export function invertMatrix(matrix: ArrayLike<number>, n: number): Uint8Array | undefined {
  const a = Uint8Array.from(matrix);
  const result = new Uint8Array(n * n);
  for (let i = 0; i < n; i++) result[i * n + i] = 1;
  for (let col = 0; col < n; col++) {
    let pivot = col;
    while (pivot < n && a[pivot * n + col] === 0) pivot++;
    if (pivot === n) return undefined;
    if (pivot !== col) {
      swapRows(a, n, pivot, col);
      swapRows(result, n, pivot, col);
    }
    const scale = inv(a[col * n + col]!);
    for (let j = 0; j < n; j++) {
      a[col * n + j] = mul(a[col * n + j]!, scale);
      result[col * n + j] = mul(result[col * n + j]!, scale);
    }
    for (let row = 0; row < n; row++) {
      const factor = a[row * n + col]!;
      if (row === col || factor === 0) continue;
      for (let j = 0; j < n; j++) {
        a[row * n + j] = a[row * n + j]! ^ mul(factor, a[col * n + j]!);
        result[row * n + j] = result[row * n + j]! ^ mul(factor, result[col * n + j]!);
      }
    }
  }
  return result;
}

function swapRows(a: Uint8Array, n: number, r1: number, r2: number): void {
  for (let j = 0; j < n; j++) {
    const t = a[r1 * n + j]!;
    a[r1 * n + j] = a[r2 * n + j]!;
    a[r2 * n + j] = t;
  }
}
