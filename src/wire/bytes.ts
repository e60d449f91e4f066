/** Byte-array helpers shared by the levels: joining arrays, comparing two. */

/** `a` followed by `b`, in a new array. */
export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** `parts` one after another, in a new array of `length` bytes (their lengths summed). */
export function joinBytes(parts: readonly Uint8Array[], length: number): Uint8Array {
  const joined = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** True when `a` and `b` hold the same bytes (stops at the first difference: not for secrets). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when `bytes[start, end)` holds exactly `expected`. */
export function sameBytes(bytes: Uint8Array, start: number, end: number, expected: Uint8Array): boolean {
  if (end - start !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) if (bytes[start + i] !== expected[i]) return false;
  return true;
}

/**
 * Hands out buffers carved one after another from larger regions, and never hands out a byte twice: a
 * buffer stays valid as long as anyone keeps it (a datagram the transport still holds, a queued copy),
 * a small one costs no allocation of its own, and a region is freed once nothing refers to any buffer
 * in it. A buffer larger than a sixteenth of a region gets one of its own.
 */
export class Slab {
  readonly #regionBytes: number;
  #region = new Uint8Array(0);
  #used = 0;

  constructor(regionBytes: number) {
    this.#regionBytes = regionBytes;
  }

  /** `length` zeroed bytes. */
  take(length: number): Uint8Array {
    if (length > this.#regionBytes / 16) return new Uint8Array(length);
    if (this.#used + length > this.#region.length) {
      this.#region = new Uint8Array(this.#regionBytes);
      this.#used = 0;
    }
    const taken = this.#region.subarray(this.#used, this.#used + length);
    this.#used += length;
    return taken;
  }

  /** A copy of `bytes`. */
  copy(bytes: Uint8Array): Uint8Array {
    const copy = this.take(bytes.length);
    copy.set(bytes);
    return copy;
  }
}
