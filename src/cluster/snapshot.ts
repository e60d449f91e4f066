import type { TimedUnit } from "../core/driver.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import { type AppliedRecord, type LockSpec, remaining, type SnapshotChunk, type StoredEntry, type StoredLock } from "./state-types.ts";
import { utf8Length } from "../wire/varint.ts";

/** Chunks in flight to one receiver before it acknowledges some. */
const WINDOW_CHUNKS = 16;
/**
 * A transfer that made no progress this long sends again from the first chunk not acknowledged; twice
 * as long after each such resend that brought none (up to MAX_RESEND_MS): a receiver slower than the
 * window (a busy machine) is not sent the window again and again while it works through the first.
 */
const RESEND_MS = 100;
const MAX_RESEND_MS = 800;
/** At most what an entry costs in a chunk beyond its key and value: tags, lengths, version, owner, options. */
const ENTRY_OVERHEAD_BYTES = 64;
const LOCK_BYTES = 48;
const RECORD_OVERHEAD_BYTES = 48;

/** The state a snapshot carries, as it stood when the transfer began (later changes follow as updates). */
export interface SnapshotSource {
  readonly epoch: number;
  readonly index: number;
  readonly entries: readonly StoredEntry[];
  readonly locks: ReadonlyMap<string, StoredLock>;
  readonly applied: readonly AppliedRecord[];
  readonly nextToken: number;
}

/** The upper bound of what `entry` adds to a chunk. */
function entryBytes(entry: StoredEntry, locked: boolean): number {
  return utf8Length(entry.key) + entry.value.length + ENTRY_OVERHEAD_BYTES + (locked ? LOCK_BYTES : 0);
}

function recordBytes(record: AppliedRecord): number {
  let bytes = RECORD_OVERHEAD_BYTES;
  for (const entry of record.previous) bytes += entryBytes(entry, false);
  return bytes;
}

/**
 * Where each chunk of a snapshot begins: the entries first, then the locks on keys without an entry,
 * then the records of applied requests, cut so that no chunk's estimate passes `chunkBytes` (a chunk
 * holds at least one item, whatever its size: the map's values are bounded to fit a datagram).
 */
export class SnapshotLayout {
  readonly entries: readonly StoredEntry[];
  readonly looseLocks: readonly StoredLock[];
  readonly applied: readonly AppliedRecord[];
  /** Chunk k holds items [starts[k], starts[k + 1]) of entries ++ looseLocks ++ applied. */
  readonly starts: readonly number[];

  constructor(source: SnapshotSource, chunkBytes: number) {
    this.entries = source.entries;
    if (source.locks.size === 0) this.looseLocks = [];
    else {
      const keys = new Set<string>();
      for (const entry of source.entries) keys.add(entry.key);
      this.looseLocks = [...source.locks.values()].filter((lock) => !keys.has(lock.key));
    }
    this.applied = source.applied;
    const starts = [0];
    let bytes = 0;
    let item = 0;
    const add = (size: number) => {
      if (bytes > 0 && bytes + size > chunkBytes) {
        starts.push(item);
        bytes = 0;
      }
      bytes += size;
      item++;
    };
    const locked = source.locks.size > 0;
    for (const entry of source.entries) add(entryBytes(entry, locked && source.locks.has(entry.key)));
    for (let i = 0; i < this.looseLocks.length; i++) add(LOCK_BYTES);
    for (const record of source.applied) add(recordBytes(record));
    this.starts = starts;
  }

  get chunkCount(): number {
    return this.starts.length;
  }

  /** The items of chunk `k` (the loose locks with their leases left at `now`; the entries as stored). */
  chunk(k: number, now: number): Pick<SnapshotChunk, "entries" | "locks" | "applied"> {
    const from = this.starts[k]!;
    const to = k + 1 < this.starts.length ? this.starts[k + 1]! : this.entries.length + this.looseLocks.length + this.applied.length;
    const lockBase = this.entries.length;
    const appliedBase = lockBase + this.looseLocks.length;
    const entries = this.entries.slice(Math.min(from, lockBase), Math.min(to, lockBase));
    const locks: LockSpec[] = [];
    const applied: AppliedRecord[] = [];
    for (let i = Math.max(from, lockBase); i < to; i++) {
      if (i < appliedBase) locks.push(lockSpec(this.looseLocks[i - lockBase]!, now));
      else applied.push(this.applied[i - appliedBase]!);
    }
    return { entries, locks, applied };
  }
}

