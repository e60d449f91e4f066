import type { PeerKey } from "../reliable/protocol.ts";
import { SoleKeyMap } from "./sole-key-map.ts";
import { storedEntry } from "./state-wire.ts";
import {
  type AppliedRecord,
  type Change,
  instanceKey,
  type LockSpec,
  type MemberInstance,
  ORIGIN,
  type Position,
  type ReplicaChange,
  type StoredEntry,
  type StoredLock,
  type Update,
} from "./state-types.ts";
import { bytesEqual } from "../wire/bytes.ts";

/**
 * How many applied requests are remembered per requester, for idempotent retries: a member with more
 * requests than this in flight when its coordinator fails could see its oldest ones applied twice.
 */
const APPLIED_PER_REQUESTER = 4_096;
/** How many coordinator terms the line history remembers. */
const HISTORY_TERMS = 64;

/** No entries before (shared: most records have none, and nobody changes one). */
const NONE: readonly StoredEntry[] = [];

/**
 * No changes, no records (yet): shared, never written to. An update's first change and first record
 * make arrays of one, not empty arrays grown by a push (the first push makes room for seventeen): most
 * updates of sequential writes carry one request.
 */
const NO_CHANGES: ReplicaChange[] = [];
const NO_RECORDS: AppliedRecord[] = [];

/** `out` with `change` added: an array of one made for it when `out` is the shared empty one. */
function added(out: ReplicaChange[], change: ReplicaChange): ReplicaChange[] {
  if (out === NO_CHANGES) return [change];
  out.push(change);
  return out;
}

function lineKey(epoch: number, coordinator: PeerKey): string {
  return `${epoch}/${coordinator}`;
}

/**
 * The applied requests remembered of one requester, by request id, in the order they were applied; past
 * APPLIED_PER_REQUESTER the oldest is forgotten. A requester numbers its requests one after another, so
 * they are kept in a table by id modulo its size (twice the most remembered, grown to it as they come):
 * a new one mostly takes the slot an id forgotten long before left, with no hashed insert and delete —
 * a map whose deletions pile up is rebuilt every few thousand writes. An id whose slot another one
 * remembered holds (ids far apart) goes to a map beside. The ids' order is kept in a ring, so the oldest
 * is found without an iterator made for every write.
 */
class RequesterRecords {
  #slots: Array<AppliedRecord | undefined> = new Array<AppliedRecord | undefined>(16).fill(undefined);
  readonly #overflow = new Map<number, AppliedRecord>();
  readonly #order: number[] = [];
  /** Where the oldest id is in `#order`, once it is full. */
  #oldest = 0;

  get(requestId: number): AppliedRecord | undefined {
    const record = this.#slots[requestId & (this.#slots.length - 1)];
    if (record !== undefined && record.requestId === requestId) return record;
    return this.#overflow.size === 0 ? undefined : this.#overflow.get(requestId);
  }

