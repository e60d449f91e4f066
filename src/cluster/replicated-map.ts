import { PayloadFormat } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { Emitter, PushIterator, type SubscribeOptions, type Subscription } from "../channel/events.ts";
import { PendingCalls } from "../core/pending.ts";
import { BlazeError, type BlazeErrorCode } from "../errors.ts";
import { BlazeMessage } from "../message/blaze-message.ts";
import { encodePayload } from "../message/payload-message.ts";
import type { AbortSignalLike } from "../web.ts";
import { LockKeeper } from "./lock-keeper.ts";
import type { ResolvedStateOptions } from "./options.ts";
import { SoleKeyMap } from "./sole-key-map.ts";
import type { Waiter } from "./state-client.ts";
import type { StateEngine } from "./state-engine.ts";
import {
  type MemberInstance,
  putBytes,
  type PutSpec,
  removeBytes,
  type ReplicaChange,
  REQUEST_OVERHEAD_BYTES,
  type StateOp,
  type StateOutcome,
  type StateResponse,
  type StoredEntry,
  type StoredLock,
  UPDATE_OVERHEAD_BYTES,
} from "./state-types.ts";

export type { MemberInstance } from "./state-types.ts";

/** What the map holds: a BlazeMessage, or bytes. */
export type MapValue = BlazeMessage | Uint8Array;

/** An entry with its bookkeeping. */
export interface MapEntry {
  readonly key: string;
  readonly value: MapValue;
  /** Grows with every write of the key (compare-and-set compares it). */
  readonly version: number;
  /** The member that last wrote it. */
  readonly owner: MemberInstance;
  readonly removeOnExit: boolean;
  /** Time to live as last set, ms; 0 = forever. */
  readonly timeToLiveMs: number;
}

/** A lock as every replica knows it. */
export interface LockInfo {
  readonly key: string;
  readonly holder: MemberInstance;
  readonly fencingToken: number;
  /** The lease as granted or renewed, ms; 0 = until released. */
  readonly leaseMs: number;
}

/**
 * A change of the map, in the map's order (the same at every member). `resync` marks the differences a
 * snapshot made: this replica had fallen behind (or was on the other side of a partition) and was
 * brought to the coordinator's state in one step.
 */
export type MapChange = (
  | { readonly type: "insert"; readonly key: string; readonly value: MapValue; readonly owner: MemberInstance; readonly version: number }
  | { readonly type: "update"; readonly key: string; readonly value: MapValue; readonly previous: MapValue; readonly owner: MemberInstance; readonly version: number }
  | { readonly type: "remove"; readonly key: string; readonly value: MapValue; readonly owner: MemberInstance; readonly expired: boolean }
) & { readonly resync: boolean };

export interface MapEvents {
  /** An entry was inserted, updated or removed (`expired`: its time to live ran out). */
  change: MapChange;
  /** A lock was granted (or its lease renewed). */
  lock: LockInfo & { readonly resync: boolean };
  /** A lock was released, freed by its holder's exit, or (`expired`) its lease ran out. */
  unlock: LockInfo & { readonly expired: boolean; readonly resync: boolean };
  /** A lease ran out: the lock was freed without its holder's release. */
  lockExpired: LockInfo;
  /**
   * The replica is complete and current ("state ready"): the coordinator of a new view brought it to
   * its state (a snapshot or the updates it lacked), at the start of the term with this epoch.
   */
  ready: { readonly epoch: number; readonly size: number };
}

export interface WriteOptions {
  /** Give up with `TIMEOUT` if the write is not applied everywhere by then. Default: the map's `requestTimeoutMs`. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignalLike;
  /**
   * The lock this write is made under: the write is refused (`STALE_TOKEN`) unless the lock is still
   * held with this handle's fencing token.
   */
  readonly lock?: LockHandle | { readonly fencingToken: number };
}

export interface PutOptions extends WriteOptions {
  /** Time to live in ms (0 = forever), on the coordinator's clock. Default: the map's `timeToLiveMs`. */
  readonly timeToLiveMs?: number;
  /** Remove the entry when its owner (this member, the writer) leaves. Default: the map's `removeOnExit`. */
  readonly removeOnExit?: boolean;
  /** Compare-and-set: apply only if the entry is at this version (0: only if the key is absent). */
  readonly ifVersion?: number;
}

export interface RemoveOptions extends WriteOptions {
  readonly ifVersion?: number;
}

export interface LockOptions {
  /** Lease in ms (0 = until released), on the coordinator's monotonic clock. Default: the map's `leaseMs`. */
  readonly leaseMs?: number;
  /**
   * Renew the lease while the lock is held (a third of the lease before it runs out); the handle's
   * `lost` signal aborts when a renewal is refused or the lease runs out first. Needs a lease.
   */
  readonly autoRenew?: boolean;
  /** How long to queue for the lock (behind this member's own holder too) before `TIMEOUT`. Default: the map's `lockTimeoutMs`. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignalLike;
  /** Free the lock when this member leaves. Default: the map's `releaseLockOnExit`. */
  readonly releaseOnExit?: boolean;
}

