import type { PeerKey } from "../reliable/protocol.ts";
import { utf8Length } from "../wire/varint.ts";

/**
 * The state map's own forms of what travels in its frames: plain numbers where the wire has 64-bit
 * integers (state-wire.ts converts at the boundary, refusing anything past MAX_COUNTER), member ids as
 * hex keys. Every unit of the map works with these.
 */

/** A member instance: the id and the incarnation it runs as. */
export interface MemberInstance {
  readonly id: PeerKey;
  readonly incarnation: number;
}

/**
 * Where a replica stands: the last update it applied (or the sync it finished), named by the coordinator
 * term that ordered it — (epoch, coordinator) — and the log index.
 */
export interface Position {
  readonly epoch: number;
  readonly coordinator: PeerKey;
  readonly index: number;
}

export const ORIGIN: Position = { epoch: 0, coordinator: "", index: 0 };

/** A coordinator term: its epoch, its coordinator and its members. */
export interface TermRecord {
  readonly epoch: number;
  readonly coordinator: PeerKey;
  readonly members: readonly MemberInstance[];
}

/**
 * A coordinator term as a replica accepted it: its members are the agreed set once it has begun (every
 * one of them accepted it). Until it is known to have begun, the agreed set may still be that of one of
 * `prior`: the latest term its election counted on and, when that one was not known to have begun
 * either, that term's own `prior` — newest first (quorum mode counts a majority of each).
 */
export interface Term extends TermRecord {
  readonly prior: readonly TermRecord[];
}

export const NO_TERM: Term = { epoch: 0, coordinator: "", members: [], prior: [] };

/** A replica's promise not to accept a term below `epoch` (made to `coordinator`'s PrepareOp). */
export interface EpochPromise {
  readonly epoch: number;
  readonly coordinator: PeerKey;
}

export const NO_PROMISE: EpochPromise = { epoch: 0, coordinator: "" };

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
  /** The entry as it was before (single-key writes only: what put() and remove() return). */
  readonly previous: readonly StoredEntry[];
  /** A granted lock's fencing token (0: none — for a lock request, it was withdrawn). */
  readonly token: number;
}

/** What a change did to a replica, for listeners. */
export type ReplicaChange =
  | { readonly kind: "insert"; readonly entry: StoredEntry }
  | { readonly kind: "update"; readonly entry: StoredEntry; readonly previous: StoredEntry }
  | { readonly kind: "remove"; readonly entry: StoredEntry; readonly expired: boolean }
  | { readonly kind: "lock"; readonly lock: StoredLock; readonly previous: StoredLock | undefined }
  | { readonly kind: "unlock"; readonly lock: StoredLock; readonly expired: boolean };

/** An entry as a change or a snapshot carries it: `ttlMs` is the time to live left when it was sent. */
export interface EntrySpec {
  readonly key: string;
  readonly value: Uint8Array;
  readonly format: number;
  readonly version: number;
  readonly owner: MemberInstance;
  readonly removeOnExit: boolean;
  readonly ttlMs: number;
}

/**
 * The entry of a put change, made in the form a replica stores (what storedEntry in state-wire.ts makes
 * of it, its fields in the same order): with no time to live it is stored as it is, one object less on
 * every member for every put.
 */
export function putEntrySpec(key: string, value: Uint8Array, format: number, version: number, owner: MemberInstance, removeOnExit: boolean, ttlMs: number): EntrySpec {
  const entry: StoredEntry = { key, value, format, version, owner, removeOnExit, ttlMs, expiresAt: undefined };
  return entry;
}

/** A lock as a change or a snapshot carries it: `leaseMs` is the lease left when it was sent (0: none). */
export interface LockSpec {
  readonly key: string;
  readonly holder: MemberInstance;
  readonly token: number;
  readonly leaseMs: number;
  readonly releaseOnExit: boolean;
}

