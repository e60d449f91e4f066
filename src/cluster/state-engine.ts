import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { ViewId as ViewIdProto } from "../../gen/activeblaze/v1/common_pb.ts";
import { ViewIdSchema } from "../../gen/activeblaze/v1/common_pb.ts";
import {
  type BatchOp,
  ChangeKind,
  type EntryChange,
  EntryChangeSchema,
  EntrySchema,
  type PutOp,
  type RemoveOp,
  StateAckSchema,
  type StateRequest,
  StateRequestSchema,
  type StateResponse,
  StateResponseSchema,
  StateResult,
  type StateSnapshot,
  StateSnapshotSchema,
  type StateUpdate,
  StateUpdateSchema,
  type SyncComplete,
  SyncCompleteSchema,
  type StateAck,
} from "../../gen/activeblaze/v1/cluster_pb.ts";
import type { Frame } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { BlazeError, type BlazeErrorCode } from "../errors.ts";
import { idOf, keyOf } from "../reliable/member-key.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import type { Clock, TimerHandle } from "../transport/clock.ts";
import type { AbortSignalLike } from "../web.ts";
import { Deadlines } from "./deadlines.ts";
import {
  appliedOf,
  appliedProto,
  comparePositions,
  entryOf,
  entryProto,
  instanceOf,
  lockOf,
  lockProto,
  lockRecordProto,
  type MemberInstance,
  memberRef,
  type Position,
  Replica,
  type ReplicaChange,
  sameInstance,
  type StoredEntry,
  type StoredLock,
  type AppliedRecord,
} from "./replica.ts";

/** The body of a frame this engine sends or receives. */
export type StateFrame = Frame["kind"];

/** A view as the state map needs it. */
export interface StateView {
  readonly id: { readonly installer: PeerKey; readonly counter: number };
  readonly members: readonly MemberInstance[];
  readonly coordinator: MemberInstance;
}

export interface StateEngineHost {
  readonly clock: Clock;
  readonly local: MemberInstance;
  readonly group: string;
  /** Sends a frame to a member reliably and in order (to the local member: delivered back, deferred). */
  send(peer: PeerKey, frame: StateFrame): void;
  /** Sends one frame to several members (encoded once). */
  sendToAll(peers: readonly PeerKey[], frame: StateFrame): void;
  /**
   * The replica changed, in the map's order; `resync`: the differences a snapshot made (a replica that
   * was behind, or on another side of a partition, was brought to the coordinator's state).
   */
  changed(changes: readonly ReplicaChange[], resync: boolean): void;
  /** Readiness, the coordinator role or the term changed: waiters re-check. */
  wake(): void;
  /** The replica is complete and current: a coordinator brought it to its state at the start of term `epoch`. */
  synced(epoch: number): void;
}

export interface StateEngineOptions {
  /** Quorum mode: refuse writes and grants without a majority of the last agreed view. */
  readonly quorum: boolean;
  /** Refuse writes and grants while the view has fewer members than this. */
  readonly minimumMembers: number;
  /** Updates kept for replicas that fall behind (more: a snapshot). */
  readonly logLimit: number;
  /** Entries per snapshot chunk. */
  readonly snapshotChunkEntries: number;
  /** Delay before a request refused by a member that is not (yet) the coordinator is sent again. */
  readonly retryDelayMs: number;
}

/** Counters of the state map. */
export interface StateStats {
  requestsSent: number;
  requestsRetried: number;
  requestsApplied: number;
  requestsDeduplicated: number;
  updatesApplied: number;
  snapshotsSent: number;
  snapshotsInstalled: number;
  suffixesSent: number;
  pulls: number;
  /** Frames refused because they came from a member that is not our coordinator, or from an older term. */
  staleRefused: number;
  /** Updates that did not follow our position (dropped; the next sync repairs the replica). */
  outOfOrder: number;
  malformed: number;
  terms: number;
}

type Role = "follower" | "collecting" | "pulling" | "serving" | "noQuorum";

interface PendingRequest {
  readonly id: number;
  readonly request: StateRequest;
  readonly resolve: (response: StateResponse) => void;
  readonly reject: (error: BlazeError) => void;
  timer: TimerHandle | undefined;
  retry: TimerHandle | undefined;
  sentTo: PeerKey | undefined;
  readonly cleanup: () => void;
  /** A map write of ours applied here: the update's epoch and index, until every member has it. */
  applied: { readonly epoch: number; readonly index: number } | undefined;
}

interface Waiter {
  readonly requester: MemberInstance;
  readonly request: StateRequest;
  readonly requestId: number;
  readonly leaseMs: number;
  readonly releaseOnExit: boolean;
  readonly timer: TimerHandle | undefined;
}

interface Staging {
  readonly from: PeerKey;
  readonly entries: StoredEntry[];
  readonly locks: StoredLock[];
  readonly applied: AppliedRecord[];
}

/** An applied request waiting for the members' acknowledgements before it is answered. */
interface Awaiting {
  readonly index: number;
  readonly requester: MemberInstance;
  readonly request: StateRequest;
}

type Due = { readonly kind: "entry"; readonly key: string; readonly version: number } | { readonly kind: "lock"; readonly key: string; readonly token: number };

/** Errors a refused request turns into. */
const RESULT_CODES: Partial<Record<StateResult, BlazeErrorCode>> = {
  [StateResult.LOCKED]: "LOCKED",
  [StateResult.VERSION_MISMATCH]: "VERSION_MISMATCH",
  [StateResult.STALE_TOKEN]: "STALE_TOKEN",
  [StateResult.NO_QUORUM]: "NO_QUORUM",
  [StateResult.NOT_FOUND]: "NOT_FOUND",
  [StateResult.INVALID]: "INVALID_ARGUMENT",
};

export function responseError(response: StateResponse): BlazeError {
  const code = RESULT_CODES[response.result] ?? "ILLEGAL_STATE";
  return new BlazeError(code, response.message || `the coordinator refused the request (${StateResult[response.result]})`);
}

/**
 * The replicated state map of one group, as one member runs it: a replica every member holds, the
 * coordinator role of the view's coordinator, and the requests this member makes.
 *
 * - Writes, lock operations and lease renewals are requests to the coordinator, which orders them:
 *   each accepted request becomes one StateUpdate with the next log index, applied at the coordinator
 *   and sent to every member in order. The coordinator answers once every member of the view has
 *   acknowledged the update, so an answered write is on every replica, including whichever member
 *   coordinates next.
 * - A view change starts a term. The view's coordinator collects every member's position (the last
 *   update it applied, named by term and index). If a member is further along, it pulls what it lacks
 *   from that member first (an update the old coordinator sent to some members before it died). It then
 *   brings every member to its state — the updates a member lacks from its log, or a snapshot — ends
 *   with SyncComplete carrying the new epoch, and only then takes requests. Members accept updates only
 *   from their view's coordinator and never from an older epoch, so a deposed coordinator is refused.
 * - Requests carry an id unique to the requester; a request unanswered when its coordinator goes is
 *   sent again to the next one, which recognises an applied one from the replicated record of applied
 *   requests: applied at most once, answered exactly once.
 * - Leases and times to live run on the coordinator's monotonic clock from relative durations; a new
 *   coordinator restarts them from what its replica recorded, which is never earlier than the old one.
 */
