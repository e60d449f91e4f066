import { BlazeError } from "../errors.ts";

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

/**
 * An async iterator fed by pushes: how listeners become `for await` loops. Ends when `close` is called
 * or the signal aborts; items pushed while nobody waits are buffered.
 */
export class PushIterator<T> implements AsyncIterableIterator<T> {
  readonly #buffer: T[] = [];
  readonly #waiting: Array<(result: IteratorResult<T>) => void> = [];
  #done = false;

  constructor(private readonly onClose: () => void) {}

  push(item: T): void {
    if (this.#done) return;
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) waiter({ value: item, done: false });
    else this.#buffer.push(item);
  }

  /** Ends the iteration; messages still buffered are dropped, as a finished iterator yields nothing more. */
  close(): void {
    if (this.#done) return;
    this.#done = true;
    this.#buffer.length = 0;
    this.onClose();
    for (const waiter of this.#waiting.splice(0)) waiter({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#buffer.length > 0) return Promise.resolve({ value: this.#buffer.shift()!, done: false });
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
