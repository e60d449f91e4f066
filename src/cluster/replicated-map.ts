import type { MessageInitShape } from "@bufbuild/protobuf";
import { PayloadFormat } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { type StateRequestSchema, type StateResponse, StateResult } from "../../gen/activeblaze/v1/cluster_pb.ts";
import { Emitter, PushIterator, type SubscribeOptions, type Subscription } from "../channel/events.ts";
import { BlazeError } from "../errors.ts";
import { BlazeMessage } from "../message/blaze-message.ts";
import { encodePayload } from "../message/payload-message.ts";
import type { Clock } from "../transport/clock.ts";
import type { AbortSignalLike } from "../web.ts";
import type { MemberInstance, ReplicaChange, StoredEntry } from "./replica.ts";
import type { ResolvedStateOptions } from "./options.ts";
import { responseError, type StateEngine } from "./state-engine.ts";

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

/** ActiveBlaze's map listener. */
export interface MapChangedListener {
  mapInsert?(owner: MemberInstance, key: string, value: MapValue): void;
  mapUpdate?(owner: MemberInstance, key: string, oldValue: MapValue, newValue: MapValue): void;
  mapRemove?(owner: MemberInstance, key: string, value: MapValue, expired: boolean): void;
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
  /** How long to queue for the lock before `TIMEOUT`. Default: the map's `lockTimeoutMs`. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignalLike;
  /** Free the lock when this member leaves. Default: the map's `releaseLockOnExit`. */
  readonly releaseOnExit?: boolean;
}

/**
 * A granted lock. Its fencing token grows with every grant of any lock of the map, across coordinators:
 * pass the handle (or its token) to writes and to other systems, so that a holder whose lease ran out
 * is refused. `valid` is this member's conservative view: the lease counted from when it asked.
 */
export class LockHandle implements AsyncDisposable {
  #released = false;

  constructor(
    readonly key: string,
    readonly fencingToken: number,
    readonly leaseMs: number,
    /** When the lease ends on this member's monotonic clock (Infinity without a lease). */
    public expiresAt: number,
    private readonly map: ReplicatedMap,
    private readonly clock: Clock,
  ) {}

  /** True until released, and until the lease (counted from the request) may have run out. */
  get valid(): boolean {
    return !this.#released && this.clock.now() < this.expiresAt;
  }

  /** Releases the lock; resolves once a majority of the view has the release (the next master keeps it). Releasing twice does nothing. */
  async release(options: { timeoutMs?: number; signal?: AbortSignalLike } = {}): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.map.unlock(this.key, this.fencingToken, options);
  }

  /** Renews the lease for `leaseMs` from now (default: the original lease). Throws `STALE_TOKEN` if it was lost. */
  async renew(leaseMs = this.leaseMs, options: { timeoutMs?: number; signal?: AbortSignalLike } = {}): Promise<void> {
    if (this.#released) throw new BlazeError("ILLEGAL_STATE", `the lock on "${this.key}" was released`);
    const asked = this.clock.now();
    await this.map.renew(this.key, this.fencingToken, leaseMs, options);
    this.expiresAt = leaseMs > 0 ? asked + leaseMs : Number.POSITIVE_INFINITY;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.release();
    } catch (error) {
      // A lock already lost (its lease ran out, its holder was removed) has nothing to release.
      if (!(error instanceof BlazeError) || (error.code !== "STALE_TOKEN" && error.code !== "NOT_FOUND" && error.code !== "LOCKED")) throw error;
    }
  }
}

/**
 * The replicated state map of a cluster channel's group (ActiveBlaze's distributed state map). Every
 * member holds the whole map: reads are local and synchronous; writes go to the group's coordinator,
 * which orders them, and resolve once applied on every member of the view. Entries have an owner (the
 * last writer), an optional time to live and `removeOnExit`; keys can be write-locked with leases.
 */
export class ReplicatedMap {
  readonly #engine: () => StateEngine;
  readonly #options: ResolvedStateOptions;
  readonly #clock: () => Clock;
  readonly #events: Emitter<MapEvents>;
  readonly #listeners = new Set<MapChangedListener>();

