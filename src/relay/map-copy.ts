import type { ErrorStage } from "../channel/error-report.ts";
import { BlazeError } from "../errors.ts";
import type { MapChange, ReplicatedMap } from "../cluster/replicated-map.ts";
import type { Clock, TimerHandle } from "../transport/clock.ts";
import { utf8Length } from "../wire/varint.ts";
import { compareEntries, decodeStored, encodeStored, tombstoneOver } from "./copied-map.ts";
import type { ResolvedMapCopyOptions } from "./options.ts";
import { type CopiedEntry, DIGEST_BUCKETS, type RelayBody } from "./relay-frames.ts";
import { MAX_SITES } from "./site-gateway.ts";

/** Entries (and their value bytes) waiting to be applied at most: past it, what comes is left to the next digest's repair. */
const MAX_PENDING_APPLIES = 16_384;
const MAX_PENDING_BYTES = 16 * 1024 * 1024;
/** Writes of copied entries to the site's map under way at once. */
const APPLY_CONCURRENCY = 32;
/** A write of a copied entry refused because a write of the key came first is tried this often. */
const APPLY_ATTEMPTS = 3;
/** An entry stamped further ahead of this site's wall clock is refused: it would win every write for that long. */
const MAX_FUTURE_MS = 24 * 3_600_000;
/** Room kept in a bus message for the frame around the entries. */
const FRAME_MARGIN_BYTES = 256;

/** What the copy needs of the gateway it runs in. */
export interface MapCopyHost {
  readonly clock: Clock;
  readonly site: string;
  /** The site's replicated map. */
  map(): ReplicatedMap;
  /** Publishes a frame to another site's gateway (lost while the bus is down). */
  publish(site: string, body: RelayBody): void;
  /** The other sites up. */
  sitesUp(): readonly string[];
  /** The largest bus message. */
  maxPayloadBytes(): number;
  readonly requestTimeoutMs: number;
  report(error: BlazeError, stage: ErrorStage): void;
}

export interface MapCopyStats {
  /** Entries written at this site sent to the other sites as they were committed. */
  shipped: number;
  /** Entries pushed to another site for a digest's buckets that differ. */
  pushed: number;
  /** Digests sent. */
  digests: number;
  /** Entries from other sites written into this site's map (their stamp was the greater). */
  applied: number;
  /** Entries from other sites this site had already, or had a greater stamp for. */
  superseded: number;
  /** Entries from other sites not written (refused: locked, no quorum, too many waiting, timed out); the next digest repairs them. */
  deferred: number;
  /** Entries refused: stamped too far ahead, or of a key this site does not copy. */
  refused: number;
  /** Entries too large for one bus message: not copied. */
  tooLarge: number;
  /** Digests not answered: another from the same site was answered less than a fifth of the digest interval before. */
  throttled: number;
}

/**
 * The asynchronous cross-site copy of the replicated map, at a site's gateway (one per gateway term;
 * the next gateway starts afresh — everything it needs is in the site's map).
 *
 * - **Shipping.** A committed change of the map that this site wrote (its stamp's site is this one)
 *   is sent at once to every other site up. A change applied from another site keeps that site's
 *   stamp and is not sent again, so nothing loops.
 * - **Applying.** An entry from another site is written through the site's map (an ordinary write, so
 *   every member of the site sees it as a change) if it is greater than the entry the map has for the
 *   key ({@link compareEntries}: by stamp) — a compare-and-set on the version compared, tried again
 *   when a local write came first.
 * - **Repair** (anti-entropy; what the bus lost, what a crashed gateway never sent, a site's outage):
 *   a gateway sends every other site a digest of its map — 64 buckets of keys, two XORed 32-bit
 *   hashes of each entry's key, stamp and value per bucket — every `digestIntervalMs`, when it connects, and
 *   when another site comes up or changes gateway. The receiver pushes its entries of every bucket
 *   that differs and answers with its own digest, so both sides push what the other lacks. The copy
 *   keeps no log: memory is the digest (computed from the map when needed) and a queue of entries
 *   waiting to be applied (at most 16,384, of 16 MiB of values, 32 writes under way).
 */
export class MapCopy {
  readonly stats: MapCopyStats = { shipped: 0, pushed: 0, digests: 0, applied: 0, superseded: 0, deferred: 0, refused: 0, tooLarge: 0, throttled: 0 };
  /** Changes of this site waiting for the end of the turn, to go in one frame per site. */
  #outgoing = new Map<string, CopiedEntry>();
  #outgoingArmed = false;
  /** Entries from other sites waiting to be applied, by key: the greatest stamp heard. */
  readonly #pending = new Map<string, CopiedEntry>();
  #pendingBytes = 0;
  readonly #applying = new Set<string>();
  /** When a digest of each site was last answered: a site's digests are answered at most every fifth of the interval. */
  readonly #answered = new Map<string, number>();
  #digestTimer: TimerHandle | undefined;
  #closed = false;

