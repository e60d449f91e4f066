import type { TimedUnit } from "../core/driver.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import { Expiry } from "./expiry.ts";
import { LockQueue, type Waiter } from "./lock-queue.ts";
import type { Replica } from "./replica.ts";
import {
  type Announce,
  type AppliedRecord,
  type Change,
  instanceKey,
  majority,
  type MemberInstance,
  putBytes,
  putEntrySpec,
  removeBytes,
  REQUEST_OVERHEAD_BYTES,
  UPDATE_OVERHEAD_BYTES,
  type OrderedRequest,
  type Position,
  type PutSpec,
  type RemoveSpec,
  type ReplicaChange,
  sameInstance,
  type StateAck,
  type StateOutcome,
  type StateRequest,
  type StateResponse,
  type Update,
} from "./state-types.ts";
import type { VisibleState } from "./visible-state.ts";

/**
 * A member that lags and has not acknowledged anything new for this long is told the last index (a
 * probe: it may lack the last updates, and no later one shows it the gap); an update sent again is not
 * sent again to the same member within this.
 */
const REPAIR_MS = 20;
/** A member that says it lacks updates (a gap) is repaired at once, but not twice within this. */
const GAP_REPAIR_HOLDOFF_MS = 3;
/**
 * Refusals remembered, so that a copy of a refused request (a duplicated datagram) is refused again
 * rather than applied once what refused it is gone: a put told LOCKED must not be written after the
 * unlock, a tryLock told LOCKED must not be granted to a caller that went on. Copies come within
 * moments; these are the latest refusals of the term.
 */
const REFUSALS_KEPT = 4_096;
/** Updates sent to one member in one repair. */
const REPAIR_BATCH = 256;
/** Fencing tokens reserved at once: a ceiling every member acknowledged before tokens below it are granted. */
export const TOKEN_BLOCK = 1_024;
/** Lease probes whose send times are kept (older echoes count as not heard). */
const PROBES_KEPT = 64;
/** Departed members whose applied requests are remembered (beyond: the longest gone are forgotten). */
const DEPARTED_REMEMBERED = 64;

export interface SequencerHost {
  readonly local: MemberInstance;
  readonly replica: Replica;
  readonly visible: VisibleState;
  multicastUpdate(update: Update, leaseProbe: number): void;
  multicastAnnounce(announce: Announce): void;
  /** Sends an announce to one member (a probe of one that lags). */
  sendAnnounce(peer: PeerKey, announce: Announce): void;
  /** Sends one update to one member (a repair). */
  sendUpdate(peer: PeerKey, update: Update): void;
  /** Answers a request (this member's own: to its client). */
  respond(requester: MemberInstance, response: StateResponse): void;
  /** Committed changes: the application sees them now. */
  shown(changes: readonly ReplicaChange[]): void;
  /** `member` at `position` lacks updates the log no longer has: bring it up by snapshot. */
  resync(member: MemberInstance, position: Position): void;
  /** The fencing-token ceiling was raised (SyncCompletes sent from now on name it). */
  ceilingRaised(ceiling: number): void;
  /** Serving began or stopped (the lease), or the term is over: waiters re-check. */
  wake(): void;
}

export interface SequencerOptions {
  /** A coordinator serves while a majority of its term heard from it within this (the failure timeout). */
  readonly leaseMs: number;
  /** The largest update (encoded) that fits in one datagram. */
  readonly maxUpdateBytes: number;
}

/** A coordinator term as the sequencer runs it. */
export interface SequencerTerm {
  readonly epoch: number;
  readonly members: readonly MemberInstance[];
  /** The fencing-token ceiling of the term, usable once every member accepted the term. */
  readonly tokenCeiling: number;
}

export interface SequencerStats {
  /** Updates ordered (and applied here). */
  updatesApplied: number;
  requestsApplied: number;
  requestsDeduplicated: number;
  updatesSent: number;
  repairsSent: number;
  announcesSent: number;
}

interface MemberState {
  readonly member: MemberInstance;
  accepted: boolean;
  /** The last index it acknowledged, in this term. */
  acked: number;
  progressAt: number;
  repairedAt: number;
  probedAt: number;
  /** The highest index sent to it again, and when (not sent again within REPAIR_MS). */
  resentUpTo: number;
  resentAt: number;
  /** When it last heard from us, as far as we know (the send time of the lease probe it echoed). */
  heardAt: number;
}

interface Batch {
  /** This sequencer's number for it, unique (its log index may come again: a batch left empty is dropped). */
  readonly serial: number;
  readonly index: number;
  readonly requests: OrderedRequest[];
  bytes: number;
}

/**
 * The ids of one requester's requests in the open batch (the batch `serial`): a run `first` to `last`
 * (a requester's ids mostly come one after the other), the others in a set made only for them.
 */
interface BatchIds {
  serial: number;
  first: number;
  last: number;
  others: Set<number> | undefined;
}

/** How many keys' batches, and requesters' ids, are kept before the tables are emptied (each names the open batch only). */
const KEYS_KEPT = 65_536;
const REQUESTERS_KEPT = 64;

