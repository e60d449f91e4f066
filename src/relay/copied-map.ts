import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { PayloadFormat } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { RelayMapEntrySchema } from "../../gen/activeblaze/v1/relay_pb.ts";
import { Emitter } from "../channel/events.ts";
import { BlazeError } from "../errors.ts";
import { type LockHandle, type LockOptions, type MapChange, type MapValue, type ReplicatedMap, valueOf, versionMatched, type WriteOptions } from "../cluster/replicated-map.ts";
import { encodePayload } from "../message/payload-message.ts";
import { MAX_NAME_BYTES } from "../wire/limits.ts";
import { utf8Length } from "../wire/varint.ts";
import type { ResolvedMapCopyOptions } from "./options.ts";
import { type CopiedEntry, copiedFromWire, copiedToWire } from "./relay-frames.ts";

/**
 * A write's stamp: the hybrid clock time of its site (ms) and the site. Of two writes of a key the one
 * with the greater stamp wins at every site: the greater time, then the greater site name.
 */
export interface CopyStamp {
  readonly time: number;
  readonly site: string;
}

/** An entry of the copied map, with its stamp. */
export interface CopiedMapEntry {
  readonly key: string;
  readonly value: MapValue;
  /** The version of the site's map (grows with every write of the key at this site). */
  readonly version: number;
  readonly stamp: CopyStamp;
}

/** A change of the copied map: a key written (here or, copied, at another site) or removed. */
export type CopiedMapChange =
  | { readonly type: "put"; readonly key: string; readonly value: MapValue; readonly stamp: CopyStamp; readonly resync: boolean }
  | { readonly type: "remove"; readonly key: string; readonly stamp: CopyStamp; readonly resync: boolean };

export interface CopiedWriteOptions extends WriteOptions {
  /** Compare-and-set: write only if the entry is at this version of the site's map (0: absent). */
  readonly ifVersion?: number;
}

/** What the copied map needs of its relay channel. */
export interface CopiedMapAccess {
  /** The site's replicated map (throws `ILLEGAL_STATE` before the channel joined). */
  raw(): ReplicatedMap;
  readonly site: string;
  /** The relay channel's clock (monotonic, ms). */
  now(): number;
  /** Resolves after `ms` (a write refused because the replica here was behind is tried again). */
  delay(ms: number): Promise<void>;
  readonly requestTimeoutMs: number;
  readonly retryDelayMs: number;
  reportListenerError(error: BlazeError): void;
}

/** Stamp order: negative when `a` is older than `b`. */
export function compareStamps(a: CopyStamp, b: CopyStamp): number {
  if (a.time !== b.time) return a.time - b.time;
  return a.site < b.site ? -1 : a.site > b.site ? 1 : 0;
}

/**
 * The merge order of two entries of one key: their stamps; for one stamp (two writes of a site in
 * one millisecond, the first lost by its site in a master failover after another site got it), the
 * removal, then the greater format and value bytes — so that every site picks the same one.
 */
export function compareEntries(a: CopiedEntry, b: CopiedEntry): number {
  const byStamp = compareStamps(a, b);
  if (byStamp !== 0) return byStamp;
  if (a.removed !== b.removed) return a.removed ? 1 : -1;
  if (a.format !== b.format) return a.format - b.format;
  const length = Math.min(a.value.length, b.value.length);
  for (let i = 0; i < length; i++) if (a.value[i] !== b.value[i]) return a.value[i]! - b.value[i]!;
  return a.value.length - b.value.length;
}

/** The map's value of a copied entry: the entry itself, without its key (the map's key is the key). */
export function encodeStored(entry: CopiedEntry): Uint8Array {
  return toBinary(RelayMapEntrySchema, create(RelayMapEntrySchema, copiedToWire({ ...entry, key: "" })));
}

/** Stored values decoded once: a map entry's value is the same object until the key is written again. */
const decodedValues = new WeakMap<Uint8Array, CopiedEntry | null>();