/** What the map needs of the channel it belongs to. */
export interface MapAccess {
  /** The running engine (throws `ILLEGAL_STATE` before the channel started). */
  engine(): StateEngine;
  /** The driver's time. */
  now(): number;
  /** An input changed something: flush and re-arm at the end of the turn. */
  touch(): void;
  /** The largest update (encoded) one datagram carries. */
  maxUpdateBytes(): number;
  /** `maxMessageBytes` of the channel: the largest value. */
  readonly maxValueBytes: number;
}

/** How a refused request's outcome maps to an error code. */
const OUTCOME_CODES: Partial<Record<StateOutcome, BlazeErrorCode>> = {
  LOCKED: "LOCKED",
  VERSION_MISMATCH: "VERSION_MISMATCH",
  STALE_TOKEN: "STALE_TOKEN",
  NO_QUORUM: "NO_QUORUM",
  NOT_FOUND: "NOT_FOUND",
  INVALID: "INVALID_ARGUMENT",
  TOO_LARGE: "MESSAGE_TOO_LARGE",
};

export function responseError(response: StateResponse): BlazeError {
  const code = OUTCOME_CODES[response.outcome] ?? "ILLEGAL_STATE";
  return new BlazeError(code, response.message || `the coordinator refused the request (${response.outcome})`);
}

/** A lock's end: the handle no longer holds it. */
type LossReason = "refused" | "expired" | "freed";

/** What a handle needs of its map. */
interface HandleAccess {
  now(): number;
  unlock(handle: LockHandle, options: { timeoutMs?: number; signal?: AbortSignalLike }): Promise<void>;
  renew(handle: LockHandle, leaseMs: number, options: { timeoutMs?: number; signal?: AbortSignalLike }): Promise<void>;
  /** The handle no longer holds the lock (released or lost): this member's next waiter for the key goes on. */
  ended(handle: LockHandle): void;
}

const { AbortController } = globalThis as unknown as { AbortController: new () => { readonly signal: AbortSignalLike; abort(reason?: unknown): void } };

/**
 * A granted lock. Its fencing token grows with every grant of any lock of the map, across coordinators:
 * pass the handle (or its token) to writes and to other systems, so that a holder whose lease ran out
 * is refused. `valid` is this member's conservative view: the lease counted from when it asked.
 */
export class LockHandle implements AsyncDisposable {
  readonly #access: HandleAccess;
  /** Made when first asked for (most handles are released without anyone looking at it); `#lostReason` says why it was lost. */
  #lost: { readonly signal: AbortSignalLike; abort(reason?: unknown): void } | undefined;
  #lostReason: BlazeError | undefined;
  #released = false;
  #releasing: Promise<void> | undefined;
  /** When the lease ends on this member's monotonic clock (Infinity without a lease). */
  #expiresAt: number;

  /** @internal Made by the map. */
  constructor(
    readonly key: string,
    readonly fencingToken: number,
    readonly leaseMs: number,
    expiresAt: number,
    /** Renewed while held (see LockOptions.autoRenew). */
    readonly autoRenew: boolean,
    access: HandleAccess,
  ) {
    this.#expiresAt = expiresAt;
    this.#access = access;
  }

  /** When the lease ends on this member's monotonic clock (Infinity without a lease). */
  get expiresAt(): number {
    return this.#expiresAt;
  }

  /** True until released or lost, and until the lease (counted from the last request) may have run out. */
  get valid(): boolean {
    return !this.#released && this.#lostReason === undefined && this.#access.now() < this.#expiresAt;
  }

  /** True once released (the release acknowledged). */
  get released(): boolean {
    return this.#released;
  }

  /** @internal A release is on its way. */
  get releasing(): boolean {
    return this.#releasing !== undefined;
  }

