import { BlazeError } from "../errors.ts";
import type { AbortSignalLike } from "../web.ts";
import { Deadlines } from "./deadlines.ts";
import type { TimedUnit } from "./driver.ts";

/** One call waiting for an answer: its promise's ends, its deadline, and what its owner keeps with it. */
interface Entry<T, M> {
  readonly resolve: (value: T) => void;
  readonly reject: (error: BlazeError) => void;
  readonly deadline: number;
  readonly signal: AbortSignalLike | undefined;
  readonly onAbort: (() => void) | undefined;
  readonly timeoutMessage: string;
  readonly meta: M;
}

/**
 * The calls of a level that wait for an answer from the network (requests, queue messages, map
 * writes, locks), in one table: each resolves with its answer, or rejects with `TIMEOUT` at its
 * deadline, `ABORTED` when its signal aborts, or whatever error its owner fails it with — and is
 * forgotten, with its abort listener, however it ends. Deadlines are the driver's: no timer per call.
 */
export class PendingCalls<T, M = undefined> implements TimedUnit {
  readonly #entries = new Map<number, Entry<T, M>>();
  readonly #deadlines = new Deadlines<number>();
  #nextId = 1;

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Opens a call: returns its id (unique in this table) and its promise. `timeoutMs`: from `now`;
   * `what` names the call in its TIMEOUT and ABORTED errors.
   */
  open(now: number, timeoutMs: number, signal: AbortSignalLike | undefined, what: string, meta: M): { readonly id: number; readonly promise: Promise<T> } {
    const id = this.#nextId++;
    if (signal?.aborted) return { id, promise: Promise.reject(new BlazeError("ABORTED", `${what} was aborted`, { cause: signal.reason })) };
    const promise = new Promise<T>((resolve, reject) => {
      const onAbort = signal === undefined ? undefined : () => this.fail(id, new BlazeError("ABORTED", `${what} was aborted`, { cause: signal.reason }));
      const deadline = now + timeoutMs;
      this.#entries.set(id, { resolve, reject, deadline, signal, onAbort, timeoutMessage: `${what}: no answer within ${timeoutMs} ms`, meta });
      this.#deadlines.push(deadline, id);
      signal?.addEventListener("abort", onAbort!, { once: true });
    });
    return { id, promise };
  }

  /** What the owner keeps with call `id` (undefined once it ended). */
  meta(id: number): M | undefined {
    return this.#entries.get(id)?.meta;
  }

  /** The calls still open, with what their owner keeps. */
  *entries(): IterableIterator<[number, M]> {
    for (const [id, entry] of this.#entries) yield [id, entry.meta];
  }

  /** Ends call `id` with its answer; false when it had ended already. */
  settle(id: number, value: T): boolean {
    const entry = this.#take(id);
    entry?.resolve(value);
    return entry !== undefined;
  }

  /** Ends call `id` with an error; false when it had ended already. */
  fail(id: number, error: BlazeError): boolean {
    const entry = this.#take(id);
    entry?.reject(error);
    return entry !== undefined;
  }

  /** Ends every open call with `error`. */
  failAll(error: BlazeError): void {
    for (const id of [...this.#entries.keys()]) this.fail(id, error);
    this.#deadlines.clear();
  }

  pollTimeout(): number {
    // A call that ended before its deadline leaves its entry in the heap: dropped here once it is the
    // earliest, or every answered call would wake the driver for nothing when its deadline came.
    const deadlines = this.#deadlines;
    for (let id = deadlines.first(); id !== undefined && !this.#entries.has(id); id = deadlines.first()) deadlines.dropFirst();
    return deadlines.next();
  }

  handleTimeout(now: number): void {
    for (let id = this.#deadlines.popDue(now); id !== undefined; id = this.#deadlines.popDue(now)) {
      const entry = this.#entries.get(id);
      if (entry !== undefined && entry.deadline <= now) this.fail(id, new BlazeError("TIMEOUT", entry.timeoutMessage));
    }
  }

  #take(id: number): Entry<T, M> | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    this.#entries.delete(id);
    if (entry.onAbort !== undefined) entry.signal?.removeEventListener("abort", entry.onAbort);
    return entry;
  }
}