/** One change of an update. */
export type Change =
  /** `inserted`: the key had no entry at the coordinator (the wire's INSERT rather than UPDATE; receivers decide for themselves). */
  | { readonly kind: "put"; readonly entry: EntrySpec; readonly inserted: boolean }
  | { readonly kind: "remove"; readonly key: string; readonly expired: boolean }
  | { readonly kind: "lock"; readonly lock: LockSpec }
  | { readonly kind: "unlock"; readonly key: string; readonly expired: boolean }
  | { readonly kind: "clear" };

/** The changes one request made (requestId 0 and no requester: the coordinator's own, for expiry and exits). */
export interface OrderedRequest {
  readonly requestId: number;
  readonly requester: MemberInstance | undefined;
  readonly changes: readonly Change[];
}

/** One step of the map's order: the requests the coordinator ordered at `index`. */
export interface Update {
  readonly epoch: number;
  readonly index: number;
  readonly coordinator: PeerKey;
  readonly requests: readonly OrderedRequest[];
  /** Raises the fencing-token ceiling to this (0: unchanged). */
  readonly tokenCeiling: number;
  /** Members whose applied-request records are forgotten. */
  readonly forget: readonly MemberInstance[];
}

export interface PutSpec {
  readonly key: string;
  readonly value: Uint8Array;
  readonly format: number;
  readonly ttlMs: number;
  readonly removeOnExit: boolean;
  readonly ifVersion: number | undefined;
  readonly fencingToken: number;
}

export interface RemoveSpec {
  readonly key: string;
  readonly ifVersion: number | undefined;
  readonly fencingToken: number;
}

/** What a request asks of the coordinator. */
export type StateOp =
  | { readonly case: "put"; readonly put: PutSpec }
  | { readonly case: "remove"; readonly remove: RemoveSpec }
  | { readonly case: "batch"; readonly puts: readonly PutSpec[]; readonly removes: readonly RemoveSpec[] }
  | { readonly case: "clear" }
  | { readonly case: "lock"; readonly key: string; readonly leaseMs: number; readonly waitMs: number; readonly releaseOnExit: boolean }
  | { readonly case: "unlock"; readonly key: string; readonly fencingToken: number }
  | { readonly case: "renewLease"; readonly key: string; readonly fencingToken: number; readonly leaseMs: number }
  | { readonly case: "cancel"; readonly key: string; readonly lockRequestId: number }
  | { readonly case: "pull"; readonly position: Position }
  | { readonly case: "prepare"; readonly epoch: number; readonly view: ViewKey };

export interface StateRequest {
  readonly requestId: number;
  readonly op: StateOp;
}

/** Outcomes of a request (the wire's StateResult, by name). */
export type StateOutcome = "OK" | "LOCKED" | "VERSION_MISMATCH" | "STALE_TOKEN" | "NOT_COORDINATOR" | "NO_QUORUM" | "NOT_FOUND" | "INVALID" | "TOO_LARGE";

export interface StateResponse {
  readonly requestId: number;
  readonly outcome: StateOutcome;
  readonly message: string;
  readonly epoch: number;
  readonly index: number;
  readonly previous: readonly StoredEntry[];
  readonly token: number;
}

/** A chunk of a snapshot. */
export interface SnapshotChunk {
  readonly transfer: number;
  readonly epoch: number;
  readonly index: number;
  readonly chunk: number;
  readonly chunkCount: number;
  /** As the map stores them: the sender's (the wire carries the times to live left), or the receiver's (counted from when it read them). */
  readonly entries: readonly StoredEntry[];
  readonly locks: readonly LockSpec[];
  readonly applied: readonly AppliedRecord[];
  readonly nextToken: number;
}

/** Ends a sync: the receiver is at `index` of term (epoch, coordinator) with the given members. */
export interface SyncComplete {
  readonly epoch: number;
  readonly coordinator: PeerKey;
  readonly index: number;
  readonly members: readonly MemberInstance[];
  readonly tokenCeiling: number;
  readonly snapshotTransfer: number;
  readonly snapshotChunks: number;
  readonly entryCount: number;
  /** The term's `prior` (see {@link Term}). */
  readonly prior: readonly TermRecord[];
}

