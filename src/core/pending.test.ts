import { describe, expect, it } from "vitest";
import { BlazeError } from "../errors.ts";
import { PendingCalls } from "./pending.ts";

describe("PendingCalls", () => {
  it("is due at its earliest open call's deadline, not at one of a call that ended", async () => {
    const calls = new PendingCalls<string>();
    const first = calls.open(0, 100, undefined, "first", undefined);
    const second = calls.open(10, 100, undefined, "second", undefined);
    const third = calls.open(20, 50, undefined, "third", undefined);
    expect(calls.pollTimeout()).toBe(70);
    expect(calls.settle(third.id, "three")).toBe(true);
    expect(calls.pollTimeout()).toBe(100);
    expect(calls.settle(first.id, "one")).toBe(true);
    expect(calls.pollTimeout()).toBe(110);
    expect(calls.fail(second.id, new BlazeError("CLOSED", "closed"))).toBe(true);
    expect(calls.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
    await expect(first.promise).resolves.toBe("one");
    await expect(third.promise).resolves.toBe("three");
    await expect(second.promise).rejects.toMatchObject({ code: "CLOSED" });
  });

  it("sequential calls answered in time leave no deadline behind to wake the driver", () => {
    const calls = new PendingCalls<number>();
    for (let i = 0; i < 10_000; i++) {
      const { id } = calls.open(i, 5_000, undefined, "call", undefined);
      expect(calls.pollTimeout()).toBe(i + 5_000);
      calls.settle(id, i);
    }
    // Time passes beyond every deadline: nothing is due, nothing fails.
    expect(calls.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
    calls.handleTimeout(20_000);
    expect(calls.size).toBe(0);
  });

  it("fails a call that is not answered by its deadline with TIMEOUT, and only then", async () => {
    const calls = new PendingCalls<string>();
    const answered = calls.open(0, 10, undefined, "the answered call", undefined);
    const late = calls.open(0, 20, undefined, "the late call", undefined);
    calls.settle(answered.id, "yes");
    calls.handleTimeout(19);
    expect(calls.size).toBe(1);
    calls.handleTimeout(20);
    expect(calls.size).toBe(0);
    await expect(late.promise).rejects.toMatchObject({ code: "TIMEOUT", message: "the late call: no answer within 20 ms" });
    expect(calls.settle(late.id, "too late")).toBe(false);
  });

  it("lists the open calls in the order they were opened, the latest one included, and fails them all", async () => {
    const calls = new PendingCalls<string, string>();
    const a = calls.open(0, 100, undefined, "a", "first");
    const b = calls.open(0, 100, undefined, "b", "second");
    const c = calls.open(0, 100, undefined, "c", "third");
    expect(calls.settle(c.id, "done")).toBe(true);
    expect(calls.settle(c.id, "again")).toBe(false);
    const d = calls.open(0, 100, undefined, "d", "fourth");
    expect(calls.settle(a.id, "done")).toBe(true);
    expect([...calls.entries()]).toEqual([
      [b.id, "second"],
      [d.id, "fourth"],
    ]);
    expect(calls.size).toBe(2);
    expect(calls.meta(d.id)).toBe("fourth");
    expect(calls.meta(c.id)).toBeUndefined();
    calls.failAll(new BlazeError("CLOSED", "closed"));
    expect(calls.size).toBe(0);
    await expect(b.promise).rejects.toMatchObject({ code: "CLOSED" });
    await expect(d.promise).rejects.toMatchObject({ code: "CLOSED" });
    await expect(c.promise).resolves.toBe("done");
  });

  it("keeps every open call findable by its id, in the order opened, whatever the order they end in and however many are open", () => {
    const calls = new PendingCalls<number, number>();
    const open = new Map<number, number>();
    let state = 7;
    const next = (n: number) => {
      state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
      return state % n;
    };
    // A call open throughout, and waves of calls opened and ended out of order around it.
    const first = calls.open(0, 1e9, undefined, "first", -1).id;
    open.set(first, -1);
    for (let wave = 0; wave < 40; wave++) {
      const count = next(wave % 2 === 0 ? 3_000 : 30);
      for (let i = 0; i < count; i++) {
        const { id } = calls.open(0, 1e9, undefined, "call", wave);
        open.set(id, wave);
      }
      const ids = [...open.keys()].filter((id) => id !== first);
      for (const id of ids) if (next(3) > 0) {
        expect(calls.settle(id, id)).toBe(true);
        expect(calls.settle(id, id)).toBe(false);
        open.delete(id);
      }
      expect(calls.size).toBe(open.size);
      for (const [id, meta] of open) expect(calls.meta(id)).toBe(meta);
      expect([...calls.entries()]).toEqual([...open]);
    }
  });

  it("tells its owner of every open call that fails, however it fails, and names a call from its meta only when an error needs it", async () => {
    const failed: Array<[string, string]> = [];
    const named: string[] = [];
    const calls = new PendingCalls<string, string>({
      onFail: (meta, error) => failed.push([meta, error.code]),
      what: (meta) => {
        named.push(meta);
        return `call ${meta}`;
      },
    });
    const answered = calls.open(0, 10, undefined, undefined, "answered");
    const late = calls.open(0, 10, undefined, undefined, "late");
    const refused = calls.open(0, 10, undefined, undefined, "refused");
    const signal = new AbortController();
    const aborted = calls.open(0, 10, signal.signal, "aborted by name", "aborted");
    const closed = calls.open(0, 100, undefined, undefined, "closed");
    calls.settle(answered.id, "yes");
    calls.fail(refused.id, new BlazeError("LOCKED", "refused"));
    signal.abort();
    expect(named).toEqual([]);
    calls.handleTimeout(10);
    calls.failAll(new BlazeError("CLOSED", "closed"));
    expect(failed).toEqual([
      ["refused", "LOCKED"],
      ["aborted", "ABORTED"],
      ["late", "TIMEOUT"],
      ["closed", "CLOSED"],
    ]);
    expect(named).toEqual(["late"]);
    await expect(answered.promise).resolves.toBe("yes");
    await expect(late.promise).rejects.toMatchObject({ code: "TIMEOUT", message: "call late: no answer within 10 ms" });
    await expect(aborted.promise).rejects.toMatchObject({ code: "ABORTED", message: "aborted by name was aborted" });
    await expect(refused.promise).rejects.toMatchObject({ code: "LOCKED" });
    await expect(closed.promise).rejects.toMatchObject({ code: "CLOSED" });
  });
});
