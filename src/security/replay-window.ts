/**
 * A sliding replay window over one sequence of counters (RFC 6479, as IPsec and WireGuard keep): the
 * highest counter accepted, and a bitmap of which of the `size` counters below it were seen. A counter
 * is new when it is above the highest, or within the window and not seen; anything older is refused,
 * since it can no longer be told from a replay. Memory is fixed: `size` bits.
 */
export class ReplayWindow {
  readonly #bits: Uint32Array;
  readonly #size: number;
  #highest = 0;

  /** @param size counters remembered below the highest; a multiple of 32. */
  constructor(size: number) {
    this.#size = size;
    this.#bits = new Uint32Array(size / 32 + 1);
  }

  get highest(): number {
    return this.#highest;
  }

  /** True when `n` (1 or more) may be accepted: not seen, not too old. Changes nothing. */
  fresh(n: number): boolean {
    if (n > this.#highest) return true;
    if (n + this.#size <= this.#highest) return false;
    return (this.#bits[this.#word(n)]! & bit(n)) === 0;
  }

  /** Marks `n` seen; false (and nothing marked) when it is not fresh. */
  accept(n: number): boolean {
    if (!this.fresh(n)) return false;
    if (n > this.#highest) {
      const words = this.#bits.length;
      const from = Math.floor(this.#highest / 32);
      const to = Math.floor(n / 32);
      // The words the window slides over start empty; a jump past the whole window clears it all.
      if (to - from >= words) this.#bits.fill(0);
      else for (let w = from + 1; w <= to; w++) this.#bits[w % words] = 0;
      this.#highest = n;
    }
    this.#bits[this.#word(n)]! |= bit(n);
    return true;
  }

  #word(n: number): number {
    return Math.floor(n / 32) % this.#bits.length;
  }
}

function bit(n: number): number {
  return 1 << n % 32;
}
