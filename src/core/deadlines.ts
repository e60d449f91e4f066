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

  /** The item of the earliest deadline, or undefined when empty. */
  first(): T | undefined {
    return this.#at.length === 0 ? undefined : this.#items[0];
  }

  /** Removes the entry of the earliest deadline (nothing when empty). */
  dropFirst(): void {
    if (this.#at.length > 0) this.#pop();
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

/** Something with deadlines of its own in a {@link Timetable}: the earliest one it is queued for. */
export interface Scheduled {
  /** The deadline of this item's live entry in its timetable (`Infinity`: none). Owned by the timetable. */
  queuedAt: number;
}

/**
 * The deadlines of many items (streams, say), each with deadlines of its own that move often: an item
 * is queued once for its earliest one, and moving a deadline later costs nothing — when its entry
 * comes due early, the owner finds nothing due and queues it again for what is left. So a deadline
 * that is set on every message and met every time (an acknowledgement, a retransmission timeout) costs
 * a number written, not a heap operation.
 */
export class Timetable<T extends Scheduled> {
  readonly #heap = new Deadlines<T>();

  /** The earliest deadline of any item (`Infinity`: none). */
  next(): number {
    return this.#heap.next();
  }

  /** `item` has a deadline at `at`: queue it unless it is queued for that time or earlier. */
  schedule(item: T, at: number): void {
    if (at >= item.queuedAt) return;
    item.queuedAt = at;
    this.#heap.push(at, item);
  }

  /**
   * The next item whose queued time is `now` or earlier, unqueued (the owner handles what is due and
   * schedules it again for what remains); undefined when none is.
   */
  popDue(now: number): T | undefined {
    for (;;) {
      const at = this.#heap.next();
      const item = this.#heap.popDue(now);
      if (item === undefined) return undefined;
      // An entry for a time the item is no longer queued for was superseded by an earlier one.
      if (item.queuedAt !== at) continue;
      item.queuedAt = Number.POSITIVE_INFINITY;
      return item;
    }
  }

  clear(): void {
    this.#heap.clear();
  }
}