/** A view as a position report names it. */
export interface ViewKey {
  readonly installer: PeerKey;
  readonly counter: number;
}

/**
 * A replica's word to a coordinator or a requester: where it stands (an acknowledgement, a notice, or —
 * with `view` — a position report for that view), what it has seen, and snapshot chunks it holds.
 */
export interface StateAck {
  readonly position: Position;
  readonly view: ViewKey | undefined;
  /** The fencing-token ceiling it knows (no token at or above it was ever handed out in its history). */
  readonly tokenCeiling: number;
  readonly accepted: Term;
  /** The accepted term is known to have begun: its coordinator said every one of its members accepted it. */
  readonly acceptedBegun: boolean;
  /** The highest epoch promised (to a coordinator's PrepareOp), and to whom. */
  readonly promised: EpochPromise;
  /**
   * The first incarnation of this member whose term memory it keeps (see TermMemory.since): a term that
   * names it in an earlier incarnation is unknown to it. 0: every incarnation.
   */
  readonly memorySince: number;
  readonly ready: boolean;
  readonly highestSeen: number;
  readonly leaseProbe: number;
  readonly snapshotTransfer: number;
  readonly snapshotChunks: number;
}

/** An announcement of the coordinator: its last index, and a lease probe. */
export interface Announce {
  readonly epoch: number;
  readonly coordinator: PeerKey;
  readonly index: number;
  readonly leaseProbe: number;
}

export function sameInstance(a: MemberInstance, b: MemberInstance): boolean {
  return a.id === b.id && a.incarnation === b.incarnation;
}

/** The member of `members` with id `peer` (a loop, not a closure made for every request or write). */
export function memberOf(members: readonly MemberInstance[], peer: PeerKey): MemberInstance | undefined {
  for (const member of members) if (member.id === peer) return member;
  return undefined;
}

/** Keys made, by instance: an update's requests share their requester's instance (see state-wire.ts). */
const INSTANCE_KEYS = new WeakMap<MemberInstance, string>();

export function instanceKey(member: MemberInstance): string {
  let key = INSTANCE_KEYS.get(member);
  if (key === undefined) INSTANCE_KEYS.set(member, (key = `${member.id}:${member.incarnation}`));
  return key;
}

export function comparePositions(a: Position, b: Position): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch;
  if (a.index !== b.index) return a.index - b.index;
  return a.coordinator < b.coordinator ? -1 : a.coordinator > b.coordinator ? 1 : 0;
}

/** The smallest majority of `n` members. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * How many members besides the coordinator and the requester must have applied a request before it is
 * done, in a term of `members` members: every one. Any member then reads it, and any member that did
 * not restart since holds everything done — what lets a restarted majority rejoin its quorum.
 */
export function noticesNeeded(members: number): number {
  return Math.max(0, members - 2);
}


/** The time to live (or lease) left at `now` of what expires at `expiresAt`: 0 for never, else at least 1 ms. */
export function remaining(expiresAt: number | undefined, now: number): number {
  return expiresAt === undefined ? 0 : Math.max(1, Math.ceil(expiresAt - now));
}

/** At most what a put of `key` with a value of `valueBytes` adds to an update (its owner is the request's). */
export function putBytes(key: string, valueBytes: number): number {
  return utf8Length(key) + valueBytes + 40;
}

/** At most what a remove (or unlock) of `key` adds to an update. */
export function removeBytes(key: string): number {
  return utf8Length(key) + 12;
}

/**
 * At most what an update adds beyond its changes, and each request in it: its id and requester (up to
 * 8-byte varints each, and the 16-byte member id) with the tags and length prefixes around them.
 */
export const UPDATE_OVERHEAD_BYTES = 96;
export const REQUEST_OVERHEAD_BYTES = 48;
