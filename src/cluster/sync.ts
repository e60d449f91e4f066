import type { TimedUnit } from "../core/driver.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import type { Replica } from "./replica.ts";
import type { SnapshotSender } from "./snapshot.ts";
import type { MemberInstance, Position, SyncComplete, TermRecord, Update } from "./state-types.ts";

/** A member that has not accepted the term this long is sent what it lacks (or the SyncComplete) again. */
const RESEND_MS = 100;

/** What bringing a member up needs. */
export interface SyncHost {
  readonly replica: Replica;
  readonly snapshots: SnapshotSender;
  sendUpdate(peer: PeerKey, update: Update): void;
  sendSync(peer: PeerKey, sync: SyncComplete): void;
}

/** The term a SyncComplete names (its index is the sender's position when it is sent). */
export interface SyncTarget {
  readonly epoch: number;
  readonly coordinator: PeerKey;
  readonly members: readonly MemberInstance[];
  readonly prior: readonly TermRecord[];
  readonly tokenCeiling: number;
}

/**
 * Sends `peer` what it lacks to reach our position from `position` — the updates after it, when it is
 * on our line and our log still has them, else a snapshot — then a SyncComplete naming `target` at our
 * index. Returns the SyncComplete sent (its snapshot transfer 0: none).
 */
export function bringUp(host: SyncHost, peer: PeerKey, position: Position, target: SyncTarget, now: number): SyncComplete {
  const replica = host.replica;
  // A replica that never applied anything (index 0) gets a snapshot: the state, not its history.
  const updates = replica.follows(position) ? replica.updatesAfter(position.index) : undefined;
  let transfer = 0;
  let chunks = 0;
  if (updates !== undefined) {
    for (const update of updates) host.sendUpdate(peer, update);
  } else {
    const at = replica.position;
    ({ transfer, chunks } = host.snapshots.start(
      peer,
      { epoch: at.epoch, index: at.index, entries: [...replica.entries.values()], locks: new Map(replica.locks), applied: replica.appliedRecords(), nextToken: replica.nextToken },
      now,
    ));
  }
  const sync: SyncComplete = { ...target, index: replica.position.index, snapshotTransfer: transfer, snapshotChunks: chunks, entryCount: replica.entries.size };
  host.sendSync(peer, sync);
  return sync;
}

interface MemberSync {
  readonly member: MemberInstance;
  /** The incarnation it last answered as: what was sent to an earlier one is lost with it. */
  incarnation: number;
  /** Where it stands, as it last said. */
  position: Position;
  /** It said so since we last sent it something. */
  moved: boolean;
  /** The SyncComplete last sent (repeated as it was: its index is that of the snapshot or updates before it). */
  sent: SyncComplete | undefined;
  sentAt: number;
}

export interface SyncStats {
  snapshotsSent: number;
  suffixesSent: number;
}

/**
 * The coordinator's side of starting a term: brings every other member of the view to the coordinator's
 * state and term (see {@link bringUp}), and again — from where the member then says it stands — until
 * the member accepts the term. Also brings up a member the log can no longer repair, during the term.
 */
export class TermSync implements TimedUnit {
  readonly #host: SyncHost;
  readonly #stats: SyncStats;
  readonly #pending = new Map<PeerKey, MemberSync>();
  #target: SyncTarget;

  constructor(host: SyncHost, stats: SyncStats, target: SyncTarget, positions: ReadonlyMap<PeerKey, Position>, now: number) {
    this.#host = host;
    this.#stats = stats;
    this.#target = target;
    for (const member of target.members) {
      if (member.id === target.coordinator) continue;
      const position = positions.get(member.id)!;
      const sync: MemberSync = { member, incarnation: member.incarnation, position, moved: false, sent: undefined, sentAt: now };
      this.#pending.set(member.id, sync);
      this.#send(sync, now);
    }
  }

  /** Members that have not accepted the term yet. */
  get waiting(): number {
    return this.#pending.size;
  }

