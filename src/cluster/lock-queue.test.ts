import { describe, expect, it } from "vitest";
import { Expiry } from "./expiry.ts";
import { LockQueue, type Waiter } from "./lock-queue.ts";
import { Replica } from "./replica.ts";
import type { Change } from "./state-types.ts";

const A = { id: "0a".repeat(16), incarnation: 1 };
const B = { id: "0b".repeat(16), incarnation: 1 };
const waiter = (requester: typeof A, requestId: number, deadline: number): Waiter => ({ key: "k", requester, requestId, leaseMs: 0, releaseOnExit: true, deadline });

describe("LockQueue", () => {
  it("serves first come first served, keeps a request sent again in its place, and times waiters out", () => {
    const expired: number[] = [];
    const queue = new LockQueue((w) => expired.push(w.requestId));
    expect(queue.enqueue(waiter(A, 1, 100))).toBe(true);
    expect(queue.enqueue(waiter(B, 2, 50))).toBe(true);
    expect(queue.enqueue(waiter(A, 1, 100))).toBe(false);
    expect(queue.pollTimeout()).toBe(50);
    queue.handleTimeout(50);
    expect(expired).toEqual([2]);
    expect(queue.next("k", () => true)?.requestId).toBe(1);
    expect(queue.hasWaiters("k")).toBe(false);
    queue.handleTimeout(100);
    expect(expired).toEqual([2]);
  });

  it("withdraws, drops the departed, and hands everything back when the coordinator steps down", () => {
    const queue = new LockQueue(() => undefined);
    queue.enqueue(waiter(A, 1, 100));
    queue.enqueue(waiter(B, 2, 100));
    queue.enqueue(waiter(A, 3, 100));
    expect(queue.withdraw("k", A, 3)).toBe(true);
    expect(queue.withdraw("k", A, 3)).toBe(false);
    queue.retain((m) => m.id !== B.id);
    expect(queue.drain().map((w) => w.requestId)).toEqual([1]);
  });
});

describe("Expiry", () => {
  it("removes entries and frees locks whose time ran out on the coordinator's clock, not those rewritten meanwhile", () => {
    const replica = new Replica(16);
    const expired: Change[] = [];
    const expiry = new Expiry(replica, (changes) => expired.push(...changes));
    const put = (key: string, version: number, ttlMs: number) =>
      replica.apply({ epoch: 1, index: version, coordinator: A.id, requests: [{ requestId: version, requester: A, changes: [{ kind: "put", entry: { key, value: new Uint8Array(), format: 0, version, owner: A, removeOnExit: false, ttlMs }, inserted: true }] }], tokenCeiling: 0, forget: [] }, 0).changes;
    for (const change of put("a", 1, 100)) expiry.track(change);
    for (const change of put("b", 2, 100)) expiry.track(change);
    for (const change of put("b", 3, 500)) expiry.track(change);
    expect(expiry.pollTimeout()).toBe(100);
    expiry.handleTimeout(100);
    expect(expired).toEqual([{ kind: "remove", key: "a", expired: true }]);
    expiry.rebuild();
    expect(expiry.pollTimeout()).toBe(100);
  });
});
