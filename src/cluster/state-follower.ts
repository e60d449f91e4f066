import type { PeerKey } from "../reliable/protocol.ts";
import type { Replica } from "./replica.ts";
import { type Staging, stageChunk } from "./snapshot.ts";
import {
  type Announce,
  type AppliedRecord,
  type EpochPromise,
  type MemberInstance,
  noticesNeeded,
  type Position,
  type ReplicaChange,
  type SnapshotChunk,
  type StateAck,
  type SyncComplete,
  type Term,
  type Update,
  type ViewKey,
} from "./state-types.ts";
import type { VisibleState } from "./visible-state.ts";

/** Updates past a gap kept until the gap is filled; further ones are dropped (and sent again later). */
const MAX_BUFFERED = 4_096;

/** A view as the state map needs it. */
export interface StateView {
  readonly id: ViewKey;
  readonly members: readonly MemberInstance[];
  readonly coordinator: MemberInstance;
}

/**
 * The term a member accepted and the epoch it promised, kept across restarts of its channel: what it
 * promised must outlive its data (a restarted member counts for its quorum, so it must not go back on it).
 */
export interface TermMemory {
  accepted: Term;
  /** The accepted term is known to have begun: every one of its members accepted it. */
  begun: boolean;
  promised: EpochPromise;
  /**
   * The coordinator whose lease probes this member last followed, and when it last had one: that
   * coordinator may serve on this member's echoes until a lease later, so the member promises another
   * one only after that (see StateEngine) — also as its next incarnation, whose restart in place does
   * not end that lease.
   */
  echoed: { readonly coordinator: PeerKey; readonly at: number } | undefined;
  /**
   * The highest lease probe this member sent as a coordinator: its next term goes on above it, also in
   * its next run — its members echo the highest probe they saw from it, and one of its earlier run that
   * reaches them late must not outnumber the new run's.
   */
  probe: number;
  /**
   * The incarnation this memory was first used in (set when the first state engine starts on it): it
   * knows nothing of what the member promised or accepted in earlier incarnations. A process started
   * again under the same member id (an insider identity is its key's) begins with a memory of its own,
   * so its reports must not stand for the earlier run's (see agreedCandidates, quorumRefusal).
   */
  since: number | undefined;
}

export interface FollowerHost {
  readonly local: MemberInstance;
  readonly replica: Replica;
  readonly visible: VisibleState;
  readonly memory: TermMemory;
  sendAck(peer: PeerKey, ack: StateAck): void;
  /** The replica changed, in the map's order (`resync`: the differences a snapshot made). */
  changed(changes: readonly ReplicaChange[], resync: boolean): void;
  /** Someone listens to the entries' changes (else a snapshot's are not worked out). */
  changesWatched(): boolean;
  /** This replica applied one of this member's requests. */
  ownApplied(record: AppliedRecord, epoch: number): void;
  /** A new term was accepted: the replica is complete and current. */
  accepted(epoch: number, newTerm: boolean): void;
  /** A pull from another replica finished (this member coordinates and was behind it). */
  pulled(): void;
}

export interface FollowerStats {
  updatesApplied: number;
  snapshotsInstalled: number;
  /** Frames refused because they came from a member that is not our source, or from an older term. */
  staleRefused: number;
  /** Updates past a gap (kept until it is filled, or dropped past the buffer) and syncs that did not fit our position. */
  outOfOrder: number;
}

/**
 * A replica following its view's coordinator: it answers the coordinator's PrepareOp (a promise, and
 * where it stands), applies the coordinator's updates in log order (those past a gap wait for it),
 * acknowledges what it holds cumulatively once a turn (its acknowledgement says what it lacks, and
 * echoes the coordinator's lease probe), tells requesters that it applied their requests (notices),
 * takes snapshots chunk by chunk, and accepts a new term when the coordinator's SyncComplete finds it at
 * the term's position.
 *
 * An acknowledgement moves the coordinator's commit point, which the coordinator's own requests, a
 * raised fencing-token ceiling and its lease wait for; other members' requests are done at their
 * requesters (by notices, or in a term of two as soon as applied). One for an update that completes a
 * request of ours here and holds none of those — no request of the coordinator's, no ceiling, no new
 * lease probe — waits one turn: the request this member's application makes on seeing its own done
 * (its caller's continuation runs after the turn that applied it) then goes out with it, in one
 * datagram, not one each. The next turn comes in the same round of the event loop: the coordinator
 * commits those writes (and its application sees them) a moment later at most.
 *
 * Members accept updates only from their view's coordinator, and a term only above the one they
 * accepted last and not below the epoch they promised (the same term again is a repeat), so a deposed
 * coordinator is refused.
 */
