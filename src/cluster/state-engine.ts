import type { TimedUnit } from "../core/driver.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import { type ElectionRules, TermElection } from "./election.ts";
import { Replica } from "./replica.ts";
import { Sequencer, TOKEN_BLOCK } from "./sequencer.ts";
import { SnapshotSender } from "./snapshot.ts";
import { StateClient, type Waiter } from "./state-client.ts";
import { ReplicaFollower, type StateView, type TermMemory } from "./state-follower.ts";
import { type AppliedRecord, comparePositions, type MemberInstance, memberOf, type Position, type ReplicaChange, type StateAck, type StateOp, type StateRequest, type StateResponse, type SyncComplete, type Update } from "./state-types.ts";
import { encodeAck, encodeAnnounce, encodeRequest, encodeResponse, encodeSnapshot, encodeSync, encodeUpdate, type StateFrame } from "./state-wire.ts";
import { bringUp, TermSync } from "./sync.ts";
import { VisibleState } from "./visible-state.ts";

export type { StateView, TermMemory } from "./state-follower.ts";

/** A coordinator asks its members for their promise again this often, and a replica it pulls from. */
const RETRY_MS = 100;

export interface StateEngineHost {
  readonly local: MemberInstance;
  readonly group: string;
  unicast(peer: PeerKey, frame: Uint8Array): void;
  /** To every member of the group (others ignore it). */
  multicast(frame: Uint8Array): void;
  /** The map changed, in its order (`resync`: the differences a snapshot made). */
  changed(changes: readonly ReplicaChange[], resync: boolean): void;
  /** Someone listens to the entries' changes. */
  changesWatched(): boolean;
  /** The replica is complete and current: a coordinator brought it to its state at the start of term `epoch`. */
  synced(epoch: number): void;
  /** Readiness, the coordinator role, serving or the term changed: waiters re-check. */
  wake(): void;
}

export interface StateEngineOptions extends ElectionRules {
  /** Updates kept for replicas that fall behind (more: a snapshot). */
  readonly logLimit: number;
  /** The largest snapshot chunk, bytes (it fits in one datagram). */
  readonly snapshotChunkBytes: number;
  /** The largest update, bytes (it fits in one datagram). */
  readonly maxUpdateBytes: number;
  /** Delay before a request refused by a member that is not (yet) the coordinator is sent again. */
  readonly retryDelayMs: number;
  /** A coordinator serves while a majority of its term heard from it within this (the failure timeout). */
  readonly leaseMs: number;
}

/** Counters of the state map. */
export interface StateStats {
  requestsSent: number;
  requestsRetried: number;
  requestsApplied: number;
  requestsDeduplicated: number;
  /** Withdrawals of lock requests given up on. */
  cancelsSent: number;
  updatesApplied: number;
  /** Updates this member multicast as coordinator, and sent again point to point to members that lacked them. */
  updatesSent: number;
  repairsSent: number;
  snapshotsSent: number;
  snapshotChunksSent: number;
  snapshotsInstalled: number;
  suffixesSent: number;
  pulls: number;
  /** Frames refused because they came from a member that is not our source, or from an older term. */
  staleRefused: number;
  /** Updates past a gap, and syncs that did not find the replica at their position. */
  outOfOrder: number;
  malformed: number;
  terms: number;
  /** Members whose applied requests this replica remembers (for retries): those of the view, and a bounded number gone. */
  appliedRequesters: number;
}

type Role = "follower" | "electing" | "pulling" | "term" | "refused";

/**
 * The replicated state map of one group, as one member runs it: the units of the map composed, fed the
 * member's inputs (views, state frames, requests, the time) and drained of what they produce. A protocol
 * unit: it reads no clock and arms no timer (the driver calls `handleTimeout` at `pollTimeout`), creates
 * no promise (the map API does), and hands listeners their events only once an input is fully handled.
 *
 * - {@link ReplicaFollower}: the replica following its view's coordinator.
 * - {@link StateClient}: this member's requests.
 * - {@link TermElection}, {@link TermSync}, {@link Sequencer}: the coordinator's side — a view's
 *   election (promises, quorum, pulls), bringing every member to the term, and ordering requests.
 * - {@link SnapshotSender}: snapshots on their way (a coordinator's, or a pulled replica's).
 *
 * Every view change starts a term: its coordinator asks the members for their promise and position,
 * takes what a member further along has, brings every member to its state, and serves once every member
 * accepted the term and while a majority hears from it.
 */