export function lockSpec(lock: StoredLock, now: number): LockSpec {
  return { key: lock.key, holder: lock.holder, token: lock.token, leaseMs: remaining(lock.expiresAt, now), releaseOnExit: lock.releaseOnExit };
}

interface Transfer {
  readonly peer: PeerKey;
  readonly id: number;
  readonly source: SnapshotSource;
  readonly layout: SnapshotLayout;
  /** The receiver reads entries from an entry block. */
  readonly entryBlock: boolean;
  /** Chunks the receiver acknowledged (it holds chunks 0 .. acked − 1). */
  acked: number;
  /** Chunks sent since the last resend from `acked`. */
  sent: number;
  progressAt: number;
  /** The wait for progress before the next resend. */
  resendMs: number;
}

/**
 * Snapshots on their way to other members, one per receiver: chunks bounded by bytes, a window of them
 * in flight, acknowledged cumulatively by the receiver (StateAck.snapshot_chunks); a transfer that makes
 * no progress sends again from the first chunk not acknowledged (go-back-N). It sends through `send`
 * and reads no clock. A member that said it reads entry blocks (StateAck.reads_entry_block) is sent
 * its entries in one; any other, one message per entry.
 */
export class SnapshotSender implements TimedUnit {
  readonly #transfers = new Map<PeerKey, Transfer>();
  /** The members of the view that read entry blocks, as their acknowledgements say. */
  readonly #blockReaders = new Set<PeerKey>();
  /** The members of the current view (undefined before the first): nobody else is sent a snapshot for long. */
  #members: ReadonlySet<PeerKey> | undefined;
  readonly #chunkBytes: number;
  readonly #send: (peer: PeerKey, chunk: SnapshotChunk, lockOf: (key: string) => LockSpec | undefined, now: number, entryBlock: boolean) => void;
  #nextId = 1;
  chunksSent = 0;

  constructor(chunkBytes: number, send: (peer: PeerKey, chunk: SnapshotChunk, lockOf: (key: string) => LockSpec | undefined, now: number, entryBlock: boolean) => void) {
    this.#chunkBytes = chunkBytes;
    this.#send = send;
  }

  /** What `peer`'s latest acknowledgement said: it reads entry blocks, or not. */
  readsEntryBlock(peer: PeerKey, reads: boolean): void {
    if (reads) this.#blockReaders.add(peer);
    else this.#blockReaders.delete(peer);
  }