  /** Where write and lock-wait durations go (the `metrics` option). */
  readonly #measure: MeasureMap;

  /** @internal Created by the cluster channel. */
  constructor(
    engine: () => StateEngine,
    options: ResolvedStateOptions,
    clock: () => Clock,
    onListenerError: (error: BlazeError) => void,
    measure: MeasureMap = () => undefined,
  ) {
    this.#engine = engine;
    this.#options = options;
    this.#clock = clock;
    this.#events = new Emitter<MapEvents>((error) => onListenerError(error));
    this.#measure = measure;
  }

  // --- reads: local and synchronous ---

  get(key: string): MapValue | undefined {
    const entry = this.#engine().replica.entries.get(key);
    return entry === undefined ? undefined : valueOf(entry);
  }

  has(key: string): boolean {
    return this.#engine().replica.entries.has(key);
  }

  get size(): number {
    return this.#engine().replica.entries.size;
  }

  keys(): string[] {
    return [...this.#engine().replica.entries.keys()];
  }

  entries(): Array<[string, MapValue]> {
    return [...this.#engine().replica.entries.values()].map((e) => [e.key, valueOf(e)]);
  }

  /** The entry with its version, owner and options. */
  getEntry(key: string): MapEntry | undefined {
    const entry = this.#engine().replica.entries.get(key);
    return entry === undefined ? undefined : mapEntry(entry);
  }

  /** The lock on `key`, if any. */
  getLock(key: string): LockInfo | undefined {
    const lock = this.#engine().replica.locks.get(key);
    return lock === undefined ? undefined : { key, holder: lock.holder, fencingToken: lock.token, leaseMs: lock.leaseMs };
  }

  /** Every lock held now. */
  locks(): LockInfo[] {
    return [...this.#engine().replica.locks.values()].map(lockInfo);
  }

  isLocked(key: string): boolean {
    return this.#engine().replica.locks.has(key);
  }

  /** True when this member wrote the entry last (ActiveBlaze's isOwner). */
  isOwner(key: string, local: MemberInstance): boolean {
    const owner = this.#engine().replica.entries.get(key)?.owner;
    return owner !== undefined && owner.id === local.id && owner.incarnation === local.incarnation;
  }

  // --- writes ---

  /** Writes `key`; resolves with the value it had before (undefined: it was absent) once applied everywhere. */
  async put(key: string, value: MapValue, options: PutOptions = {}): Promise<MapValue | undefined> {
    const response = await this.#write(
      {
        case: "put",
        value: { key: checkKey(key), ...storedValue(value), ...this.#putFields(options, [key]) },
      },
      options,
      `put("${key}")`,
    );
    const previous = response.previous[0];
    return previous === undefined ? undefined : decodeValue(previous.value, previous.format);
  }

  /** Compare-and-set: writes `key` only if it is at `version` (0: absent); false if it was not. */
  async compareAndSet(key: string, version: number, value: MapValue, options: Omit<PutOptions, "ifVersion"> = {}): Promise<boolean> {
    try {
      await this.put(key, value, { ...options, ifVersion: version });
      return true;
    } catch (error) {
      if (error instanceof BlazeError && error.code === "VERSION_MISMATCH") return false;
      throw error;
    }
  }

  /** Removes `key`; resolves with its value before (undefined: it was absent). */
  async remove(key: string, options: RemoveOptions = {}): Promise<MapValue | undefined> {
    const response = await this.#write(
      {
        case: "remove",
        value: { key: checkKey(key), ifVersion: optionalVersion(options.ifVersion), fencingToken: tokenOf(options, [key]) },
      },
      options,
      `remove("${key}")`,
    );
    const previous = response.previous[0];
    return previous === undefined ? undefined : decodeValue(previous.value, previous.format);
  }

  /**
   * Writes several entries (and removes keys) atomically: all of them in one step of the map's order, or
   * none. `ifVersions` makes it a compare-and-set of the keys it names (0: absent), written or removed:
   * one key at another version refuses the whole batch with `VERSION_MISMATCH`.
   */
  async putAll(
    entries: Iterable<readonly [string, MapValue]> | Readonly<Record<string, MapValue>>,
    options: Omit<PutOptions, "ifVersion"> & { readonly remove?: readonly string[]; readonly ifVersions?: ReadonlyMap<string, number> } = {},
  ): Promise<void> {
    const pairs = isIterable(entries) ? [...entries] : Object.entries(entries);
    const fields = this.#putFields(options, [...pairs.map(([key]) => key), ...(options.remove ?? [])]);
    const versionOf = (key: string) => optionalVersion(options.ifVersions?.get(key));
    await this.#write(
      {
        case: "batch",
        value: {
          puts: pairs.map(([key, value]) => ({ key: checkKey(key), ...storedValue(value), ...fields, ifVersion: versionOf(key) })),
          removes: (options.remove ?? []).map((key) => ({ key: checkKey(key), fencingToken: fields.fencingToken, ifVersion: versionOf(key) })),
        },
      },
      options,
      `putAll(${pairs.length} entries)`,
    );
  }

  /** Removes every entry; refused (`LOCKED`, nothing removed) while another member holds a lock on one. */
  async clear(options: WriteOptions = {}): Promise<void> {
    await this.#write({ case: "clear", value: {} }, options, "clear()");
  }

  // --- locks ---

  /**
   * Write-locks `key` (the key need not exist); queues behind earlier requests, in order. Locks are not
   * re-entrant: locking a key this member holds fails with `ILLEGAL_STATE`. Rejects with `TIMEOUT` after
   * `timeoutMs` in the queue.
   */
  async lock(key: string, options: LockOptions = {}): Promise<LockHandle> {
    const timeoutMs = options.timeoutMs ?? this.#options.lockTimeoutMs;
    const handle = await this.#lock(key, options, timeoutMs);
    if (typeof handle === "string") throw new BlazeError("TIMEOUT", `timed out after ${timeoutMs} ms waiting for the lock on "${key}" (${handle})`);
    return handle;
  }

  /** Locks `key` if it is free now; undefined if another member holds it. */
  async tryLock(key: string, options: Omit<LockOptions, "timeoutMs"> = {}): Promise<LockHandle | undefined> {
    const handle = await this.#lock(key, options, 0);
    return typeof handle === "string" ? undefined : handle;
  }

  /** @internal Used by LockHandle. */
  async unlock(key: string, fencingToken: number, options: { timeoutMs?: number; signal?: AbortSignalLike }): Promise<void> {
    const response = await this.#engine().request(
      { case: "unlock", value: { key, fencingToken: BigInt(fencingToken) } },
      options.timeoutMs ?? this.#options.requestTimeoutMs,
      options.signal,
      `unlock("${key}")`,
    );
    if (response.result !== StateResult.OK) throw responseError(response);
  }

