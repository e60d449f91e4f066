/**
 * A min-heap of deadlines on the monotonic clock. Entries are not removed when they stop mattering
 * (an entry rewritten, a lock released, a stream gone): the owner checks each one as it comes due,
 * which keeps every operation O(log n) without an index.
 */
export class Deadlines<T> {
  readonly #at: number[] = [];
  readonly #items: T[] = [];

  get size(): number {
    return this.#at.length;
  }

  /** The earliest deadline, or `Infinity` when empty. */
  next(): number {
    return this.#at.length === 0 ? Number.POSITIVE_INFINITY : this.#at[0]!;
  }

  push(at: number, item: T): void {
    const at_ = this.#at;
    const items = this.#items;
    let i = at_.length;
    at_.push(at);
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (at_[parent]! <= at) break;
      at_[i] = at_[parent]!;
      items[i] = items[parent]!;
      i = parent;
    }
    at_[i] = at;
    items[i] = item;
  }

  /** Removes and returns the earliest item due at `now` or earlier; undefined when none is. */
  popDue(now: number): T | undefined {
    return this.#at.length > 0 && this.#at[0]! <= now ? this.#pop() : undefined;
  }

  clear(): void {
    this.#at.length = 0;
    this.#items.length = 0;
  }

  #pop(): T {
    const at = this.#at;
    const items = this.#items;
    const top = items[0]!;
    const lastAt = at.pop()!;
    const lastItem = items.pop()!;
    const n = at.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= n) break;
        const right = left + 1;
        const child = right < n && at[right]! < at[left]! ? right : left;
        if (at[child]! >= lastAt) break;
        at[i] = at[child]!;
        items[i] = items[child]!;
        i = child;
      }
      at[i] = lastAt;
      items[i] = lastItem;
    }
    return top;
  }
}