export class StateEngine {
  readonly replica: Replica;
  readonly stats: StateStats = emptyStateStats();
  readonly #host: StateEngineHost;
  readonly #options: StateEngineOptions;
  #view: StateView | undefined;
  #ready = false;
  /** The replica finished a sync in the current view's term (the coordinator: it serves). */
  #current = false;
  #acceptedEpoch = 0;
  #staging: Staging | undefined;
  #ackScheduled = false;
  #closed = false;
  #reportTimer: TimerHandle | undefined;
  #watchdog: TimerHandle | undefined;
  // --- client ---
  readonly #pending = new Map<number, PendingRequest>();
  #nextRequestId = 1;
  /** The last update each member told us it applied (for our map writes). */
  readonly #noticed = new Map<PeerKey, { epoch: number; index: number }>();
  /** Notices to send at the end of this tick: requester → the last of its updates we applied. */
  readonly #notices = new Map<PeerKey, { epoch: number; index: number }>();
  /** Lock requests given up on (id → key): a grant that still arrives for one is released at once. */
  readonly #abandoned = new Map<number, string>();
  // --- coordinator ---
  #role: Role = "follower";
  #epoch = 0;
  readonly #positions = new Map<PeerKey, StateAck>();
  /** Position reports for views not installed here yet. */
  readonly #early = new Map<string, Map<PeerKey, StateAck>>();
  #pullTarget: PeerKey | undefined;
  readonly #acked = new Map<PeerKey, number>();
  /** Applied requests waiting for every member's acknowledgement before they are answered. */
  readonly #awaiting: Awaiting[] = [];
  readonly #queued: Array<{ readonly requester: MemberInstance; readonly request: StateRequest }> = [];
  readonly #waiters = new Map<string, Waiter[]>();
  readonly #deadlines = new Deadlines<Due>();
  #deadlineTimer: TimerHandle | undefined;
  #deadlineAt = Number.POSITIVE_INFINITY;

  constructor(host: StateEngineHost, options: StateEngineOptions) {
    this.#host = host;
    this.#options = options;
    this.replica = new Replica(options.logLimit);
  }

  /** True once this replica finished a sync with a coordinator: it holds the whole map. */
  get ready(): boolean {
    return this.#ready;
  }

  /** True once the current view's coordinator brought this replica to its state: the election is over. */
  get current(): boolean {
    return this.#current;
  }

  /** True while this member coordinates the map and takes requests. */
  get serving(): boolean {
    return this.#role === "serving";
  }

  /** The epoch of the term this replica last accepted. */
  get epoch(): number {
    return this.#acceptedEpoch;
  }

  get coordinator(): MemberInstance | undefined {
    return this.#view?.coordinator;
  }

  get pendingRequests(): number {
    return this.#pending.size;
  }

  // --- inputs ---

  /** The group installed a view (undefined: we left it). */
  onView(view: StateView | undefined): void {
    const previous = this.#view;
    this.#view = view;
    this.#current = false;
    this.#forgetNotices();
    if (view === undefined) {
      this.#stepDown();
      return;
    }
    const local = this.#host.local;
    const coordinatorChanged = previous === undefined || !sameInstance(previous.coordinator, view.coordinator);
    if (sameInstance(view.coordinator, local)) this.#startTerm(view);
    else this.#stepDown();
    // Tell the view's coordinator where we stand (to ourselves too, when we are it).
    this.#report(view);
    this.#watchReport(view);
    if (coordinatorChanged) for (const pending of this.#pending.values()) this.#dispatch(pending, true);
  }

  /**
   * A state frame arrived from `peer` (or from ourselves), running as `incarnation` (undefined when not
   * known: it is then taken to be the one in our view).
   */
  onFrame(peer: PeerKey, frame: StateFrame, incarnation?: number): void {
    if (this.#closed) return;
    switch (frame.case) {
      case "stateRequest":
        return this.#onRequest(peer, frame.value, incarnation);
      case "stateResponse":
        return this.#onResponse(peer, frame.value);
      case "stateUpdate":
        return this.#onUpdate(peer, frame.value);
      case "stateSnapshot":
        return this.#onSnapshot(peer, frame.value);
      case "syncComplete":
        return this.#onSyncComplete(peer, frame.value);
      case "stateAck":
        return this.#onAck(peer, frame.value);
      default:
        this.stats.malformed++;
    }
  }

  /** Stops everything: pending requests fail with `CLOSED`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reportTimer?.cancel();
    this.#watchdog?.cancel();
    this.#stepDown();
    const closed = new BlazeError("CLOSED", "the cluster channel stopped");
    for (const pending of [...this.#pending.values()]) this.#finish(pending, closed);
  }

  // --- client: requests ---

  /**
   * Sends a request to the coordinator and resolves with its answer (refusals included: the caller
   * decides what they mean); rejects with `TIMEOUT`, `ABORTED` or `CLOSED`.
   */
  request(op: MessageInitShape<typeof StateRequestSchema>["op"], timeoutMs: number, signal: AbortSignalLike | undefined, what: string): Promise<StateResponse> {
    if (this.#closed) return Promise.reject(new BlazeError("CLOSED", "the cluster channel stopped"));
    if (signal?.aborted) return Promise.reject(new BlazeError("ABORTED", `aborted before ${what}`, { cause: signal.reason }));
    const id = this.#nextRequestId++;
    const request = create(StateRequestSchema, { requestId: BigInt(id), group: this.#host.group, op });
    return new Promise<StateResponse>((resolve, reject) => {
      const onAbort = () => {
        const pending = this.#pending.get(id);
        if (pending !== undefined) this.#giveUp(pending, new BlazeError("ABORTED", `aborted while waiting for ${what}`, { cause: signal?.reason }));
      };
      const pending: PendingRequest = {
        id,
        request,
        resolve,
        reject,
        timer: undefined,
        retry: undefined,
        sentTo: undefined,
        cleanup: () => signal?.removeEventListener("abort", onAbort),
        applied: undefined,
      };
      pending.timer = this.#host.clock.setTimer(timeoutMs, () =>
        this.#giveUp(pending, new BlazeError("TIMEOUT", `timed out after ${timeoutMs} ms waiting for ${what}`)),
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(id, pending);
      this.stats.requestsSent++;
      this.#dispatch(pending, false);
    });
  }

  #dispatch(pending: PendingRequest, retry: boolean): void {
    pending.retry?.cancel();
    pending.retry = undefined;
    const coordinator = this.#view?.coordinator;
    if (coordinator === undefined) return; // sent when a view names a coordinator
    if (retry) this.stats.requestsRetried++;
    pending.sentTo = coordinator.id;
    this.#host.send(coordinator.id, { case: "stateRequest", value: pending.request });
  }

  #onResponse(peer: PeerKey, response: StateResponse): void {
    const id = Number(response.requestId);
    const pending = this.#pending.get(id);
    if (pending === undefined) {
      // The answer to a lock request we gave up on: release what was granted after all.
      const key = this.#abandoned.get(id);
      if (key !== undefined) {
        this.#abandoned.delete(id);
        if (response.result === StateResult.OK && response.fencingToken !== 0n) {
          void this.request({ case: "unlock", value: { key, fencingToken: response.fencingToken } }, 30_000, undefined, `the release of "${key}"`).catch(() => undefined);
        }
      }
      return;
    }
    // A success from a coordinator older than the term we accepted is not taken: the request goes to
    // the current coordinator, which answers it from the record of applied requests.
    if (response.result === StateResult.OK && Number(response.epoch) < this.#acceptedEpoch) {
      this.stats.staleRefused++;
      this.#dispatch(pending, true);
      return;
    }
    if (peer !== pending.sentTo) return;
    if (response.result === StateResult.NOT_COORDINATOR) {
      // Not (yet) the coordinator, or it stepped down: ask again shortly, wherever the view says.
      pending.retry ??= this.#host.clock.setTimer(this.#options.retryDelayMs, () => {
        pending.retry = undefined;
        if (this.#pending.has(pending.id)) this.#dispatch(pending, true);
      });
      return;
    }
    this.#finish(pending, undefined, response);
  }

  #giveUp(pending: PendingRequest, error: BlazeError): void {
    const op = pending.request.op;
    if (op.case === "lock") {
      // It may still be queued at the coordinator, or granted on its way back: withdraw it, and release
      // a grant that arrives anyway.
      this.#abandoned.set(pending.id, op.value.key);
      if (this.#abandoned.size > 1_024) this.#abandoned.delete(this.#abandoned.keys().next().value!);
      const coordinator = this.#view?.coordinator;
      if (coordinator !== undefined) {
        this.#host.send(coordinator.id, {
          case: "stateRequest",
          value: create(StateRequestSchema, {
            requestId: BigInt(this.#nextRequestId++),
            group: this.#host.group,
            op: { case: "cancel", value: { key: op.value.key, lockRequestId: BigInt(pending.id) } },
          }),
        });
      }
    }
    this.#finish(pending, error);
  }

  #finish(pending: PendingRequest, error: BlazeError | undefined, response?: StateResponse): void {
    if (!this.#pending.delete(pending.id)) return;
    pending.timer?.cancel();
    pending.retry?.cancel();
    pending.cleanup();
    if (error !== undefined) pending.reject(error);
    else pending.resolve(response!);
  }

  // --- member: replication ---

  #report(view: StateView): void {
    const ack = this.#positionAck();
    ack.view = viewIdProto(view);
    this.#host.send(view.coordinator.id, { case: "stateAck", value: ack });
  }