  /** @internal Used by LockHandle. */
  async renew(key: string, fencingToken: number, leaseMs: number, options: { timeoutMs?: number; signal?: AbortSignalLike }): Promise<void> {
    checkDuration(leaseMs, "leaseMs");
    const response = await this.#engine().request(
      { case: "renewLease", value: { key, fencingToken: BigInt(fencingToken), leaseMs: BigInt(leaseMs) } },
      options.timeoutMs ?? this.#options.requestTimeoutMs,
      options.signal,
      `renewing the lease on "${key}"`,
    );
    if (response.result !== StateResult.OK) throw responseError(response);
  }

  /** The handle, or the coordinator's word on why the lock is taken. */
  async #lock(key: string, options: LockOptions, waitMs: number): Promise<LockHandle | string> {
    checkKey(key);
    const leaseMs = options.leaseMs ?? this.#options.leaseMs;
    checkDuration(leaseMs, "leaseMs");
    checkDuration(waitMs, "timeoutMs");
    const clock = this.#clock();
    const asked = clock.now();
    const waited = (outcome: string) => this.#measure("activeblaze.map.lock.wait", clock.now() - asked, { outcome });
    // The coordinator gives up after waitMs; this member waits a little longer for that answer.
    const response = await this.#engine()
      .request(
        {
          case: "lock",
          value: { key, leaseMs: BigInt(leaseMs), waitMs: BigInt(waitMs), releaseOnExit: options.releaseOnExit ?? this.#options.releaseLockOnExit },
        },
        waitMs + this.#options.requestTimeoutMs,
        options.signal,
        `the lock on "${key}"`,
      )
      .catch((error: unknown) => {
        waited(error instanceof BlazeError ? error.code : "error");
        throw error;
      });
    waited(response.result === StateResult.OK ? "acquired" : response.result === StateResult.LOCKED ? "LOCKED" : responseError(response).code);
    if (response.result === StateResult.LOCKED) return response.message;
    // Locks are not re-entrant: the holder asking again is a mistake, not contention.
    if (response.result === StateResult.INVALID) throw new BlazeError("ILLEGAL_STATE", response.message);
    if (response.result !== StateResult.OK) throw responseError(response);
    const token = Number(response.fencingToken);
    return new LockHandle(key, token, leaseMs, leaseMs > 0 ? asked + leaseMs : Number.POSITIVE_INFINITY, this, clock);
  }

  // --- events ---

  /** Listens to `type`; returns a function that stops listening. */
  on<K extends keyof MapEvents>(type: K, listener: (event: MapEvents[K]) => void): () => void {
    return this.#events.on(type, listener);
  }

  /** ActiveBlaze's listener: mapInsert, mapUpdate, mapRemove. */
  addMapChangedListener(listener: MapChangedListener): void {
    this.#listeners.add(listener);
  }

  removeMapChangedListener(listener: MapChangedListener): void {
    this.#listeners.delete(listener);
  }

  /** The map's changes as an async iterator, from now on; bounded as `subscribe` on a channel is. */
  changes(options: SubscribeOptions = {}): Subscription<MapChange> {
    let off = () => {};
    const iterator = new PushIterator<MapChange>(() => off(), options, "the map's changes");
    if (!iterator.ended) off = this.on("change", (change) => iterator.push(change));
    return iterator;
  }

  /** @internal The replica was brought up to date at the start of a term. */
  emitReady(epoch: number): void {
    this.#events.emit("ready", { epoch, size: this.size });
  }

  /** @internal The replica changed: tell the listeners, in the map's order. */
  emit(changes: readonly ReplicaChange[], resync: boolean, onError: (error: unknown) => void): void {
    for (const change of changes) {
      switch (change.kind) {
        case "insert": {
          const value = valueOf(change.entry);
          this.#events.emit("change", { type: "insert", key: change.entry.key, value, owner: change.entry.owner, version: change.entry.version, resync });
          for (const l of this.#listeners) safely(() => l.mapInsert?.(change.entry.owner, change.entry.key, value), onError);
          break;
        }
        case "update": {
          const value = valueOf(change.entry);
          const previous = valueOf(change.previous);
          this.#events.emit("change", { type: "update", key: change.entry.key, value, previous, owner: change.entry.owner, version: change.entry.version, resync });
          for (const l of this.#listeners) safely(() => l.mapUpdate?.(change.entry.owner, change.entry.key, previous, value), onError);
          break;
        }
        case "remove": {
          const value = valueOf(change.entry);
          this.#events.emit("change", { type: "remove", key: change.entry.key, value, owner: change.entry.owner, expired: change.expired, resync });
          for (const l of this.#listeners) safely(() => l.mapRemove?.(change.entry.owner, change.entry.key, value, change.expired), onError);
          break;
        }
        case "lock":
          this.#events.emit("lock", { ...lockInfo(change.lock), resync });
          break;
        case "unlock":
          this.#events.emit("unlock", { ...lockInfo(change.lock), expired: change.expired, resync });
          if (change.expired) this.#events.emit("lockExpired", lockInfo(change.lock));
          break;
      }
    }
  }

  #putFields(options: PutOptions, keys: readonly string[]): { ttlMs: bigint; removeOnExit: boolean; ifVersion: bigint | undefined; fencingToken: bigint } {
    const ttl = options.timeToLiveMs ?? this.#options.timeToLiveMs;
    checkDuration(ttl, "timeToLiveMs");
    return {
      ttlMs: BigInt(ttl),
      removeOnExit: options.removeOnExit ?? this.#options.removeOnExit,
      ifVersion: optionalVersion(options.ifVersion),
      fencingToken: tokenOf(options, keys),
    };
  }

  async #write(op: MessageInitShape<typeof StateRequestSchema>["op"], options: WriteOptions, what: string): Promise<StateResponse> {
    const engine = this.#engine();
    const started = this.#clock().now();
    const outcome = (result: string) => this.#measure("activeblaze.map.write.duration", this.#clock().now() - started, { operation: op?.case ?? "", outcome: result });
    let response: StateResponse;
    try {
      response = await engine.request(op, options.timeoutMs ?? this.#options.requestTimeoutMs, options.signal, what);
    } catch (error) {
      outcome(error instanceof BlazeError ? error.code : "error");
      throw error;
    }
    outcome(response.result === StateResult.OK ? "ok" : responseError(response).code);
    if (response.result !== StateResult.OK) throw responseError(response);
    return response;
  }
}

/** Records how long a write took to be acknowledged, or a lock to be granted, in ms. */
type MeasureMap = (name: "activeblaze.map.write.duration" | "activeblaze.map.lock.wait", ms: number, attributes: Record<string, string>) => void;

function lockInfo(lock: { key: string; holder: MemberInstance; token: number; leaseMs: number }): LockInfo {
  return { key: lock.key, holder: lock.holder, fencingToken: lock.token, leaseMs: lock.leaseMs };
}

function mapEntry(entry: StoredEntry): MapEntry {
  return { key: entry.key, value: valueOf(entry), version: entry.version, owner: entry.owner, removeOnExit: entry.removeOnExit, timeToLiveMs: entry.ttlMs };
}

function valueOf(entry: StoredEntry): MapValue {
  return decodeValue(entry.value, entry.format);
}

function decodeValue(bytes: Uint8Array, format: number): MapValue {
  if (format === PayloadFormat.BLAZE_MESSAGE) {
    try {
      return BlazeMessage.fromBinary(bytes);
    } catch {
      return bytes;
    }
  }
  return bytes;
}

function storedValue(value: MapValue): { value: Uint8Array; format: PayloadFormat } {
  const { payload, format } = encodePayload(value, "a map value");
  return { value: payload, format };
}

function checkKey(key: string): string {
  if (typeof key !== "string" || key.length === 0) throw new BlazeError("INVALID_ARGUMENT", "a map key is a non-empty string", { path: ["key"] });
  return key;
}

function checkDuration(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new BlazeError("INVALID_ARGUMENT", `${name} is a whole number of ms, 0 or more, not ${value}`, { path: [name] });
}

function optionalVersion(version: number | undefined): bigint | undefined {
  if (version === undefined) return undefined;
  checkDuration(version, "ifVersion");
  return BigInt(version);
}

/** The fencing token a write carries; a handle guards writes of its own key only. */
function tokenOf(options: WriteOptions, keys: readonly string[]): bigint {
  const lock = options.lock;
  if (lock === undefined) return 0n;
  if (lock instanceof LockHandle) {
    const other = keys.find((key) => key !== lock.key);
    if (other !== undefined) throw new BlazeError("INVALID_ARGUMENT", `the lock on "${lock.key}" guards writes of "${lock.key}", not of "${other}"`, { path: ["lock"] });
  }
  return BigInt(lock.fencingToken);
}

function isIterable(value: unknown): value is Iterable<readonly [string, MapValue]> {
  return typeof (value as Iterable<unknown>)[Symbol.iterator] === "function";
}

function safely(fn: () => void, onError: (error: unknown) => void): void {
  try {
    fn();
  } catch (error) {
    onError(error);
  }
}
