import { describe, expect, it } from "vitest";
import type { Clock } from "../transport/clock.ts";
import { VirtualClock } from "../transport/virtual-clock.ts";
import { Driver, type TimedUnit } from "./driver.ts";

/** A virtual clock that counts the timers armed on it. */
function countingClock() {
  const clock = new VirtualClock();
  const armed: number[] = [];
  const counting: Clock = {
    now: () => clock.now(),
    defer: (fn) => clock.defer(fn),
    setTimer: (delayMs, fn) => {
      armed.push(delayMs);
      return clock.setTimer(delayMs, fn);
    },
  };
  return { clock, counting, armed };
}

/** A unit with one deadline, that logs when it acts. */
function unitWithDeadline(log: string[], name: string): TimedUnit & { due: number } {
  const unit: TimedUnit & { due: number } = {
    due: Number.POSITIVE_INFINITY,
    pollTimeout: () => unit.due,
    handleTimeout: (now: number) => {
      if (unit.due > now) return;
      unit.due = Number.POSITIVE_INFINITY;
      log.push(`${name}@${now}`);
    },
  };
  return unit;
}

/**
 * A driver on a virtual clock that takes early turns as the system clock does (microtasks), with one
 * unit added (its turn taken); `read` is called at each reading of the clock, and `round`, when given,
 * is the clock's round mark. `defers()` counts the deferred calls made since.
 */
async function earlyTurnDriver(clock: VirtualClock, options: { read?: () => void; round?: () => number } = {}) {
  let deferred = 0;
  const early: Clock = {
    now: () => {
      options.read?.();
      return clock.now();
    },
    defer: (fn) => {
      deferred++;
      clock.defer(fn);
    },
    setTimer: (delayMs, fn) => clock.setTimer(delayMs, fn),
    soon: (fn) => queueMicrotask(fn),
    round: options.round,
  };
  const driver = new Driver(early, (error) => {
    throw error;
  });
  const log: string[] = [];
  const unit = unitWithDeadline(log, "u");
  driver.add(unit);
  await Promise.resolve();
  const before = deferred;
  return { driver, log, unit, defers: () => deferred - before };
}