const NO_PUTS: readonly PutSpec[] = [];
/** No members to forget: what most updates carry (never written to). */
const NO_MEMBERS: readonly MemberInstance[] = [];
const NO_CHANGES: readonly Change[] = [];
const NO_REMOVES: readonly RemoveSpec[] = [];

/** The change a put makes as the write of `requester` at log index `index` (an insert when `replica` lacks its key). */
function putChange(put: PutSpec, index: number, requester: MemberInstance, replica: Replica): Change {
  return { kind: "put", entry: putEntrySpec(put.key, put.value, put.format, index, requester, put.removeOnExit, put.ttlMs), inserted: !replica.entries.has(put.key) };
}

function requestKey(requester: MemberInstance, requestId: number): string {
  return `${instanceKey(requester)}:${requestId}`;
}

type Refusal = { readonly outcome: StateOutcome; readonly message: string };

/**
 * The coordinator's sequencer for one term: it orders the requests of the term's members (checked
 * against locks, versions and tokens) into the log, a batch at a time — the requests of one turn that
 * touch different keys become one update, multicast once to the group (of two, sent to the other member) — and applies them here at once.
 * Members acknowledge cumulatively; one that lags (or says it lacks updates) is sent them again point to
 * point from the log, or brought up by snapshot when the log no longer has them. An update is committed
 * once every member of the term holds it: the application here sees it then, and this member's own
 * requests are answered; other members' requests finish at their requesters (see StateClient).
 *
 * It serves (takes requests) only while every member of the term accepted the term and a majority heard
 * from it within the lease (the failure timeout): a coordinator cut off from its majority stops before
 * a new one can have been elected. It grants fencing tokens only below a ceiling every member has
 * acknowledged, raised a block at a time, so a later coordinator — which starts above every ceiling it
 * hears of — never hands out a token again.
 */
export class Sequencer implements TimedUnit {
  readonly stats: SequencerStats = { updatesApplied: 0, requestsApplied: 0, requestsDeduplicated: 0, updatesSent: 0, repairsSent: 0, announcesSent: 0 };
  readonly #host: SequencerHost;
  readonly #options: SequencerOptions;
  readonly #epoch: number;
  readonly #size: number;
  readonly #members = new Map<PeerKey, MemberState>();
  readonly #locks: LockQueue;
  readonly #expiry: Expiry;
  readonly #queued: Array<{ readonly requester: MemberInstance; readonly request: StateRequest }> = [];
  /** Lock grants waiting for the token ceiling to be raised. */
  readonly #tokenWait: Waiter[] = [];
  /** This member's own requests applied and not answered yet. */
  readonly #awaiting: Array<{ readonly index: number; readonly requestId: number }> = [];
  #batch: Batch | undefined;
  #batchSerial = 0;
  /**
   * The batch each key was added to last (its serial), and the ids of each requester's requests in it:
   * a key clashes with the open batch when it names that batch. Kept from batch to batch (a key's entry
   * is overwritten by its next batch), not a set of keys and one of ids for every batch, grown to its
   * hundreds of requests each time.
   */
  readonly #keyBatches = new Map<string, number>();
  readonly #batchIds = new Map<string, BatchIds>();
  #forget: readonly MemberInstance[] = NO_MEMBERS;
  #usableCeiling: number;
  #raise: { readonly ceiling: number; index: number } | undefined;
  #committed = 0;
  #ready = false;
  #closed = false;
  #probe: number;
  #probeIssuedAt = Number.NEGATIVE_INFINITY;
  readonly #probes = new Map<number, number>();
  /** The latest refusals, by requester and request id, oldest first. */
  readonly #refused = new Map<string, Refusal>();
  /** The request whose key was made last: a request's key is wanted a few times while it is handled. */
  #lastRequest: { readonly requester: MemberInstance; readonly requestId: number; readonly key: string } | undefined;
  #lastSentAt: number;
  #wasServing = false;
  /** When the lease runs out, as the members' echoes stand (worked out again when one moves). */
  #leaseEndAt: number;

  constructor(host: SequencerHost, options: SequencerOptions, term: SequencerTerm, firstProbe: number, now: number) {
    this.#host = host;
    this.#options = options;
    this.#epoch = term.epoch;
    this.#size = term.members.length;
    this.#usableCeiling = term.tokenCeiling;
    this.#probe = firstProbe;
    this.#lastSentAt = now;
    for (const member of term.members) {
      if (member.id === host.local.id) continue;
      this.#members.set(member.id, { member, accepted: false, acked: -1, progressAt: now, repairedAt: Number.NEGATIVE_INFINITY, probedAt: Number.NEGATIVE_INFINITY, resentUpTo: 0, resentAt: Number.NEGATIVE_INFINITY, heardAt: Number.NEGATIVE_INFINITY });
    }
    this.#leaseEndAt = this.#leaseEnd();
    this.#locks = new LockQueue((waiter) => this.#respondTo(waiter.requester, waiter.requestId, "LOCKED", `"${waiter.key}" was still locked after waiting`));
    this.#expiry = new Expiry(host.replica, (changes, at) => this.#coordinatorChanges(changes, at));
    this.#committed = host.replica.position.index - 1;
    this.#announce(now);
    this.#checkReady(now);
  }

