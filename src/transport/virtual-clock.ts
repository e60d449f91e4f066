/**
 * A virtual clock for deterministic tests: time stands still until the test advances it, and
 * timers then fire in (time, scheduling order) order from a binary heap.
 */
import { BlazeError } from "../errors.ts";
import type { Clock, TimerHandle } from "./clock.ts";

export interface VirtualClockOptions {
  /** The value `now()` starts at, in milliseconds. Default 0. */
  readonly startMs?: number;
  /**
   * The most timer callbacks one `advance`/`runFor`/`runUntil`/`runUntilIdle` call may run before
   * it throws, so that a timer that keeps rescheduling itself fails the test instead of hanging it.
   * Default 20,000,000.
   */
  readonly maxEventsPerRun?: number;
}

export interface RunOptions {
  /** The most virtual time the call may let pass, in milliseconds. Default 60,000. */
  readonly maxMs?: number;
}

const DEFAULT_MAX_MS = 60_000;

/** A scheduled callback; it is its own cancel handle, so scheduling allocates one object. */
class Timer implements TimerHandle {
  readonly time: number;
  readonly seq: number;
  /** Null once fired or cancelled. */
  fn: ((arg: any) => void) | null;
  arg: unknown;
  private readonly clock: VirtualClock;

  constructor(time: number, seq: number, fn: (arg: any) => void, arg: unknown, clock: VirtualClock) {
    this.time = time;
    this.seq = seq;
    this.fn = fn;
    this.arg = arg;
    this.clock = clock;
  }

  cancel(): void {
    if (this.fn === null) return; // fired or cancelled already
    this.fn = null;
    this.arg = undefined;
    this.clock.timerCancelled();
  }
}

/**
 * A {@link Clock} whose time only moves in `advance`, `runFor`, `runUntil` and `runUntilIdle`.
 * Timer callbacks run synchronously inside those calls, each with `now()` equal to its due time;
 * a callback may schedule and cancel timers. Promise continuations started by a callback run
 * after the driving call returns, not between timers, so protocol code driven by this clock should
 * react to timers and datagrams synchronously.
 */
export class VirtualClock implements Clock {
  private current: number;
  private readonly maxEventsPerRun: number;
  private readonly heap: Timer[] = [];
  private seq = 0;
  private cancelled = 0;
  private running = false;
  private firedTotal = 0;

  constructor(options: VirtualClockOptions = {}) {
    this.current = options.startMs ?? 0;
    this.maxEventsPerRun = options.maxEventsPerRun ?? 20_000_000;
    if (!Number.isFinite(this.current)) {
      throw new BlazeError("INVALID_OPTION", "startMs must be a finite number", { path: ["startMs"] });
    }
    if (!(this.maxEventsPerRun >= 1)) {
      throw new BlazeError("INVALID_OPTION", "maxEventsPerRun must be at least 1", { path: ["maxEventsPerRun"] });
    }
  }

  /** The virtual time in milliseconds. */
  now(): number {
    return this.current;
  }

  /** Calls `fn` once, `delayMs` milliseconds from now (negative or NaN counts as 0; Infinity never fires). */
  /** Runs `fn` at the current virtual time, after everything already due now. */
  defer(fn: () => void): void {
    this.scheduleAt(this.current, fn, undefined);
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    return this.scheduleAt(this.current + (delayMs > 0 ? delayMs : 0), fn, undefined);
  }

  /**
   * Calls `fn(arg)` once at virtual time `timeMs` (a time in the past counts as now). Lets a hot
   * path pass its state as `arg` with one shared callback instead of allocating a closure per timer.
   */
  scheduleAt<T>(timeMs: number, fn: (arg: T) => void, arg: T): TimerHandle {
    const time = timeMs > this.current ? timeMs : this.current;
    const timer = new Timer(time, this.seq++, fn, arg, this);
    // A timer that can never fire must not keep the clock from being idle.
    if (time !== Infinity) this.push(timer);
    else timer.fn = null;
    return timer;
  }

  /** The number of scheduled timers that have not fired or been cancelled. */
  get pendingTimers(): number {
    return this.heap.length - this.cancelled;
  }

  /** The due time of the next timer to fire, or `undefined` when none is pending. */
  nextTimerAt(): number | undefined {
    this.dropCancelledTop();
    return this.heap[0]?.time;
  }

  /** How many timer callbacks have run since the clock was created. */
  get firedTimers(): number {
    return this.firedTotal;
  }

