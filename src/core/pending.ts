import { BlazeError } from "../errors.ts";
import type { AbortSignalLike } from "../web.ts";
import { Deadlines } from "./deadlines.ts";
import type { TimedUnit } from "./driver.ts";

/**
 * One call waiting for an answer: its promise's ends and what its owner keeps with it. Its deadline is
 * the table's heap's alone (a time kept here too would be a number boxed on the heap for every call).
 */
interface Entry<T, M> {
  readonly id: number;
  readonly resolve: (value: T) => void;
  readonly reject: (error: BlazeError) => void;
  readonly signal: AbortSignalLike | undefined;
  readonly onAbort: (() => void) | undefined;
  /**
   * What the call is and how long it may take: its TIMEOUT error's message, written only if it times out
   * (undefined: the table's `what` names it from its meta, then).
   */
  readonly what: string | undefined;
  readonly timeoutMs: number;
  readonly meta: M;
}

/** What an owner may tell a table of calls when it makes it. */
export interface PendingCallsOptions<M> {
  /**
   * Told of every open call that fails (times out, is aborted, or is failed by its owner or by
   * failAll), with what its owner keeps with it, as its promise rejects (before any reaction to that
   * runs): an owner that must undo something then needs no reaction of its own on every call's promise.
   * Default: nothing.
   */
  readonly onFail?: (meta: M, error: BlazeError) => void;
  /**
   * Names a call opened without a `what` in its TIMEOUT and ABORTED errors, from what its owner keeps
   * with it: the name is made only when an error needs it, not for every call. Default: "a call".
   */
  readonly what?: (meta: M) => string;
}

/**
 * The calls of a level that wait for an answer from the network (requests, queue messages, map
 * writes, locks), in one table: each resolves with its answer, or rejects with `TIMEOUT` at its
 * deadline, `ABORTED` when its signal aborts, or whatever error its owner fails it with — and is
 * forgotten, with its abort listener, however it ends. Deadlines are the driver's: no timer per call.
 */
export class PendingCalls<T, M = undefined> implements TimedUnit {
  readonly #entries = new OpenCalls<Entry<T, M>>();
  readonly #deadlines = new Deadlines<number>();
  #nextId = 1;
  readonly #onFail: ((meta: M, error: BlazeError) => void) | undefined;
  readonly #what: ((meta: M) => string) | undefined;

