/**
 * Work that finishes out of order, handled in the order it started: how datagrams keep their order
 * through an asynchronous crypto provider. Each entry's work runs at once (WebCrypto spreads it over
 * threads); its result is handed on only once every earlier entry's has been. Bounded: past `limit`
 * entries in flight, `push` refuses.
 */
export class OrderedQueue {
  readonly #entries: Array<{ settled: boolean; finish: () => void }> = [];
  readonly #limit: number;
  readonly #fault: (error: unknown) => void;
  readonly #idle = new Set<() => void>();

  /** @param fault where an exception of a `then` callback goes (never into the runtime). */
  constructor(limit: number, fault: (error: unknown) => void) {
    this.#limit = limit;
    this.#fault = fault;
  }

  /** Entries whose work or turn is still to come. */
  get size(): number {
    return this.#entries.length;
  }

  /**
   * Starts `work`; once it and every entry before it are done, calls `then` with its result (or
   * `failed` with what it threw). Returns false, doing nothing, when the queue is full.
   */
  push<T>(work: Promise<T>, then: (result: T) => void, failed: (error: unknown) => void): boolean {
    if (this.#entries.length >= this.#limit) return false;
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    const entry = {
      settled: false,
      finish: () => (outcome!.ok ? then(outcome!.value) : failed(outcome!.error)),
    };
    this.#entries.push(entry);
    work.then(
      (value) => {
        outcome = { ok: true, value };
        entry.settled = true;
        this.#drain();
      },
      (error: unknown) => {
        outcome = { ok: false, error };
        entry.settled = true;
        this.#drain();
      },
    );
    return true;
  }

  /** Resolves once nothing is in flight. */
  idle(): Promise<void> {
    if (this.#entries.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.add(resolve));
  }

  #drain(): void {
    const entries = this.#entries;
    while (entries.length > 0 && entries[0]!.settled) {
      const entry = entries.shift()!;
      try {
        entry.finish();
      } catch (error) {
        this.#fault(error);
      }
    }
    if (entries.length === 0) {
      for (const resolve of this.#idle) resolve();
      this.#idle.clear();
    }
  }
}