  constructor(
    private readonly host: MapCopyHost,
    private readonly options: ResolvedMapCopyOptions,
  ) {}

  /** The bus is connected: digests to every site, and from then on every interval. */
  connected(): void {
    if (this.#closed) return;
    for (const site of this.host.sitesUp()) this.digestTo(site, false);
    this.#digestTimer?.cancel();
    this.#digestTimer = this.host.clock.setTimer(this.options.digestIntervalMs, () => this.#tick());
  }

  close(): void {
    this.#closed = true;
    this.#digestTimer?.cancel();
    this.#pending.clear();
    this.#pendingBytes = 0;
    this.#outgoing.clear();
  }

  /** A committed change of the site's map, as this member's replica applied it. */
  changed(change: MapChange): void {
    if (this.#closed || change.type === "remove" || !this.#copies(change.key)) return;
    const entry = decodeStored(change.key, change.value);
    if (entry === undefined || entry.site !== this.host.site) return;
    this.#outgoing.set(entry.key, entry);
    if (this.#outgoingArmed) return;
    this.#outgoingArmed = true;
    this.host.clock.defer(() => {
      this.#outgoingArmed = false;
      const entries = [...this.#outgoing.values()];
      this.#outgoing = new Map();
      if (this.#closed) return;
      this.stats.shipped += entries.length;
      for (const site of this.host.sitesUp()) this.#send(site, entries);
    });
  }

  /** A frame of the copy from another site's gateway (the gateway checked that the site is up). */
  received(body: RelayBody): void {
    if (this.#closed) return;
    if (body.kind === "mapEntries") {
      for (const entry of body.entries) this.#offer(entry);
      this.#pump();
    } else if (body.kind === "mapDigest") {
      this.#compare(body.site, body.hashes, body.reply);
    }
  }

  /** Sends `site` this site's digest. */
  digestTo(site: string, reply: boolean): void {
    this.stats.digests++;
    this.host.publish(site, { kind: "mapDigest", site: this.host.site, hashes: this.#digest(this.#entries()), reply });
  }

  // --- internals ---

  #tick(): void {
    if (this.#closed) return;
    for (const site of this.host.sitesUp()) this.digestTo(site, false);
    this.#digestTimer = this.host.clock.setTimer(this.options.digestIntervalMs, () => this.#tick());
  }

  #copies(key: string): boolean {
    const prefixes = this.options.keys;
    return prefixes === undefined || prefixes.some((prefix) => key.startsWith(prefix));
  }

  /** The entries the copy compares: copied keys, live tombstones. */
  #entries(): CopiedEntry[] {
    const map = this.host.map();
    const now = this.options.wallClock();
    const entries: CopiedEntry[] = [];
    for (const key of map.keys()) {
      if (!this.#copies(key)) continue;
      const entry = decodeStored(key, map.getEntry(key)!.value);
      if (entry === undefined || (entry.removed && tombstoneOver(entry.time, now, this.options.tombstoneMs))) continue;
      entries.push(entry);
    }
    return entries;
  }

  #digest(entries: readonly CopiedEntry[]): number[] {
    const hashes = new Array<number>(2 * DIGEST_BUCKETS).fill(0);
    for (const entry of entries) {
      const b = bucketOf(entry.key);
      const text = `${entry.key}\u0000${entry.time}\u0000${entry.site}\u0000${entry.removed ? 1 : 0}\u0000${entry.format}\u0000${valueHash(entry.value)}`;
      hashes[2 * b] = (hashes[2 * b]! ^ fnv1a(text, 0x811c9dc5)) >>> 0;
      hashes[2 * b + 1] = (hashes[2 * b + 1]! ^ fnv1a(text, 0x050c5d1f)) >>> 0;
    }
    return hashes;
  }

  // Another site's digest: push what differs, and answer with this site's digest unless it is an answer.
  // Answers are rate-limited per site, so that forged digests cannot make the gateway push its map without end.
  #compare(site: string, theirs: readonly number[], reply: boolean): void {
    const now = this.host.clock.now();
    const last = this.#answered.get(site);
    if (last !== undefined && now - last < this.options.digestIntervalMs / 5) {
      this.stats.throttled++;
      return;
    }
    this.#answered.set(site, now);
    if (this.#answered.size > MAX_SITES) {
      const up = new Set(this.host.sitesUp());
      for (const known of this.#answered.keys()) if (!up.has(known)) this.#answered.delete(known);
    }
    const entries = this.#entries();
    const ours = this.#digest(entries);
    const differing = new Set<number>();
    for (let b = 0; b < DIGEST_BUCKETS; b++) if (ours[2 * b] !== theirs[2 * b] || ours[2 * b + 1] !== theirs[2 * b + 1]) differing.add(b);
    if (differing.size === 0) return;
    const push = entries.filter((entry) => differing.has(bucketOf(entry.key)));
    this.stats.pushed += push.length;
    this.#send(site, push);
    if (!reply) this.digestTo(site, true);
  }

  // Entries to a site, as many to a frame as a bus message carries.
  #send(site: string, entries: readonly CopiedEntry[]): void {
    const limit = this.host.maxPayloadBytes() - FRAME_MARGIN_BYTES;
    let batch: CopiedEntry[] = [];
    let bytes = 0;
    for (const entry of entries) {
      const size = utf8Length(entry.key) + utf8Length(entry.site) + entry.value.length + 32;
      if (size > limit) {
        this.stats.tooLarge++;
        continue;
      }
      if (bytes + size > limit) {
        this.host.publish(site, { kind: "mapEntries", site: this.host.site, entries: batch });
        batch = [];
        bytes = 0;
      }
      batch.push(entry);
      bytes += size;
    }
    if (batch.length > 0) this.host.publish(site, { kind: "mapEntries", site: this.host.site, entries: batch });
  }

  #offer(entry: CopiedEntry): void {
    if (!this.#copies(entry.key) || entry.time > this.options.wallClock() + MAX_FUTURE_MS) {
      this.stats.refused++;
      return;
    }
    const waiting = this.#pending.get(entry.key);
    if (waiting !== undefined && compareEntries(entry, waiting) <= 0) {
      this.stats.superseded++;
      return;
    }
    const bytes = this.#pendingBytes - (waiting?.value.length ?? 0) + entry.value.length;
    if ((waiting === undefined && this.#pending.size >= MAX_PENDING_APPLIES) || bytes > MAX_PENDING_BYTES) {
      this.stats.deferred++;
      return;
    }
    this.#pendingBytes = bytes;
    this.#pending.set(entry.key, entry);
  }

  #pump(): void {
    if (this.#closed) return;
    for (const [key, entry] of this.#pending) {
      if (this.#applying.size >= APPLY_CONCURRENCY) return;
      if (this.#applying.has(key)) continue;
      this.#pending.delete(key);
      this.#pendingBytes -= entry.value.length;
      this.#applying.add(key);
      this.#apply(entry)
        .catch((error: unknown) => this.host.report(error instanceof BlazeError ? error : new BlazeError("INTERNAL_ERROR", "applying a copied entry threw", { cause: error }), "receive"))
        .finally(() => {
          this.#applying.delete(key);
          this.#pump();
        });
    }
  }

  // Writes a copied entry through the site's map if its stamp wins over what the map has.
  async #apply(entry: CopiedEntry): Promise<void> {
    for (let attempt = 0; attempt < APPLY_ATTEMPTS; attempt++) {
      if (this.#closed) return;
      const map = this.host.map();
      const current = map.getEntry(entry.key);
      const local = current === undefined ? undefined : decodeStored(entry.key, current.value);
      const now = this.options.wallClock();
      if ((local !== undefined && compareEntries(local, entry) >= 0) || (entry.removed && tombstoneOver(entry.time, now, this.options.tombstoneMs))) {
        this.stats.superseded++;
        return;
      }
      try {
        await map.put(entry.key, encodeStored(entry), {
          ifVersion: current?.version ?? 0,
          timeToLiveMs: entry.removed ? Math.ceil(entry.time + this.options.tombstoneMs - now) : 0,
          removeOnExit: false,
          timeoutMs: this.host.requestTimeoutMs,
        });
        this.stats.applied++;
        return;
      } catch (error) {
        if (error instanceof BlazeError && error.code === "VERSION_MISMATCH") continue;
        if (error instanceof BlazeError) {
          // Locked, no quorum, timed out, the channel closing: the next digest repairs it.
          this.stats.deferred++;
          return;
        }
        throw error;
      }
    }
    this.stats.deferred++;
  }
}

/** Value hashes, once per stored value (a map entry's value is the same object until the key is written again). */
const valueHashes = new WeakMap<Uint8Array, number>();

function valueHash(value: Uint8Array): number {
  let hash = valueHashes.get(value);
  if (hash === undefined) {
    hash = 0x811c9dc5;
    for (let i = 0; i < value.length; i++) hash = Math.imul(hash ^ value[i]!, 0x01000193);
    hash >>>= 0;
    valueHashes.set(value, hash);
  }
  return hash;
}

function bucketOf(key: string): number {
  return fnv1a(key, 0x811c9dc5) % DIGEST_BUCKETS;
}

/** FNV-1a over the string's UTF-16 code units (the same at every site), from `basis`. */
function fnv1a(text: string, basis: number): number {
  let hash = basis;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