  /** The highest lease probe used (the next term goes on from it). */
  get probe(): number {
    return this.#probe;
  }

  /** True while it takes requests: the term began everywhere and the lease holds at `now`. */
  serving(now: number): boolean {
    return this.#ready && !this.#closed && this.#leaseHolds(now);
  }

  /** The term began everywhere (every member accepted it). */
  get ready(): boolean {
    return this.#ready;
  }

  /** A member accepted the term, at `index`. */
  accepted(peer: PeerKey, index: number, now: number): void {
    const state = this.#members.get(peer);
    if (state === undefined) return;
    state.accepted = true;
    if (index > state.acked) {
      state.acked = index;
      state.progressAt = now;
    }
    this.#checkReady(now);
    this.#advance(now);
  }

  /** An acknowledgement from a member that accepted this term. */
  onAck(peer: PeerKey, ack: StateAck, now: number): void {
    const state = this.#members.get(peer);
    if (state === undefined || !state.accepted) return;
    const heard = this.#probes.get(ack.leaseProbe);
    if (heard !== undefined && heard > state.heardAt) {
      const before = this.serving(now);
      state.heardAt = heard;
      this.#leaseEndAt = this.#leaseEnd();
      if (!before && this.serving(now)) this.#resume(now);
    }
    const index = ack.position.index;
    if (ack.position.epoch <= this.#epoch && index > state.acked) {
      state.acked = index;
      state.progressAt = now;
      this.#advance(now);
    }
    // It says it lacks updates below one it knows of: repair now, from where it says it is — which may be
    // below what it acknowledged before, when a snapshot replaced its replica meanwhile.
    if (ack.highestSeen > index && index < this.#host.replica.position.index && now - state.repairedAt >= GAP_REPAIR_HOLDOFF_MS) this.#repair(state, now, index, ack.highestSeen);
  }

  /** A request of a member of the term (this member's own included). */
  onRequest(requester: MemberInstance, request: StateRequest, now: number): void {
    if (!this.serving(now)) {
      this.#queued.push({ requester, request });
      return;
    }
    this.#handle(requester, request, now);
  }

  /** The end of a turn: the batch becomes an update and goes out. */
  flush(now: number): void {
    this.#commitBatch(now);
  }

  /**
   * The term is over: what was ordered goes out, and the requests still waiting here are returned, to
   * be told to ask again (at the next coordinator) — this member's own applied ones not committed yet
   * among them: asked again, a coordinator answers them once they are committed in its term.
   */
  close(now: number): Array<{ readonly requester: MemberInstance; readonly requestId: number }> {
    this.#commitBatch(now);
    this.#closed = true;
    const waiting = [
      ...this.#queued.splice(0).map(({ requester, request }) => ({ requester, requestId: request.requestId })),
      ...this.#locks.drain().map((w) => ({ requester: w.requester, requestId: w.requestId })),
      ...this.#tokenWait.splice(0).map((w) => ({ requester: w.requester, requestId: w.requestId })),
      ...this.#awaiting.map((w) => ({ requester: this.#host.local, requestId: w.requestId })),
    ];
    this.#expiry.clear();
    this.#awaiting.length = 0;
    return waiting;
  }

  pollTimeout(): number {
    if (this.#closed) return Number.POSITIVE_INFINITY;
    let next = Math.min(this.#lastSentAt + this.#options.leaseMs / 4, this.#locks.pollTimeout());
    if (this.#ready) next = Math.min(next, this.#expiry.pollTimeout());
    const position = this.#host.replica.position.index;
    for (const state of this.#members.values()) {
      if (state.accepted && state.acked < position) next = Math.min(next, Math.max(state.progressAt, state.repairedAt, state.probedAt) + REPAIR_MS);
    }
    // The lease runs out (serving stops) when the majority's latest probe echo gets too old.
    if (this.#wasServing) next = Math.min(next, this.#leaseEndAt);
    return next;
  }

  handleTimeout(now: number): void {
    if (this.#closed) return;
    this.#locks.handleTimeout(now);
    if (this.#ready) this.#expiry.handleTimeout(now);
    const position = this.#host.replica.position.index;
    for (const state of this.#members.values()) {
      if (state.accepted && state.acked < position && Math.max(state.progressAt, state.repairedAt, state.probedAt) + REPAIR_MS <= now) this.#probeLagging(state, now);
    }
    if (this.#lastSentAt + this.#options.leaseMs / 4 <= now) this.#announce(now);
    const serving = this.serving(now);
    if (serving !== this.#wasServing) {
      this.#wasServing = serving;
      this.#host.wake();
    }
  }

  // --- serving ---

  #checkReady(now: number): void {
    if (this.#ready) return;
    for (const state of this.#members.values()) if (!state.accepted) return;
    this.#ready = true;
    this.#expiry.rebuild();
    this.#removeDeparted(now);
    this.#advance(now);
    if (this.serving(now)) this.#resume(now);
  }

  #resume(now: number): void {
    this.#wasServing = true;
    this.#host.wake();
    for (const { requester, request } of this.#queued.splice(0)) {
      if (!this.serving(now)) {
        this.#queued.push({ requester, request });
        continue;
      }
      this.#handle(requester, request, now);
    }
  }

  #leaseEnd(): number {
    const heard = [Number.POSITIVE_INFINITY];
    for (const state of this.#members.values()) heard.push(state.heardAt);
    heard.sort((a, b) => b - a);
    return heard[majority(this.#size) - 1]! + this.#options.leaseMs;
  }

  #leaseHolds(now: number): boolean {
    return this.#leaseEndAt > now;
  }

  #handle(requester: MemberInstance, request: StateRequest, now: number): void {
    const requestId = request.requestId;
    const op = request.op;
    if (this.#inBatch(requester, requestId)) return;
    const applied = this.#host.replica.appliedRequest(requester, requestId);
    if (applied !== undefined) {
      // Sent again: applied already (here, or by a coordinator before us). Answered once it is committed
      // as far as it needs; until then, its requester hears of it from the update.
      this.stats.requestsDeduplicated++;
      if (applied.index <= this.#floor()) this.#respondOk(requester, applied);
      else if (sameInstance(requester, this.#host.local)) this.#await(applied.index, requestId);
      return;
    }
    // Grants waiting for a token are few (most turns have none): no closure made to look among none.
    if (this.#locks.isQueued(requester, requestId) || (this.#tokenWait.length > 0 && this.#tokenWait.some((w) => w.requestId === requestId && sameInstance(w.requester, requester)))) return;
    // Refusals are few (most terms have none): no key made to look for one among none.
    const refusal = this.#refused.size === 0 ? undefined : this.#refused.get(this.#requestKey(requester, requestId));
    if (refusal !== undefined) {
      this.stats.requestsDeduplicated++;
      return this.#respondTo(requester, requestId, refusal.outcome, refusal.message);
    }
    switch (op.case) {
      case "put":
      case "remove":
      case "batch":
      case "clear":
        return this.#write(requester, request, now);
      case "lock": {
        const { key, leaseMs, waitMs, releaseOnExit } = op;
        if (key === "") return this.#respond(requester, request, "INVALID", "a lock needs a key");
        this.#open(key, lockRequestBytes(key), now);
        const held = this.#host.replica.locks.get(key);
        if (held === undefined && !this.#locks.hasWaiters(key)) return this.#grant({ key, requester, requestId, leaseMs, releaseOnExit, deadline: now + waitMs }, now);
        if (held !== undefined && sameInstance(held.holder, requester)) {
          return this.#respond(requester, request, "INVALID", `"${key}" is already locked by this member (locks are not re-entrant)`);
        }
        if (waitMs === 0) return this.#respond(requester, request, "LOCKED", `"${key}" is locked by ${held?.holder.id.slice(0, 8) ?? "another member"}`);
        this.#locks.enqueue({ key, requester, requestId, leaseMs, releaseOnExit, deadline: now + waitMs });
        return;
      }
      case "unlock": {
        const { key, fencingToken } = op;
        this.#open(key, lockRequestBytes(key), now);
        const held = this.#host.replica.locks.get(key);
        if (held === undefined) return this.#respond(requester, request, "NOT_FOUND", `"${key}" is not locked`);
        if (!sameInstance(held.holder, requester)) return this.#respond(requester, request, "LOCKED", `"${key}" is locked by another member`);
        if (fencingToken !== 0 && fencingToken !== held.token) return this.#respond(requester, request, "STALE_TOKEN", `fencing token ${fencingToken} is not the lock's (${held.token})`);
        this.#add(requester, requestId, [{ kind: "unlock", key, expired: false }], key);
        this.#grantNext(key, now);
        return;
      }
      case "renewLease": {
        const { key, fencingToken, leaseMs } = op;
        this.#open(key, lockRequestBytes(key), now);
        const held = this.#host.replica.locks.get(key);
        if (held === undefined || !sameInstance(held.holder, requester) || fencingToken !== held.token) {
          return this.#respond(requester, request, "STALE_TOKEN", `the lock on "${key}" with token ${fencingToken} is no longer held`);
        }
        const change: Change = { kind: "lock", lock: { key, holder: held.holder, token: held.token, leaseMs, releaseOnExit: held.releaseOnExit } };
        this.#add(requester, requestId, [change], key);
        return;
      }
      case "cancel":
        return this.#cancel(requester, requestId, op.key, op.lockRequestId, now);
      default:
        this.#respond(requester, request, "INVALID", "the request has no operation");
    }
  }

  #write(requester: MemberInstance, request: StateRequest, now: number): void {
    const op = request.op as Extract<StateRequest["op"], { case: "put" | "remove" | "batch" | "clear" }>;
    // A put or a remove is one key, looked at as it is: no array of its spec, none of its key grown by
    // pushes (an empty array's first push makes room for seventeen), no copies of a batch's arrays.
    if (op.case === "put") return this.#writeOne(requester, request, op.put, undefined, now);
    if (op.case === "remove") return this.#writeOne(requester, request, undefined, op.remove, now);
    const puts: readonly PutSpec[] = op.case === "batch" ? op.puts : NO_PUTS;
    const removes: readonly RemoveSpec[] = op.case === "batch" ? op.removes : NO_REMOVES;
    const replica = this.#host.replica;
    if (op.case === "clear") {
      this.#open(undefined, 0, now);
      for (const [key, lock] of replica.locks) {
        if (replica.entries.has(key) && !sameInstance(lock.holder, requester)) return this.#respond(requester, request, "LOCKED", `"${key}" is locked by another member: nothing was cleared`);
      }
      this.#add(requester, request.requestId, [{ kind: "clear" }], undefined);
      this.#commitBatch(now);
      return;
    }
    const keys: string[] = [];
    for (const put of puts) keys.push(put.key);
    for (const remove of removes) keys.push(remove.key);
    let bytes = REQUEST_OVERHEAD_BYTES;
    for (const put of puts) bytes += putBytes(put.key, put.value.length);
    for (const remove of removes) bytes += removeBytes(remove.key);
    if (this.#refusedTooLarge(requester, request, bytes)) return;
    this.#open(keys, bytes, now);
    const index = this.#batch!.index;
    // A key twice is looked for in a batch only.
    const seen = keys.length > 1 ? new Set<string>() : undefined;
    const changes: Change[] = [];
    for (const put of puts) {
      const refusal = this.#check(requester, put.key, put.ifVersion, put.fencingToken, seen);
      if (refusal !== undefined) return this.#respond(requester, request, refusal.outcome, refusal.message);
      changes.push(putChange(put, index, requester, replica));
    }
    for (const remove of removes) {
      const refusal = this.#check(requester, remove.key, remove.ifVersion, remove.fencingToken, seen);
      if (refusal !== undefined) return this.#respond(requester, request, refusal.outcome, refusal.message);
      if (replica.entries.has(remove.key)) changes.push({ kind: "remove", key: remove.key, expired: false });
    }
    this.#add(requester, request.requestId, changes, keys);
  }

  /** Refuses `request` when its update would not fit one datagram (`bytes`: the request's size); true then. */
  #refusedTooLarge(requester: MemberInstance, request: StateRequest, bytes: number): boolean {
    if (bytes + UPDATE_OVERHEAD_BYTES <= this.#options.maxUpdateBytes) return false;
    this.#respond(requester, request, "TOO_LARGE", `the update would take about ${bytes} bytes, more than one datagram carries (${this.#options.maxUpdateBytes})`);
    return true;
  }

  /** A put (`put`) or a remove (`remove`) of one key: #write's work for a batch of one, without its arrays. */
  #writeOne(requester: MemberInstance, request: StateRequest, put: PutSpec | undefined, remove: RemoveSpec | undefined, now: number): void {
    const key = put !== undefined ? put.key : remove!.key;
    const bytes = REQUEST_OVERHEAD_BYTES + (put !== undefined ? putBytes(key, put.value.length) : removeBytes(key));
    if (this.#refusedTooLarge(requester, request, bytes)) return;
    this.#open(key, bytes, now);
    const refusal = put !== undefined ? this.#check(requester, key, put.ifVersion, put.fencingToken, undefined) : this.#check(requester, key, remove!.ifVersion, remove!.fencingToken, undefined);
    if (refusal !== undefined) return this.#respond(requester, request, refusal.outcome, refusal.message);
    const replica = this.#host.replica;
    let changes: readonly Change[];
    if (put !== undefined) changes = [putChange(put, this.#batch!.index, requester, replica)];
    else changes = replica.entries.has(key) ? [{ kind: "remove", key, expired: false }] : NO_CHANGES;
    this.#add(requester, request.requestId, changes, key);
  }

  #check(requester: MemberInstance, key: string, ifVersion: number | undefined, fencingToken: number, seen: Set<string> | undefined): Refusal | undefined {
    if (key === "") return { outcome: "INVALID", message: "an entry needs a key" };
    if (seen !== undefined) {
      if (seen.has(key)) return { outcome: "INVALID", message: `"${key}" appears twice in one batch` };
      seen.add(key);
    }
    const replica = this.#host.replica;
    const lock = replica.locks.get(key);
    if (lock !== undefined && !sameInstance(lock.holder, requester)) return { outcome: "LOCKED", message: `"${key}" is locked by ${lock.holder.id.slice(0, 8)}` };
    if (fencingToken !== 0 && (lock === undefined || fencingToken !== lock.token)) {
      return { outcome: "STALE_TOKEN", message: `fencing token ${fencingToken} no longer holds the lock on "${key}"` };
    }
    if (ifVersion !== undefined) {
      const version = replica.entries.get(key)?.version ?? 0;
      if (version !== ifVersion) return { outcome: "VERSION_MISMATCH", message: `"${key}" is at version ${version}, not ${ifVersion}` };
    }
    return undefined;
  }

  #grant(waiter: Waiter, now: number): void {
    const replica = this.#host.replica;
    if (replica.nextToken >= this.#usableCeiling) {
      // No token below a ceiling every member acknowledged: wait for the next one.
      this.#tokenWait.push(waiter);
      this.#raiseCeiling();
      return;
    }
    const token = replica.takeToken();
    this.#add(waiter.requester, waiter.requestId, [{ kind: "lock", lock: { key: waiter.key, holder: waiter.requester, token, leaseMs: waiter.leaseMs, releaseOnExit: waiter.releaseOnExit } }], waiter.key);
    if (replica.nextToken + TOKEN_BLOCK / 2 >= this.#usableCeiling) this.#raiseCeiling();
  }

  /** The lock on `key` is free: the first waiter not applied already gets it. */
  #grantNext(key: string, now: number): void {
    if (!this.#locks.hasWaiters(key)) return;
    const replica = this.#host.replica;
    const waiter = this.#locks.next(key, (w) => replica.appliedRequest(w.requester, w.requestId) === undefined);
    if (waiter === undefined) return;
    this.#open(key, lockRequestBytes(key), now);
    this.#grant(waiter, now);
  }

  /**
   * Withdraws lock request `lockRequestId` of `requester`: a queued one leaves the queue, one not seen
   * yet is recorded as applied without a grant (so it is never granted later, here or at a next
   * coordinator), and a granted one is released. Answered like a lock operation.
   */
  #cancel(requester: MemberInstance, requestId: number, key: string, lockRequestId: number, now: number): void {
    if (this.#inBatch(requester, lockRequestId)) this.#commitBatch(now);
    const replica = this.#host.replica;
    const record = replica.appliedRequest(requester, lockRequestId);
    if (record !== undefined) {
      const held = replica.locks.get(key);
      if (record.token > 0 && held !== undefined && held.token === record.token && sameInstance(held.holder, requester)) {
        this.#open(key, lockRequestBytes(key), now);
        this.#add(requester, requestId, [{ kind: "unlock", key, expired: false }], key);
        this.#grantNext(key, now);
      } else {
        this.#respondTo(requester, requestId, "OK", "");
      }
      return;
    }
    this.#locks.withdraw(key, requester, lockRequestId);
    const waiting = this.#tokenWait.findIndex((w) => w.requestId === lockRequestId && sameInstance(w.requester, requester));
    if (waiting >= 0) this.#tokenWait.splice(waiting, 1);
    this.#open([], 2 * REQUEST_OVERHEAD_BYTES, now);
    this.#add(requester, lockRequestId, [], []);
    this.#add(requester, requestId, [], []);
  }

  /** Expiry and exits: changes of the coordinator's own, ordered like requests. */
  #coordinatorChanges(changes: readonly Change[], now: number): void {
    const freed: string[] = [];
    for (const change of changes) {
      const key = change.kind === "put" ? change.entry.key : change.kind === "lock" ? change.lock.key : change.kind === "clear" ? "" : change.key;
      this.#open(key, REQUEST_OVERHEAD_BYTES + changeBytes(change), now);
      this.#add(undefined, 0, [change], key);
      if (change.kind === "unlock") freed.push(change.key);
    }
    for (const key of freed) this.#grantNext(key, now);
  }

  /** Members that left: their removeOnExit entries go, their releaseOnExit locks are freed, old records are forgotten. */
  #removeDeparted(now: number): void {
    const replica = this.#host.replica;
    const members = [this.#host.local, ...[...this.#members.values()].map((s) => s.member)];
    const present = (member: MemberInstance) => members.some((m) => sameInstance(m, member));
    const changes: Change[] = [];
    for (const entry of replica.entries.values()) if (entry.removeOnExit && !present(entry.owner)) changes.push({ kind: "remove", key: entry.key, expired: false });
    for (const lock of replica.locks.values()) if (lock.releaseOnExit && !present(lock.holder)) changes.push({ kind: "unlock", key: lock.key, expired: false });
    // A requester restarted (a later incarnation is here) cannot retry its old requests; of those merely
    // gone, the records of the longest gone go past a bound.
    const departed = replica.requesters().filter((r) => !present(r));
    const restarted = departed.filter((r) => members.some((m) => m.id === r.id && m.incarnation > r.incarnation));
    const gone = departed.filter((r) => !restarted.includes(r)).sort((a, b) => replica.lastAppliedIndex(b) - replica.lastAppliedIndex(a));
    this.#forget = [...restarted, ...gone.slice(DEPARTED_REMEMBERED)];
    if (changes.length > 0) this.#coordinatorChanges(changes, now);
    else if (this.#forget.length > 0) this.#open([], 0, now);
    this.#commitBatch(now);
  }

  // --- the log ---

  /**
   * Opens a batch for changes to `keys` (one key alone as a string, undefined: every key) of about
   * `bytes`, closing the current one if they would clash.
   */
  #open(keys: string | readonly string[] | undefined, bytes: number, now: number): void {
    const batch = this.#batch;
    if (batch !== undefined) {
      const serial = batch.serial;
      const batches = this.#keyBatches;
      let clash = keys === undefined || batches.get("") === serial || batch.bytes + bytes > this.#options.maxUpdateBytes;
      if (!clash) {
        if (typeof keys === "string") clash = batches.get(keys) === serial;
        else for (let i = 0; !clash && i < keys!.length; i++) clash = batches.get(keys![i]!) === serial;
      }
      if (!clash) return;
      this.#commitBatch(now);
    }
    this.#batch = this.#emptyBatch();
  }

  /** A new batch, at the log index after this replica's. */
  #emptyBatch(): Batch {
    if (this.#keyBatches.size > KEYS_KEPT) this.#keyBatches.clear();
    if (this.#batchIds.size > REQUESTERS_KEPT) this.#batchIds.clear();
    return { serial: ++this.#batchSerial, index: this.#host.replica.position.index + 1, requests: [], bytes: UPDATE_OVERHEAD_BYTES };
  }

  /** Request `requestId` of `requester` is in the open batch. */
  #inBatch(requester: MemberInstance, requestId: number): boolean {
    const batch = this.#batch;
    if (batch === undefined) return false;
    const ids = this.#batchIds.get(instanceKey(requester));
    if (ids === undefined || ids.serial !== batch.serial) return false;
    return (requestId >= ids.first && requestId <= ids.last) || (ids.others?.has(requestId) ?? false);
  }

  /** Adds a request's changes to the open batch (#open made room for them). */
  #add(requester: MemberInstance | undefined, requestId: number, changes: readonly Change[], keys: string | readonly string[] | undefined): void {
    const batch = this.#batch!;
    batch.requests.push({ requestId, requester, changes });
    const serial = batch.serial;
    if (keys === undefined) this.#keyBatches.set("", serial);
    else if (typeof keys === "string") this.#keyBatches.set(keys, serial);
    else for (const key of keys) this.#keyBatches.set(key, serial);
    if (requester !== undefined) {
      const key = instanceKey(requester);
      const ids = this.#batchIds.get(key);
      if (ids === undefined) this.#batchIds.set(key, { serial, first: requestId, last: requestId, others: undefined });
      else if (ids.serial !== serial) {
        ids.serial = serial;
        ids.first = ids.last = requestId;
        ids.others = undefined;
      } else if (requestId === ids.last + 1) ids.last = requestId;
      else (ids.others ??= new Set()).add(requestId);
    }
    batch.bytes += REQUEST_OVERHEAD_BYTES;
    for (const change of changes) batch.bytes += changeBytes(change);
  }

  #requestKey(requester: MemberInstance, requestId: number): string {
    const last = this.#lastRequest;
    if (last !== undefined && last.requester === requester && last.requestId === requestId) return last.key;
    const key = requestKey(requester, requestId);
    this.#lastRequest = { requester, requestId, key };
    return key;
  }

  #commitBatch(now: number): void {
    const batch = this.#batch;
    if (batch === undefined) return;
    this.#batch = undefined;
    const raise = this.#raise !== undefined && this.#raise.index === 0 ? this.#raise : undefined;
    if (batch.requests.length === 0 && raise === undefined && this.#forget.length === 0) return;
    const replica = this.#host.replica;
    const update: Update = {
      epoch: this.#epoch,
      index: batch.index,
      coordinator: this.#host.local.id,
      requests: batch.requests,
      tokenCeiling: raise?.ceiling ?? 0,
      forget: this.#forget,
    };
    this.#forget = NO_MEMBERS;
    if (raise !== undefined) {
      raise.index = batch.index;
      this.#host.ceilingRaised(raise.ceiling);
    }
    const { changes, records } = replica.apply(update, now);
    this.stats.updatesApplied++;
    this.#host.visible.hide(update.index, changes);
    for (const change of changes) this.#expiry.track(change);
    for (const record of records) {
      this.stats.requestsApplied++;
      if (sameInstance(record.requester, this.#host.local)) this.#await(record.index, record.requestId);
    }
    if (this.#members.size > 0) {
      this.#host.multicastUpdate(update, this.#probeFor(now));
      this.stats.updatesSent++;
      this.#lastSentAt = now;
    }
    this.#advance(now);
  }

  /** Commit points moved (an acknowledgement, an update of our own): show, answer, release tokens. */
  #advance(now: number): void {
    const all = this.#floor();
    if (all > this.#committed) {
      this.#committed = all;
      const shown = this.#host.visible.commit(all);
      if (shown.length > 0) this.#host.shown(shown);
    }
    if (this.#awaiting.length > 0) {
      let kept = 0;
      for (const waiting of this.#awaiting) {
        if (waiting.index <= all) {
          const record = this.#host.replica.appliedRequest(this.#host.local, waiting.requestId);
          if (record !== undefined) this.#respondOk(this.#host.local, record);
        } else this.#awaiting[kept++] = waiting;
      }
      this.#awaiting.length = kept;
    }
    const raise = this.#raise;
    if (raise !== undefined && raise.index > 0 && all >= raise.index) {
      this.#usableCeiling = raise.ceiling;
      this.#raise = undefined;
      for (const waiter of this.#tokenWait.splice(0)) {
        this.#open([waiter.key], lockRequestBytes(waiter.key), now);
        if (this.#host.replica.locks.has(waiter.key)) this.#locks.enqueue(waiter);
        else this.#grant(waiter, now);
      }
    }
  }

  /** The highest index every member of the term holds: what is committed. */
  #floor(): number {
    let floor = this.#host.replica.position.index;
    for (const state of this.#members.values()) floor = Math.min(floor, state.accepted ? state.acked : -1);
    return floor;
  }

  #raiseCeiling(): void {
    if (this.#raise !== undefined) return;
    this.#raise = { ceiling: Math.max(this.#usableCeiling, this.#host.replica.nextToken) + TOKEN_BLOCK, index: 0 };
    // Carried by the next update: make one if nothing else is ordered this turn.
    this.#batch ??= this.#emptyBatch();
  }

  /**
   * Sends `state`'s member the updates after `held` up to `seen` (the highest it knows of), but those
   * sent to it again within REPAIR_MS (they may be on their way still); a snapshot when the log no
   * longer has them.
   */
  #repair(state: MemberState, now: number, held: number, seen: number): void {
    state.repairedAt = now;
    let from = Math.min(held, state.acked);
    const updates = this.#host.replica.updatesAfter(from, REPAIR_BATCH);
    if (updates === undefined) {
      this.#host.resync(state.member, { ...this.#host.replica.position, index: from });
      return;
    }
    if (now - state.resentAt < REPAIR_MS) from = Math.max(from, state.resentUpTo);
    let sent = 0;
    for (const update of updates) {
      if (update.index <= from || update.index > seen) continue;
      this.#host.sendUpdate(state.member.id, update);
      state.resentUpTo = update.index;
      sent++;
    }
    if (sent > 0) state.resentAt = now;
    this.stats.repairsSent += sent;
  }

  /** A member lags and said nothing new for a while: it is told our last index (it says what it lacks). */
  #probeLagging(state: MemberState, now: number): void {
    state.probedAt = now;
    this.stats.announcesSent++;
    this.#host.sendAnnounce(state.member.id, this.#announcement(now));
  }

  #announce(now: number): void {
    this.#lastSentAt = now;
    this.stats.announcesSent++;
    const announcement = this.#announcement(now);
    if (this.#members.size > 0) this.#host.multicastAnnounce(announcement);
  }

  /** This term and our last index, with the lease probe to send now. */
  #announcement(now: number): Announce {
    return { epoch: this.#epoch, coordinator: this.#host.local.id, index: this.#host.replica.position.index, leaseProbe: this.#probeFor(now) };
  }

  /** The lease probe to send now: a new one every eighth of the lease (its send time is what an echo proves). */
  #probeFor(now: number, fresh = false): number {
    if (fresh || now - this.#probeIssuedAt >= this.#options.leaseMs / 8) {
      this.#probe++;
      this.#probeIssuedAt = now;
      this.#probes.set(this.#probe, now);
      if (this.#probes.size > PROBES_KEPT) this.#probes.delete(this.#probes.keys().next().value!);
    }
    return this.#probe;
  }

  #await(index: number, requestId: number): void {
    if (!this.#awaiting.some((w) => w.requestId === requestId)) this.#awaiting.push({ index, requestId });
  }

  #respondOk(requester: MemberInstance, record: AppliedRecord): void {
    this.#host.respond(requester, { requestId: record.requestId, outcome: "OK", message: "", epoch: this.#epoch, index: record.index, previous: record.previous, token: record.token });
  }

  #respond(requester: MemberInstance, request: StateRequest, outcome: StateOutcome, message: string): void {
    this.#respondTo(requester, request.requestId, outcome, message);
  }

  #respondTo(requester: MemberInstance, requestId: number, outcome: StateOutcome, message: string): void {
    if (requestId === 0) return;
    if (outcome !== "OK") {
      this.#refused.set(this.#requestKey(requester, requestId), { outcome, message });
      if (this.#refused.size > REFUSALS_KEPT) this.#refused.delete(this.#refused.keys().next().value!);
    }
    this.#host.respond(requester, { requestId, outcome, message, epoch: this.#epoch, index: 0, previous: [], token: 0 });
  }
}

/** At most what a lock, unlock or lease renewal of `key` adds to an update (the request with its change). */
function lockRequestBytes(key: string): number {
  return REQUEST_OVERHEAD_BYTES + changeBytes({ kind: "lock", lock: { key, holder: { id: "", incarnation: 0 }, token: 0, leaseMs: 0, releaseOnExit: false } });
}

/** At most what a change takes in an update. */
function changeBytes(change: Change): number {
  switch (change.kind) {
    case "put":
      return putBytes(change.entry.key, change.entry.value.length);
    case "lock":
      return removeBytes(change.lock.key) + 48;
    case "clear":
      return 4;
    default:
      return removeBytes(change.key);
  }
}