  /**
   * The view is now `members`: forgets what the others said, and stops sending to them. A transfer
   * started to one of them later (a repair of the term it was in) is dropped at its first resend:
   * nothing would ever acknowledge it, and it holds a copy of the whole map.
   */
  retain(members: ReadonlySet<PeerKey>): void {
    this.#members = members;
    for (const peer of this.#blockReaders) if (!members.has(peer)) this.#blockReaders.delete(peer);
    for (const peer of this.#transfers.keys()) if (!members.has(peer)) this.#transfers.delete(peer);
  }

  /** Starts sending `source` to `peer` (replacing a transfer to it); returns the transfer's id and size. */
  start(peer: PeerKey, source: SnapshotSource, now: number): { readonly transfer: number; readonly chunks: number } {
    const layout = new SnapshotLayout(source, this.#chunkBytes);
    const transfer: Transfer = { peer, id: this.#nextId++, source, layout, entryBlock: this.#blockReaders.has(peer), acked: 0, sent: 0, progressAt: now, resendMs: RESEND_MS };
    this.#transfers.set(peer, transfer);
    this.#fill(transfer, now);
    return { transfer: transfer.id, chunks: transfer.layout.chunkCount };
  }

  /** The transfer to `peer` of this id is still on its way. */
  inProgress(peer: PeerKey, id: number): boolean {
    return this.#transfers.get(peer)?.id === id;
  }

  /** `peer` holds the first `chunks` chunks of transfer `id`. */
  onAck(peer: PeerKey, id: number, chunks: number, now: number): void {
    const transfer = this.#transfers.get(peer);
    if (transfer === undefined || transfer.id !== id || chunks <= transfer.acked) return;
    transfer.acked = Math.min(chunks, transfer.layout.chunkCount);
    transfer.progressAt = now;
    transfer.resendMs = RESEND_MS;
    if (transfer.acked === transfer.layout.chunkCount) {
      this.#transfers.delete(peer);
      return;
    }
    this.#fill(transfer, now);
  }

  cancel(peer: PeerKey): void {
    this.#transfers.delete(peer);
  }

  clear(): void {
    this.#transfers.clear();
    this.#blockReaders.clear();
    this.#members = undefined;
  }

  pollTimeout(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const transfer of this.#transfers.values()) next = Math.min(next, transfer.progressAt + transfer.resendMs);
    return next;
  }

  handleTimeout(now: number): void {
    for (const transfer of this.#transfers.values()) {
      if (transfer.progressAt + transfer.resendMs > now) continue;
      if (this.#members !== undefined && !this.#members.has(transfer.peer)) {
        this.#transfers.delete(transfer.peer);
        continue;
      }
      transfer.sent = transfer.acked;
      transfer.progressAt = now;
      transfer.resendMs = Math.min(2 * transfer.resendMs, MAX_RESEND_MS);
      this.#fill(transfer, now);
    }
  }

  #fill(transfer: Transfer, now: number): void {
    const { layout, source } = transfer;
    const end = Math.min(layout.chunkCount, transfer.acked + WINDOW_CHUNKS);
    if (transfer.sent < transfer.acked) transfer.sent = transfer.acked;
    const lockOf = (key: string) => {
      const lock = source.locks.get(key);
      return lock === undefined ? undefined : lockSpec(lock, now);
    };
    for (; transfer.sent < end; transfer.sent++) {
      const k = transfer.sent;
      this.#send(
        transfer.peer,
        { transfer: transfer.id, epoch: source.epoch, index: source.index, chunk: k, chunkCount: layout.chunkCount, nextToken: source.nextToken, ...layout.chunk(k, now) },
        lockOf,
        now,
        transfer.entryBlock,
      );
      this.chunksSent++;
    }
  }
}

/**
 * A snapshot being received: the chunks held in order, their entries put in the map the replica takes
 * over once the snapshot is complete (built as the chunks come, not after the last one).
 */
export interface Staging {
  readonly from: PeerKey;
  readonly transfer: number;
  readonly epoch: number;
  readonly index: number;
  readonly chunkCount: number;
  /** Chunks held (0 .. held − 1). */
  held: number;
  readonly entries: Map<string, StoredEntry>;
  readonly locks: LockSpec[];
  readonly applied: AppliedRecord[];
  nextToken: number;
}

/**
 * Takes chunk `chunk` from `from` into `staging` (a new transfer starts a new staging); returns the
 * staging to keep. Chunks are taken in order only: one past the next expected is dropped (the sender
 * sends again from what the acknowledgement says). A chunk of another position is of another transfer
 * whatever its number: a sender restarted in place (same id) numbers its transfers afresh.
 */
export function stageChunk(staging: Staging | undefined, from: PeerKey, chunk: SnapshotChunk): Staging {
  let current = staging;
  if (current === undefined || current.from !== from || current.transfer !== chunk.transfer || current.epoch !== chunk.epoch || current.index !== chunk.index) {
    current = { from, transfer: chunk.transfer, epoch: chunk.epoch, index: chunk.index, chunkCount: chunk.chunkCount, held: 0, entries: new Map(), locks: [], applied: [], nextToken: chunk.nextToken };
  }
  if (chunk.chunk !== current.held || chunk.chunk >= current.chunkCount) return current;
  for (const entry of chunk.entries) current.entries.set(entry.key, entry);
  for (const lock of chunk.locks) current.locks.push(lock);
  for (const record of chunk.applied) current.applied.push(record);
  if (chunk.nextToken > current.nextToken) current.nextToken = chunk.nextToken;
  current.held++;
  return current;
}
