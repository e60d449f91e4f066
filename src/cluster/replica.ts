import { create } from "@bufbuild/protobuf";
import type { MemberRef } from "../../gen/activeblaze/v1/common_pb.ts";
import { MemberRefSchema } from "../../gen/activeblaze/v1/common_pb.ts";
import {
  type AppliedRequest,
  AppliedRequestSchema,
  ChangeKind,
  type Entry,
  type EntryChange,
  EntrySchema,
  type LockRecord,
  LockRecordSchema,
  type LockState,
  LockStateSchema,
  type StateUpdate,
} from "../../gen/activeblaze/v1/cluster_pb.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import { idOf, keyOf } from "../reliable/member-key.ts";

/** A member instance: the id and the incarnation it runs as. */
export interface MemberInstance {
  readonly id: PeerKey;
  readonly incarnation: number;
}

/** One entry of the replicated map, as every replica holds it. */
export interface StoredEntry {
  readonly key: string;
  readonly value: Uint8Array;
  /** PayloadFormat of `value`. */
  readonly format: number;
  /** The log index of the write that made this version. */
  readonly version: number;
  /** The member that last wrote it. */
  readonly owner: MemberInstance;
  readonly removeOnExit: boolean;
  /** Time to live as set by the last write, ms; 0 = forever. */
  readonly ttlMs: number;
  /** When it expires on this member's monotonic clock (an estimate on replicas; the coordinator's is authoritative). */
  readonly expiresAt: number | undefined;
}

/** A write lock on a key (the key may have no entry). */
export interface StoredLock {
  readonly key: string;
  readonly holder: MemberInstance;
  readonly token: number;
  /** The lease as granted or last renewed, ms; 0 = until released. */
  readonly leaseMs: number;
  /** When the lease runs out on this member's monotonic clock; never earlier than at the coordinator. */
  readonly expiresAt: number | undefined;
  readonly releaseOnExit: boolean;
}

/** A request the map has applied, with what its response said. */
export interface AppliedRecord {
  readonly requester: MemberInstance;
  readonly requestId: number;
  readonly index: number;
  readonly previous: readonly StoredEntry[];
  readonly token: number;
}

/** What a change did to a replica, for listeners. */
export type ReplicaChange =
  | { readonly kind: "insert"; readonly entry: StoredEntry }
  | { readonly kind: "update"; readonly entry: StoredEntry; readonly previous: StoredEntry }
  | { readonly kind: "remove"; readonly entry: StoredEntry; readonly expired: boolean }
  | { readonly kind: "lock"; readonly lock: StoredLock; readonly previous: StoredLock | undefined }
  | { readonly kind: "unlock"; readonly lock: StoredLock; readonly expired: boolean };

/**
 * Where a replica stands: the last update it applied (or the sync it finished), named by the coordinator
 * term that ordered it — (epoch, coordinator) — and the log index.
 */
export interface Position {
  readonly epoch: number;
  readonly coordinator: PeerKey;
  readonly index: number;
}

const ORIGIN: Position = { epoch: 0, coordinator: "", index: 0 };

/**
 * How many applied requests are remembered per requester, for idempotent retries: a member with more
 * requests than this in flight when its coordinator fails could see its oldest ones applied twice.
 */
const APPLIED_PER_REQUESTER = 4_096;
/** How many coordinator terms the line history remembers. */
const HISTORY_TERMS = 64;

function lineKey(epoch: number, coordinator: PeerKey): string {
  return `${epoch}/${coordinator}`;
}

export function instanceKey(member: MemberInstance): string {
  return `${member.id}:${member.incarnation}`;
}

export function sameInstance(a: MemberInstance, b: MemberInstance): boolean {
  return a.id === b.id && a.incarnation === b.incarnation;
}

export function comparePositions(a: Position, b: Position): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch;
  if (a.index !== b.index) return a.index - b.index;
  return a.coordinator < b.coordinator ? -1 : a.coordinator > b.coordinator ? 1 : 0;
}

/**
 * A full replica of one group's state map: entries, locks, the requests already applied, and the
 * bookkeeping a coordinator needs to bring other replicas up to date (a log of recent updates, and the
 * history of coordinator terms this replica followed). It does no I/O: the coordinator and the
 * replication driver feed it updates and snapshots and read back what changed.
 */
export class Replica {
  readonly entries: Map<string, StoredEntry> = new Map();
  readonly locks: Map<string, StoredLock> = new Map();
  readonly #applied = new Map<string, Map<number, AppliedRecord>>();
  #position: Position = ORIGIN;
  #nextToken = 1;
  #agreed: MemberInstance[] = [];
  /** Updates kept for replicas that are behind: index → update. */
  readonly #log = new Map<number, StateUpdate>();
  #logFirst = 1;
  readonly #logLimit: number;
  /** The coordinator terms this replica followed: line key → [first index, last index]. */
  readonly #history = new Map<string, { base: number; last: number }>();

  constructor(logLimit: number) {
    this.#logLimit = logLimit;
  }

  get position(): Position {
    return this.#position;
  }

