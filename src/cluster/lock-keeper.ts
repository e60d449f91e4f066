import type { TimedUnit } from "../core/driver.ts";
import { BlazeError } from "../errors.ts";
import type { LockHandle } from "./replicated-map.ts";

/** A renewal that failed for a passing reason (a timeout, a failover) is tried again after this share of the lease. */
const RETRY_SHARE = 10;

interface Kept {
  readonly handle: LockHandle;
  /** When to act: renew (autoRenew), or declare the lock lost (the lease ran out). */
  dueAt: number;
  renewing: boolean;
}

/**
 * The leases of this member's locks: a handle with `autoRenew` is renewed when a third of its lease is
 * left (again, sooner, after a renewal that failed for a passing reason), and a handle whose lease runs
 * out before a renewal succeeded loses the lock (its `lost` signal aborts). The renewals themselves are
 * the map's requests; this unit only says when.
 */
export class LockKeeper implements TimedUnit {
  readonly #kept = new Map<LockHandle, Kept>();
  readonly #renew: (handle: LockHandle) => Promise<void>;
  readonly #touch: () => void;

  constructor(renew: (handle: LockHandle) => Promise<void>, touch: () => void) {
    this.#renew = renew;
    this.#touch = touch;
  }

  /** Starts keeping `handle` (a lock with a lease). */
  watch(handle: LockHandle, now: number): void {
    this.#kept.set(handle, { handle, dueAt: this.#dueAt(handle, now), renewing: false });
  }

  /** `handle`'s lease was renewed (by its owner or by us). */
  renewed(handle: LockHandle, now: number): void {
    const kept = this.#kept.get(handle);
    if (kept !== undefined) kept.dueAt = this.#dueAt(handle, now);
  }

  forget(handle: LockHandle): void {
    this.#kept.delete(handle);
  }

  clear(): void {
    this.#kept.clear();
  }

  pollTimeout(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const kept of this.#kept.values()) if (!kept.renewing && kept.dueAt < next) next = kept.dueAt;
    return next;
  }

  handleTimeout(now: number): void {
    for (const kept of [...this.#kept.values()]) {
      if (kept.renewing || kept.dueAt > now) continue;
      const handle = kept.handle;
      if (now >= handle.expiresAt) {
        this.#kept.delete(handle);
        handle.lose("expired");
        continue;
      }
      kept.renewing = true;
      this.#renew(handle).then(
        () => {
          kept.renewing = false;
          this.#touch();
        },
        (error: unknown) => {
          kept.renewing = false;
          // Refused: the handle knows it lost the lock. Otherwise try again, while the lease lasts.
          if (!(error instanceof BlazeError && error.code === "STALE_TOKEN")) kept.dueAt = Math.min(handle.expiresAt, now + handle.leaseMs / RETRY_SHARE);
          this.#touch();
        },
      );
    }
  }

  #dueAt(handle: LockHandle, now: number): number {
    return handle.autoRenew ? Math.max(now, handle.expiresAt - handle.leaseMs / 3) : handle.expiresAt;
  }
}