export class ReplicaFollower {
  readonly stats: FollowerStats = { updatesApplied: 0, snapshotsInstalled: 0, staleRefused: 0, outOfOrder: 0 };
  readonly #host: FollowerHost;
  #view: StateView | undefined;
  #current = false;
  #ready = false;
  /** While this member coordinates and pulls from another replica: that replica. */
  #pullSource: PeerKey | undefined;
  readonly #buffer = new Map<number, Update>();
  #highestSeen = 0;
  /** The highest lease probe seen from the view's coordinator. */
  #leaseProbe = 0;
  #staging: Staging | undefined;
  #ackDue = false;
  /** Since when an acknowledgement waits for the next turn (infinite: none does). */
  #ackHeldAt = Number.POSITIVE_INFINITY;
  /** That acknowledgement was held back in this turn: it goes at the next one (or with a request in this one). */
  #heldThisTurn = false;
  readonly #notices = new Map<PeerKey, Position>();
  #chunkAckDue = false;

  constructor(host: FollowerHost) {
    this.#host = host;
  }

  /** True once a coordinator brought this replica to its state at least once: it holds the whole map. */
  get ready(): boolean {
    return this.#ready;
  }

  /** True once the current view's coordinator brought this replica to its state (the coordinator: its term began). */
  get current(): boolean {
    return this.#current;
  }

  get view(): StateView | undefined {
    return this.#view;
  }

  /** The group installed a view (undefined: we left it). */
  onView(view: StateView | undefined): void {
    const previous = this.#view;
    this.#view = view;
    this.#current = false;
    this.#pullSource = undefined;
    this.#buffer.clear();
    this.#highestSeen = 0;
    this.#ackHeldAt = Number.POSITIVE_INFINITY;
    // Lease probes are numbered afresh by each coordinator, and by each run of one (restarted in place).
    if (previous?.coordinator.id !== view?.coordinator.id || previous?.coordinator.incarnation !== view?.coordinator.incarnation) this.#leaseProbe = 0;
  }

  /**
   * Our view's coordinator asks for a promise not to accept a term below `epoch`: given if it is above
   * every epoch we promised or accepted (or was given to it already). The answer says where we stand,
   * and — refused — the higher epoch.
   */
  onPrepare(peer: PeerKey, epoch: number, view: ViewKey): void {
    const current = this.#view;
    if (current === undefined || current.coordinator.id !== peer || current.id.installer !== view.installer || current.id.counter !== view.counter) return;
    const memory = this.#host.memory;
    if (epoch > memory.promised.epoch && epoch > memory.accepted.epoch) {
      memory.promised = { epoch, coordinator: peer };
      // What we kept past a gap is of the term we leave, and may not be on the next term's line: its
      // sync brings what follows the position we report.
      this.#buffer.clear();
    }
    this.#host.sendAck(peer, this.report());
  }

  /** This member, coordinating, pulls what it lacks from `source` (undefined: it stopped). */
  pullFrom(source: PeerKey | undefined): void {
    this.#pullSource = source;
    this.#buffer.clear();
    this.#highestSeen = 0;
  }

  /** The coordinator (this member) started its term: its replica is current. */
  termStarted(): void {
    this.#current = true;
    this.#ready = true;
  }

  /** Our position, for a report on the current view (or, without a view, an acknowledgement). */
  report(): StateAck {
    return this.#ack(this.#view?.id);
  }