export class StateEngine implements TimedUnit {
  readonly replica: Replica;
  readonly visible: VisibleState;
  readonly memory: TermMemory;
  readonly #host: StateEngineHost;
  readonly #options: StateEngineOptions;
  readonly #follower: ReplicaFollower;
  readonly #client: StateClient;
  readonly #snapshots: SnapshotSender;
  readonly #syncStats = { snapshotsSent: 0, suffixesSent: 0 };
  #view: StateView | undefined;
  #role: Role = "follower";
  #election: TermElection | undefined;
  #sync: TermSync | undefined;
  #sequencer: Sequencer | undefined;
  #refusal = "";
  #retryAt = Number.POSITIVE_INFINITY;
  #pullTarget: PeerKey | undefined;
  /** What this member last sent the coordinator that pulled from it: where the coordinator stood, and the SyncComplete. */
  #pullAnswer: { readonly peer: PeerKey; readonly from: Position; readonly sync: SyncComplete } | undefined;
  #pulls = 0;
  #terms = 0;
  #malformed = 0;
  #closed = false;
  /** Requests that came while the term was being set up. */
  readonly #queued: Array<{ readonly requester: MemberInstance; readonly request: StateRequest }> = [];
  /** Work handed over within this member, and listeners' events: run once the current input is handled. */
  readonly #later: Array<() => void> = [];
  #depth = 0;
  /**
   * This member's own requests applied here, with the epochs of their updates, in the order their turns
   * in `#later` come (one function made once takes the next): no closure made for every own write.
   */
  readonly #ownApplied: AppliedRecord[] = [];
  readonly #ownAppliedEpochs: number[] = [];
  readonly #takeOwnApplied = (): void => this.#client.onApplied(this.#ownApplied.shift()!, this.#ownAppliedEpochs.shift()!, this.#now);
  /** The coordinator's answers to this member's own requests, taken in their turns in `#later` as those are (no closure made for every one). */
  readonly #ownResponses: StateResponse[] = [];
  readonly #takeOwnResponse = (): void => this.#client.onLocalResponse(this.#ownResponses.shift()!, this.#now);
  /** The replica's changes for the listeners (and whether a resync made them), taken in their turns in `#later` as those are (no closure made for every update). */
  readonly #changes: Array<readonly ReplicaChange[]> = [];
  readonly #changesResync: boolean[] = [];
  readonly #takeChanges = (): void => this.#host.changed(this.#changes.shift()!, this.#changesResync.shift()!);

