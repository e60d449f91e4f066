import { web } from "../web.ts";

/**
 * Time and timers, injected into every protocol layer so that the same code runs on a real clock
 * and, in tests, on the simulated network's virtual clock.
 */

/** A timer that can be cancelled. */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Monotonic milliseconds since an arbitrary origin; may have a fractional part. Never goes back. */
  now(): number;
  /** Calls `fn` once after `delayMs` milliseconds (0 or more). */
  setTimer(delayMs: number, fn: () => void): TimerHandle;
  /**
   * Calls `fn` as soon as the current work is done, before any timer: how a sender flushes its bundle
   * once the send queue drains. On a real clock, after the I/O callbacks ready now (`setImmediate`
   * where the runtime has it, else a microtask); on a virtual clock, an event at the current time.
   */
  defer(fn: () => void): void;
  /**
   * Calls `fn` as soon as the code running now has returned and the microtasks it queued have run,
   * before the runtime's next I/O callback or timer (a microtask). Optional: a driver takes the turn of
   * the first input of a round of the event loop this way, so that a reply leaves before the process
   * goes back to its sockets; with a clock that lacks it (a virtual one), every turn is deferred.
   */
  soon?(fn: () => void): void;
  /**
   * A mark of the event loop's current round: it changes whenever the runtime has waited for its
   * sockets, and holds while the callbacks of what it read then run. Optional: with it, a driver tells
   * a round's first input from the next ones by the mark; without it, it marks a round's end with a
   * deferred call.
   */
  round?(): number;
}

/** A source of uniformly distributed numbers; seeded in tests. */
export interface RandomSource {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, bound). */
  nextInt(bound: number): number;
  /** Fills `bytes` with random bytes and returns it. */
  fill(bytes: Uint8Array): Uint8Array;
}

// After the datagrams that are ready now have all been handled, so that what they cause goes out
// bundled: a microtask would run after each one. A runtime without setImmediate: a microtask there.
const setImmediateFn = (globalThis as { setImmediate?: (fn: () => void) => unknown }).setImmediate;
const deferAfterIo: (fn: () => void) => void =
  setImmediateFn === undefined ? (fn) => web.queueMicrotask(fn) : (fn) => void setImmediateFn(fn);

// Node and Bun run timers before they poll sockets; a channel's driver takes a timer's turn after the
// datagrams ready by then through `defer` (setImmediate). Deno runs its setImmediate, a microtask and a
// MessageChannel message all before a pending receive resolves, so there a timer itself waits for the
// next turn of the event loop, which polls sockets first: a timeout of 0, one to two milliseconds later
// (test/runtime/deno-timer-order.ts).
const timersWaitForIo = "Deno" in globalThis;

const RESOLVED = Promise.resolve();

// Turns taken early (`Clock.soon`) only where they were measured: on Node. Bun and Deno order
// microtasks, immediates and socket reads each their own way (on Bun, early turns let a joiner get a
// member's message before the view that names it, in test/udp-group.test.ts); there every turn waits
// for the inputs ready.
const earlyTurns = !("Deno" in globalThis) && !("Bun" in globalThis);

// Read once: Node defines `globalThis.performance` as a lazy accessor, which runs on every read.
const performance = web.performance;

// Node counts the time its event loop has waited for its sockets (the idle time behind
// `performance.eventLoopUtilization()`): it moves each time the loop has waited, and only then. Read
// (some 70 ns) in place of a deferred call per round (some 2 µs and a turn of the loop's check phase).
const nodeTiming = (performance as { nodeTiming?: { readonly idleTime?: unknown } }).nodeTiming;
const loopRound: (() => number) | undefined =
  earlyTurns && typeof nodeTiming?.idleTime === "number" ? () => nodeTiming!.idleTime as number : undefined;

/** The real monotonic clock (`performance.now`) with `setTimeout` timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  defer: deferAfterIo,
  // Where `defer` is a microtask already, a turn taken early would be no earlier. A resolved promise's
  // reaction rather than queueMicrotask, which Node wraps in an async resource of its own: a quarter of
  // the cost, on the path of every reply. (A callback that throws is an unhandled rejection then; a
  // channel's clock is guarded.)
  soon: setImmediateFn === undefined || !earlyTurns ? undefined : (fn) => void RESOLVED.then(fn),
  round: loopRound,
  setTimer(delayMs, fn) {
    // Runtimes count timers in whole milliseconds from a time read at the start of the event loop's
    // turn, so a fractional delay mostly ends up to a millisecond early, and a driver woken early finds
    // nothing due and arms another timer. Rounded up, and with what is left waited out when still early,
    // a timer never fires before its delay.
    const due = performance.now() + delayMs;
    const arm = (ms: number) => {
      const id = web.setTimeout(fire, Math.ceil(Math.max(0, ms)));
      // Node's timers keep the process alive; a protocol timer must not, or an idle member
      // would block its process from exiting after close().
      (id as { unref?: () => void }).unref?.();
      return id;
    };
    let waitedForIo = !timersWaitForIo;
    const fire = () => {
      const left = due - performance.now();
      if (left > 0) id = arm(left);
      else if (!waitedForIo) {
        waitedForIo = true;
        id = arm(0);
      } else fn();
    };
    let id = arm(delayMs);
    return { cancel: () => web.clearTimeout(id) };
  },
};

/**
 * The runtime's randomness: `Math.random` for protocol choices (fast; called per datagram on some
 * paths) and the cryptographic generator for bytes (member ids must not collide).
 */
export const systemRandom: RandomSource = {
  next: () => Math.random(),
  nextInt: (bound) => Math.floor(Math.random() * bound),
  fill(bytes) {
    // getRandomValues accepts at most 65,536 bytes a call.
    for (let offset = 0; offset < bytes.length; offset += 65_536) {
      web.crypto.getRandomValues(bytes.subarray(offset, Math.min(bytes.length, offset + 65_536)));
    }
    return bytes;
  },
};

/**
 * The same clock, with every timer and deferred call guarded: an exception thrown by one is passed to
 * `onError` instead of escaping into the runtime, where it would end the process. A bug in one protocol
 * timer is then reported and counted, never fatal.
 */
export function guardedClock(clock: Clock, onError: (error: unknown) => void): Clock {
  const guard = (fn: () => void) => () => {
    try {
      fn();
    } catch (error) {
      onError(error);
    }
  };
  return {
    now: () => clock.now(),
    setTimer: (delayMs, fn) => clock.setTimer(delayMs, guard(fn)),
    defer: (fn) => clock.defer(guard(fn)),
    soon: clock.soon === undefined ? undefined : (fn) => clock.soon!(guard(fn)),
    round: clock.round === undefined ? undefined : () => clock.round!(),
  };
}
