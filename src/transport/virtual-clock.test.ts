import { describe, expect, it } from "vitest";
import { isBlazeError } from "../errors.ts";
import { SeededRandom } from "./seeded-random.ts";
import { VirtualClock } from "./virtual-clock.ts";

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected an exception");
}

describe("VirtualClock", () => {
  it("stands still until advanced, then fires timers in time order, ties in scheduling order", () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    clock.setTimer(30, () => fired.push(`c@${clock.now()}`));
    clock.setTimer(10, () => fired.push(`a@${clock.now()}`));
    clock.setTimer(10, () => fired.push(`b@${clock.now()}`));
    clock.setTimer(0, () => fired.push(`z@${clock.now()}`));
    expect(clock.now()).toBe(0);
    expect(fired).toEqual([]);
    clock.advance(10);
    expect(fired).toEqual(["z@0", "a@10", "b@10"]);
    expect(clock.now()).toBe(10);
    clock.advance(25);
    expect(fired).toEqual(["z@0", "a@10", "b@10", "c@30"]);
    expect(clock.now()).toBe(35);
  });

  it("orders many random timers exactly like a stable sort by due time", () => {
    const clock = new VirtualClock();
    const rng = new SeededRandom(11);
    const due: Array<[time: number, index: number]> = [];
    const fired: number[] = [];
    for (let i = 0; i < 5000; i++) {
      const t = rng.nextInt(200);
      due.push([t, i]);
      clock.setTimer(t, () => fired.push(i));
    }
    clock.runUntilIdle();
    const expected = [...due].sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, i]) => i);
    expect(fired).toEqual(expected);
  });

  it("runs timers scheduled by timers within the same advance, zero delay included", () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    clock.setTimer(5, () => {
      fired.push(`outer@${clock.now()}`);
      clock.setTimer(0, () => fired.push(`zero@${clock.now()}`));
      clock.setTimer(3, () => fired.push(`inner@${clock.now()}`));
      clock.setTimer(100, () => fired.push("late"));
    });
    clock.advance(10);
    expect(fired).toEqual(["outer@5", "zero@5", "inner@8"]);
    expect(clock.pendingTimers).toBe(1);
    expect(clock.nextTimerAt()).toBe(105);
  });

  it("cancels timers, also from inside another timer, and cancel is idempotent", () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    const b = clock.setTimer(2, () => fired.push("b"));
    clock.setTimer(1, () => {
      fired.push("a");
      b.cancel();
    });
    const c = clock.setTimer(3, () => fired.push("c"));
    c.cancel();
    c.cancel();
    expect(clock.pendingTimers).toBe(2);
    clock.advance(5);
    expect(fired).toEqual(["a"]);
    expect(clock.pendingTimers).toBe(0);
    b.cancel(); // after the fact: harmless
    expect(clock.pendingTimers).toBe(0);
  });

  it("keeps the heap small when most timers are cancelled", () => {
    const clock = new VirtualClock();
    for (let i = 0; i < 100_000; i++) clock.setTimer(1000 + i, () => {}).cancel();
    expect(clock.pendingTimers).toBe(0);
    expect((clock as unknown as { heap: unknown[] }).heap.length).toBeLessThan(2100);
    let fired = 0;
    clock.setTimer(5, () => fired++);
    clock.runUntilIdle();
    expect(fired).toBe(1);
  });

  it("clamps negative and NaN delays to zero, never fires Infinity, keeps fractional times", () => {
    const clock = new VirtualClock({ startMs: 100 });
    const fired: number[] = [];
    clock.setTimer(-5, () => fired.push(clock.now()));
    clock.setTimer(Number.NaN, () => fired.push(clock.now()));
    clock.setTimer(Infinity, () => fired.push(-1));
    clock.setTimer(0.25, () => fired.push(clock.now()));
    expect(clock.pendingTimers).toBe(3);
    expect(clock.runUntilIdle()).toBe(0.25);
    expect(fired).toEqual([100, 100, 100.25]);
  });

  it("runUntil stops when the predicate holds and reports the elapsed time", () => {
    const clock = new VirtualClock();
    let count = 0;
    const tick = (): void => {
      count++;
      clock.setTimer(10, tick);
    };
    clock.setTimer(10, tick);
    expect(clock.runUntil(() => count >= 3)).toBe(30);
    expect(clock.now()).toBe(30);
    expect(clock.runUntil(() => true)).toBe(0);
  });

  it("runUntil throws TIMEOUT after maxMs, with time moved to the deadline", () => {
    const clock = new VirtualClock();
    const error = thrown(() => clock.runUntil(() => false, { maxMs: 500 }));
    expect(isBlazeError(error, "TIMEOUT")).toBe(true);
    expect(String((error as Error).message)).toContain("500 ms");
    expect(clock.now()).toBe(500);
  });

  it("runUntilIdle throws TIMEOUT when a periodic timer keeps it busy", () => {
    const clock = new VirtualClock();
    const tick = (): void => void clock.setTimer(100, tick);
    tick();
    expect(isBlazeError(thrown(() => clock.runUntilIdle({ maxMs: 1000 })), "TIMEOUT")).toBe(true);
    expect(clock.now()).toBe(1000);
    clock.runFor(250);
    expect(clock.now()).toBe(1250);
  });

  it("fails clearly instead of hanging on a timer that reschedules itself at zero delay", () => {
    const clock = new VirtualClock({ maxEventsPerRun: 10_000 });
    const spin = (): void => void clock.setTimer(0, spin);
    spin();
    const error = thrown(() => clock.advance(1));
    expect(isBlazeError(error, "ILLEGAL_STATE")).toBe(true);
    expect((error as Error).message).toMatch(/more than 10000 timer callbacks/);
  });

  it("refuses to be advanced from inside a timer", () => {
    const clock = new VirtualClock();
    let inner: unknown;
    clock.setTimer(1, () => {
      inner = thrown(() => clock.advance(1));
    });
    clock.advance(2);
    expect(isBlazeError(inner, "ILLEGAL_STATE")).toBe(true);
  });

  it("propagates a timer's exception and stays usable", () => {
    const clock = new VirtualClock();
    const fired: number[] = [];
    clock.setTimer(1, () => {
      throw new Error("boom");
    });
    clock.setTimer(2, () => fired.push(2));
    expect(() => clock.advance(5)).toThrow("boom");
    expect(clock.now()).toBe(1);
    clock.advance(5);
    expect(fired).toEqual([2]);
    expect(clock.now()).toBe(6);
  });

  it("validates its arguments", () => {
    expect(isBlazeError(thrown(() => new VirtualClock().advance(-1)), "INVALID_OPTION")).toBe(true);
    expect(isBlazeError(thrown(() => new VirtualClock({ maxEventsPerRun: 0 })), "INVALID_OPTION")).toBe(true);
  });
});
