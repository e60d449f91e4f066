import { BlazeError } from "../errors.ts";
import type { AbortSignalLike } from "../web.ts";

/**
 * A small typed event emitter. Listener exceptions never reach the emitter's caller: they are passed
 * to `onListenerError` (which a channel turns into an `error` event with stage "listener").
 */
export class Emitter<Events extends { [K in keyof Events]: unknown }> {
  readonly #listeners = new Map<keyof Events, Set<(event: never) => void>>();

  constructor(private readonly onListenerError: (error: BlazeError, type: keyof Events) => void) {}

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(type: K, listener: (event: Events[K]) => void): () => void {
    let set = this.#listeners.get(type);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    set.add(listener as (event: never) => void);
    return () => this.off(type, listener);
  }

  off<K extends keyof Events>(type: K, listener: (event: Events[K]) => void): void {
    this.#listeners.get(type)?.delete(listener as (event: never) => void);
  }

  /** True when `type` has a listener (an event nobody listens to need not be made). */
  listens(type: keyof Events): boolean {
    const set = this.#listeners.get(type);
    return set !== undefined && set.size > 0;
  }

  /** Calls every listener of `type`; returns false when there was none. */
  emit<K extends keyof Events>(type: K, event: Events[K]): boolean {
    const set = this.#listeners.get(type);
    if (set === undefined || set.size === 0) return false;
    for (const listener of set) {
      try {
        (listener as (event: Events[K]) => void)(event);
      } catch (error) {
        this.onListenerError(
          error instanceof BlazeError ? error : new BlazeError("LISTENER_ERROR", `a "${String(type)}" listener threw`, { cause: error }),
          type,
        );
      }
    }
    return true;
  }
}

/** How an async iterator of messages (`subscribe`, `inbox`, `changes`) bounds what waits unread. */
export interface SubscribeOptions {
  /** The iteration ends (as after `break`) when this signal aborts. */
  readonly signal?: AbortSignalLike;
  /** Most messages waiting unread. Default 10,000. */
  readonly highWaterMark?: number;
  /**
   * What happens to a message that finds `highWaterMark` messages waiting: `"end"` (the default) stops
   * the subscription — the messages waiting are still read, then the iteration throws `OVERFLOW`, so
   * nothing is lost unseen; `"drop-oldest"` drops the oldest waiting message to make room, counting it
   * in the iterator's `dropped` (for feeds where only the latest values matter).
   */
  readonly overflow?: "end" | "drop-oldest";
}

/** An async iterator of messages with the bound of {@link SubscribeOptions}. */
export interface Subscription<T> extends AsyncIterableIterator<T> {
  /** Messages dropped to make room (with `overflow: "drop-oldest"`). */
  readonly dropped: number;
}

/** Messages waiting unread at most, by default. */
export const DEFAULT_HIGH_WATER_MARK = 10_000;

/**
 * An async iterator fed by pushes: how listeners become `for await` loops. Ends when `close` is called
 * or the signal aborts; items pushed while nobody waits are buffered, up to the high-water mark.
 */
export class PushIterator<T> implements Subscription<T> {
  readonly #buffer: T[] = [];
  readonly #waiting: Array<(result: IteratorResult<T>) => void> = [];
  #onClose: () => void;
  readonly #highWaterMark: number;
  readonly #overflow: "end" | "drop-oldest";
  #done = false;
  #failure: BlazeError | undefined;
  #dropped = 0;

  /** `what` names the subscription in its OVERFLOW error, e.g. `topic "prices"`. */
  constructor(
    onClose: () => void,
    options: SubscribeOptions = {},
    private readonly what = "a subscription",
  ) {
    this.#onClose = onClose;
    const highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    if (!Number.isSafeInteger(highWaterMark) || highWaterMark < 1) {
      throw new BlazeError("INVALID_ARGUMENT", `highWaterMark is a whole number of messages, at least 1, not ${highWaterMark}`, { path: ["highWaterMark"] });
    }
    if (options.overflow !== undefined && options.overflow !== "end" && options.overflow !== "drop-oldest") {
      throw new BlazeError("INVALID_ARGUMENT", `overflow is "end" or "drop-oldest", not ${JSON.stringify(options.overflow)}`, { path: ["overflow"] });
    }
    this.#highWaterMark = highWaterMark;
    this.#overflow = options.overflow ?? "end";
    const signal = options.signal;
    if (signal === undefined) return;
    const onAbort = () => this.close();
    this.#onClose = () => {
      signal.removeEventListener("abort", onAbort);
      onClose();
    };
    if (signal.aborted) this.close();
    else signal.addEventListener("abort", onAbort, { once: true });
  }

  get dropped(): number {
    return this.#dropped;
  }

  /** True once it takes no more items (closed, aborted or overflowed). */
  get ended(): boolean {
    return this.#done;
  }

  push(item: T): void {
    if (this.#done) return;
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) {
      waiter({ value: item, done: false });
      return;
    }
    if (this.#buffer.length >= this.#highWaterMark) {
      if (this.#overflow === "drop-oldest") {
        this.#buffer.shift();
        this.#dropped++;
      } else {
        // Stop taking messages; what is held is still read, then the reader learns what happened.
        this.#failure = new BlazeError("OVERFLOW", `${this.what}: ${this.#highWaterMark} messages waited unread (the highWaterMark); the subscription ended`);
        this.#done = true;
        this.#onClose();
        return;
      }
    }
    this.#buffer.push(item);
  }

  /** Ends the iteration; messages still buffered are dropped, as a finished iterator yields nothing more. */
  close(): void {
    if (this.#done) return;
    this.#done = true;
    this.#buffer.length = 0;
    this.#onClose();
    for (const resolve of this.#waiting.splice(0)) resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#buffer.length > 0) return Promise.resolve({ value: this.#buffer.shift()!, done: false });
    const failure = this.#failure;
    if (failure !== undefined) {
      this.#failure = undefined;
      return Promise.reject(failure);
    }
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.#failure = undefined;
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