  /** From whom this member takes updates now: its view's coordinator, or the replica it pulls from. */
  isSource(peer: PeerKey): boolean {
    if (this.#pullSource !== undefined) return peer === this.#pullSource;
    const coordinator = this.#view?.coordinator;
    return coordinator !== undefined && coordinator.id === peer && peer !== this.#host.local.id;
  }

  onUpdate(peer: PeerKey, update: Update, leaseProbe: number, termBegun: boolean, now: number): void {
    if (!this.isSource(peer)) {
      this.stats.staleRefused++;
      return;
    }
    let probed = false;
    if (this.#pullSource === undefined) {
      if (!this.#acceptable(update, leaseProbe !== 0)) return;
      if (leaseProbe > this.#leaseProbe) {
        this.#leaseProbe = leaseProbe;
        probed = true;
      }
      if (termBegun) this.#termBegun(peer, update.epoch, update.coordinator);
    }
    const position = this.#host.replica.position.index;
    if (update.index <= position) {
      // A repeat (sent again while the first was on its way): say where we are.
      this.#ackDue = true;
      return;
    }
    if (update.index > position + 1) {
      this.stats.outOfOrder++;
      if (update.index - position <= MAX_BUFFERED) this.#buffer.set(update.index, update);
      if (update.index > this.#highestSeen) this.#highestSeen = update.index;
      this.#ackDue = true;
      return;
    }
    this.#apply(update, now);
    // A new lease probe is echoed at once: the coordinator serves on the echoes of a majority.
    if (probed) this.#ackDue = true;
    this.#drain(now);
  }

  /** The coordinator says where it is and probes its lease: answer now, saying what we lack. */
  onAnnounce(peer: PeerKey, announce: Announce, termBegun: boolean): void {
    if (!this.isSource(peer) || this.#pullSource !== undefined) return;
    if (termBegun) this.#termBegun(peer, announce.epoch, announce.coordinator);
    if (announce.leaseProbe > this.#leaseProbe) this.#leaseProbe = announce.leaseProbe;
    if (announce.index > this.#highestSeen) this.#highestSeen = announce.index;
    this.#ackDue = true;
  }

  onSnapshot(peer: PeerKey, chunk: SnapshotChunk): void {
    if (!this.isSource(peer)) {
      this.stats.staleRefused++;
      return;
    }
    this.#staging = stageChunk(this.#staging, peer, chunk);
    this.#chunkAckDue = true;
  }

  onSync(peer: PeerKey, sync: SyncComplete, now: number): void {
    if (!this.isSource(peer)) {
      this.stats.staleRefused++;
      return;
    }
    const pulling = this.#pullSource !== undefined;
    const { accepted, promised } = this.#host.memory;
    const sameTerm = sync.epoch === accepted.epoch && sync.coordinator === accepted.coordinator;
    const belowPromise = sync.epoch < promised.epoch || (sync.epoch === promised.epoch && sync.coordinator !== promised.coordinator);
    if (!pulling && !sameTerm && (sync.epoch <= accepted.epoch || belowPromise)) {
      // A coordinator of a term we cannot accept: our acknowledgement tells it the term we did accept.
      this.stats.staleRefused++;
      this.#ackDue = true;
      return;
    }
    const replica = this.#host.replica;
    if (sync.snapshotChunks > 0) {
      let staging = this.#staging;
      if (staging !== undefined && staging.from === peer && staging.transfer === sync.snapshotTransfer && staging.index !== sync.index) {
        // The snapshot it names is of its sender's position when it was sent, the SyncComplete's index:
        // one of another index numbered alike is of the sender's earlier run (restarted in place, it
        // numbers its transfers afresh), perhaps complete and never taken. It is dropped, not
        // acknowledged: the sender would take that for the chunks of the snapshot on its way.
        this.#staging = staging = undefined;
      }
      if (staging === undefined || staging.from !== peer || staging.transfer !== sync.snapshotTransfer || staging.held < sync.snapshotChunks) {
        // The chunks are still on their way (or some were lost): say which we hold.
        this.#chunkAckDue = true;
        return;
      }
      this.#staging = undefined;
      if (sameTerm && staging.index < replica.position.index && replica.position.epoch === sync.epoch && replica.position.coordinator === sync.coordinator) {
        // A copy of a snapshot of this term already installed (its chunks and SyncComplete resent, or
        // duplicated, after we took it): we went on past it on the same line, and installing it again
        // would take the replica back. Our acknowledgement says where we are.
        this.stats.staleRefused++;
        this.#ackDue = true;
        return;
      }
      // Count the differences from what the application saw.
      this.#host.visible.revert();
      const changes = replica.install(staging.entries, staging.locks, staging.applied, staging.index, staging.nextToken, now, this.#host.changesWatched());
      this.stats.snapshotsInstalled++;
      if (changes.length > 0) this.#host.changed(changes, true);
    } else if (replica.position.index !== sync.index) {
      // The updates before it did not bring us to its index: our acknowledgement says where we are.
      this.stats.outOfOrder++;
      this.#ackDue = true;
      return;
    } else if (!pulling && !sameTerm) {
      // Our history is on the new term's line: what we applied and did not show yet is kept for good.
      const shown = this.#host.visible.commitAll();
      if (shown.length > 0) this.#host.changed(shown, false);
    }
    replica.synced(sync.epoch, sync.coordinator, sync.index, sync.tokenCeiling);
    for (const index of [...this.#buffer.keys()]) if (index <= sync.index) this.#buffer.delete(index);
    if (pulling) {
      this.#pullSource = undefined;
      this.#host.pulled();
      return;
    }
    if (!sameTerm) {
      this.#host.memory.accepted = { epoch: sync.epoch, coordinator: sync.coordinator, members: sync.members, prior: sync.prior };
      this.#host.memory.begun = false;
    }
    this.#current = true;
    this.#ready = true;
    this.#ackDue = true;
    this.#host.accepted(sync.epoch, !sameTerm);
    this.#drain(now);
  }

  /** `peer`, coordinating the term (epoch, coordinator), says it began: if it is the term we accepted, we know so. */
  #termBegun(peer: PeerKey, epoch: number, coordinator: PeerKey): void {
    const memory = this.#host.memory;
    if (coordinator === peer && epoch === memory.accepted.epoch && coordinator === memory.accepted.coordinator) memory.begun = true;
  }

  /** When an acknowledgement held back goes out: at the next turn (infinite: none is held). */
  pollTimeout(): number {
    return this.#ackHeldAt;
  }

  /**
   * What this turn owes: the acknowledgement to the coordinator, notices to requesters, snapshot
   * acknowledgements. `toCoordinator`: this turn sends the coordinator a request, which an
   * acknowledgement held back joins.
   */
  flush(toCoordinator: boolean): void {
    const view = this.#view;
    const wanted = this.#ackDue || (this.#ackHeldAt !== Number.POSITIVE_INFINITY && (toCoordinator || !this.#heldThisTurn));
    const ackDue = wanted && view !== undefined && view.coordinator.id !== this.#host.local.id && this.#pullSource === undefined;
    this.#ackDue = false;
    this.#heldThisTurn = false;
    if (wanted) this.#ackHeldAt = Number.POSITIVE_INFINITY;
    if (this.#chunkAckDue && this.#staging !== undefined) {
      this.#host.sendAck(this.#staging.from, { ...this.#ack(undefined), snapshotTransfer: this.#staging.transfer, snapshotChunks: this.#staging.held });
    }
    this.#chunkAckDue = false;
    // Notices first: their requesters wait for them, while the coordinator's acknowledgement only moves
    // its commit point. (Not one multicast for both: every member that hears an acknowledgement takes it
    // as addressed to it, and one coordinating another term would take our echo of this coordinator's
    // lease probe for an echo of its own.)
    if (this.#notices.size > 0) {
      const ack = this.#ack(undefined);
      for (const [peer, position] of this.#notices) this.#host.sendAck(peer, { ...ack, position });
      this.#notices.clear();
    }
    if (ackDue) this.#host.sendAck(view!.coordinator.id, this.#ack(undefined));
  }

  /**
   * An update of the coordinator we follow: of the term we accepted, or of an older one — the updates a
   * coordinator sends before its SyncComplete, from terms below the epoch we promised it.
   *
   * One `probing` the lease was multicast as the coordinator ordered it, to the members of its term: it
   * follows on from our replica only while we follow that term. Of another term (the coordinator's
   * previous one, delayed past its prepare), or once we promised a next term, it may continue a history
   * other than ours — a deposed coordinator's that we hold, or the coordinator's own from before it took
   * a replica further along — and is refused: the next term's sync, from the position we report, brings
   * what we lack.
   *
   * Nor does one of an epoch below our position's follow on from it: along a coordinator's log epochs
   * never fall, and a log that passes through our position goes on from its epoch. Such an update was
   * sent from a position we reported before we accepted a later term (a sync suffix delayed, or of a
   * term we then refused), and taken, it would graft the coordinator's older line onto that term's.
   */
  #acceptable(update: Update, probing: boolean): boolean {
    const { accepted, promised } = this.#host.memory;
    const ourTerm = update.epoch === accepted.epoch && update.coordinator === accepted.coordinator;
    if (update.epoch < this.#host.replica.position.epoch || (probing && (!ourTerm || promised.epoch > accepted.epoch))) {
      this.stats.staleRefused++;
      return false;
    }
    if (update.epoch === accepted.epoch) {
      if (ourTerm) return true;
      this.stats.staleRefused++;
      return false;
    }
    if (update.epoch < accepted.epoch) return true;
    // A term we have not accepted (yet): it comes again once we have.
    return promised.coordinator === this.#view?.coordinator.id && update.epoch < promised.epoch;
  }

  #apply(update: Update, now: number): void {
    // Updates this member ordered as coordinator and did not show yet are on the line of the one that
    // sends this (it follows on from our position): they are kept, and shown first, in order.
    if (this.#host.visible.pending > 0) {
      const shown = this.#host.visible.commitAll();
      if (shown.length > 0) this.#host.changed(shown, false);
    }
    const { changes, records } = this.#host.replica.apply(update, now);
    this.stats.updatesApplied++;
    if (changes.length > 0) this.#host.changed(changes, false);
    if (this.#pullSource !== undefined) return;
    const local = this.#host.local;
    const term = this.#host.memory.accepted;
    // Where the replica now stands is the update's place (epoch, coordinator, index): every notice of it
    // names that one object.
    const position = this.#host.replica.position;
    const noticed = noticesNeeded(term.members.length) > 0;
    let ownDone = false;
    for (const record of records) {
      if (record.requester.id === local.id) {
        if (record.requester.incarnation === local.incarnation) {
          this.#host.ownApplied(record, update.epoch);
          ownDone = !noticed;
        }
      } else if (record.requester.id !== update.coordinator && noticed) {
        this.#notices.set(record.requester.id, position);
      }
    }
    // Held back only when it completes a request of ours and no one waits for the coordinator's commit
    // point (see the class).
    let held = ownDone && update.tokenCeiling === 0;
    const requests = update.requests;
    for (let i = 0; held && i < requests.length; i++) {
      const requester = requests[i]!.requester;
      if (requester === undefined || requester.id === update.coordinator) held = false;
    }
    if (!held) this.#ackDue = true;
    else if (this.#ackHeldAt === Number.POSITIVE_INFINITY) {
      this.#ackHeldAt = now;
      this.#heldThisTurn = true;
    }
  }

  #drain(now: number): void {
    for (;;) {
      const next = this.#buffer.get(this.#host.replica.position.index + 1);
      if (next === undefined) break;
      this.#buffer.delete(next.index);
      if (this.#pullSource === undefined && !this.#acceptable(next, false)) break;
      this.#apply(next, now);
    }
    if (this.#buffer.size > 0) {
      const position = this.#host.replica.position.index;
      for (const index of [...this.#buffer.keys()]) if (index <= position) this.#buffer.delete(index);
    }
  }

  #ack(view: ViewKey | undefined): StateAck {
    const replica = this.#host.replica;
    return {
      position: replica.position,
      view,
      tokenCeiling: replica.tokenCeiling,
      accepted: this.#host.memory.accepted,
      acceptedBegun: this.#host.memory.begun,
      promised: this.#host.memory.promised,
      memorySince: this.#host.memory.since ?? this.#host.local.incarnation,
      ready: this.#ready,
      highestSeen: Math.max(this.#highestSeen, replica.position.index),
      leaseProbe: this.#leaseProbe,
      snapshotTransfer: 0,
      snapshotChunks: 0,
    };
  }
}