  /**
   * Moves time forward by `ms` (≥ 0), firing every timer due up to then, including timers the
   * callbacks schedule within the window. `now()` ends exactly `ms` later.
   * @throws BlazeError `ILLEGAL_STATE` when called from a timer callback or when the run exceeds
   *   `maxEventsPerRun`; any exception a timer callback throws propagates (the clock stays usable).
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new BlazeError("INVALID_OPTION", `advance: ms must be ≥ 0, got ${ms}`);
    const end = this.current + ms;
    this.run(end, undefined);
    this.current = end;
  }

  /** Same as {@link advance}. */
  runFor(ms: number): void {
    this.advance(ms);
  }

  /**
   * Fires timers in order until `predicate()` is true (checked before the first timer and after
   * each one), leaving `now()` at the time it became true.
   * @returns the virtual milliseconds that passed.
   * @throws BlazeError `TIMEOUT` when the predicate is still false after `maxMs` (default 60,000)
   *   of virtual time; `now()` is then `maxMs` later.
   */
  runUntil(predicate: () => boolean, options: RunOptions = {}): number {
    const start = this.current;
    const maxMs = options.maxMs ?? DEFAULT_MAX_MS;
    if (predicate()) return 0;
    const end = start + maxMs;
    if (this.run(end, predicate)) return this.current - start;
    this.current = end;
    throw new BlazeError(
      "TIMEOUT",
      `runUntil: condition still false after ${maxMs} ms of virtual time (now=${end}, ${this.pendingTimers} timers pending)`,
    );
  }

  /**
   * Fires timers in order until none is pending, leaving `now()` at the last one's time.
   * @returns the virtual milliseconds that passed.
   * @throws BlazeError `TIMEOUT` when timers are still pending after `maxMs` (default 60,000) of
   *   virtual time — a periodic timer keeps the clock from ever being idle; use `runFor` then.
   */
  runUntilIdle(options: RunOptions = {}): number {
    const start = this.current;
    const maxMs = options.maxMs ?? DEFAULT_MAX_MS;
    const end = start + maxMs;
    this.run(end, undefined);
    if (this.pendingTimers === 0) return this.current - start;
    this.current = end;
    throw new BlazeError(
      "TIMEOUT",
      `runUntilIdle: ${this.pendingTimers} timers still pending after ${maxMs} ms of virtual time (next at ${this.nextTimerAt()})`,
    );
  }

  /** @internal Called by a timer's `cancel()`. */
  timerCancelled(): void {
    this.cancelled++;
    // Cancelled timers stay in the heap until they reach the top; rebuild when they dominate so a
    // protocol that keeps re-arming long timers does not grow the heap without bound.
    if (this.cancelled > 1024 && this.cancelled * 2 > this.heap.length) this.compact();
  }

  /** Fires due timers up to `end`; returns true as soon as `until` holds. */
  private run(end: number, until: (() => boolean) | undefined): boolean {
    if (this.running) {
      throw new BlazeError("ILLEGAL_STATE", "VirtualClock: advance/run* called from inside a timer callback");
    }
    this.running = true;
    let events = 0;
    try {
      const heap = this.heap;
      while (heap.length > 0) {
        const top = heap[0]!;
        if (top.time > end) break;
        this.pop();
        const fn = top.fn;
        if (fn === null) {
          this.cancelled--;
          continue;
        }
        if (++events > this.maxEventsPerRun) {
          this.push(top); // leave it pending, in order
          throw new BlazeError(
            "ILLEGAL_STATE",
            `VirtualClock: more than ${this.maxEventsPerRun} timer callbacks in one run (now=${this.current}); ` +
              "a timer probably reschedules itself forever — or raise maxEventsPerRun if the load is real",
          );
        }
        top.fn = null;
        this.current = top.time;
        this.firedTotal++;
        const arg = top.arg;
        top.arg = undefined;
        fn(arg);
        if (until !== undefined && until()) return true;
      }
      return false;
    } finally {
      this.running = false;
    }
  }

  private dropCancelledTop(): void {
    while (this.heap.length > 0 && this.heap[0]!.fn === null) {
      this.pop();
      this.cancelled--;
    }
  }

  private compact(): void {
    const live = this.heap.filter((t) => t.fn !== null);
    this.heap.length = 0;
    this.cancelled = 0;
    // Re-pushing in (time, seq) order keeps the heap valid cheaply; seq still breaks ties.
    live.sort(before);
    for (const t of live) this.heap.push(t);
  }

  private push(timer: Timer): void {
    const heap = this.heap;
    let i = heap.length;
    heap.push(timer);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (before(p, timer) <= 0) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = timer;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    const n = heap.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && before(heap[child + 1]!, heap[child]!) < 0) child++;
      if (before(last, heap[child]!) <= 0) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
}

/** Orders timers by due time, then by scheduling order. */
function before(a: Timer, b: Timer): number {
  return a.time - b.time || a.seq - b.seq;
}