  /**
   * Aborts when this member learns the lock is no longer held by this handle without its release: a
   * renewal refused, the lease run out (before a renewal succeeded), or the lock freed another way (its
   * holder's exit). Its reason is a `BlazeError` saying which.
   */
  get lost(): AbortSignalLike {
    if (this.#lost === undefined) {
      this.#lost = new AbortController();
      if (this.#lostReason !== undefined) this.#lost.abort(this.#lostReason);
    }
    return this.#lost.signal;
  }

  /**
   * Releases the lock; resolves once every member has the release (any next master keeps it). A release
   * that fails (a timeout during a failover, say) leaves the handle held, and may be called again.
   * Releasing twice, or concurrently, releases once.
   */
  release(options: { timeoutMs?: number; signal?: AbortSignalLike } = {}): Promise<void> {
    if (this.#released) return Promise.resolve();
    this.#releasing ??= this.#access.unlock(this, options).then(
      () => this.#end(),
      (error: unknown) => {
        this.#releasing = undefined;
        // Not held any more (its lease ran out, its holder was removed): there is nothing to release.
        if (error instanceof BlazeError && (error.code === "STALE_TOKEN" || error.code === "NOT_FOUND" || error.code === "LOCKED")) this.#end();
        throw error;
      },
    );
    return this.#releasing;
  }

  /** Renews the lease for `leaseMs` from now (default: the original lease). Throws `STALE_TOKEN` if it was lost. */
  async renew(leaseMs = this.leaseMs, options: { timeoutMs?: number; signal?: AbortSignalLike } = {}): Promise<void> {
    if (this.#released) throw new BlazeError("ILLEGAL_STATE", `the lock on "${this.key}" was released`);
    const asked = this.#access.now();
    try {
      await this.#access.renew(this, leaseMs, options);
    } catch (error) {
      if (error instanceof BlazeError && error.code === "STALE_TOKEN") this.lose("refused", error);
      throw error;
    }
    this.#expiresAt = leaseMs > 0 ? asked + leaseMs : Number.POSITIVE_INFINITY;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.release();
    } catch (error) {
      // A lock already lost has nothing to release.
      if (!(error instanceof BlazeError) || (error.code !== "STALE_TOKEN" && error.code !== "NOT_FOUND" && error.code !== "LOCKED")) throw error;
    }
  }

  /** @internal The lock is no longer this handle's. */
  lose(reason: LossReason, cause?: unknown): void {
    if (this.#released || this.#lostReason !== undefined) return;
    const what =
      reason === "refused" ? "its renewal was refused" : reason === "expired" ? "its lease ran out before it was renewed" : "it was freed without this handle's release";
    this.#lostReason = new BlazeError("STALE_TOKEN", `the lock on "${this.key}" (fencing token ${this.fencingToken}) was lost: ${what}`, cause === undefined ? undefined : { cause });
    this.#lost?.abort(this.#lostReason);
    this.#access.ended(this);
  }

  #end(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#lostReason === undefined) this.#access.ended(this);
  }
}

/**
 * A call of this member's to the engine (a write, a lock, an unlock, a renewal) while it waits: the
 * engine hands its answer to it, and the map reads it when the call ends without one. One object a
 * call, not closures (and the scope they keep) for each.
 */
class RequestCall implements Waiter {
  /** Its id in the map's table of calls, and its request's id at the engine. */
  id = 0;
  request = 0;
  answered = false;

  constructor(
    readonly map: CallAccess,
    readonly engine: StateEngine,
    readonly op: StateOp,
    /** When a write began (undefined: not a write, whose duration is not measured). */
    readonly started: number | undefined,
    /** What the call's promise resolves with, made of its answer (undefined: the answer itself). */
    readonly answerOf: ((response: StateResponse) => unknown) | undefined,
  ) {}

  answer(response: StateResponse): boolean {
    return this.map.answered(this, response);
  }
}

/** What a request call needs of its map (made once, as the lock handles' access is). */
interface CallAccess {
  /** The call's answer came: settles it; false when it had ended already. */
  answered(call: RequestCall, response: StateResponse): boolean;
}

/** What a map call keeps while it waits: its request to the engine, or a turn in this member's queue for a key. */
type CallMeta = RequestCall | { readonly turn: string };

/** How a call is named in its errors (made only when one needs it). */
function callName(meta: CallMeta): string {
  return meta instanceof RequestCall ? opName(meta.op) : `the lock on "${meta.turn}" (held by this member)`;
}

function opName(op: StateOp): string {
  switch (op.case) {
    case "put":
      return `put("${op.put.key}")`;
    case "remove":
      return `remove("${op.remove.key}")`;
    case "batch":
      return `putAll(${op.puts.length} entries)`;
    case "clear":
      return "clear()";
    case "lock":
      return `the lock on "${op.key}"`;
    case "unlock":
      return `unlock("${op.key}")`;
    case "renewLease":
      return `renewing the lease on "${op.key}"`;
    default:
      return op.case;
  }
}

/**
 * The replicated state map of a cluster channel's group (ActiveBlaze's distributed state map). Every
 * member holds the whole map: reads are local and synchronous; writes go to the group's coordinator,
 * which orders them, and resolve once applied on every member of the view. Entries have an owner (the
 * last writer), an optional time to live and `removeOnExit`; keys can be write-locked with leases.
 *
 * The calls waiting for an answer are one table (`PendingCalls`: timeout, abort, clean-up); a
 * call given up on is abandoned at the engine (a lock request is withdrawn). Locks of this member queue
 * here first: a key is requested from the coordinator by one lock() at a time, the others wait behind it
 * in order, and get it after its release.
 */
export class ReplicatedMap {
  readonly #access: MapAccess;
  readonly #options: ResolvedStateOptions;
  readonly #events: Emitter<MapEvents>;
  /** Listeners of "change" (a snapshot's entry changes are worked out only for someone). */
  #changeListeners = 0;
  /** Where write and lock-wait durations go (the `metrics` option). */
  readonly #metrics: MapMetrics;
  /**
   * What waits for an answer: a call's promise resolves with what the call makes of it (a request's
   * answer, a put's value before, nothing for a turn); a request that ends without its answer is
   * abandoned at the engine as it fails.
   */
  readonly #calls = new PendingCalls<unknown, CallMeta>({ onFail: (meta, error) => this.#failed(meta, error.code), what: callName });
  readonly #callAccess: CallAccess = { answered: (call, response) => this.#answered(call, response) };
  /**
   * Keys this member holds or is asking for: the calls queued behind, and the handle of the lock held
   * (one map for both: a lock and its release add and delete one key, not one in each of two maps). The
   * key of one lock at a time comes and goes beside a map, not in it (see SoleKeyMap).
   */
  readonly #turns = new SoleKeyMap<string, Turn>();
  readonly #keeper: LockKeeper;
  readonly #handleAccess: HandleAccess;