  /** The records, oldest first. */
  values(): AppliedRecord[] {
    const order = this.#order;
    const records: AppliedRecord[] = [];
    for (let i = 0; i < order.length; i++) records.push(this.get(order[(this.#oldest + i) % order.length]!)!);
    return records;
  }

  /** The oldest record (undefined: none). */
  first(): AppliedRecord | undefined {
    return this.#order.length === 0 ? undefined : this.get(this.#order[this.#oldest]!);
  }

  remember(record: AppliedRecord): void {
    const requestId = record.requestId;
    // An id remembered already keeps its place (as in a map's order), with its new record.
    const slot = requestId & (this.#slots.length - 1);
    const held = this.#slots[slot];
    if (held !== undefined && held.requestId === requestId) {
      this.#slots[slot] = record;
      return;
    }
    if (this.#overflow.has(requestId)) {
      this.#overflow.set(requestId, record);
      return;
    }
    const order = this.#order;
    if (order.length < APPLIED_PER_REQUESTER) {
      if (2 * (order.length + 1) > this.#slots.length) this.#grow();
      order.push(requestId);
    } else {
      // Full: the oldest is forgotten, and its slot in the ring taken by the newest.
      this.#forget(order[this.#oldest]!);
      order[this.#oldest] = requestId;
      this.#oldest = (this.#oldest + 1) % APPLIED_PER_REQUESTER;
    }
    this.#place(record);
  }

  #place(record: AppliedRecord): void {
    const slot = record.requestId & (this.#slots.length - 1);
    if (this.#slots[slot] === undefined) this.#slots[slot] = record;
    else this.#overflow.set(record.requestId, record);
  }

  #forget(requestId: number): void {
    const slot = requestId & (this.#slots.length - 1);
    const held = this.#slots[slot];
    if (held !== undefined && held.requestId === requestId) this.#slots[slot] = undefined;
    else this.#overflow.delete(requestId);
  }

  /** A table twice the size, the records placed in it again (before the ring is full: no oldest yet). */
  #grow(): void {
    const records = this.values();
    this.#slots = new Array<AppliedRecord | undefined>(this.#slots.length * 2).fill(undefined);
    this.#overflow.clear();
    for (const record of records) this.#place(record);
  }
}

/**
 * A request this replica applied: the entry it replaced or removed is kept as it is, and put in the array
 * that responses and snapshots carry only when someone asks for it — most records are never read (every
 * member remembers every request; only the requester's own answer, or a snapshot, reads one).
 */
class AppliedRequest implements AppliedRecord {
  constructor(
    readonly requester: MemberInstance,
    readonly requestId: number,
    readonly index: number,
    readonly before: StoredEntry | undefined,
    readonly token: number,
  ) {}

  get previous(): readonly StoredEntry[] {
    return this.before === undefined ? NONE : [this.before];
  }
}

/** What one update did: the replica's changes (for listeners) and a record per request it applied. */
export interface Applied {
  readonly changes: ReplicaChange[];
  readonly records: AppliedRecord[];
}

/**
 * A full replica of one group's state map: entries, locks, the requests already applied, and the
 * bookkeeping a coordinator needs to bring other replicas up to date (a log of recent updates, and the
 * history of coordinator terms this replica followed). It does no I/O and reads no clock: the units of
 * the map feed it updates and snapshots (with the time) and read back what changed.
 */
export class Replica {
  #entries = new Map<string, StoredEntry>();
  /** The locks by key: a lock taken and released again and again comes and goes beside a map, not in it. */
  readonly locks: SoleKeyMap<string, StoredLock> = new SoleKeyMap();
  readonly #applied = new Map<string, RequesterRecords>();
  #position: Position = ORIGIN;
  #nextToken = 1;
  #tokenCeiling = 1;
  /**
   * Updates kept for replicas that are behind, from `#logFirst` on: update `index` in slot `index %
   * logLimit` (a ring, where a map of ten thousand indexes cost a hashed insert and delete a write).
   */
  readonly #log: Array<Update | undefined>;
  #logFirst = 1;
  readonly #logLimit: number;
  /** The coordinator terms this replica followed: line key → [first index, last index]. */
  readonly #history = new Map<string, { base: number; last: number }>();
  /** The line key made last: most updates are of the term before them. */
  #line = { epoch: 0, coordinator: "", key: lineKey(0, "") };

  constructor(logLimit: number) {
    this.#logLimit = logLimit;
    this.#log = new Array<Update | undefined>(logLimit).fill(undefined);
  }

  /** The entries by key (a snapshot installed replaces this map with its own). */
  get entries(): Map<string, StoredEntry> {
    return this.#entries;
  }

  get position(): Position {
    return this.#position;
  }

  /** The next fencing token above every one this replica saw granted. */
  get nextToken(): number {
    return this.#nextToken;
  }

  /** No token at or above this was handed out in this replica's history (≥ nextToken). */
  get tokenCeiling(): number {
    return Math.max(this.#tokenCeiling, this.#nextToken);
  }

  /** True when `position` lies on the sequence of updates this replica has (it is a prefix of ours). */
  follows(position: Position): boolean {
    if (position.index === 0) return false;
    const term = this.#history.get(this.#lineKey(position.epoch, position.coordinator));
    return term !== undefined && term.base <= position.index && position.index <= term.last;
  }

  /** The updates after `index` up to ours, or undefined when the log no longer has them all. */
  updatesAfter(index: number, limit = Number.POSITIVE_INFINITY): Update[] | undefined {
    if (index + 1 < this.#logFirst && index < this.#position.index) return undefined;
    const updates: Update[] = [];
    for (let i = index + 1; i <= this.#position.index && updates.length < limit; i++) {
      const update = i < this.#logFirst ? undefined : this.#log[i % this.#logLimit];
      if (update === undefined || update.index !== i) return undefined;
      updates.push(update);
    }
    return updates;
  }

  appliedRequest(requester: MemberInstance, requestId: number): AppliedRecord | undefined {
    return this.#applied.get(instanceKey(requester))?.get(requestId);
  }

  /** Applies one update (the caller checked it follows our position), returning what changed. */
  apply(update: Update, now: number): Applied {
    const { index, epoch, coordinator } = update;
    let changes = NO_CHANGES;
    let records = NO_RECORDS;
    // The requests of an update mostly come from one member or a few: its key is looked up once a run.
    let requester: MemberInstance | undefined;
    let applied: RequesterRecords | undefined;
    for (const request of update.requests) {
      // Only single-key writes answer with the entry as it was (put, remove); a batch's would be large.
      // Most requests change one key: no array of the entries before unless one was there.
      const single = request.changes.length === 1 && request.changes[0]!.kind !== "clear";
      let previous: StoredEntry | undefined;
      let token = 0;
      for (const change of request.changes) {
        const before = changes.length;
        changes = this.#applyChange(change, now, changes);
        for (let i = before; i < changes.length; i++) {
          const done = changes[i]!;
          if (done.kind === "update") previous = single ? done.previous : undefined;
          else if (done.kind === "remove" && !done.expired) previous = single ? done.entry : undefined;
          else if (done.kind === "lock") token = done.lock.token;
        }
      }
      if (request.requestId !== 0 && request.requester !== undefined) {
        const record = new AppliedRequest(request.requester, request.requestId, index, previous, token);
        if (request.requester !== requester) {
          requester = request.requester;
          applied = this.#appliedOf(requester);
        }
        applied!.remember(record);
        if (records === NO_RECORDS) records = [record];
        else records.push(record);
      }
    }
    for (const member of update.forget) this.#applied.delete(instanceKey(member));
    if (update.tokenCeiling > this.#tokenCeiling) this.#tokenCeiling = update.tokenCeiling;
    this.#log[index % this.#logLimit] = update;
    if (this.#logFirst <= index - this.#logLimit) this.#logFirst = index - this.#logLimit + 1;
    const key = this.#lineKey(epoch, coordinator);
    const term = this.#history.get(key);
    if (term === undefined) this.#addTerm(key, index - 1, index);
    else term.last = index;
    this.#position = { epoch, coordinator, index };
    return { changes, records };
  }

  /** A sync finished: we are at `index` of the term (epoch, coordinator). */
  synced(epoch: number, coordinator: PeerKey, index: number, tokenCeiling: number): void {
    if (tokenCeiling > this.#tokenCeiling) this.#tokenCeiling = tokenCeiling;
    const key = this.#lineKey(epoch, coordinator);
    const term = this.#history.get(key);
    if (term === undefined) this.#addTerm(key, index, index);
    else if (index > term.last) term.last = index;
    this.#position = { epoch, coordinator, index };
  }

  /** Reserves the next fencing token (at the coordinator). */
  takeToken(): number {
    return this.#nextToken++;
  }

  /** Starts tokens at `next` at least (a new coordinator, above every ceiling reported). */
  raiseTokens(next: number): void {
    if (next > this.#nextToken) this.#nextToken = next;
    if (next > this.#tokenCeiling) this.#tokenCeiling = next;
  }

  /**
   * Replaces the whole state with a snapshot taken at `index`, returning the differences as changes,
   * so that listeners see what a replica that had followed every update would have seen in sum; with
   * `entryChanges` false (nobody listens) only the locks' changes, which the map acts on itself. The
   * replica takes `entries` over as its own map. The log starts afresh: the next update expected is
   * `index + 1`.
   */
  install(entries: Map<string, StoredEntry>, locks: readonly LockSpec[], applied: readonly AppliedRecord[], index: number, nextToken: number, now: number, entryChanges = true): ReplicaChange[] {
    const changes: ReplicaChange[] = [];
    if (entryChanges) {
      for (const [key, entry] of this.#entries) if (!entries.has(key)) changes.push({ kind: "remove", entry, expired: false });
      // An empty replica (a joiner) sees every entry inserted: no lookups.
      const empty = this.#entries.size === 0;
      for (const entry of entries.values()) {
        const current = empty ? undefined : this.#entries.get(entry.key);
        if (current === undefined) changes.push({ kind: "insert", entry });
        else if (current.version !== entry.version || !bytesEqual(current.value, entry.value)) changes.push({ kind: "update", entry, previous: current });
      }
    }
    this.#entries = entries;
    const incomingLocks = new Map(locks.map((l) => [l.key, l]));
    for (const [key, lock] of this.locks) {
      const next = incomingLocks.get(key);
      if (next === undefined || next.token !== lock.token) {
        this.locks.delete(key);
        changes.push({ kind: "unlock", lock, expired: false });
      }
    }
    for (const spec of locks) {
      const lock = storedLock(spec, now);
      const current = this.locks.get(lock.key);
      this.locks.set(lock.key, lock);
      if (current === undefined || current.token !== lock.token) changes.push({ kind: "lock", lock, previous: undefined });
      if (lock.token >= this.#nextToken) this.#nextToken = lock.token + 1;
    }
    if (nextToken > this.#nextToken) this.#nextToken = nextToken;
    this.#applied.clear();
    for (const record of applied) this.#remember(record);
    this.#log.fill(undefined);
    this.#logFirst = index + 1;
    this.#history.clear();
    return changes;
  }

  /** Every applied request remembered, for a snapshot. */
  appliedRecords(): AppliedRecord[] {
    const records: AppliedRecord[] = [];
    for (const perRequester of this.#applied.values()) records.push(...perRequester.values());
    return records;
  }

  /** The requesters whose applied requests are remembered. */
  requesters(): MemberInstance[] {
    const members: MemberInstance[] = [];
    for (const perRequester of this.#applied.values()) {
      const first = perRequester.first();
      if (first !== undefined) members.push(first.requester);
    }
    return members;
  }

  /** The index of the last request of `requester` this replica remembers (0: none). */
  lastAppliedIndex(requester: MemberInstance): number {
    let last = 0;
    for (const record of this.#applied.get(instanceKey(requester))?.values() ?? []) if (record.index > last) last = record.index;
    return last;
  }

  #remember(record: AppliedRecord): void {
    this.#appliedOf(record.requester).remember(record);
  }

  /** The applied requests remembered of `requester` (made empty if none). */
  #appliedOf(requester: MemberInstance): RequesterRecords {
    const key = instanceKey(requester);
    let perRequester = this.#applied.get(key);
    if (perRequester === undefined) this.#applied.set(key, (perRequester = new RequesterRecords()));
    return perRequester;
  }

  #lineKey(epoch: number, coordinator: PeerKey): string {
    const line = this.#line;
    if (line.epoch === epoch && line.coordinator === coordinator) return line.key;
    this.#line = { epoch, coordinator, key: lineKey(epoch, coordinator) };
    return this.#line.key;
  }

  #addTerm(key: string, base: number, last: number): void {
    this.#history.set(key, { base, last });
    if (this.#history.size > HISTORY_TERMS) this.#history.delete(this.#history.keys().next().value!);
  }

  /** Applies `change`; returns `out` with what it did added (a new array when `out` was the shared empty one). */
  #applyChange(change: Change, now: number, out: ReplicaChange[]): ReplicaChange[] {
    switch (change.kind) {
      case "put": {
        const entry = storedEntry(change.entry, now);
        const previous = this.entries.get(entry.key);
        this.entries.set(entry.key, entry);
        return added(out, previous === undefined ? { kind: "insert", entry } : { kind: "update", entry, previous });
      }
      case "remove": {
        const entry = this.entries.get(change.key);
        if (entry === undefined) return out;
        this.entries.delete(change.key);
        return added(out, { kind: "remove", entry, expired: change.expired });
      }
      case "clear": {
        let cleared = out;
        for (const entry of this.entries.values()) cleared = added(cleared, { kind: "remove", entry, expired: false });
        this.entries.clear();
        return cleared;
      }
      case "lock": {
        const lock = storedLock(change.lock, now);
        const previous = this.locks.get(lock.key);
        this.locks.set(lock.key, lock);
        if (lock.token >= this.#nextToken) this.#nextToken = lock.token + 1;
        return added(out, { kind: "lock", lock, previous });
      }
      case "unlock": {
        const lock = this.locks.get(change.key);
        if (lock === undefined) return out;
        this.locks.delete(change.key);
        return added(out, { kind: "unlock", lock, expired: change.expired });
      }
    }
  }
}

export function storedLock(spec: LockSpec, now: number): StoredLock {
  return {
    key: spec.key,
    holder: spec.holder,
    token: spec.token,
    leaseMs: spec.leaseMs,
    expiresAt: spec.leaseMs > 0 ? now + spec.leaseMs : undefined,
    releaseOnExit: spec.releaseOnExit,
  };
}