  constructor(host: StateEngineHost, options: StateEngineOptions, memory: TermMemory) {
    this.#host = host;
    this.#options = options;
    this.memory = memory;
    // What this memory holds, it holds from the first incarnation it served on (restarts in place keep it).
    memory.since ??= host.local.incarnation;
    this.replica = new Replica(options.logLimit);
    this.visible = new VisibleState(this.replica);
    const group = host.group;
    this.#snapshots = new SnapshotSender(options.snapshotChunkBytes, (peer, chunk, lockOf, now, entryBlock) => host.unicast(peer, encodeSnapshot(group, chunk, lockOf, now, entryBlock)));
    this.#follower = new ReplicaFollower({
      local: host.local,
      replica: this.replica,
      visible: this.visible,
      memory,
      sendAck: (peer, ack) => host.unicast(peer, encodeAck(group, ack)),
      changed: (changes, resync) => this.#changed(changes, resync),
      changesWatched: () => host.changesWatched(),
      ownApplied: (record, epoch) => {
        this.#ownApplied.push(record);
        this.#ownAppliedEpochs.push(epoch);
        this.#later.push(this.#takeOwnApplied);
      },
      accepted: (epoch, newTerm) => {
        if (newTerm) this.#client.onTerm(this.#now);
        this.#later.push(() => {
          host.synced(epoch);
          host.wake();
        });
      },
      pulled: () => this.#later.push(() => this.#pulled(this.#now)),
    });
    this.#client = new StateClient(
      {
        local: host.local,
        coordinator: () => this.#view?.coordinator,
        term: () => memory.accepted,
        sendRequest: (to, request, now) => {
          if (to === host.local.id) this.#later.push(() => this.#onRequest(host.local.id, host.local.incarnation, request, now));
          else {
            host.unicast(to, encodeRequest(group, request));
            this.#requestSent = true;
          }
        },
      },
      options.retryDelayMs,
    );
  }

  /** The time of the input being handled. */
  #now = 0;
  /** A request went to another member (the coordinator) this turn: an acknowledgement held back goes with it. */
  #requestSent = false;

  /** True once this replica finished a sync with a coordinator: it holds the whole map. */
  get ready(): boolean {
    return this.#follower.ready;
  }

  /** True once the current view's coordinator brought this replica to its state: the election is over. */
  get current(): boolean {
    return this.#follower.current;
  }

  /** True while this member coordinates the map and serves: the term began everywhere, and its lease holds. */
  serving(now: number): boolean {
    return this.#role === "term" && this.#sequencer!.serving(now);
  }

  /** The epoch of the term this replica accepted last. */
  get epoch(): number {
    return this.memory.accepted.epoch;
  }

  get coordinator(): MemberInstance | undefined {
    return this.#view?.coordinator;
  }

  get pendingRequests(): number {
    return this.#client.pending;
  }

  get stats(): StateStats {
    const follower = this.#follower.stats;
    const client = this.#client.stats;
    const sequencer = this.#sequencer?.stats;
    return {
      requestsSent: client.requestsSent,
      requestsRetried: client.requestsRetried,
      requestsApplied: (sequencer?.requestsApplied ?? 0) + this.#closedStats.requestsApplied,
      requestsDeduplicated: (sequencer?.requestsDeduplicated ?? 0) + this.#closedStats.requestsDeduplicated,
      cancelsSent: client.cancelsSent,
      updatesApplied: follower.updatesApplied + (sequencer?.updatesApplied ?? 0) + this.#closedStats.updatesApplied,
      updatesSent: (sequencer?.updatesSent ?? 0) + this.#closedStats.updatesSent,
      repairsSent: (sequencer?.repairsSent ?? 0) + this.#closedStats.repairsSent,
      snapshotsSent: this.#syncStats.snapshotsSent,
      snapshotChunksSent: this.#snapshots.chunksSent,
      snapshotsInstalled: follower.snapshotsInstalled,
      suffixesSent: this.#syncStats.suffixesSent,
      pulls: this.#pulls,
      staleRefused: follower.staleRefused + client.staleRefused,
      outOfOrder: follower.outOfOrder,
      malformed: this.#malformed,
      terms: this.#terms,
      appliedRequesters: this.replica.requesters().length,
    };
  }

  /** The counters of the sequencers of terms that ended. */
  readonly #closedStats = { updatesApplied: 0, requestsApplied: 0, requestsDeduplicated: 0, updatesSent: 0, repairsSent: 0 };

  // --- inputs ---

  /** The group installed a view (undefined: we left it). */
  onView(view: StateView | undefined, now: number): void {
    this.#run(now, () => {
      const previous = this.#view;
      this.#view = view;
      this.#pullAnswer = undefined;
      this.#follower.onView(view);
      if (view !== undefined) this.#snapshots.retain(new Set(view.members.map((m) => m.id)));
      if (view !== undefined && view.coordinator.id === this.#host.local.id) this.#elect(now, 0);
      else this.#stepDown(now);
      const coordinatorChanged = previous?.coordinator.id !== view?.coordinator.id || previous?.coordinator.incarnation !== view?.coordinator.incarnation;
      if (coordinatorChanged) this.#client.onView(now);
      this.#later.push(() => this.#host.wake());
    });
  }

  /** A state frame from `peer`, running as `incarnation`. */
  onFrame(peer: PeerKey, incarnation: number, frame: StateFrame | undefined, now: number): void {
    // As #run does, without a closure: a frame arrives for every write.
    const outer = this.#enter(now);
    try {
      this.#onFrame(peer, incarnation, frame, now);
      if (outer) this.#runLater();
    } finally {
      this.#depth--;
    }
  }

  #onFrame(peer: PeerKey, incarnation: number, frame: StateFrame | undefined, now: number): void {
    if (frame === undefined) {
      this.#malformed++;
      return;
    }
    if ("group" in frame && frame.group !== this.#host.group) return;
    if ((frame.kind === "update" || frame.kind === "announce") && peer === this.#view?.coordinator.id && peer !== this.#host.local.id) {
      this.memory.echoed = { coordinator: peer, at: now };
    }
    switch (frame.kind) {
      case "request":
        return this.#onRequest(peer, incarnation, frame.request, now);
      case "response":
        return this.#client.onResponse(peer, frame.response, this.memory.accepted.epoch, now);
      case "update":
        return this.#follower.onUpdate(peer, frame.update, frame.leaseProbe, frame.termBegun, now);
      case "announce":
        return this.#follower.onAnnounce(peer, frame.announce, frame.termBegun);
      case "snapshot":
        return this.#follower.onSnapshot(peer, frame.chunk);
      case "sync":
        return this.#follower.onSync(peer, frame.sync, now);
      case "ack":
        this.#snapshots.readsEntryBlock(peer, frame.readsEntryBlock);
        return this.#onAck(peer, incarnation, frame.ack, now);
    }
  }

  /** Opens a request of this member, answered through `waiter` (perhaps before this returns); returns its id. */
  request(op: StateOp, waiter: Waiter, now: number): number {
    // As #run does, without a closure: a request is opened for every write.
    const outer = this.#enter(now);
    try {
      const id = this.#client.open(op, waiter, now);
      if (outer) this.#runLater();
      return id;
    } finally {
      this.#depth--;
    }
  }

  /** The caller of request `id` stopped waiting: a lock request is withdrawn. */
  abandon(id: number, now: number): void {
    this.#run(now, () => this.#client.abandon(id, now));
  }

  /** The end of a turn: the coordinator's batch goes out, acknowledgements and notices too. */
  flush(now: number): void {
    this.#run(now, () => {
      this.#sequencer?.flush(now);
      this.#follower.flush(this.#requestSent);
      this.#requestSent = false;
    });
  }

  /** Stops everything (the map API fails what waits). */
  close(now: number): void {
    if (this.#closed) return;
    this.#run(now, () => {
      this.#stepDown(now);
      this.#client.close();
      this.#snapshots.clear();
    });
    this.#closed = true;
  }

  pollTimeout(): number {
    if (this.#closed) return Number.POSITIVE_INFINITY;
    return Math.min(this.#retryAt, this.#follower.pollTimeout(), this.#client.pollTimeout(), this.#snapshots.pollTimeout(), this.#sync?.pollTimeout() ?? Infinity, this.#sequencer?.pollTimeout() ?? Infinity);
  }

  handleTimeout(now: number): void {
    if (this.#closed) return;
    this.#run(now, () => {
      this.#client.handleTimeout(now);
      this.#snapshots.handleTimeout(now);
      this.#sync?.handleTimeout(now);
      this.#sequencer?.handleTimeout(now);
      if (this.#retryAt <= now) this.#retry(now);
    });
  }

  // --- the coordinator's side ---

  /** Starts (again) the election of the current view, above `above` and every epoch known here. */
  #elect(now: number, above: number): void {
    this.#endTerm(now);
    const view = this.#view!;
    const memory = this.memory;
    const local = this.#host.local;
    const epoch = Math.max(above, memory.promised.epoch, memory.accepted.epoch, this.replica.position.epoch) + 1;
    memory.promised = { epoch, coordinator: local.id };
    this.#role = "electing";
    this.#pullTarget = undefined;
    this.#follower.pullFrom(undefined);
    const election = new TermElection(view.members, epoch);
    this.#election = election;
    election.answer(local.id, local.incarnation, this.#follower.report(), local.id);
    this.#askPromises(now);
    this.#decide(now);
  }

  #askPromises(now: number): void {
    const election = this.#election!;
    const view = this.#view!;
    for (const member of election.missing()) {
      if (member.id === this.#host.local.id) continue;
      this.#host.unicast(member.id, encodeRequest(this.#host.group, { requestId: 0, op: { case: "prepare", epoch: election.epoch, view: view.id } }));
    }
    this.#retryAt = now + RETRY_MS;
  }

  #retry(now: number): void {
    if (this.#role === "electing") {
      this.#askPromises(now);
      this.#decide(now);
    } else if (this.#role === "pulling") this.#pull(now);
    else this.#retryAt = Number.POSITIVE_INFINITY;
  }

  #decide(now: number): void {
    const election = this.#election;
    if (election === undefined || this.#role !== "electing") return;
    const decision = election.decide(this.#host.local.id, this.#options);
    if (decision === undefined) return;
    switch (decision.kind) {
      case "pull":
        this.#role = "pulling";
        this.#pullTarget = decision.from;
        this.#pulls++;
        this.#follower.pullFrom(decision.from);
        this.#pull(now);
        return;
      case "refuse":
        this.#role = "refused";
        this.#refusal = decision.reason;
        this.#retryAt = Number.POSITIVE_INFINITY;
        for (const { requester, request } of this.#queued.splice(0)) this.#respond(requester, { ...refusal(request.requestId, "NO_QUORUM", decision.reason) });
        this.#later.push(() => this.#host.wake());
        return;
      case "start": {
        const leaseEnd = this.#echoedLeaseEnd(this.#host.local.id);
        if (now < leaseEnd) {
          this.#retryAt = Math.min(this.#retryAt, leaseEnd);
          return;
        }
        this.#startTerm(election, decision.nextToken, now);
      }
    }
  }

  /**
   * Until when another coordinator than `coordinator` may still serve on the lease probes this member
   * echoed: it serves while a majority of its term echoed one within the lease, and may not have heard
   * yet that its members went over to another view (a merge). A member promises a next term only after
   * that, and a coordinator starts one only after that, so that the term's members — a majority of the
   * last agreed set — no longer count for that lease when it begins: two never serve at once. One that
   * installed our view, or is in it, stood down as it did (it left and handed over, or a heavier member
   * took over): nothing to wait for.
   */
  #echoedLeaseEnd(coordinator: PeerKey): number {
    const echoed = this.memory.echoed;
    const view = this.#view;
    if (echoed === undefined || echoed.coordinator === coordinator) return Number.NEGATIVE_INFINITY;
    if (view !== undefined && (view.id.installer === echoed.coordinator || view.members.some((m) => m.id === echoed.coordinator))) return Number.NEGATIVE_INFINITY;
    return echoed.at + this.#options.leaseMs;
  }

  /** Asks the replica further along for what follows our position (again every RETRY_MS until it came). */
  #pull(now: number): void {
    const target = this.#pullTarget!;
    this.#host.unicast(target, encodeRequest(this.#host.group, { requestId: 0, op: { case: "pull", position: this.replica.position } }));
    this.#retryAt = now + RETRY_MS;
  }

  #pulled(now: number): void {
    if (this.#role !== "pulling") return;
    const source = this.#pullTarget!;
    this.#role = "electing";
    this.#pullTarget = undefined;
    this.#retryAt = Number.POSITIVE_INFINITY;
    this.#election!.pulled(this.#host.local.id, source, this.replica.position, this.replica.tokenCeiling);
    this.#decide(now);
  }

  #startTerm(election: TermElection, nextToken: number, now: number): void {
    const local = this.#host.local;
    const members = election.view;
    const epoch = election.epoch;
    this.replica.raiseTokens(nextToken);
    const ceiling = this.replica.nextToken + TOKEN_BLOCK;
    this.replica.synced(epoch, local.id, this.replica.position.index, ceiling);
    const memory = this.memory;
    const prior = election.prior();
    memory.accepted = { epoch, coordinator: local.id, members, prior };
    this.#election = undefined;
    this.#retryAt = Number.POSITIVE_INFINITY;
    this.#terms++;
    this.#follower.termStarted();
    this.#client.onTerm(now);
    const replica = this.replica;
    const group = this.#host.group;
    // Updates and announces of this term say once it has begun (every member accepted it): what lets a
    // later election count on this term's members alone.
    const begun = (update: Update) => memory.begun && update.epoch === epoch && update.coordinator === local.id;
    const other = members.length === 2 ? members.find((m) => m.id !== local.id) : undefined;
    this.#sync = new TermSync(
      {
        replica,
        snapshots: this.#snapshots,
        sendUpdate: (peer, update) => this.#host.unicast(peer, encodeUpdate(group, update, 0, begun(update))),
        sendSync: (peer, sync) => this.#host.unicast(peer, encodeSync(group, sync)),
      },
      this.#syncStats,
      { epoch, coordinator: local.id, members, prior, tokenCeiling: ceiling },
      election.positions(),
      now,
    );
    memory.begun = this.#sync.waiting === 0;
    const sequencer = new Sequencer(
      {
        local,
        replica,
        visible: this.visible,
        multicastUpdate: (update, probe) => {
          const frame = encodeUpdate(group, update, probe, begun(update));
          // A term of two: point to point to the other member. A multicast comes back to this member's
          // own socket too — a second delivery, read and dropped, for every write.
          if (other !== undefined) this.#host.unicast(other.id, frame);
          else this.#host.multicast(frame);
        },
        multicastAnnounce: (announce) => this.#host.multicast(encodeAnnounce(group, announce, memory.begun)),
        sendAnnounce: (peer, announce) => this.#host.unicast(peer, encodeAnnounce(group, announce, memory.begun)),
        sendUpdate: (peer, update) => this.#host.unicast(peer, encodeUpdate(group, update, 0, begun(update))),
        respond: (requester, response) => this.#respond(requester, response),
        shown: (changes) => this.#changed(changes, false),
        resync: (member, position) => this.#sync?.resync(member, position, this.#now),
        ceilingRaised: (raised) => this.#sync?.raiseCeiling(raised),
        wake: () => this.#later.push(() => this.#host.wake()),
      },
      { leaseMs: this.#options.leaseMs, maxUpdateBytes: this.#options.maxUpdateBytes },
      { epoch, members, tokenCeiling: ceiling },
      memory.probe,
      now,
    );
    this.#sequencer = sequencer;
    this.#role = "term";
    // A member of one: the term began everywhere.
    for (const { requester, request } of this.#queued.splice(0)) sequencer.onRequest(requester, request, now);
    this.#later.push(() => {
      this.#host.synced(epoch);
      this.#host.wake();
    });
  }

  /** Ends the coordinator's term here (a new election, or another coordinator): what waits is told to ask again. */
  #endTerm(now: number): void {
    const sequencer = this.#sequencer;
    if (sequencer !== undefined) {
      this.memory.probe = sequencer.probe;
      const stats = sequencer.stats;
      this.#closedStats.updatesApplied += stats.updatesApplied;
      this.#closedStats.requestsApplied += stats.requestsApplied;
      this.#closedStats.requestsDeduplicated += stats.requestsDeduplicated;
      this.#closedStats.updatesSent += stats.updatesSent;
      this.#closedStats.repairsSent += stats.repairsSent;
      for (const { requester, requestId } of sequencer.close(now)) {
        this.#respond(requester, refusal(requestId, "NOT_COORDINATOR", "this member no longer coordinates the map"));
      }
    }
    this.#sequencer = undefined;
    this.#sync?.close();
    this.#sync = undefined;
  }

  #stepDown(now: number): void {
    this.#endTerm(now);
    if (this.#role !== "follower") {
      for (const { requester, request } of this.#queued.splice(0)) {
        this.#respond(requester, refusal(request.requestId, "NOT_COORDINATOR", "this member no longer coordinates the map"));
      }
      this.#later.push(() => this.#host.wake());
    }
    this.#role = "follower";
    this.#election = undefined;
    this.#pullTarget = undefined;
    this.#retryAt = Number.POSITIVE_INFINITY;
  }

  #onAck(peer: PeerKey, incarnation: number, ack: StateAck, now: number): void {
    if (ack.snapshotTransfer !== 0) {
      this.#snapshots.onAck(peer, ack.snapshotTransfer, ack.snapshotChunks, now);
      return;
    }
    if (ack.view !== undefined) {
      // An answer to our PrepareOp.
      const view = this.#view;
      const election = this.#election;
      if (election === undefined || view === undefined || this.#role !== "electing" || ack.view.installer !== view.id.installer || ack.view.counter !== view.id.counter) return;
      election.answer(peer, incarnation, ack, this.#host.local.id);
      if (election.higher > 0) this.#elect(now, election.higher);
      else this.#decide(now);
      return;
    }
    const sequencer = this.#sequencer;
    if (sequencer !== undefined && this.#role === "term") {
      const local = this.#host.local.id;
      const epoch = this.memory.accepted.epoch;
      if (ack.accepted.epoch === epoch && ack.accepted.coordinator === local) {
        if (this.#sync?.reached(peer, incarnation, ack.position)) {
          if (this.#sync.waiting === 0) this.memory.begun = true;
          sequencer.accepted(peer, ack.position.index, now);
        }
        sequencer.onAck(peer, ack, now);
      } else if (ack.accepted.epoch > epoch || ack.promised.epoch > epoch) {
        // A member went on to a later term: ours is over; ask above it.
        this.#elect(now, Math.max(ack.accepted.epoch, ack.promised.epoch));
      } else {
        this.#sync?.onPosition(peer, incarnation, ack.position);
      }
      return;
    }
    // A notice: a member applied our requests up to here.
    this.#client.onNotice(peer, ack.position, now);
  }

  #onRequest(peer: PeerKey, incarnation: number, request: StateRequest, now: number): void {
    const op = request.op;
    if (op.case === "prepare") {
      // Not while the coordinator we followed may serve on our echoes: the coordinator asks again.
      if (now < this.#echoedLeaseEnd(peer)) return;
      return this.#follower.onPrepare(peer, op.epoch, op.view);
    }
    if (op.case === "pull") {
      // Our view's coordinator takes over and we are further along: send it what it lacks.
      if (this.#view?.coordinator.id !== peer || peer === this.#host.local.id) return;
      const at = this.replica.position;
      const answer = this.#pullAnswer;
      if (answer !== undefined && answer.peer === peer && answer.sync.snapshotTransfer !== 0 && answer.sync.index === at.index && comparePositions(answer.from, op.position) === 0) {
        // The same pull again (its SyncComplete lost, or the snapshot slower than the pull's retry):
        // the snapshot on its way goes on — started afresh at every retry, a map that takes longer to
        // send than that would never arrive — and its SyncComplete is sent again.
        this.#host.unicast(peer, encodeSync(this.#host.group, answer.sync));
        return;
      }
      const sync = bringUp(
        {
          replica: this.replica,
          snapshots: this.#snapshots,
          sendUpdate: (to, update) => this.#host.unicast(to, encodeUpdate(this.#host.group, update, 0, false)),
          sendSync: (to, sync) => this.#host.unicast(to, encodeSync(this.#host.group, sync)),
        },
        peer,
        op.position,
        { epoch: at.epoch, coordinator: at.coordinator, members: this.memory.accepted.members, prior: this.memory.accepted.prior, tokenCeiling: this.replica.tokenCeiling },
        now,
      );
      this.#pullAnswer = { peer, from: op.position, sync };
      return;
    }
    const view = this.#view;
    const requester = peer === this.#host.local.id ? this.#host.local : view === undefined ? undefined : memberOf(view.members, peer);
    if (requester === undefined || requester.incarnation !== incarnation) {
      // Not (yet) in our view, or restarted and our view still has its previous run: its requests, its
      // entries and its locks must not be taken for the other run's. It asks again shortly.
      this.#respond({ id: peer, incarnation }, refusal(request.requestId, "NOT_COORDINATOR", "not a member of this view"));
      return;
    }
    switch (this.#role) {
      case "term":
        return this.#sequencer!.onRequest(requester, request, now);
      case "electing":
      case "pulling":
        this.#queued.push({ requester, request });
        return;
      case "refused":
        return this.#respond(requester, refusal(request.requestId, "NO_QUORUM", this.#refusal));
      default:
        this.#respond(requester, refusal(request.requestId, "NOT_COORDINATOR", "this member does not coordinate the map"));
    }
  }

  /** The replica changed: the listeners are told in the turn of this in `#later`. */
  #changed(changes: readonly ReplicaChange[], resync: boolean): void {
    this.#changes.push(changes);
    this.#changesResync.push(resync);
    this.#later.push(this.#takeChanges);
  }

  #respond(requester: MemberInstance, response: StateResponse): void {
    if (response.requestId === 0) return;
    if (requester.id === this.#host.local.id) {
      if (requester.incarnation === this.#host.local.incarnation) {
        this.#ownResponses.push(response);
        this.#later.push(this.#takeOwnResponse);
      }
      return;
    }
    this.#host.unicast(requester.id, encodeResponse(response, this.#now));
  }

  /** Runs an input, then what it handed over within the member and the listeners' events, in order. */
  #run(now: number, input: () => void): void {
    const outer = this.#enter(now);
    try {
      input();
      if (outer) this.#runLater();
    } finally {
      this.#depth--;
    }
  }

  /** Enters an input (the caller leaves it, `#depth--`, however it ends); true for the outermost one. */
  #enter(now: number): boolean {
    this.#depth++;
    const outer = this.#depth === 1;
    if (outer) this.#now = now;
    return outer;
  }

  /** What the outermost input left for its end. */
  #runLater(): void {
    for (let next = this.#later.shift(); next !== undefined; next = this.#later.shift()) next();
  }
}

function refusal(requestId: number, outcome: StateResponse["outcome"], message: string): StateResponse {
  return { requestId, outcome, message, epoch: 0, index: 0, previous: [], token: 0 };
}
