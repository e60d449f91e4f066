import { Deadlines } from "../core/deadlines.ts";
import type { TimedUnit } from "../core/driver.ts";
import { type MemberInstance, sameInstance } from "./state-types.ts";

/** A lock request queued at the coordinator behind the holder. */
export interface Waiter {
  readonly key: string;
  readonly requester: MemberInstance;
  readonly requestId: number;
  readonly leaseMs: number;
  readonly releaseOnExit: boolean;
  /** When it stops waiting (and is told the key is still LOCKED). */
  readonly deadline: number;
}

/**
 * The coordinator's queues of lock requests, one per key, served first come first served: when a key's
 * lock is released, the longest waiting request still present gets it. A request waits until its own
 * deadline (`waitMs` from when it came), then `expired` tells its requester the key stayed locked.
 */
export class LockQueue implements TimedUnit {
  readonly #queues = new Map<string, Waiter[]>();
  readonly #deadlines = new Deadlines<Waiter>();
  readonly #expired: (waiter: Waiter) => void;

  constructor(expired: (waiter: Waiter) => void) {
    this.#expired = expired;
  }

  hasWaiters(key: string): boolean {
    return (this.#queues.get(key)?.length ?? 0) > 0;
  }

  /** Queues `waiter`; false when that request is queued already (sent again: it keeps its place). */
  enqueue(waiter: Waiter): boolean {
    let queue = this.#queues.get(waiter.key);
    if (queue === undefined) this.#queues.set(waiter.key, (queue = []));
    if (queue.some((w) => w.requestId === waiter.requestId && sameInstance(w.requester, waiter.requester))) return false;
    queue.push(waiter);
    this.#deadlines.push(waiter.deadline, waiter);
    return true;
  }

  isQueued(requester: MemberInstance, requestId: number): boolean {
    if (this.#queues.size === 0) return false;
    for (const queue of this.#queues.values()) if (queue.some((w) => w.requestId === requestId && sameInstance(w.requester, requester))) return true;
    return false;
  }

  /** Takes the first waiter of `key` that `keep` accepts (the others before it are dropped). */
  next(key: string, keep: (waiter: Waiter) => boolean): Waiter | undefined {
    const queue = this.#queues.get(key);
    if (queue === undefined) return undefined;
    let waiter: Waiter | undefined;
    while (queue.length > 0 && waiter === undefined) {
      const first = queue.shift()!;
      if (keep(first)) waiter = first;
    }
    if (queue.length === 0) this.#queues.delete(key);
    return waiter;
  }

  /** Withdraws a queued request; false when it was not queued. */
  withdraw(key: string, requester: MemberInstance, requestId: number): boolean {
    const queue = this.#queues.get(key);
    const at = queue?.findIndex((w) => w.requestId === requestId && sameInstance(w.requester, requester)) ?? -1;
    if (at < 0) return false;
    queue!.splice(at, 1);
    if (queue!.length === 0) this.#queues.delete(key);
    return true;
  }

  /** Drops the waiters of members `present` says are gone. */
  retain(present: (member: MemberInstance) => boolean): void {
    for (const [key, queue] of this.#queues) {
      const kept = queue.filter((w) => present(w.requester));
      if (kept.length === 0) this.#queues.delete(key);
      else this.#queues.set(key, kept);
    }
  }

  /** Empties every queue, returning the waiters (a coordinator stepping down tells them to ask again). */
  drain(): Waiter[] {
    const all = [...this.#queues.values()].flat();
    this.#queues.clear();
    this.#deadlines.clear();
    return all;
  }

  pollTimeout(): number {
    return this.#deadlines.next();
  }

  handleTimeout(now: number): void {
    for (let waiter = this.#deadlines.popDue(now); waiter !== undefined; waiter = this.#deadlines.popDue(now)) {
      if (this.withdraw(waiter.key, waiter.requester, waiter.requestId)) this.#expired(waiter);
    }
  }
}