  /**
   * `peer`, running as `incarnation`, says it accepted the term and stands at `position`: true once that
   * is where the SyncComplete last sent brought it (on our line, at its index or past it) — it is in the
   * term at our state, and no longer waited for. Not before: a member brought up again during the term
   * accepted the term long ago and says so in every acknowledgement, and a member restarted in place
   * keeps the term it accepted but not its replica; either is still brought up.
   */
  reached(peer: PeerKey, incarnation: number, position: Position): boolean {
    const sync = this.#pending.get(peer);
    if (sync === undefined) return false;
    const target = this.#target;
    if (sync.incarnation === incarnation && position.epoch === target.epoch && position.coordinator === target.coordinator && position.index >= sync.sent!.index) {
      this.#pending.delete(peer);
      return true;
    }
    this.onPosition(peer, incarnation, position);
    return false;
  }

  /**
   * `peer` (not in the term at our state yet), running as `incarnation`, says where it stands: it refused
   * the SyncComplete, lacks updates, or restarted since (what it had been sent is lost with its earlier
   * run: it is brought up afresh from there).
   */
  onPosition(peer: PeerKey, incarnation: number, position: Position): void {
    const sync = this.#pending.get(peer);
    // An answer of an earlier run, come late, says nothing of where the member stands now.
    if (sync === undefined || incarnation < sync.incarnation) return;
    if (incarnation > sync.incarnation) {
      sync.incarnation = incarnation;
      sync.moved = true;
      this.#host.snapshots.cancel(peer);
    } else if (position.index !== sync.position.index || position.epoch !== sync.position.epoch || position.coordinator !== sync.position.coordinator) sync.moved = true;
    sync.position = position;
  }

  /**
   * Brings `member`, at `position`, up again to our state now (the log no longer has what it lacks: a
   * snapshot). The SyncComplete repeats the term (same epoch and coordinator) at our current index. A
   * member being brought up already goes on with that (its snapshot started over at every gap it
   * reports would never arrive while updates keep coming).
   */
  resync(member: MemberInstance, position: Position, now: number): void {
    if (this.#pending.has(member.id)) return;
    const sync: MemberSync = { member, incarnation: member.incarnation, position, moved: false, sent: undefined, sentAt: now };
    this.#pending.set(member.id, sync);
    this.#send(sync, now);
  }

  /** The ceiling raised meanwhile is the one SyncCompletes sent from now on name. */
  raiseCeiling(ceiling: number): void {
    if (ceiling > this.#target.tokenCeiling) this.#target = { ...this.#target, tokenCeiling: ceiling };
  }

  close(): void {
    for (const peer of this.#pending.keys()) this.#host.snapshots.cancel(peer);
    this.#pending.clear();
  }

  pollTimeout(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const sync of this.#pending.values()) next = Math.min(next, sync.sentAt + RESEND_MS);
    return next;
  }

  handleTimeout(now: number): void {
    for (const sync of this.#pending.values()) {
      if (sync.sentAt + RESEND_MS > now) continue;
      sync.sentAt = now;
      const sent = sync.sent!;
      // A snapshot on its way resends its own chunks; the SyncComplete after it is repeated once it is done.
      if (sent.snapshotTransfer !== 0 && this.#host.snapshots.inProgress(sync.member.id, sent.snapshotTransfer)) continue;
      // Still short of the updates sent before the SyncComplete (some were lost): sent what it lacks again,
      // from where it last said it stands.
      if (sync.moved || (sent.snapshotTransfer === 0 && sync.position.index < sent.index)) this.#send(sync, now);
      else this.#host.sendSync(sync.member.id, sent);
    }
  }

  #send(sync: MemberSync, now: number): void {
    sync.moved = false;
    sync.sentAt = now;
    sync.sent = bringUp(this.#host, sync.member.id, sync.position, this.#target, now);
    if (sync.sent.snapshotTransfer === 0) this.#stats.suffixesSent++;
    else this.#stats.snapshotsSent++;
  }
}