/** The copied entry a map value holds; undefined for a value not written through the copied map. */
export function decodeStored(key: string, value: MapValue): CopiedEntry | undefined {
  if (!(value instanceof Uint8Array)) return undefined;
  let decoded = decodedValues.get(value);
  if (decoded === undefined) {
    try {
      decoded = copiedFromWire(fromBinary(RelayMapEntrySchema, value), "stored");
    } catch {
      decoded = null;
    }
    decodedValues.set(value, decoded);
  }
  return decoded === null ? undefined : { ...decoded, key };
}

/** Whether a tombstone stamped at `time` is past its keeping at wall-clock `now`. */
export function tombstoneOver(time: number, now: number, tombstoneMs: number): boolean {
  return time + tombstoneMs <= now;
}

/**
 * The site's replicated map as the cross-site copy sees it: every entry carries the stamp of the write
 * that made it, and a removal is a tombstone kept for `tombstoneMs` (a time to live in the site's
 * map), so that the sites' gateways can merge one another's writes by the stamp order (last writer
 * wins) and every site ends with the same map. Reads are this member's replica, as for the map;
 * tombstones are not shown. A write stamps itself one past the stamp it replaces (or this site's wall
 * clock when that is later) and is a compare-and-set on the version it read, tried again if a write of
 * the key came first, so that within a site a later write always has the greater stamp. Locks are the
 * site's own: `lock()` locks the key at this site only, and a copied write from another site waits
 * for the unlock. Every write of a copied map goes through this object: a value written to the map
 * in another way has no stamp, is not copied, and loses to any copied write.
 */
export class CopiedMap {
  readonly #access: CopiedMapAccess;
  readonly #options: ResolvedMapCopyOptions;
  readonly #events: Emitter<{ change: CopiedMapChange }>;

  /** @internal Created by the relay channel. */
  constructor(access: CopiedMapAccess, options: ResolvedMapCopyOptions) {
    this.#access = access;
    this.#options = options;
    this.#events = new Emitter<{ change: CopiedMapChange }>((error) => access.reportListenerError(error));
  }

  // --- reads: this member's replica ---

  get(key: string): MapValue | undefined {
    return this.getEntry(key)?.value;
  }

  has(key: string): boolean {
    return this.getEntry(key) !== undefined;
  }

  getEntry(key: string): CopiedMapEntry | undefined {
    const raw = this.#access.raw().getEntry(key);
    if (raw === undefined) return undefined;
    const entry = decodeStored(key, raw.value);
    if (entry === undefined || entry.removed) return undefined;
    return { key, value: valueOf(entry), version: raw.version, stamp: { time: entry.time, site: entry.site } };
  }

  /** Entries and tombstones with their stamps, as the copy compares them (tombstones included). */
  stamped(): CopiedEntry[] {
    const entries: CopiedEntry[] = [];
    const raw = this.#access.raw();
    for (const key of raw.keys()) {
      const entry = decodeStored(key, raw.getEntry(key)!.value);
      if (entry !== undefined) entries.push(entry);
    }
    return entries;
  }

  keys(): string[] {
    return this.stamped()
      .filter((entry) => !entry.removed)
      .map((entry) => entry.key);
  }

  entries(): Array<[string, MapValue]> {
    return this.stamped()
      .filter((entry) => !entry.removed)
      .map((entry) => [entry.key, valueOf(entry)]);
  }

  get size(): number {
    return this.keys().length;
  }

  // --- writes ---

  /** Writes `key` at this site; resolves with the write's stamp once the site's map has it everywhere. */
  put(key: string, value: MapValue, options: CopiedWriteOptions = {}): Promise<CopyStamp> {
    const { payload, format } = encodePayload(value, "a map value");
    return this.#write(key, false, format, payload, options);
  }

  /** Removes `key` (a tombstone, copied like a write); resolves with the removal's stamp. */
  remove(key: string, options: CopiedWriteOptions = {}): Promise<CopyStamp> {
    return this.#write(key, true, PayloadFormat.UNSPECIFIED, new Uint8Array(0), options);
  }