describe("Driver", () => {
  it("acts on a deadline that has come already in the next turn, arming no timer for it", () => {
    const { clock, counting, armed } = countingClock();
    const log: string[] = [];
    const driver = new Driver(counting, (error) => {
      throw error;
    });
    const unit = unitWithDeadline(log, "u");
    driver.add(unit);
    clock.runFor(0);
    unit.due = clock.now();
    driver.touch();
    clock.runFor(0);
    expect(log).toEqual(["u@0"]);
    expect(armed).toEqual([]);
    // A later deadline is a timer.
    unit.due = 7;
    driver.touch();
    clock.runFor(10);
    expect(log).toEqual(["u@0", "u@7"]);
    expect(armed).toEqual([7]);
    driver.close();
  });

  it("acts on a deadline its timer brings after the inputs ready by then: a unit sees what they changed", () => {
    const clock = new VirtualClock();
    const log: string[] = [];
    const driver = new Driver(clock, (error) => {
      throw error;
    });
    const unit = unitWithDeadline(log, "u");
    driver.add(unit);
    clock.runFor(0);
    unit.due = 5;
    driver.touch();
    clock.runFor(1);
    // A datagram that reaches the process when its timer falls due (after the timer, in the event loop's
    // order, as when a descheduled process wakes to both): it is handled before the unit acts.
    clock.setTimer(4, () => {
      log.push("input");
      driver.touch();
    });
    clock.runFor(10);
    expect(log).toEqual(["input", "u@5"]);
    driver.close();
  });

  it("flushes after every end-of-turn call, whenever each was registered, and takes no extra turn for what those calls queue", () => {
    const clock = new VirtualClock();
    let turns = 0;
    const counting: Clock = {
      now: () => clock.now(),
      defer: (fn) => {
        turns++;
        clock.defer(fn);
      },
      setTimer: (delayMs, fn) => clock.setTimer(delayMs, fn),
    };
    const driver = new Driver(counting, (error) => {
      throw error;
    });
    clock.runFor(0);
    const log: string[] = [];
    driver.onFlush(() => log.push("flush"));
    // Registered after the flush, as a level built on a channel registers its own: it still comes first,
    // and what it queues (it touches the driver) goes out with this flush, not in a turn of its own.
    driver.onEndOfTurn(() => {
      log.push("level");
      driver.touch();
    });
    turns = 0;
    driver.touch();
    clock.runFor(0);
    expect(log).toEqual(["level", "flush"]);
    expect(turns).toBe(1);
    driver.close();
  });

  it("runs a one-shot call once at the end of the turn, after the units due and the flush", () => {
    const { clock, counting } = countingClock();
    const log: string[] = [];
    const driver = new Driver(counting, (error) => {
      throw error;
    });
    const unit = unitWithDeadline(log, "unit");
    driver.add(unit);
    driver.onEndOfTurn(() => log.push("flush"));
    clock.runFor(0);
    log.length = 0;
    unit.due = clock.now();
    driver.atEndOfTurn(() => log.push("once"));
    clock.runFor(0);
    expect(log).toEqual(["unit@0", "flush", "once"]);
    // It does not run again on later turns.
    driver.touch();
    clock.runFor(0);
    expect(log).toEqual(["unit@0", "flush", "once", "flush"]);
    // One added by a one-shot call runs in a turn of its own.
    driver.atEndOfTurn(() => driver.atEndOfTurn(() => log.push("again")));
    clock.runFor(0);
    expect(log.slice(4)).toEqual(["flush", "flush", "again"]);
    driver.close();
  });

  it("takes the turn of a round's first input as soon as it has been handled, with a clock that can, and defers the rest of the round's", async () => {
    const clock = new VirtualClock();
    const { driver, log, unit } = await earlyTurnDriver(clock);
    clock.runFor(0);
    driver.onFlush(() => log.push("flush"));
    // The first input of a round (a datagram, say): its turn comes before the runtime's next callback.
    driver.touch();
    await Promise.resolve();
    expect(log).toEqual(["flush"]);
    // A later one in the same round waits for the inputs ready by then, to go out bundled with theirs.
    driver.touch();
    await Promise.resolve();
    expect(log).toEqual(["flush"]);
    clock.runFor(0);
    expect(log).toEqual(["flush", "flush"]);
    // The next round's first input is early again.
    driver.touch();
    await Promise.resolve();
    expect(log).toEqual(["flush", "flush", "flush"]);
    // A timer's turn is never early: it comes after the inputs ready by then, as without the early turns.
    unit.due = 5;
    driver.touch();
    clock.runFor(0);
    log.length = 0;
    clock.runFor(5);
    expect(log).toEqual(["u@5", "flush"]);
    driver.close();
  });

  it("tells a round's first input by the clock's round mark where it has one, deferring nothing to mark a round's end", async () => {
    const clock = new VirtualClock();
    let round = 1;
    const { driver, log, defers } = await earlyTurnDriver(clock, { round: () => round });
    // Adding the unit took round 1's early turn: this input is the first of round 2.
    round = 2;
    driver.onFlush(() => log.push("flush"));
    // The round's first input: an early turn, and no deferred call after it.
    driver.touch();
    await Promise.resolve();
    expect(log).toEqual(["flush"]);
    expect(defers()).toBe(0);
    // A later input of the same round (the mark has not moved) waits for the inputs ready by then.
    driver.touch();
    await Promise.resolve();
    expect(log).toEqual(["flush"]);
    expect(defers()).toBe(1);
    clock.runFor(0);
    expect(log).toEqual(["flush", "flush"]);
    // A deferred turn does not end the round: the mark does.
    driver.touch();
    await Promise.resolve();
    expect(log).toEqual(["flush", "flush"]);
    clock.runFor(0);
    expect(log).toEqual(["flush", "flush", "flush"]);
    round = 3;
    driver.touch();
    await Promise.resolve();
    expect(log).toEqual(["flush", "flush", "flush", "flush"]);
    expect(defers()).toBe(2);
    driver.close();
  });

  it("takes the time an input read as its early turn's, and reads the clock for a deferred turn", async () => {
    const clock = new VirtualClock();
    let reads = 0;
    const { driver, log, unit } = await earlyTurnDriver(clock, { read: () => reads++ });
    clock.runFor(10);
    // Due at 10: an input that read 10 as it began has the unit act at 10, the clock not read again.
    unit.due = 10;
    reads = 0;
    driver.touchAt(10);
    await Promise.resolve();
    expect(log).toEqual(["u@10"]);
    expect(reads).toBe(0);
    // The round's next input waits for a deferred turn, which reads the clock.
    unit.due = 10;
    driver.touchAt(9);
    await Promise.resolve();
    expect(log).toEqual(["u@10"]);
    clock.runFor(0);
    expect(log).toEqual(["u@10", "u@10"]);
    expect(reads).toBe(1);
    driver.close();
  });

  it("polls each unit once in a turn where none acts and nothing else ran, and again after one acted or an end-of-turn call ran", () => {
    const { clock, counting, armed } = countingClock();
    const log: string[] = [];
    const driver = new Driver(counting, (error) => {
      throw error;
    });
    const unit = unitWithDeadline(log, "u");
    let polls = 0;
    const poll = unit.pollTimeout;
    unit.pollTimeout = () => {
      polls++;
      return poll();
    };
    // What the unit does after acting (read when it acts: the driver holds the unit's methods from `add`).
    let afterActing: (now: number) => void = () => undefined;
    const handle = unit.handleTimeout;
    unit.handleTimeout = (now) => {
      handle(now);
      afterActing(now);
    };
    driver.add(unit);
    clock.runFor(0);
    // A deadline set before the turn is armed from the one poll.
    unit.due = 5;
    polls = 0;
    driver.touch();
    clock.runFor(0);
    expect(polls).toBe(1);
    expect(armed).toEqual([5]);
    // The unit acts and sets its next deadline: polled again, that deadline armed.
    afterActing = (now) => {
      unit.due = now + 3;
    };
    polls = 0;
    clock.runFor(5);
    expect(log).toEqual(["u@5"]);
    expect(polls).toBe(2);
    expect(armed).toEqual([5, 3]);
    // An end-of-turn call that moves a deadline earlier: polled again, and armed for it.
    afterActing = () => undefined;
    driver.onEndOfTurn(() => {
      if (unit.due === 8) unit.due = 7;
    });
    polls = 0;
    driver.touch();
    clock.runFor(0);
    expect(polls).toBe(2);
    expect(armed).toEqual([5, 3, 2]);
    clock.runFor(2);
    expect(log).toEqual(["u@5", "u@7"]);
    driver.close();
  });

  it("reports an exception thrown in a turn outside the units' handlers (a unit's pollTimeout) to fault, and takes turns again", () => {
    const clock = new VirtualClock();
    const faults: unknown[] = [];
    const driver = new Driver(clock, (error) => faults.push(error));
    const log: string[] = [];
    let failing = true;
    driver.add({
      pollTimeout: () => {
        if (failing) throw new Error("poll");
        return Number.POSITIVE_INFINITY;
      },
      handleTimeout: () => undefined,
    });
    driver.onFlush(() => log.push("flush"));
    clock.runFor(0);
    expect(faults).toEqual([new Error("poll")]);
    failing = false;
    driver.touch();
    clock.runFor(0);
    expect(log).toEqual(["flush"]);
    driver.close();
  });

  it("runs nothing once closed", () => {
    const { clock, counting } = countingClock();
    const log: string[] = [];
    const driver = new Driver(counting, (error) => {
      throw error;
    });
    const unit = unitWithDeadline(log, "u");
    driver.add(unit);
    unit.due = 5;
    driver.atEndOfTurn(() => log.push("once"));
    driver.close();
    clock.runFor(10);
    expect(log).toEqual([]);
  });
});