  /**
   * Reports our position again every RETRY_MS until the view's coordinator has brought us up to date: a
   * coordinator that had not installed the view yet, or that moved on and back, may have missed it.
   */
  #watchReport(view: StateView): void {
    this.#reportTimer?.cancel();
    this.#reportTimer = this.#host.clock.setTimer(RETRY_MS, () => {
      this.#reportTimer = undefined;
      if (this.#closed || this.#view !== view || this.#current || this.#role === "pulling") return;
      if (this.#staging === undefined) this.#report(view);
      this.#watchReport(view);
    });
  }

  /** From whom this member takes updates now: its view's coordinator, or the member it pulls from. */
  #isSource(peer: PeerKey): boolean {
    if (this.#role === "pulling") return peer === this.#pullTarget;
    const coordinator = this.#view?.coordinator;
    return coordinator !== undefined && coordinator.id === peer && coordinator.id !== this.#host.local.id;
  }

  #onUpdate(peer: PeerKey, update: StateUpdate): void {
    if (!this.#isSource(peer)) {
      this.stats.staleRefused++;
      return;
    }
    if (this.#staging !== undefined) {
      this.stats.outOfOrder++;
      return;
    }
    const index = Number(update.index);
    const position = this.replica.position;
    if (index <= position.index) return; // a repeat (a suffix overlapping what was on its way)
    if (index !== position.index + 1) {
      this.stats.outOfOrder++;
      return;
    }
    const changes = this.replica.apply(update, this.#host.clock.now());
    this.stats.updatesApplied++;
    if (changes.length > 0) this.#host.changed(changes, false);
    if (this.#role !== "pulling") {
      this.#scheduleAck();
      this.#notify(update);
      this.#completeOwn(update);
    }
  }

  /**
   * Our own request came back applied from the coordinator, so it is on the coordinator and here. A lock
   * operation is done when that is a majority of the view (two or three members). A map write is done
   * once every other member has told us it applied the update too (see #notify) — one hop sooner than
   * the coordinator's answer, which is still sent and settles the request if that comes first.
   */
  #completeOwn(update: StateUpdate): void {
    const requester = update.requester;
    if (requester === undefined || update.requestId === 0n) return;
    const local = this.#host.local;
    if (keyOf(requester.id) !== local.id || Number(requester.incarnation) !== local.incarnation) return;
    const pending = this.#pending.get(Number(update.requestId));
    const view = this.#view;
    if (pending === undefined || view === undefined) return;
    if (isLockOp(pending.request)) {
      if (majority(view.members.length) <= 2) this.#finishApplied(pending, Number(update.epoch), Number(update.index));
      return;
    }
    pending.applied = { epoch: Number(update.epoch), index: Number(update.index) };
    this.#settleWrites();
  }

  /** Finishes our map writes that every member of the view (but the coordinator, their source) has noticed. */
  #settleWrites(): void {
    const view = this.#view;
    if (view === undefined) return;
    for (const pending of this.#pending.values()) {
      const applied = pending.applied;
      if (applied === undefined) continue;
      let everywhere = true;
      for (const member of view.members) {
        if (member.id === this.#host.local.id || member.id === view.coordinator.id) continue;
        const seen = this.#noticed.get(member.id);
        if (seen === undefined || seen.epoch !== applied.epoch || seen.index < applied.index) {
          everywhere = false;
          break;
        }
      }
      if (everywhere) this.#finishApplied(pending, applied.epoch, applied.index);
    }
  }

  #finishApplied(pending: PendingRequest, epoch: number, index: number): void {
    const view = this.#view;
    const record = this.replica.appliedRequest(this.#host.local, pending.id);
    if (record === undefined || view === undefined) return;
    const now = this.#host.clock.now();
    this.#finish(
      pending,
      undefined,
      create(StateResponseSchema, {
        requestId: BigInt(pending.id),
        result: StateResult.OK,
        epoch: BigInt(epoch),
        index: BigInt(index),
        previous: record.previous.map((e) => entryProto(e, now)),
        fencingToken: BigInt(record.token),
        coordinator: memberRef(view.coordinator),
      }),
    );
  }

  /**
   * Finishing a write on the members' notices holds within one view only: across a view change (a new
   * term, perhaps a history replaced) our writes wait for the coordinator's answer.
   */
  #forgetNotices(): void {
    this.#noticed.clear();
    for (const pending of this.#pending.values()) pending.applied = undefined;
  }

  /** We applied another member's map write: tell it (batched per tick), so it need not wait for the coordinator. */
  #notify(update: StateUpdate): void {
    const requester = update.requester;
    if (requester === undefined || update.requestId === 0n || update.changes.length === 0) return;
    // Lock operations finish on a majority (see #completeOwn): no notice needed.
    if (update.changes.some((c) => c.kind === ChangeKind.LOCK || c.kind === ChangeKind.UNLOCK)) return;
    const peer = keyOf(requester.id);
    if (peer === this.#host.local.id || peer === this.#view?.coordinator.id) return;
    const first = this.#notices.size === 0;
    this.#notices.set(peer, { epoch: Number(update.epoch), index: Number(update.index) });
    if (!first) return;
    this.#host.clock.defer(() => {
      for (const [to, { epoch, index }] of this.#notices) {
        this.#host.send(to, {
          case: "stateAck",
          value: create(StateAckSchema, { group: this.#host.group, epoch: BigInt(epoch), index: BigInt(index), acceptedEpoch: BigInt(this.#acceptedEpoch), ready: this.#ready }),
        });
      }
      this.#notices.clear();
    });
  }

  #onSnapshot(peer: PeerKey, snapshot: StateSnapshot): void {
    if (!this.#isSource(peer)) {
      this.stats.staleRefused++;
      return;
    }
    const now = this.#host.clock.now();
    if (snapshot.chunk === 0 || this.#staging === undefined || this.#staging.from !== peer) {
      this.#staging = { from: peer, entries: [], locks: [], applied: [] };
    }
    const staging = this.#staging;
    for (const wire of snapshot.entries) {
      staging.entries.push(entryOf(wire, now));
      if (wire.lock !== undefined) staging.locks.push(lockOf(wire.key, wire.lock, now));
    }
    for (const record of snapshot.locks) if (record.lock !== undefined) staging.locks.push(lockOf(record.key, record.lock, now));
    for (const record of snapshot.applied) staging.applied.push(appliedOf(record, now));
  }

  #onSyncComplete(peer: PeerKey, sync: SyncComplete): void {
    if (!this.#isSource(peer)) {
      this.stats.staleRefused++;
      return;
    }
    const epoch = Number(sync.epoch);
    const pulled = this.#role === "pulling";
    if (!pulled && epoch < this.#acceptedEpoch) {
      this.stats.staleRefused++;
      return;
    }
    const index = Number(sync.index);
    const staging = this.#staging;
    this.#staging = undefined;
    if (staging !== undefined && staging.from === peer) {
      const changes = this.replica.install(staging.entries, staging.locks, staging.applied, index);
      this.#forgetNotices();
      this.stats.snapshotsInstalled++;
      if (changes.length > 0) this.#host.changed(changes, true);
    } else if (index !== this.replica.position.index) {
      // The updates before it did not bring us to its index: we cannot be at its position.
      this.stats.outOfOrder++;
      return;
    }
    const coordinator = sync.epochCoordinatorId.length > 0 ? keyOf(sync.epochCoordinatorId) : peer;
    this.replica.synced(epoch, coordinator, index, Number(sync.nextFencingToken), sync.agreed.map(instanceOf));
    if (pulled) {
      this.#pullTarget = undefined;
      this.#role = "collecting";
      this.#positions.set(this.#host.local.id, this.#positionAck());
      this.#advance();
      return;
    }
    this.#acceptedEpoch = epoch;
    this.#ready = true;
    this.#current = true;
    this.#sendAck();
    this.#host.synced(epoch);
    this.#host.wake();
  }

  #scheduleAck(): void {
    if (this.#ackScheduled) return;
    this.#ackScheduled = true;
    this.#host.clock.defer(() => {
      this.#ackScheduled = false;
      this.#sendAck();
    });
  }

  #sendAck(): void {
    const coordinator = this.#view?.coordinator;
    if (coordinator === undefined || coordinator.id === this.#host.local.id) return;
    const position = this.replica.position;
    this.#host.send(coordinator.id, {
      case: "stateAck",
      value: create(StateAckSchema, {
        group: this.#host.group,
        epoch: BigInt(position.epoch),
        index: BigInt(position.index),
        acceptedEpoch: BigInt(this.#acceptedEpoch),
        ready: this.#ready,
      }),
    });
  }

  #positionAck(): StateAck {
    const position = this.replica.position;
    return create(StateAckSchema, {
      group: this.#host.group,
      epoch: BigInt(position.epoch),
      index: BigInt(position.index),
      nextFencingToken: BigInt(this.replica.nextToken),
      acceptedEpoch: BigInt(this.#acceptedEpoch),
      ready: this.#ready,
      epochCoordinatorId: coordinatorIdOf(position),
    });
  }

  // --- coordinator: terms ---

  #startTerm(view: StateView): void {
    if (this.#role === "serving" || this.#role === "noQuorum") this.#suspendServing();
    this.#role = "collecting";
    this.#pullTarget = undefined;
    this.#staging = undefined;
    this.#positions.clear();
    this.#acked.clear();
    const early = this.#early.get(viewKey(view.id));
    this.#early.clear();
    if (early !== undefined) for (const [peer, ack] of early) this.#positions.set(peer, ack);
    this.#positions.set(this.#host.local.id, this.#positionAck());
    this.#advance();
  }

  #stepDown(): void {
    if (this.#role === "follower") return;
    this.#suspendServing();
    this.#role = "follower";
    this.#pullTarget = undefined;
    this.#positions.clear();
    this.#acked.clear();
    this.#awaiting.length = 0;
    // Requests waiting here go to the new coordinator: tell their senders to ask again.
    for (const { requester, request } of this.#queued.splice(0)) this.#respond(requester, request, StateResult.NOT_COORDINATOR, "this member no longer coordinates the map");
    for (const waiters of this.#waiters.values()) {
      for (const waiter of waiters) {
        waiter.timer?.cancel();
        this.#respondTo(waiter.requester, waiter.requestId, StateResult.NOT_COORDINATOR, "this member no longer coordinates the map");
      }
    }
    this.#waiters.clear();
    this.#host.wake();
  }

  #suspendServing(): void {
    this.#deadlineTimer?.cancel();
    this.#deadlineTimer = undefined;
    this.#deadlineAt = Number.POSITIVE_INFINITY;
    this.#deadlines.clear();
  }

  #onAck(peer: PeerKey, ack: StateAck): void {
    if (ack.view !== undefined) {
      // A position report for a view.
      const key = `${keyOf(ack.view.coordinatorId)}/${ack.view.counter}`;
      const view = this.#view;
      if (view !== undefined && key === viewKey(view.id)) {
        if (this.#role === "collecting" || this.#role === "pulling") {
          this.#positions.set(peer, ack);
          if (this.#role === "collecting") this.#advance();
        } else if (this.#role === "serving" && Number(ack.acceptedEpoch) < this.#epoch && this.#acked.has(peer)) {
          // It reports again without having taken this term's sync: bring it up again.
          this.#acked.set(peer, -1);
          this.#bringUp(peer, positionOf(ack), view.members, undefined);
        }
      } else if (view === undefined || Number(ack.view.counter) > view.id.counter) {
        let reports = this.#early.get(key);
        if (reports === undefined) this.#early.set(key, (reports = new Map()));
        reports.set(peer, ack);
        if (this.#early.size > 8) this.#early.delete(this.#early.keys().next().value!);
      }
      return;
    }
    if (this.#role === "follower") {
      // A member applied one of our map writes.
      const seen = this.#noticed.get(peer);
      const epoch = Number(ack.epoch);
      const index = Number(ack.index);
      if (seen === undefined || epoch > seen.epoch || (epoch === seen.epoch && index > seen.index)) {
        this.#noticed.set(peer, { epoch, index });
        this.#settleWrites();
      }
      return;
    }
    if (this.#role !== "serving") return;
    if (Number(ack.acceptedEpoch) > this.#epoch) {
      // A member accepted a later term than ours: we are a stale coordinator. Start over, above it.
      this.stats.staleRefused++;
      if (this.#view !== undefined) this.#startTerm(this.#view);
      return;
    }
    if (Number(ack.acceptedEpoch) !== this.#epoch || !this.#acked.has(peer)) return;
    const index = Number(ack.index);
    if (index > this.#acked.get(peer)!) {
      this.#acked.set(peer, index);
      this.#release();
    }
  }

  /** Moves a term forward: pull from a member further along, then bring everyone to our state. */
  #advance(): void {
    const view = this.#view;
    if (view === undefined || this.#role !== "collecting") return;
    for (const member of view.members) if (!this.#positions.has(member.id)) return;
    const local = this.#host.local.id;
    let best = local;
    let bestPosition = positionOf(this.#positions.get(local)!);
    for (const member of view.members) {
      const position = positionOf(this.#positions.get(member.id)!);
      if (comparePositions(position, bestPosition) > 0) {
        best = member.id;
        bestPosition = position;
      }
    }
    if (best !== local) {
      this.#role = "pulling";
      this.#pullTarget = best;
      this.stats.pulls++;
      this.#pull(best);
      return;
    }
    if (view.members.length < this.#options.minimumMembers || (this.#options.quorum && !this.#quorate(view))) {
      this.#role = "noQuorum";
      for (const { requester, request } of this.#queued.splice(0)) this.#refuseNoQuorum(requester, request);
      this.#host.wake();
      return;
    }
    let epoch = Math.max(this.#acceptedEpoch, this.replica.position.epoch);
    let nextToken = this.replica.nextToken;
    for (const ack of this.#positions.values()) {
      epoch = Math.max(epoch, Number(ack.acceptedEpoch), Number(ack.epoch));
      nextToken = Math.max(nextToken, Number(ack.nextFencingToken));
    }
    epoch++;
    const index = this.replica.position.index;
    const agreed = view.members;
    this.replica.synced(epoch, local, index, nextToken, agreed);
    this.#epoch = epoch;
    this.#acceptedEpoch = epoch;
    this.stats.terms++;
    for (const member of view.members) {
      if (member.id === local) continue;
      this.#bringUp(member.id, positionOf(this.#positions.get(member.id)!), agreed, undefined);
      this.#acked.set(member.id, -1);
    }
    this.#role = "serving";
    this.#ready = true;
    this.#current = true;
    this.#positions.clear();
    this.#rebuildDeadlines();
    this.#removeDeparted(view);
    this.#host.synced(epoch);
    this.#host.wake();
    for (const { requester, request } of this.#queued.splice(0)) this.#handle(requester, request);
    this.#release();
  }

  /**
   * Asks `target` for what follows our position, and again every RETRY_MS until it answers: it refuses
   * a pull before it has installed the view that makes us its coordinator.
   */
  #pull(target: PeerKey): void {
    const mine = this.replica.position;
    this.#host.send(target, {
      case: "stateRequest",
      value: create(StateRequestSchema, {
        group: this.#host.group,
        op: {
          case: "pull",
          value: { epoch: BigInt(mine.epoch), epochCoordinatorId: coordinatorIdOf(mine), index: BigInt(mine.index) },
        },
      }),
    });
    this.#watchdog?.cancel();
    this.#watchdog = this.#host.clock.setTimer(RETRY_MS, () => {
      this.#watchdog = undefined;
      if (this.#role === "pulling" && this.#pullTarget === target && this.#staging === undefined) this.#pull(target);
    });
  }

  /**
   * Sends `peer` what it lacks to reach our position — the updates after its own when it is on our line
   * and our log still has them, else a snapshot — then a SyncComplete naming the term it is to accept.
   * `asSource`: we answer a pull (the term stays the one we are at).
   */
  #bringUp(peer: PeerKey, position: Position, agreed: readonly MemberInstance[], asSource: Position | undefined): void {
    const updates = this.replica.follows(position) ? this.replica.updatesAfter(position.index) : undefined;
    const now = this.#host.clock.now();
    if (updates !== undefined) {
      for (const update of updates) this.#host.send(peer, { case: "stateUpdate", value: update });
      this.stats.suffixesSent++;
    } else {
      this.#sendSnapshot(peer, now);
    }
    const mine = asSource ?? this.replica.position;
    this.#host.send(peer, {
      case: "syncComplete",
      value: create(SyncCompleteSchema, {
        epoch: BigInt(mine.epoch),
        index: BigInt(mine.index),
        group: this.#host.group,
        entryCount: BigInt(this.replica.entries.size),
        agreed: agreed.map(memberRef),
        nextFencingToken: BigInt(this.replica.nextToken),
        epochCoordinatorId: idOf(mine.coordinator),
      }),
    });
  }

  #sendSnapshot(peer: PeerKey, now: number): void {
    this.stats.snapshotsSent++;
    const replica = this.replica;
    const chunkSize = this.#options.snapshotChunkEntries;
    const count = Math.max(1, Math.ceil(replica.entries.size / chunkSize));
    const position = replica.position;
    let chunk = 0;
    let entries: ReturnType<typeof entryProto>[] = [];
    const lockedKeys = new Set<string>();
    const flush = (last: boolean) => {
      const snapshot = create(StateSnapshotSchema, {
        epoch: BigInt(position.epoch),
        index: BigInt(position.index),
        group: this.#host.group,
        chunk,
        chunkCount: count,
        entries,
        nextFencingToken: BigInt(replica.nextToken),
      });
      if (last) {
        for (const lock of replica.locks.values()) if (!lockedKeys.has(lock.key)) snapshot.locks.push(lockRecordProto(lock, now));
        for (const record of replica.appliedRecords()) snapshot.applied.push(appliedProto(record, now));
      }
      this.#host.send(peer, { case: "stateSnapshot", value: snapshot });
      chunk++;
      entries = [];
    };
    let n = 0;
    for (const entry of replica.entries.values()) {
      const lock = replica.locks.get(entry.key);
      if (lock !== undefined) lockedKeys.add(entry.key);
      entries.push(entryProto(entry, now, lock));
      if (++n % chunkSize === 0 && n < replica.entries.size) flush(false);
    }
    flush(true);
  }

  #quorate(view: StateView): boolean {
    const agreed = this.replica.agreed;
    if (agreed.length === 0) return true;
    let present = 0;
    for (const member of agreed) if (view.members.some((m) => sameInstance(m, member))) present++;
    return present * 2 > agreed.length;
  }

  // --- coordinator: requests ---

  #onRequest(peer: PeerKey, request: StateRequest, incarnation: number | undefined): void {
    const requester = this.#instance(peer);
    if (request.op.case === "pull") {
      // Our view's coordinator takes over and we are further along: send what it lacks.
      const coordinator = this.#view?.coordinator;
      if (coordinator === undefined || coordinator.id !== peer) {
        this.stats.staleRefused++;
        return;
      }
      this.#bringUp(peer, positionOf(request.op.value), this.replica.agreed, this.replica.position);
      return;
    }
    if (requester === undefined || (incarnation !== undefined && incarnation !== requester.incarnation)) {
      // Not (yet) in our view, or restarted and our view still has its previous run: its requests, its
      // entries and its locks must not be taken for the other run's. It asks again shortly.
      this.#respondTo({ id: peer, incarnation: incarnation ?? 0 }, Number(request.requestId), StateResult.NOT_COORDINATOR, "not a member of this view");
      return;
    }
    switch (this.#role) {
      case "serving":
        return this.#handle(requester, request);
      case "collecting":
      case "pulling":
        this.#queued.push({ requester, request });
        return;
      case "noQuorum":
        return this.#refuseNoQuorum(requester, request);
      default:
        this.#respond(requester, request, StateResult.NOT_COORDINATOR, "this member does not coordinate the map");
    }
  }

  #instance(peer: PeerKey): MemberInstance | undefined {
    if (peer === this.#host.local.id) return this.#host.local;
    return this.#view?.members.find((m) => m.id === peer);
  }

  #refuseNoQuorum(requester: MemberInstance, request: StateRequest): void {
    const members = this.#view?.members.length ?? 0;
    const message =
      members < this.#options.minimumMembers
        ? `no quorum: the group has ${members} of the ${this.#options.minimumMembers} members it needs to take writes`
        : `no quorum: this side of the group holds no majority of the ${this.replica.agreed.length} members that last agreed on the map`;
    this.#respond(requester, request, StateResult.NO_QUORUM, message);
  }

  #handle(requester: MemberInstance, request: StateRequest): void {
    const requestId = Number(request.requestId);
    const op = request.op;
    if (op.case === "cancel") {
      this.#cancelWaiter(requester, op.value.key, Number(op.value.lockRequestId));
      return;
    }
    const applied = this.replica.appliedRequest(requester, requestId);
    if (applied !== undefined) {
      // A retry of a request applied already (by us, or by the coordinator before us).
      this.stats.requestsDeduplicated++;
      this.#awaitAll(applied.index, requester, request);
      return;
    }
    const now = this.#host.clock.now();
    switch (op.case) {
      case "put":
      case "remove":
      case "batch":
      case "clear": {
        const outcome = this.#evaluateWrite(requester, op, now);
        if (typeof outcome === "object" && "result" in outcome) {
          this.#respond(requester, request, outcome.result, outcome.message);
          return;
        }
        this.#commit(requester, request, outcome, now);
        return;
      }
      case "lock": {
        const { key, leaseMs, waitMs, releaseOnExit } = op.value;
        if (key === "") return this.#respond(requester, request, StateResult.INVALID, "a lock needs a key");
        const held = this.replica.locks.get(key);
        if (held === undefined && (this.#waiters.get(key)?.length ?? 0) === 0) {
          this.#grant(requester, request, key, Number(leaseMs), releaseOnExit, now);
          return;
        }
        if (held !== undefined && sameInstance(held.holder, requester)) {
          return this.#respond(requester, request, StateResult.INVALID, `"${key}" is already locked by this member (locks are not re-entrant)`);
        }
        if (waitMs === 0n) {
          return this.#respond(requester, request, StateResult.LOCKED, `"${key}" is locked by ${held?.holder.id.slice(0, 8) ?? "another member"}`);
        }
        let waiters = this.#waiters.get(key);
        if (waiters === undefined) this.#waiters.set(key, (waiters = []));
        // A retry of a request already queued (sent again after a view change) keeps its place.
        if (waiters.some((w) => w.requestId === requestId && sameInstance(w.requester, requester))) return;
        const timer = this.#host.clock.setTimer(Number(waitMs), () => {
          const list = this.#waiters.get(key);
          const at = list?.findIndex((w) => w.requestId === requestId && sameInstance(w.requester, requester)) ?? -1;
          if (at < 0) return;
          list!.splice(at, 1);
          const holder = this.replica.locks.get(key)?.holder;
          this.#respondTo(requester, requestId, StateResult.LOCKED, `"${key}" was still locked${holder === undefined ? "" : ` by ${holder.id.slice(0, 8)}`} after waiting ${waitMs} ms`);
        });
        waiters.push({ requester, request, requestId, leaseMs: Number(leaseMs), releaseOnExit, timer });
        return;
      }
      case "unlock": {
        const { key, fencingToken } = op.value;
        const held = this.replica.locks.get(key);
        if (held === undefined) return this.#respond(requester, request, StateResult.NOT_FOUND, `"${key}" is not locked`);
        if (!sameInstance(held.holder, requester)) return this.#respond(requester, request, StateResult.LOCKED, `"${key}" is locked by another member`);
        if (fencingToken !== 0n && Number(fencingToken) !== held.token) {
          return this.#respond(requester, request, StateResult.STALE_TOKEN, `fencing token ${fencingToken} is not the lock's (${held.token})`);
        }
        this.#commit(requester, request, [unlockChange(held, now, false)], now);
        this.#grantNext(key, now);
        return;
      }
      case "renewLease": {
        const { key, fencingToken, leaseMs } = op.value;
        const held = this.replica.locks.get(key);
        if (held === undefined || !sameInstance(held.holder, requester) || Number(fencingToken) !== held.token) {
          return this.#respond(requester, request, StateResult.STALE_TOKEN, `the lock on "${key}" with token ${fencingToken} is no longer held`);
        }
        const renewed: StoredLock = { ...held, leaseMs: Number(leaseMs), expiresAt: leaseMs > 0n ? now + Number(leaseMs) : undefined };
        this.#commit(requester, request, [lockChange(renewed, now)], now);
        return;
      }
      default:
        this.#respond(requester, request, StateResult.INVALID, "the request has no operation");
    }
  }

  /** Checks a write against locks, versions and tokens; returns its changes, or why it is refused. */
  #evaluateWrite(
    requester: MemberInstance,
    op: Extract<StateRequest["op"], { case: "put" | "remove" | "batch" | "clear" }>,
    now: number,
  ): EntryChange[] | { result: StateResult; message: string } {
    const puts: PutOp[] = [];
    const removes: RemoveOp[] = [];
    if (op.case === "put") puts.push(op.value);
    else if (op.case === "remove") removes.push(op.value);
    else if (op.case === "batch") {
      const batch: BatchOp = op.value;
      puts.push(...batch.puts);
      removes.push(...batch.removes);
    } else {
      for (const entry of this.replica.entries.values()) {
        const lock = this.replica.locks.get(entry.key);
        if (lock !== undefined && !sameInstance(lock.holder, requester)) {
          return { result: StateResult.LOCKED, message: `"${entry.key}" is locked by another member: nothing was cleared` };
        }
      }
      return [...this.replica.entries.values()].map((entry) => removeChange(entry, now));
    }
    const index = this.replica.position.index + 1;
    const seen = new Set<string>();
    const changes: EntryChange[] = [];
    for (const put of puts) {
      const refusal = this.#check(requester, put.key, put.ifVersion, put.fencingToken, seen);
      if (refusal !== undefined) return refusal;
      const current = this.replica.entries.get(put.key);
      changes.push(
        create(EntryChangeSchema, {
          kind: current === undefined ? ChangeKind.INSERT : ChangeKind.UPDATE,
          entry: create(EntrySchema, {
            key: put.key,
            value: put.value,
            format: put.format,
            version: BigInt(index),
            owner: memberRef(requester),
            removeOnExit: put.removeOnExit,
            ttlRemainingMs: put.ttlMs,
          }),
        }),
      );
    }
    for (const remove of removes) {
      const refusal = this.#check(requester, remove.key, remove.ifVersion, remove.fencingToken, seen);
      if (refusal !== undefined) return refusal;
      const current = this.replica.entries.get(remove.key);
      if (current !== undefined) changes.push(removeChange(current, now));
    }
    return changes;
  }

  #check(requester: MemberInstance, key: string, ifVersion: bigint | undefined, fencingToken: bigint, seen: Set<string>): { result: StateResult; message: string } | undefined {
    if (key === "") return { result: StateResult.INVALID, message: "an entry needs a key" };
    if (seen.has(key)) return { result: StateResult.INVALID, message: `"${key}" appears twice in one batch` };
    seen.add(key);
    const lock = this.replica.locks.get(key);
    if (lock !== undefined && !sameInstance(lock.holder, requester)) {
      return { result: StateResult.LOCKED, message: `"${key}" is locked by ${lock.holder.id.slice(0, 8)}` };
    }
    if (fencingToken !== 0n && (lock === undefined || Number(fencingToken) !== lock.token)) {
      return { result: StateResult.STALE_TOKEN, message: `fencing token ${fencingToken} no longer holds the lock on "${key}"` };
    }
    if (ifVersion !== undefined) {
      const version = this.replica.entries.get(key)?.version ?? 0;
      if (version !== Number(ifVersion)) {
        return { result: StateResult.VERSION_MISMATCH, message: `"${key}" is at version ${version}, not ${ifVersion}` };
      }
    }
    return undefined;
  }

  /** Orders changes as the next update: applied here, sent to every member, answered once all have it. */
  #commit(requester: MemberInstance | undefined, request: StateRequest | undefined, changes: EntryChange[], now: number): number {
    const requestId = request === undefined ? 0 : Number(request.requestId);
    const view = this.#view!;
    const local = this.#host.local;
    const index = this.replica.position.index + 1;
    const update = create(StateUpdateSchema, {
      epoch: BigInt(this.#epoch),
      index: BigInt(index),
      group: this.#host.group,
      requestId: BigInt(requestId),
      requester: requester === undefined ? undefined : memberRef(requester),
      changes,
      coordinatorId: idOf(local.id),
    });
    const applied = this.replica.apply(update, now);
    this.stats.updatesApplied++;
    const others: PeerKey[] = [];
    for (const member of view.members) if (member.id !== local.id) others.push(member.id);
    if (others.length > 0) this.#host.sendToAll(others, { case: "stateUpdate", value: update });
    for (const change of applied) this.#track(change);
    if (applied.length > 0) this.#host.changed(applied, false);
    if (requester !== undefined && request !== undefined && requestId !== 0) {
      this.stats.requestsApplied++;
      this.#awaitAll(index, requester, request);
    }
    return index;
  }

  #grant(requester: MemberInstance, request: StateRequest, key: string, leaseMs: number, releaseOnExit: boolean, now: number): void {
    const lock: StoredLock = {
      key,
      holder: requester,
      token: this.replica.takeToken(),
      leaseMs,
      expiresAt: leaseMs > 0 ? now + leaseMs : undefined,
      releaseOnExit,
    };
    this.#commit(requester, request, [lockChange(lock, now)], now);
  }

  /** The lock on `key` is free: the first waiter still in the view gets it. */
  #grantNext(key: string, now: number): void {
    const waiters = this.#waiters.get(key);
    if (waiters === undefined) return;
    while (waiters.length > 0 && !this.replica.locks.has(key)) {
      const waiter = waiters.shift()!;
      waiter.timer?.cancel();
      if (this.#instance(waiter.requester.id) === undefined) continue;
      if (this.replica.appliedRequest(waiter.requester, waiter.requestId) !== undefined) continue;
      this.#grant(waiter.requester, waiter.request, key, waiter.leaseMs, waiter.releaseOnExit, now);
    }
    if (waiters.length === 0) this.#waiters.delete(key);
  }

  #cancelWaiter(requester: MemberInstance, key: string, lockRequestId: number): void {
    const waiters = this.#waiters.get(key);
    if (waiters !== undefined) {
      const at = waiters.findIndex((w) => w.requestId === lockRequestId && sameInstance(w.requester, requester));
      if (at >= 0) {
        waiters[at]!.timer?.cancel();
        waiters.splice(at, 1);
        if (waiters.length === 0) this.#waiters.delete(key);
        return;
      }
    }
    // Granted already (the answer crossed the cancel): release it for the requester.
    const record = this.replica.appliedRequest(requester, lockRequestId);
    const held = this.replica.locks.get(key);
    if (record !== undefined && held !== undefined && held.token === record.token && sameInstance(held.holder, requester)) {
      const now = this.#host.clock.now();
      this.#commit(requester, undefined, [unlockChange(held, now, false)], now);
      this.#grantNext(key, now);
    }
  }

  /** Members that left: remove what they owned with removeOnExit, release locks with releaseOnExit. */
  #removeDeparted(view: StateView): void {
    const now = this.#host.clock.now();
    const present = (member: MemberInstance) => view.members.some((m) => sameInstance(m, member));
    const changes: EntryChange[] = [];
    const freed: string[] = [];
    for (const entry of this.replica.entries.values()) if (entry.removeOnExit && !present(entry.owner)) changes.push(removeChange(entry, now));
    for (const lock of this.replica.locks.values()) {
      if (lock.releaseOnExit && !present(lock.holder)) {
        changes.push(unlockChange(lock, now, false));
        freed.push(lock.key);
      }
    }
    for (const [key, waiters] of this.#waiters) {
      const kept = waiters.filter((w) => present(w.requester));
      if (kept.length === 0) this.#waiters.delete(key);
      else this.#waiters.set(key, kept);
    }
    if (changes.length === 0) return;
    this.#commit(undefined, undefined, changes, now);
    for (const key of freed) this.#grantNext(key, now);
  }

  /** Answers once every member of the view has applied update `index`. */
  #awaitAll(index: number, requester: MemberInstance, request: StateRequest): void {
    this.#awaiting.push({ index, requester, request });
    this.#release();
  }

  #release(): void {
    if (this.#role !== "serving" || this.#awaiting.length === 0) return;
    // Map writes are answered once every member has them (any member then reads them); lock operations
    // once a majority of the view has them (with us), which is what a new coordinator needs to keep them.
    const acked = [...this.#acked.values()].sort((a, b) => b - a);
    const floor = acked.length === 0 ? this.replica.position.index : acked[acked.length - 1]!;
    const othersNeeded = majority(acked.length + 1) - 1;
    const majorityFloor = othersNeeded === 0 ? this.replica.position.index : acked[othersNeeded - 1]!;
    let kept = 0;
    const due: Awaiting[] = [];
    for (const waiting of this.#awaiting) {
      if (waiting.index <= (isLockOp(waiting.request) ? majorityFloor : floor)) due.push(waiting);
      else this.#awaiting[kept++] = waiting;
    }
    this.#awaiting.length = kept;
    for (const { requester, request } of due) {
      const requestId = Number(request.requestId);
      const record = this.replica.appliedRequest(requester, requestId);
      // Not in our history any more: taking over, we adopted a longer history without it (its update
      // never reached the others). It was never answered: order it again.
      if (record === undefined) this.#handle(requester, request);
      else this.#respondOk(requester, requestId, record.index, record.previous, record.token);
    }
  }

  #respondOk(requester: MemberInstance, requestId: number, index: number, previous: readonly StoredEntry[], token: number): void {
    const now = this.#host.clock.now();
    this.#host.send(requester.id, {
      case: "stateResponse",
      value: create(StateResponseSchema, {
        requestId: BigInt(requestId),
        result: StateResult.OK,
        epoch: BigInt(this.#epoch),
        index: BigInt(index),
        previous: previous.map((e) => entryProto(e, now)),
        fencingToken: BigInt(token),
        coordinator: memberRef(this.#host.local),
      }),
    });
  }

  #respond(requester: MemberInstance, request: StateRequest, result: StateResult, message: string): void {
    this.#respondTo(requester, Number(request.requestId), result, message);
  }

  #respondTo(requester: MemberInstance, requestId: number, result: StateResult, message: string): void {
    if (requestId === 0) return;
    const coordinator = this.#view?.coordinator;
    this.#host.send(requester.id, {
      case: "stateResponse",
      value: create(StateResponseSchema, {
        requestId: BigInt(requestId),
        result,
        message,
        epoch: BigInt(this.#epoch),
        coordinator: coordinator === undefined ? undefined : memberRef(coordinator),
      }),
    });
  }

  // --- coordinator: expiry ---

  #track(change: ReplicaChange): void {
    if (change.kind === "insert" || change.kind === "update") {
      if (change.entry.expiresAt !== undefined) this.#due(change.entry.expiresAt, { kind: "entry", key: change.entry.key, version: change.entry.version });
    } else if (change.kind === "lock" && change.lock.expiresAt !== undefined) {
      this.#due(change.lock.expiresAt, { kind: "lock", key: change.lock.key, token: change.lock.token });
    }
  }

  #rebuildDeadlines(): void {
    this.#suspendServing();
    for (const entry of this.replica.entries.values()) {
      if (entry.expiresAt !== undefined) this.#deadlines.push(entry.expiresAt, { kind: "entry", key: entry.key, version: entry.version });
    }
    for (const lock of this.replica.locks.values()) {
      if (lock.expiresAt !== undefined) this.#deadlines.push(lock.expiresAt, { kind: "lock", key: lock.key, token: lock.token });
    }
    this.#armDeadline();
  }

  #due(at: number, item: Due): void {
    this.#deadlines.push(at, item);
    if (at < this.#deadlineAt) this.#armDeadline();
  }

  #armDeadline(): void {
    const next = this.#deadlines.peek();
    if (next === this.#deadlineAt) return;
    this.#deadlineTimer?.cancel();
    this.#deadlineTimer = undefined;
    this.#deadlineAt = next ?? Number.POSITIVE_INFINITY;
    if (next === undefined) return;
    const clock = this.#host.clock;
    this.#deadlineTimer = clock.setTimer(Math.max(0, next - clock.now()), () => {
      this.#deadlineTimer = undefined;
      this.#deadlineAt = Number.POSITIVE_INFINITY;
      this.#expire();
    });
  }

  #expire(): void {
    if (this.#role !== "serving") return;
    const now = this.#host.clock.now();
    const changes: EntryChange[] = [];
    const freed: string[] = [];
    for (const due of this.#deadlines.popDue(now)) {
      if (due.kind === "entry") {
        const entry = this.replica.entries.get(due.key);
        if (entry !== undefined && entry.version === due.version && entry.expiresAt !== undefined && entry.expiresAt <= now) {
          changes.push(removeChange(entry, now, true));
        }
      } else {
        const lock = this.replica.locks.get(due.key);
        if (lock !== undefined && lock.token === due.token && lock.expiresAt !== undefined && lock.expiresAt <= now) {
          changes.push(unlockChange(lock, now, true));
          freed.push(lock.key);
        }
      }
    }
    if (changes.length > 0) this.#commit(undefined, undefined, changes, now);
    for (const key of freed) this.#grantNext(key, now);
    this.#armDeadline();
  }
}