  /** Compare-and-set on the site's version of the entry (0: absent); false if it was at another. */
  async compareAndSet(key: string, version: number, value: MapValue, options: Omit<CopiedWriteOptions, "ifVersion"> = {}): Promise<boolean> {
    return versionMatched(this.put(key, value, { ...options, ifVersion: version }));
  }

  // --- locks: this site's only ---

  /** Locks `key` at this site (locks are not copied): the site's map's `lock()`. */
  lock(key: string, options: LockOptions = {}): Promise<LockHandle> {
    return this.#access.raw().lock(key, options);
  }

  tryLock(key: string, options: Omit<LockOptions, "timeoutMs"> = {}): Promise<LockHandle | undefined> {
    return this.#access.raw().tryLock(key, options);
  }

  // --- events ---

  /** Listens to changes of the map here, in the site's order; returns a function that stops listening. */
  on(type: "change", listener: (change: CopiedMapChange) => void): () => void {
    return this.#events.on(type, listener);
  }

  /** @internal A change of the site's map (the relay channel forwards them all). */
  changed(change: MapChange): void {
    const entry = change.type === "remove" ? undefined : decodeStored(change.key, change.value);
    const before = change.type === "update" ? decodeStored(change.key, change.previous) : change.type === "remove" ? decodeStored(change.key, change.value) : undefined;
    const resync = change.resync;
    if (entry !== undefined && !entry.removed) {
      this.#events.emit("change", { type: "put", key: change.key, value: valueOf(entry), stamp: { time: entry.time, site: entry.site }, resync });
    } else if (before !== undefined && !before.removed) {
      // A tombstone over a live entry, or a live entry gone from the site's map (a resync): the removal's stamp, else the entry's.
      const stamp = entry ?? before;
      this.#events.emit("change", { type: "remove", key: change.key, stamp: { time: stamp.time, site: stamp.site }, resync });
    }
  }

  // --- internals ---

  async #write(key: string, removed: boolean, format: number, value: Uint8Array, options: CopiedWriteOptions): Promise<CopyStamp> {
    checkCopiedKey(key);
    const access = this.#access;
    const timeoutMs = options.timeoutMs ?? access.requestTimeoutMs;
    const deadline = access.now() + timeoutMs;
    for (;;) {
      const raw = access.raw();
      const current = raw.getEntry(key);
      const version = current?.version ?? 0;
      if (options.ifVersion !== undefined && options.ifVersion !== version) {
        throw new BlazeError("VERSION_MISMATCH", `"${key}" is at version ${version} here, not ${options.ifVersion}`);
      }
      const before = current === undefined ? undefined : decodeStored(key, current.value);
      const time = Math.max(Math.floor(this.#options.wallClock()), (before?.time ?? 0) + 1);
      const entry: CopiedEntry = { key, time, site: access.site, removed, format, value };
      const left = Math.max(1, Math.ceil(deadline - access.now()));
      try {
        await raw.put(key, encodeStored(entry), {
          ifVersion: version,
          timeToLiveMs: removed ? this.#options.tombstoneMs : 0,
          removeOnExit: false,
          timeoutMs: left,
          ...(options.signal === undefined ? {} : { signal: options.signal }),
          ...(options.lock === undefined ? {} : { lock: options.lock }),
        });
        return { time, site: access.site };
      } catch (error) {
        // Another write of the key came first (or this replica had not seen one yet): stamp past it.
        const retry = error instanceof BlazeError && error.code === "VERSION_MISMATCH" && options.ifVersion === undefined && access.now() + access.retryDelayMs < deadline;
        if (!retry) throw error;
        await access.delay(access.retryDelayMs);
      }
    }
  }
}

/** A copied key travels in the copy's frames, as a name does: at most MAX_NAME_BYTES of UTF-8. */
function checkCopiedKey(key: string): void {
  if (typeof key !== "string" || key.length === 0) throw new BlazeError("INVALID_ARGUMENT", "a map key is a non-empty string", { path: ["key"] });
  if (utf8Length(key) > MAX_NAME_BYTES) throw new BlazeError("INVALID_ARGUMENT", `a copied map key is at most ${MAX_NAME_BYTES} bytes of UTF-8`, { path: ["key"] });
}

