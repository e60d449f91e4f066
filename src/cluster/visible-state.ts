import type { Replica } from "./replica.ts";
import { SoleKeyMap } from "./sole-key-map.ts";
import type { ReplicaChange, StoredEntry, StoredLock } from "./state-types.ts";

const NONE: readonly ReplicaChange[] = [];

/** What a key held before the first update not yet committed that touched it. */
interface Hidden<T> {
  readonly index: number;
  readonly before: T | undefined;
}

/**
 * What the updates not yet committed hid of one key: the first one's alone (most keys: no array of one
 * made for each), or every one's, in order, once a later update touched the key too.
 */
type HiddenOf<T> = Hidden<T> | Array<Hidden<T>>;

/** The first update's: what the key held before the updates not yet committed. */
function firstOf<T>(hidden: HiddenOf<T>): Hidden<T> {
  return Array.isArray(hidden) ? hidden[0]! : hidden;
}

/**
 * The state this member's application sees. A replica that follows a coordinator shows every update as
 * it applies it. The coordinator applies what it orders at once (later requests are checked against
 * it), but shows an update — to reads and to listeners — only once it is committed: applied by every
 * member of its term, so that any next coordinator keeps it. A deposed coordinator therefore never
 * shows its application an update that a new one could replace.
 *
 * Updates not yet committed are kept with what they replaced, key by key; reads of a key they touched
 * see what it held before the first of them.
 */
export class VisibleState {
  readonly #replica: Replica;
  // The key of a write at a time comes and goes: kept beside a map, not in it (see SoleKeyMap).
  readonly #entries = new SoleKeyMap<string, HiddenOf<StoredEntry>>();
  readonly #locks = new SoleKeyMap<string, HiddenOf<StoredLock>>();
  /** Updates applied and not yet shown, in order, with their changes for the listeners. */
  readonly #pending: Array<{ readonly index: number; readonly changes: readonly ReplicaChange[] }> = [];

  constructor(replica: Replica) {
    this.#replica = replica;
  }

  /** Updates applied and not shown yet. */
  get pending(): number {
    return this.#pending.length;
  }

  /** The coordinator applied update `index` (not committed yet): hide what it changed. */
  hide(index: number, changes: readonly ReplicaChange[]): void {
    if (changes.length === 0) return;
    this.#pending.push({ index, changes });
    // The first change of a key in this update says what it held before: a later one finds the key
    // hidden at this index already (no set of the keys seen made for every update).
    for (const change of changes) {
      if (change.kind === "lock" || change.kind === "unlock") {
        hide(this.#locks, change.lock.key, index, change.kind === "lock" ? change.previous : change.lock);
      } else {
        hide(this.#entries, change.entry.key, index, change.kind === "insert" ? undefined : change.kind === "update" ? change.previous : change.entry);
      }
    }
  }

  /** Shows the updates up to `index` (committed); returns their changes, in order, for the listeners. */
  commit(index: number): readonly ReplicaChange[] {
    const pending = this.#pending;
    if (pending.length === 0 || pending[0]!.index > index) return NONE;
    // One update shown (a write at a time): its own changes, not a copy.
    let shown = pending.shift()!.changes;
    if (pending.length > 0 && pending[0]!.index <= index) {
      const all = shown.slice();
      while (pending.length > 0 && pending[0]!.index <= index) for (const change of pending.shift()!.changes) all.push(change);
      shown = all;
    }
    if (this.#pending.length === 0) {
      // Nothing hidden is left: every key was hidden by an update shown now. Emptied at once, not key by
      // key (a map emptied by deletions shrinks its table again and again on the way).
      this.#entries.clear();
      this.#locks.clear();
    } else {
      // What updates up to `index` hid, they hid under the keys of their changes, shown now: only those
      // are looked at, not every key hidden by the updates still pending.
      for (const change of shown) {
        if (change.kind === "lock" || change.kind === "unlock") release(this.#locks, change.lock.key, index);
        else release(this.#entries, change.entry.key, index);
      }
    }
    return shown;
  }

  /** Shows every update applied (the next term keeps this history). */
  commitAll(): readonly ReplicaChange[] {
    return this.commit(Number.POSITIVE_INFINITY);
  }

  /**
   * Puts the replica back to what was shown, dropping the updates not committed (a snapshot is about to
   * replace the history; its differences are then counted from what the application saw).
   */
  revert(): void {
    for (const [key, hidden] of this.#entries) {
      const before = firstOf(hidden).before;
      if (before === undefined) this.#replica.entries.delete(key);
      else this.#replica.entries.set(key, before);
    }
    for (const [key, hidden] of this.#locks) {
      const before = firstOf(hidden).before;
      if (before === undefined) this.#replica.locks.delete(key);
      else this.#replica.locks.set(key, before);
    }
    this.#entries.clear();
    this.#locks.clear();
    this.#pending.length = 0;
  }

  // --- reads ---

  getEntry(key: string): StoredEntry | undefined {
    const hidden = this.#entries.get(key);
    return hidden === undefined ? this.#replica.entries.get(key) : firstOf(hidden).before;
  }

  getLock(key: string): StoredLock | undefined {
    const hidden = this.#locks.get(key);
    return hidden === undefined ? this.#replica.locks.get(key) : firstOf(hidden).before;
  }

  get size(): number {
    let size = this.#replica.entries.size;
    for (const [key, hidden] of this.#entries) size += (firstOf(hidden).before === undefined ? 0 : 1) - (this.#replica.entries.has(key) ? 1 : 0);
    return size;
  }

  *entries(): IterableIterator<StoredEntry> {
    for (const [key, entry] of this.#replica.entries) {
      const hidden = this.#entries.get(key);
      const before = hidden === undefined ? entry : firstOf(hidden).before;
      if (before !== undefined) yield before;
    }
    for (const [key, hidden] of this.#entries) {
      const before = firstOf(hidden).before;
      if (!this.#replica.entries.has(key) && before !== undefined) yield before;
    }
  }

  *locks(): IterableIterator<StoredLock> {
    for (const [key, lock] of this.#replica.locks) {
      const hidden = this.#locks.get(key);
      const before = hidden === undefined ? lock : firstOf(hidden).before;
      if (before !== undefined) yield before;
    }
    for (const [key, hidden] of this.#locks) {
      const before = firstOf(hidden).before;
      if (!this.#replica.locks.has(key) && before !== undefined) yield before;
    }
  }
}

/** Hides `key` as of update `index`, holding `before`, unless an earlier change of that update hid it. */
function hide<T>(map: SoleKeyMap<string, HiddenOf<T>>, key: string, index: number, before: T | undefined): void {
  const hidden = map.get(key);
  if (hidden === undefined) map.set(key, { index, before });
  else if (!Array.isArray(hidden)) {
    if (hidden.index !== index) map.set(key, [hidden, { index, before }]);
  } else if (hidden[hidden.length - 1]!.index !== index) hidden.push({ index, before });
}

/** Forgets what updates up to `index` hid of `key`: unless a later one touched it, it shows the replica's value again. */
function release<T>(map: SoleKeyMap<string, HiddenOf<T>>, key: string, index: number): void {
  const list = map.get(key);
  if (list === undefined) return;
  if (!Array.isArray(list)) {
    if (list.index <= index) map.delete(key);
    return;
  }
  let drop = 0;
  while (drop < list.length && list[drop]!.index <= index) drop++;
  if (drop === list.length) map.delete(key);
  else if (drop > 0) list.splice(0, drop);
}