  /** @internal Created by the cluster channel. */
  constructor(access: MapAccess, options: ResolvedStateOptions, onListenerError: (error: BlazeError) => void, metrics: MapMetrics = NO_METRICS) {
    this.#access = access;
    this.#metrics = metrics;
    this.#options = options;
    this.#events = new Emitter<MapEvents>((error) => onListenerError(error));
    this.#handleAccess = {
      now: () => access.now(),
      unlock: (handle, opts) => this.#unlock(handle, opts),
      renew: (handle, leaseMs, opts) => this.#renew(handle, leaseMs, opts),
      ended: (handle) => this.#ended(handle),
    };
    this.#keeper = new LockKeeper(
      (handle) => handle.renew(handle.leaseMs, { timeoutMs: Math.max(1, Math.floor(handle.leaseMs / 3)) }),
      () => access.touch(),
    );
  }

  // --- reads: local and synchronous ---

  get(key: string): MapValue | undefined {
    const entry = this.#engine().visible.getEntry(key);
    return entry === undefined ? undefined : valueOf(entry);
  }

  has(key: string): boolean {
    return this.#engine().visible.getEntry(key) !== undefined;
  }

  get size(): number {
    return this.#engine().visible.size;
  }

  keys(): string[] {
    return [...this.#engine().visible.entries()].map((e) => e.key);
  }

  entries(): Array<[string, MapValue]> {
    return [...this.#engine().visible.entries()].map((e) => [e.key, valueOf(e)]);
  }

  /** The entry with its version, owner and options. */
  getEntry(key: string): MapEntry | undefined {
    const entry = this.#engine().visible.getEntry(key);
    return entry === undefined ? undefined : mapEntry(entry);
  }

  /** The lock on `key`, if any. */
  getLock(key: string): LockInfo | undefined {
    const lock = this.#engine().visible.getLock(key);
    return lock === undefined ? undefined : lockInfo(lock);
  }

  /** Every lock held now. */
  locks(): LockInfo[] {
    return [...this.#engine().visible.locks()].map(lockInfo);
  }

  isLocked(key: string): boolean {
    return this.#engine().visible.getLock(key) !== undefined;
  }

  /** True when this member wrote the entry last (ActiveBlaze's isOwner). */
  isOwner(key: string, local: MemberInstance): boolean {
    const owner = this.#engine().visible.getEntry(key)?.owner;
    return owner !== undefined && owner.id === local.id && owner.incarnation === local.incarnation;
  }

  // --- writes ---

  /** Writes `key`; resolves with the value it had before (undefined: it was absent) once applied everywhere. */
  put(key: string, value: MapValue, options: PutOptions = {}): Promise<MapValue | undefined> {
    // Not an async function: a write's answer goes through one reaction, with no suspended frame per
    // put; what the checks throw still rejects the promise.
    try {
      const put = this.#putSpec(key, value, options, key);
      const bytes = UPDATE_OVERHEAD_BYTES + REQUEST_OVERHEAD_BYTES + putBytes(key, put.value.length);
      return this.#write({ case: "put", put }, bytes, options, previousValue);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Compare-and-set: writes `key` only if it is at `version` (0: absent); false if it was not. */
  async compareAndSet(key: string, version: number, value: MapValue, options: Omit<PutOptions, "ifVersion"> = {}): Promise<boolean> {
    return versionMatched(this.put(key, value, { ...options, ifVersion: version }));
  }

  /** Removes `key`; resolves with its value before (undefined: it was absent). */
  async remove(key: string, options: RemoveOptions = {}): Promise<MapValue | undefined> {
    const remove = { key: checkKey(key), ifVersion: optionalVersion(options.ifVersion), fencingToken: tokenOf(options, key) };
    return previousValue(await this.#write({ case: "remove", remove }, this.#bytesOf([], [remove]), options));
  }

  /**
   * Writes several entries (and removes keys) atomically: all of them in one step of the map's order, or
   * none. `ifVersions` makes it a compare-and-set of the keys it names (0: absent), written or removed:
   * one key at another version refuses the whole batch with `VERSION_MISMATCH` (naming a key the batch
   * does not change fails at once with `INVALID_ARGUMENT`). The whole batch travels
   * in one datagram: `MESSAGE_TOO_LARGE` if it does not fit.
   */
  async putAll(
    entries: Iterable<readonly [string, MapValue]> | Readonly<Record<string, MapValue>>,
    options: Omit<PutOptions, "ifVersion"> & { readonly remove?: readonly string[]; readonly ifVersions?: ReadonlyMap<string, number> } = {},
  ): Promise<void> {
    const pairs = isIterable(entries) ? [...entries] : Object.entries(entries);
    const keys = [...pairs.map(([key]) => key), ...(options.remove ?? [])];
    for (const key of options.ifVersions?.keys() ?? []) {
      // A version is checked only on a key the batch changes: one on any other key would be no condition at all.
      if (!keys.includes(key)) throw new BlazeError("INVALID_ARGUMENT", `ifVersions names "${key}", which this putAll neither writes nor removes`, { path: ["ifVersions", key] });
    }
    const puts = pairs.map(([key, value]) => this.#putSpec(key, value, { ...options, ifVersion: options.ifVersions?.get(key) }, keys));
    const removes = (options.remove ?? []).map((key) => ({ key: checkKey(key), ifVersion: optionalVersion(options.ifVersions?.get(key)), fencingToken: tokenOf(options, keys) }));
    await this.#write({ case: "batch", puts, removes }, this.#bytesOf(puts, removes), options);
  }

  /** Removes every entry; refused (`LOCKED`, nothing removed) while another member holds a lock on one. */
  async clear(options: WriteOptions = {}): Promise<void> {
    await this.#write({ case: "clear" }, 0, options);
  }

  // --- locks ---

  /**
   * Write-locks `key` (the key need not exist); queues behind earlier requests, in order — behind this
   * member's own holder of the key too (another task of this member gets it once that one releases it).
   * Rejects with `TIMEOUT` after `timeoutMs` in the queue.
   */
  async lock(key: string, options: LockOptions = {}): Promise<LockHandle> {
    const timeoutMs = options.timeoutMs ?? this.#options.lockTimeoutMs;
    const handle = await this.#lock(key, options, timeoutMs);
    if (typeof handle === "string") throw new BlazeError("TIMEOUT", `timed out after ${timeoutMs} ms waiting for the lock on "${key}" (${handle})`);
    return handle;
  }

  /** Locks `key` if it is free now; undefined if another member (or another task of this one) holds it. */
  async tryLock(key: string, options: Omit<LockOptions, "timeoutMs"> = {}): Promise<LockHandle | undefined> {
    const handle = await this.#lock(key, options, 0);
    return typeof handle === "string" ? undefined : handle;
  }

  // --- events ---

  /** Listens to `type`; returns a function that stops listening. */
  on<K extends keyof MapEvents>(type: K, listener: (event: MapEvents[K]) => void): () => void {
    const off = this.#events.on(type, listener);
    if (type !== "change") return off;
    this.#changeListeners++;
    let listening = true;
    return () => {
      if (listening) this.#changeListeners--;
      listening = false;
      off();
    };
  }

  /** The map's changes as an async iterator, from now on; bounded as `subscribe` on a channel is. */
  changes(options: SubscribeOptions = {}): Subscription<MapChange> {
    let off = () => {};
    const iterator = new PushIterator<MapChange>(() => off(), options, "the map's changes");
    if (!iterator.ended) off = this.on("change", (change) => iterator.push(change));
    return iterator;
  }

  // --- internal: the channel's side ---

  /** @internal The timed parts of the map (waiting calls, lease renewals), for the channel's driver. */
  get units(): readonly [PendingCalls<unknown, CallMeta>, LockKeeper] {
    return [this.#calls, this.#keeper];
  }

  /** @internal The channel stopped: every waiting call fails with CLOSED; held locks are lost. */
  closed(): void {
    this.#calls.failAll(new BlazeError("CLOSED", "the cluster channel stopped"));
    const held: LockHandle[] = [];
    for (const turn of this.#turns.values()) if (turn.handle !== undefined) held.push(turn.handle);
    this.#turns.clear();
    for (const handle of held) handle.lose("freed");
    this.#keeper.clear();
  }

  /** @internal The replica was brought up to date at the start of a term. */
  emitReady(epoch: number): void {
    this.#events.emit("ready", { epoch, size: this.size });
  }

  /** @internal Someone listens to the entries' changes (`on("change")`, `changes()`). */
  get changesWatched(): boolean {
    return this.#changeListeners > 0;
  }

  /** @internal The replica changed: tell the listeners, in the map's order. */
  emit(changes: readonly ReplicaChange[], resync: boolean): void {
    const entryEvents = this.#changeListeners > 0;
    for (const change of changes) {
      // An entry's change event (its value decoded) is made only for someone who listens.
      if (!entryEvents && (change.kind === "insert" || change.kind === "update" || change.kind === "remove")) continue;
      switch (change.kind) {
        case "insert": {
          const value = valueOf(change.entry);
          this.#events.emit("change", { type: "insert", key: change.entry.key, value, owner: change.entry.owner, version: change.entry.version, resync });
          break;
        }
        case "update": {
          const value = valueOf(change.entry);
          const previous = valueOf(change.previous);
          this.#events.emit("change", { type: "update", key: change.entry.key, value, previous, owner: change.entry.owner, version: change.entry.version, resync });
          break;
        }
        case "remove": {
          const value = valueOf(change.entry);
          this.#events.emit("change", { type: "remove", key: change.entry.key, value, owner: change.entry.owner, expired: change.expired, resync });
          break;
        }
        case "lock": {
          const { key, holder, token, leaseMs } = change.lock;
          if (this.#events.listens("lock")) this.#events.emit("lock", { key, holder, fencingToken: token, leaseMs, resync });
          break;
        }
        case "unlock": {
          // A lock of ours freed without our release: the handle lost it.
          const handle = this.#turns.get(change.lock.key)?.handle;
          if (handle !== undefined && handle.fencingToken === change.lock.token && !handle.releasing) handle.lose(change.expired ? "expired" : "freed");
          const { key, holder, token, leaseMs } = change.lock;
          if (this.#events.listens("unlock")) this.#events.emit("unlock", { key, holder, fencingToken: token, leaseMs, expired: change.expired, resync });
          if (change.expired) this.#events.emit("lockExpired", lockInfo(change.lock));
          break;
        }
      }
    }
  }

  // --- internals ---

  #engine(): StateEngine {
    return this.#access.engine();
  }

  /**
   * Sends `op` and waits for its answer (refusals included): rejects with TIMEOUT, ABORTED or CLOSED. A
   * write (`started`: when it began) rejects with a refusal's error instead, and is measured as it ends.
   * `answerOf` makes the call's promise resolve with what it makes of the answer, as the answer comes:
   * one promise a call, nothing chained to it.
   */
  #call(op: StateOp, timeoutMs: number, signal: AbortSignalLike | undefined, started?: number): Promise<StateResponse>;
  #call<R>(op: StateOp, timeoutMs: number, signal: AbortSignalLike | undefined, started: number, answerOf: (response: StateResponse) => R): Promise<R>;
  #call<R>(op: StateOp, timeoutMs: number, signal: AbortSignalLike | undefined, started?: number, answerOf?: (response: StateResponse) => R): Promise<unknown> {
    const engine = this.#engine();
    const access = this.#access;
    const call = new RequestCall(this.#callAccess, engine, op, started, answerOf);
    // One reading of the clock serves the call's deadline and its request (a write's: when it began).
    const now = started ?? access.now();
    const { id, promise } = this.#calls.open(now, timeoutMs, signal, undefined, call);
    call.id = id;
    call.request = engine.request(op, call, now);
    access.touch();
    // A signal aborted already rejected the call at once (the table never held it): its request, sent
    // all the same, is abandoned as any call's that ends without its answer.
    if (signal?.aborted === true) this.#failed(call, "ABORTED");
    return promise;
  }

  /** Request call `call` was answered: its promise settles (a write's refusal rejects it), and a write is measured. */
  #answered(call: RequestCall, response: StateResponse): boolean {
    call.answered = true;
    const started = call.started;
    if (started === undefined) return this.#calls.settle(call.id, response);
    // A write's outcome is settled here, as the answer comes: no async step more for every write.
    if (response.outcome === "OK") {
      if (!this.#calls.settle(call.id, call.answerOf === undefined ? response : call.answerOf(response))) return false;
      this.#measureWrite(call.op.case, started, "ok");
      return true;
    }
    const error = responseError(response);
    if (!this.#calls.fail(call.id, error)) return false;
    this.#measureWrite(call.op.case, started, error.code);
    return true;
  }

  /** A call ended without its answer (`code`: how): the engine stops asking, and withdraws a lock request. */
  #failed(meta: CallMeta, code: BlazeErrorCode): void {
    if (!(meta instanceof RequestCall) || meta.answered) return;
    if (meta.started !== undefined) this.#measureWrite(meta.op.case, meta.started, code);
    meta.engine.abandon(meta.request, this.#access.now());
    this.#access.touch();
  }

  /**
   * A write: resolves with its answer (or what `answerOf` makes of it), or rejects with its refusal's error
   * (or TIMEOUT, ABORTED, CLOSED).
   */
  #write(op: StateOp, bytes: number, options: WriteOptions): Promise<StateResponse>;
  #write<R>(op: StateOp, bytes: number, options: WriteOptions, answerOf: (response: StateResponse) => R): Promise<R>;
  #write<R>(op: StateOp, bytes: number, options: WriteOptions, answerOf?: (response: StateResponse) => R): Promise<R | StateResponse> {
    const max = this.#access.maxUpdateBytes();
    if (bytes > max) throw new BlazeError("MESSAGE_TOO_LARGE", `${opName(op)} makes an update of about ${bytes} bytes, more than one datagram carries (${max})`);
    const timeoutMs = options.timeoutMs ?? this.#options.requestTimeoutMs;
    checkDuration(timeoutMs, "timeoutMs");
    const started = this.#access.now();
    try {
      return answerOf === undefined ? this.#call(op, timeoutMs, options.signal, started) : this.#call(op, timeoutMs, options.signal, started, answerOf);
    } catch (error) {
      this.#measureWrite(op.case, started, error instanceof BlazeError ? error.code : "error");
      throw error;
    }
  }

  /** A write's duration, to the metrics backend when there is one (nothing made for nobody: writes are many). */
  #measureWrite(operation: string, started: number, outcome: string): void {
    if (this.#metrics.measuring()) this.#metrics.record("activeblaze.map.write.duration", this.#access.now() - started, { operation, outcome });
  }

  /** `keys`: every key the write takes (one key alone as a string), which a lock handle must guard. */
  #putSpec(key: string, value: MapValue, options: PutOptions, keys: string | readonly string[]): PutSpec {
    checkKey(key);
    const ttl = options.timeToLiveMs ?? this.#options.timeToLiveMs;
    checkDuration(ttl, "timeToLiveMs");
    const { payload, format } = encodePayload(value, "a map value");
    if (payload.length > this.#access.maxValueBytes) {
      throw new BlazeError("MESSAGE_TOO_LARGE", `a map value of ${payload.length} bytes exceeds maxMessageBytes (${this.#access.maxValueBytes})`);
    }
    return {
      key,
      value: payload,
      format,
      ttlMs: ttl,
      removeOnExit: options.removeOnExit ?? this.#options.removeOnExit,
      ifVersion: optionalVersion(options.ifVersion),
      fencingToken: tokenOf(options, keys),
    };
  }

  /** At most what the update of these writes takes (as the coordinator counts it). */
  #bytesOf(puts: readonly PutSpec[], removes: ReadonlyArray<{ readonly key: string }>): number {
    let bytes = UPDATE_OVERHEAD_BYTES + REQUEST_OVERHEAD_BYTES;
    for (const put of puts) bytes += putBytes(put.key, put.value.length);
    for (const remove of removes) bytes += removeBytes(remove.key);
    return bytes;
  }

  /** The handle, or the coordinator's word on why the lock is taken. */
  async #lock(key: string, options: LockOptions, waitMs: number): Promise<LockHandle | string> {
    checkKey(key);
    const leaseMs = options.leaseMs ?? this.#options.leaseMs;
    checkDuration(leaseMs, "leaseMs");
    checkDuration(waitMs, "timeoutMs");
    const autoRenew = options.autoRenew ?? false;
    if (autoRenew && leaseMs === 0) throw new BlazeError("INVALID_ARGUMENT", "autoRenew renews a lease: give the lock a leaseMs", { path: ["autoRenew"] });
    this.#engine();
    const access = this.#access;
    const began = access.now();
    // This member's turn for the key first: one lock() of a key at a time goes to the coordinator. A
    // key no call of this member holds is its turn at once (no promise made and waited for).
    let slot = this.#turns.get(key);
    if (slot === undefined) this.#turns.set(key, (slot = { queue: [], handle: undefined }));
    else {
      if (waitMs === 0) return "held by this member";
      await this.#waitTurn(key, slot, waitMs, options.signal);
    }
    let handle: LockHandle | undefined;
    try {
      const asked = access.now();
      const wait = Math.max(0, waitMs - Math.round(asked - began));
      // The coordinator gives up after `wait`; this member waits a little longer for that answer.
      let response: StateResponse;
      try {
        response = await this.#call(
          { case: "lock", key, leaseMs, waitMs: wait, releaseOnExit: options.releaseOnExit ?? this.#options.releaseLockOnExit },
          wait + this.#options.requestTimeoutMs,
          options.signal,
        );
      } catch (error) {
        this.#measureLockWait(asked, error instanceof BlazeError ? error.code : "error");
        throw error;
      }
      this.#measureLockWait(asked, response.outcome === "OK" ? "acquired" : response.outcome === "LOCKED" ? "LOCKED" : responseError(response).code);
      if (response.outcome === "LOCKED") return response.message;
      // Locks are not re-entrant at the coordinator (this member's own tasks queue here, above).
      if (response.outcome === "INVALID") throw new BlazeError("ILLEGAL_STATE", response.message);
      if (response.outcome !== "OK") throw responseError(response);
      handle = new LockHandle(key, response.token, leaseMs, leaseMs > 0 ? asked + leaseMs : Number.POSITIVE_INFINITY, autoRenew, this.#handleAccess);
      slot.handle = handle;
      if (leaseMs > 0) this.#keeper.watch(handle, access.now());
      access.touch();
      return handle;
    } finally {
      if (handle === undefined) this.#passTurn(key);
    }
  }

  /** A lock's wait, to the metrics backend when there is one (`outcome`: how it ended). */
  #measureLockWait(asked: number, outcome: string): void {
    if (this.#metrics.measuring()) this.#metrics.record("activeblaze.map.lock.wait", this.#access.now() - asked, { outcome });
  }

  /** Waits for this member's turn at `key`, which another call of this member holds (`slot`). */
  async #waitTurn(key: string, slot: Turn, waitMs: number, signal: AbortSignalLike | undefined): Promise<void> {
    const access = this.#access;
    const { id, promise } = this.#calls.open(access.now(), waitMs, signal, undefined, { turn: key });
    slot.queue.push(id);
    access.touch();
    try {
      await promise;
    } finally {
      const at = slot.queue.indexOf(id);
      if (at >= 0) slot.queue.splice(at, 1);
    }
  }

  /** The key's turn goes to the next call of this member waiting for it (or nobody's). */
  #passTurn(key: string): void {
    const slot = this.#turns.get(key);
    if (slot === undefined) return;
    while (slot.queue.length > 0) {
      const next = slot.queue.shift()!;
      if (this.#calls.settle(next, undefined)) return;
    }
    this.#turns.delete(key);
  }

  #ended(handle: LockHandle): void {
    const turn = this.#turns.get(handle.key);
    if (turn === undefined || turn.handle !== handle) return;
    turn.handle = undefined;
    this.#keeper.forget(handle);
    this.#passTurn(handle.key);
  }

  // Not an async function: the call's promise and one reaction to its answer, no suspended frame (a call
  // that cannot be made rejects, as an async function's would).
  #unlock(handle: LockHandle, options: { timeoutMs?: number; signal?: AbortSignalLike }): Promise<void> {
    try {
      const timeoutMs = options.timeoutMs ?? this.#options.requestTimeoutMs;
      return this.#call({ case: "unlock", key: handle.key, fencingToken: handle.fencingToken }, timeoutMs, options.signal).then(unlocked);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #renew(handle: LockHandle, leaseMs: number, options: { timeoutMs?: number; signal?: AbortSignalLike }): Promise<void> {
    checkDuration(leaseMs, "leaseMs");
    const timeoutMs = options.timeoutMs ?? this.#options.requestTimeoutMs;
    const response = await this.#call({ case: "renewLease", key: handle.key, fencingToken: handle.fencingToken, leaseMs }, timeoutMs, options.signal);
    if (response.outcome !== "OK") throw responseError(response);
    this.#keeper.renewed(handle, this.#access.now());
    this.#access.touch();
  }
}

/** An unlock's answer: a refusal rejects. */
function unlocked(response: StateResponse): void {
  if (response.outcome !== "OK") throw responseError(response);
}

function lockInfo(lock: StoredLock): LockInfo {
  return { key: lock.key, holder: lock.holder, fencingToken: lock.token, leaseMs: lock.leaseMs };
}

function mapEntry(entry: StoredEntry): MapEntry {
  return { key: entry.key, value: valueOf(entry), version: entry.version, owner: entry.owner, removeOnExit: entry.removeOnExit, timeToLiveMs: entry.ttlMs };
}

/** True once a write made with `ifVersion` succeeds; false when it failed on `VERSION_MISMATCH` (another write came first). */
export async function versionMatched(write: Promise<unknown>): Promise<boolean> {
  try {
    await write;
    return true;
  } catch (error) {
    if (error instanceof BlazeError && error.code === "VERSION_MISMATCH") return false;
    throw error;
  }
}

/** What a put or remove resolves with: the value the key had before (undefined: it was absent). */
function previousValue(response: StateResponse): MapValue | undefined {
  const previous = response.previous[0];
  return previous === undefined ? undefined : valueOf(previous);
}

/** A stored value as the application sees it: a BlazeMessage if it was written as one, else its bytes. */
export function valueOf(entry: { readonly format: PayloadFormat; readonly value: Uint8Array }): MapValue {
  if (entry.format === PayloadFormat.BLAZE_MESSAGE) {
    try {
      return BlazeMessage.fromBinary(entry.value);
    } catch {
      return entry.value;
    }
  }
  return entry.value;
}

function checkKey(key: string): string {
  if (typeof key !== "string" || key.length === 0) throw new BlazeError("INVALID_ARGUMENT", "a map key is a non-empty string", { path: ["key"] });
  return key;
}

function checkDuration(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new BlazeError("INVALID_ARGUMENT", `${name} is a whole number of ms, 0 or more, not ${value}`, { path: [name] });
}

function optionalVersion(version: number | undefined): number | undefined {
  if (version === undefined) return undefined;
  checkDuration(version, "ifVersion");
  return version;
}

/**
 * The fencing token a write carries; a handle guards writes of its own key only. `keys`: the keys it
 * writes (one key alone as a string, no array made).
 */
function tokenOf(options: WriteOptions, keys: string | readonly string[]): number {
  const lock = options.lock;
  if (lock === undefined) return 0;
  if (lock instanceof LockHandle) {
    const other = typeof keys === "string" ? (keys === lock.key ? undefined : keys) : keys.find((key) => key !== lock.key);
    if (other !== undefined) throw new BlazeError("INVALID_ARGUMENT", `the lock on "${lock.key}" guards writes of "${lock.key}", not of "${other}"`, { path: ["lock"] });
  }
  return lock.fencingToken;
}

function isIterable(value: unknown): value is Iterable<readonly [string, MapValue]> {
  return typeof (value as Iterable<unknown>)[Symbol.iterator] === "function";
}

/** A key this member holds or is asking for (see ReplicatedMap's turns). */
interface Turn {
  /** The calls of this member waiting for the key, first first. */
  readonly queue: number[];
  /** The handle of the lock this member holds on the key, once granted. */
  handle: LockHandle | undefined;
}

/**
 * Where the map's durations go (how long a write took to be acknowledged, or a lock to be granted, in
 * ms): `record` takes one; `measuring` is false when nothing takes them.
 */
interface MapMetrics {
  measuring(): boolean;
  record(name: "activeblaze.map.write.duration" | "activeblaze.map.lock.wait", ms: number, attributes: Record<string, string>): void;
}

const NO_METRICS: MapMetrics = { measuring: () => false, record: () => undefined };