export function emptyStateStats(): StateStats {
  return {
    requestsSent: 0,
    requestsRetried: 0,
    requestsApplied: 0,
    requestsDeduplicated: 0,
    updatesApplied: 0,
    snapshotsSent: 0,
    snapshotsInstalled: 0,
    suffixesSent: 0,
    pulls: 0,
    staleRefused: 0,
    outOfOrder: 0,
    malformed: 0,
    terms: 0,
  };
}

/** How long a member waits before it reports its position again, and a coordinator before it pulls again. */
const RETRY_MS = 250;

/** The smallest majority of `n` members. */
function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** Lock operations need a majority to survive a coordinator's crash; map writes are answered once everyone has them. */
function isLockOp(request: StateRequest): boolean {
  const kind = request.op.case;
  return kind === "lock" || kind === "unlock" || kind === "renewLease";
}

/** A position as a StateAck or a PullOp carries it (a replica that never synced names no coordinator). */
function positionOf(wire: { readonly epoch: bigint; readonly epochCoordinatorId: Uint8Array; readonly index: bigint }): Position {
  return { epoch: Number(wire.epoch), coordinator: wire.epochCoordinatorId.length > 0 ? keyOf(wire.epochCoordinatorId) : "", index: Number(wire.index) };
}

function coordinatorIdOf(position: Position): Uint8Array {
  return position.coordinator === "" ? new Uint8Array(0) : idOf(position.coordinator);
}

function viewKey(id: StateView["id"]): string {
  return `${id.installer}/${id.counter}`;
}

function viewIdProto(view: StateView): ViewIdProto {
  return create(ViewIdSchema, { coordinatorId: idOf(view.id.installer), counter: BigInt(view.id.counter) });
}

function removeChange(entry: StoredEntry, now: number, expired = false): EntryChange {
  return create(EntryChangeSchema, { kind: ChangeKind.REMOVE, entry: entryProto(entry, now), expired });
}

function lockChange(lock: StoredLock, now: number): EntryChange {
  return create(EntryChangeSchema, {
    kind: ChangeKind.LOCK,
    entry: create(EntrySchema, { key: lock.key, lock: { ...lockProto(lock, now), leaseRemainingMs: BigInt(lock.leaseMs) } }),
  });
}

function unlockChange(lock: StoredLock, now: number, expired: boolean): EntryChange {
  return create(EntryChangeSchema, { kind: ChangeKind.UNLOCK, entry: create(EntrySchema, { key: lock.key, lock: lockProto(lock, now) }), expired });
}