  get nextToken(): number {
    return this.#nextToken;
  }

  /** Quorum mode: the members of the view in which the state was last agreed. */
  get agreed(): readonly MemberInstance[] {
    return this.#agreed;
  }

  /** True when `position` lies on the sequence of updates this replica has (it is a prefix of ours). */
  follows(position: Position): boolean {
    if (position.index === 0) return false;
    const term = this.#history.get(lineKey(position.epoch, position.coordinator));
    return term !== undefined && term.base <= position.index && position.index <= term.last;
  }

  /** The updates after `index` up to ours, or undefined when the log no longer has them all. */
  updatesAfter(index: number): StateUpdate[] | undefined {
    if (index + 1 < this.#logFirst && index < this.#position.index) return undefined;
    const updates: StateUpdate[] = [];
    for (let i = index + 1; i <= this.#position.index; i++) {
      const update = this.#log.get(i);
      if (update === undefined) return undefined;
      updates.push(update);
    }
    return updates;
  }

  appliedRequest(requester: MemberInstance, requestId: number): AppliedRecord | undefined {
    return this.#applied.get(instanceKey(requester))?.get(requestId);
  }

  /** Applies one update (the caller checked it follows our position), returning what changed. */
  apply(update: StateUpdate, now: number): ReplicaChange[] {
    const index = Number(update.index);
    const epoch = Number(update.epoch);
    const coordinator = keyOf(update.coordinatorId);
    const changes: ReplicaChange[] = [];
    const previous: StoredEntry[] = [];
    let token = 0;
    for (const change of update.changes) {
      const applied = this.#applyChange(change, now);
      if (applied === undefined) continue;
      changes.push(applied);
      if (applied.kind === "update") previous.push(applied.previous);
      else if (applied.kind === "remove" && !applied.expired) previous.push(applied.entry);
      else if (applied.kind === "lock") token = applied.lock.token;
    }
    if (update.requestId !== 0n && update.requester !== undefined) {
      this.#remember({ requester: instanceOf(update.requester), requestId: Number(update.requestId), index, previous, token });
    }
    this.#log.set(index, update);
    while (this.#log.size > this.#logLimit) this.#log.delete(this.#logFirst++);
    const key = lineKey(epoch, coordinator);
    const term = this.#history.get(key);
    if (term === undefined) this.#addTerm(key, index - 1, index);
    else term.last = index;
    this.#position = { epoch, coordinator, index };
    return changes;
  }

  /** A sync finished: we are at `index` of the term (epoch, coordinator). */
  synced(epoch: number, coordinator: PeerKey, index: number, nextToken: number, agreed: readonly MemberInstance[]): void {
    if (nextToken > this.#nextToken) this.#nextToken = nextToken;
    this.#agreed = [...agreed];
    const key = lineKey(epoch, coordinator);
    const term = this.#history.get(key);
    if (term === undefined) this.#addTerm(key, index, index);
    else if (index > term.last) term.last = index;
    this.#position = { epoch, coordinator, index };
  }

  /** Reserves the next fencing token (at the coordinator). */
  takeToken(): number {
    return this.#nextToken++;
  }

  /**
   * Replaces the whole state with a snapshot taken at `index`, returning the differences as changes,
   * so that listeners see what a replica that had followed every update would have seen in sum. The log
   * starts afresh: the next update expected is `index + 1`.
   */
  install(entries: readonly StoredEntry[], locks: readonly StoredLock[], applied: readonly AppliedRecord[], index: number): ReplicaChange[] {
    const changes: ReplicaChange[] = [];
    const incoming = new Map(entries.map((e) => [e.key, e]));
    for (const [key, entry] of this.entries) {
      if (!incoming.has(key)) {
        this.entries.delete(key);
        changes.push({ kind: "remove", entry, expired: false });
      }
    }
    for (const entry of entries) {
      const current = this.entries.get(entry.key);
      this.entries.set(entry.key, entry);
      if (current === undefined) changes.push({ kind: "insert", entry });
      else if (current.version !== entry.version || !sameBytes(current.value, entry.value)) changes.push({ kind: "update", entry, previous: current });
    }
    const incomingLocks = new Map(locks.map((l) => [l.key, l]));
    for (const [key, lock] of this.locks) {
      const next = incomingLocks.get(key);
      if (next === undefined || next.token !== lock.token) {
        this.locks.delete(key);
        changes.push({ kind: "unlock", lock, expired: false });
      }
    }
    for (const lock of locks) {
      const current = this.locks.get(lock.key);
      this.locks.set(lock.key, lock);
      if (current === undefined || current.token !== lock.token) changes.push({ kind: "lock", lock, previous: undefined });
      if (lock.token >= this.#nextToken) this.#nextToken = lock.token + 1;
    }
    this.#applied.clear();
    for (const record of applied) this.#remember(record);
    this.#log.clear();
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

  /** Forgets the applied requests of members that are gone for good (they cannot retry). */
  forgetRequester(requester: MemberInstance): void {
    this.#applied.delete(instanceKey(requester));
  }

  #remember(record: AppliedRecord): void {
    const key = instanceKey(record.requester);
    let perRequester = this.#applied.get(key);
    if (perRequester === undefined) this.#applied.set(key, (perRequester = new Map()));
    perRequester.set(record.requestId, record);
    if (perRequester.size > APPLIED_PER_REQUESTER) perRequester.delete(perRequester.keys().next().value!);
  }

  #addTerm(key: string, base: number, last: number): void {
    this.#history.set(key, { base, last });
    if (this.#history.size > HISTORY_TERMS) this.#history.delete(this.#history.keys().next().value!);
  }

  #applyChange(change: EntryChange, now: number): ReplicaChange | undefined {
    const wire = change.entry;
    if (wire === undefined) return undefined;
    switch (change.kind) {
      case ChangeKind.INSERT:
      case ChangeKind.UPDATE: {
        const entry = entryOf(wire, now);
        const previous = this.entries.get(entry.key);
        this.entries.set(entry.key, entry);
        return previous === undefined ? { kind: "insert", entry } : { kind: "update", entry, previous };
      }
      case ChangeKind.REMOVE: {
        const entry = this.entries.get(wire.key);
        if (entry === undefined) return undefined;
        this.entries.delete(wire.key);
        return { kind: "remove", entry, expired: change.expired };
      }
      case ChangeKind.LOCK: {
        if (wire.lock === undefined) return undefined;
        const lock = lockOf(wire.key, wire.lock, now);
        const previous = this.locks.get(lock.key);
        this.locks.set(lock.key, lock);
        if (lock.token >= this.#nextToken) this.#nextToken = lock.token + 1;
        return { kind: "lock", lock, previous };
      }
      case ChangeKind.UNLOCK: {
        const lock = this.locks.get(wire.key);
        if (lock === undefined) return undefined;
        this.locks.delete(wire.key);
        return { kind: "unlock", lock, expired: change.expired };
      }
      default:
        return undefined;
    }
  }
}

// --- wire conversions ---

export function memberRef(member: MemberInstance): MemberRef {
  return create(MemberRefSchema, { id: idOf(member.id), incarnation: BigInt(member.incarnation) });
}

export function instanceOf(ref: MemberRef | undefined): MemberInstance {
  return ref === undefined ? { id: "", incarnation: 0 } : { id: keyOf(ref.id), incarnation: Number(ref.incarnation) };
}

function remaining(expiresAt: number | undefined, now: number): bigint {
  return expiresAt === undefined ? 0n : BigInt(Math.max(1, Math.ceil(expiresAt - now)));
}

export function entryProto(entry: StoredEntry, now: number, lock?: StoredLock): Entry {
  return create(EntrySchema, {
    key: entry.key,
    value: entry.value,
    format: entry.format,
    version: BigInt(entry.version),
    owner: memberRef(entry.owner),
    removeOnExit: entry.removeOnExit,
    ttlRemainingMs: remaining(entry.expiresAt, now),
    lock: lock === undefined ? undefined : lockProto(lock, now),
  });
}

export function lockProto(lock: StoredLock, now: number): LockState {
  return create(LockStateSchema, {
    holder: memberRef(lock.holder),
    fencingToken: BigInt(lock.token),
    leaseRemainingMs: remaining(lock.expiresAt, now),
    releaseOnExit: lock.releaseOnExit,
  });
}

export function lockRecordProto(lock: StoredLock, now: number): LockRecord {
  return create(LockRecordSchema, { key: lock.key, lock: lockProto(lock, now) });
}

export function appliedProto(record: AppliedRecord, now: number): AppliedRequest {
  return create(AppliedRequestSchema, {
    requester: memberRef(record.requester),
    requestId: BigInt(record.requestId),
    index: BigInt(record.index),
    previous: record.previous.map((e) => entryProto(e, now)),
    fencingToken: BigInt(record.token),
  });
}

export function entryOf(wire: Entry, now: number): StoredEntry {
  const ttl = Number(wire.ttlRemainingMs);
  return {
    key: wire.key,
    value: wire.value,
    format: wire.format,
    version: Number(wire.version),
    owner: instanceOf(wire.owner),
    removeOnExit: wire.removeOnExit,
    ttlMs: ttl,
    expiresAt: ttl > 0 ? now + ttl : undefined,
  };
}

export function lockOf(key: string, wire: LockState, now: number): StoredLock {
  const lease = Number(wire.leaseRemainingMs);
  return {
    key,
    holder: instanceOf(wire.holder),
    token: Number(wire.fencingToken),
    leaseMs: lease,
    expiresAt: lease > 0 ? now + lease : undefined,
    releaseOnExit: wire.releaseOnExit,
  };
}

export function appliedOf(wire: AppliedRequest, now: number): AppliedRecord {
  return {
    requester: instanceOf(wire.requester),
    requestId: Number(wire.requestId),
    index: Number(wire.index),
    previous: wire.previous.map((e) => entryOf(e, now)),
    token: Number(wire.fencingToken),
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
