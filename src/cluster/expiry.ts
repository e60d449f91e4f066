import { Deadlines } from "../core/deadlines.ts";
import type { TimedUnit } from "../core/driver.ts";
import type { Replica } from "./replica.ts";
import type { Change, ReplicaChange } from "./state-types.ts";

type Due = { readonly kind: "entry"; readonly key: string; readonly version: number } | { readonly kind: "lock"; readonly key: string; readonly token: number };

/**
 * Times to live and lock leases, on the coordinator's monotonic clock: when an entry's time to live or
 * a lock's lease runs out, `expired` gets the changes that remove it (the coordinator orders them like
 * any other). Deadlines of entries rewritten or locks released meanwhile are recognised as stale when
 * they come due, by version and token.
 */
export class Expiry implements TimedUnit {
  readonly #deadlines = new Deadlines<Due>();
  readonly #replica: Replica;
  readonly #expired: (changes: Change[], now: number) => void;

  constructor(replica: Replica, expired: (changes: Change[], now: number) => void) {
    this.#replica = replica;
    this.#expired = expired;
  }

  /** Starts counting what a change set up. */
  track(change: ReplicaChange): void {
    if (change.kind === "insert" || change.kind === "update") {
      if (change.entry.expiresAt !== undefined) this.#deadlines.push(change.entry.expiresAt, { kind: "entry", key: change.entry.key, version: change.entry.version });
    } else if (change.kind === "lock" && change.lock.expiresAt !== undefined) {
      this.#deadlines.push(change.lock.expiresAt, { kind: "lock", key: change.lock.key, token: change.lock.token });
    }
  }

  /** Counts everything the replica holds (a coordinator taking over). */
  rebuild(): void {
    this.#deadlines.clear();
    for (const entry of this.#replica.entries.values()) {
      if (entry.expiresAt !== undefined) this.#deadlines.push(entry.expiresAt, { kind: "entry", key: entry.key, version: entry.version });
    }
    for (const lock of this.#replica.locks.values()) {
      if (lock.expiresAt !== undefined) this.#deadlines.push(lock.expiresAt, { kind: "lock", key: lock.key, token: lock.token });
    }
  }

  clear(): void {
    this.#deadlines.clear();
  }

  pollTimeout(): number {
    return this.#deadlines.next();
  }

  handleTimeout(now: number): void {
    const changes: Change[] = [];
    for (let due = this.#deadlines.popDue(now); due !== undefined; due = this.#deadlines.popDue(now)) {
      if (due.kind === "entry") {
        const entry = this.#replica.entries.get(due.key);
        if (entry !== undefined && entry.version === due.version && entry.expiresAt !== undefined && entry.expiresAt <= now) {
          changes.push({ kind: "remove", key: entry.key, expired: true });
        }
      } else {
        const lock = this.#replica.locks.get(due.key);
        if (lock !== undefined && lock.token === due.token && lock.expiresAt !== undefined && lock.expiresAt <= now) {
          changes.push({ kind: "unlock", key: lock.key, expired: true });
        }
      }
    }
    if (changes.length > 0) this.#expired(changes, now);
  }
}