  constructor(options: PendingCallsOptions<M> = {}) {
    this.#onFail = options.onFail;
    this.#what = options.what;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Opens a call: returns its id (unique in this table) and its promise. `timeoutMs`: from `now`;
   * `what` names the call in its TIMEOUT and ABORTED errors (undefined: the table's `what` option does,
   * from `meta`). A call whose signal aborted already is rejected at once, never open.
   */
  open(now: number, timeoutMs: number, signal: AbortSignalLike | undefined, what: string | undefined, meta: M): { readonly id: number; readonly promise: Promise<T> } {
    const id = this.#nextId++;
    if (signal?.aborted) return { id, promise: Promise.reject(new BlazeError("ABORTED", `${this.#name(what, meta)} was aborted`, { cause: signal.reason })) };
    // The promise's ends are handed out by one executor made once, and the abort listener is made apart
    // (only for a call with a signal): no closure, nor the scope it keeps, made for every call.
    const promise = new Promise<T>(takeEnds);
    const resolve = takenResolve as (value: T) => void;
    const reject = takenReject;
    const onAbort = signal === undefined ? undefined : abortListener(this, id, this.#name(what, meta), signal);
    this.#entries.add({ id, resolve, reject, signal, onAbort, what, timeoutMs, meta });
    this.#deadlines.push(now + timeoutMs, id);
    if (onAbort !== undefined) signal!.addEventListener("abort", onAbort, { once: true });
    return { id, promise };
  }

  /** What the owner keeps with call `id` (undefined once it ended). */
  meta(id: number): M | undefined {
    return this.#entries.get(id)?.meta;
  }

  /** The calls still open, with what their owner keeps, in the order they were opened. */
  *entries(): IterableIterator<[number, M]> {
    for (const entry of this.#entries.inOrder()) yield [entry.id, entry.meta];
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
    if (entry === undefined) return false;
    entry.reject(error);
    this.#onFail?.(entry.meta, error);
    return true;
  }

  /** Ends every open call with `error`. */
  failAll(error: BlazeError): void {
    for (const [id] of [...this.entries()]) this.fail(id, error);
    this.#deadlines.clear();
  }

  pollTimeout(): number {
    // A call that ended before its deadline leaves its entry in the heap: dropped here once it is the
    // earliest, or every answered call would wake the driver for nothing when its deadline came.
    const deadlines = this.#deadlines;
    for (let id = deadlines.first(); id !== undefined && this.#entries.get(id) === undefined; id = deadlines.first()) deadlines.dropFirst();
    return deadlines.next();
  }

  handleTimeout(now: number): void {
    // Each call's id is in the heap once, at its deadline: one popped is due (if it is still open).
    for (let id = this.#deadlines.popDue(now); id !== undefined; id = this.#deadlines.popDue(now)) {
      const entry = this.#entries.get(id);
      if (entry !== undefined) this.fail(id, new BlazeError("TIMEOUT", `${this.#name(entry.what, entry.meta)}: no answer within ${entry.timeoutMs} ms`));
    }
  }

  #name(what: string | undefined, meta: M): string {
    return what ?? this.#what?.(meta) ?? "a call";
  }

  #take(id: number): Entry<T, M> | undefined {
    const entry = this.#entries.take(id);
    if (entry === undefined) return undefined;
    if (entry.onAbort !== undefined) entry.signal?.removeEventListener("abort", entry.onAbort);
    return entry;
  }
}

/** The ring's size when it is made, and the least it shrinks to. */
const FIRST_SLOTS = 16;

/**
 * The open calls by id. Ids are handed out in order and most calls end within a window of the latest
 * ones: a call sits in a ring of slots by its id modulo the ring's size (at least twice the calls open,
 * at most sixteen times once past its first size), and one whose slot an older call still holds sits in
 * a map beside. A map of them all, with deletions between new ids, would be rebuilt every few hundred
 * calls, and shrunk again as it empties.
 */
class OpenCalls<E extends { readonly id: number }> {
  #slots: Array<E | undefined> = new Array<E | undefined>(FIRST_SLOTS).fill(undefined);
  readonly #beside = new Map<number, E>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(id: number): E | undefined {
    const entry = this.#slots[id & (this.#slots.length - 1)];
    if (entry !== undefined && entry.id === id) return entry;
    return this.#beside.size === 0 ? undefined : this.#beside.get(id);
  }

  add(entry: E): void {
    if (2 * (this.#size + 1) > this.#slots.length) this.#resize(2 * this.#slots.length);
    this.#size++;
    this.#place(entry);
  }

  take(id: number): E | undefined {
    const slot = id & (this.#slots.length - 1);
    let entry = this.#slots[slot];
    if (entry !== undefined && entry.id === id) this.#slots[slot] = undefined;
    else {
      entry = this.#beside.size === 0 ? undefined : this.#beside.get(id);
      if (entry === undefined) return undefined;
      this.#beside.delete(id);
    }
    this.#size--;
    if (this.#slots.length > FIRST_SLOTS && 16 * this.#size < this.#slots.length) this.#resize(this.#slots.length / 2);
    return entry;
  }

  /** Every open call, in the order of their ids (the order they were opened). */
  inOrder(): E[] {
    const entries: E[] = [...this.#beside.values()];
    for (const entry of this.#slots) if (entry !== undefined) entries.push(entry);
    return entries.sort((a, b) => a.id - b.id);
  }

  #place(entry: E): void {
    const slot = entry.id & (this.#slots.length - 1);
    if (this.#slots[slot] === undefined) this.#slots[slot] = entry;
    else this.#beside.set(entry.id, entry);
  }

  #resize(slots: number): void {
    const entries = this.inOrder();
    this.#slots = new Array<E | undefined>(slots).fill(undefined);
    this.#beside.clear();
    for (const entry of entries) this.#place(entry);
  }
}

/** The ends of the promise made last, set by its executor (which runs at once) and taken by `open`. */
let takenResolve: (value: never) => void = () => undefined;
let takenReject: (error: BlazeError) => void = () => undefined;

function takeEnds(resolve: (value: never) => void, reject: (error: BlazeError) => void): void {
  takenResolve = resolve;
  takenReject = reject;
}

/** What fails call `id` of `calls` when `signal` aborts. */
function abortListener(calls: { fail(id: number, error: BlazeError): boolean }, id: number, what: string, signal: AbortSignalLike): () => void {
  return () => calls.fail(id, new BlazeError("ABORTED", `${what} was aborted`, { cause: signal.reason }));
}
