import type { TimedUnit } from "../core/driver.ts";
import type { PeerKey } from "../reliable/protocol.ts";
import {
  type AppliedRecord,
  type MemberInstance,
  memberOf,
  noticesNeeded,
  type Position,
  type StateOp,
  type StateRequest,
  type StateResponse,
  type Term,
} from "./state-types.ts";

/**
 * First wait for an answer before a request is sent again — at least this, or longer when answers take
 * longer (see #resendFirstMs) — it doubles up to the most.
 */
const RESEND_FIRST_MS = 100;
const RESEND_MOST_MS = 1_000;
const WRITES: ReadonlySet<StateOp["case"]> = new Set(["put", "remove", "batch", "clear"]);

/** What the client needs from the member it runs in. */
export interface ClientHost {
  readonly local: MemberInstance;
  /** The coordinator of the current view (undefined: none yet). */
  coordinator(): MemberInstance | undefined;
  /** The term this replica accepted last: whose notices count, and how many are needed. */
  term(): Term;
  /** Sends a request to the coordinator (to this member itself: handed over locally). */
  sendRequest(to: PeerKey, request: StateRequest, now: number): void;
}

/**
 * Whoever waits for a request's answer. An object with a method, not a function: the caller's own record
 * of its call takes the answer, with no closure made for every request.
 */
export interface Waiter {
  /** Hands over the request's answer; false when nobody waits for it any more (it gave up meanwhile). */
  answer(response: StateResponse): boolean;
}

export interface ClientStats {
  requestsSent: number;
  requestsRetried: number;
  cancelsSent: number;
  staleRefused: number;
}

interface Outstanding {
  readonly request: StateRequest;
  /** Whoever waits for it; undefined for a withdrawal of a lock request given up on (sent until confirmed). */
  readonly waiter: Waiter | undefined;
  sentTo: PeerKey | undefined;
  /**
   * It went to more than one coordinator: one of them may have applied it even if another refuses it.
   * (A flag, not the set of them: most requests go to one, and a set each cost a write its allocation.)
   */
  sentToMany: boolean;
  /** Times it went out (to a remote coordinator): a copy sent earlier may still be on its way. */
  sends: number;
  /** When it first went out to a remote coordinator. */
  sentAt: number;
  /** The places of its first and latest sends among this client's sends (to a remote coordinator). */
  firstSeq: number;
  sendSeq: number;
  resendAt: number;
  resendMs: number;
  /**
   * Our own request, applied here (this record, from the coordinator of term `appliedEpoch`): done once
   * `noticesNeeded` members noticed it too. Fields of their own, not an object made for every write.
   */
  applied: AppliedRecord | undefined;
  appliedEpoch: number;
  noticesNeeded: number;
}

/**
 * The requests this member makes of the coordinator: sent to the current view's coordinator, sent again
 * (same id: applied at most once) until answered, and sent to a new coordinator when the view names
 * one. A write or lock operation of ours is done when the coordinator answers, or sooner: when this
 * replica applied it from the coordinator's update and enough members of the coordinator's term
 * noticed it too — how many is the term's, not this member's view's. A lock request given up on (its
 * caller timed out or aborted) is withdrawn by a cancel, sent until a coordinator confirms it, which
 * also releases the lock if it was granted meanwhile. Holds no promise: the map API does.
 */
export class StateClient implements TimedUnit {
  readonly stats: ClientStats = { requestsSent: 0, requestsRetried: 0, cancelsSent: 0, staleRefused: 0 };
  readonly #host: ClientHost;
  readonly #retryDelayMs: number;
  readonly #outstanding = new OutstandingRequests();
  /** The last update each member told us it applied (notices of our requests), in the accepted term. */
  readonly #noticed = new Map<PeerKey, Position>();
  #nextId = 1;
  /** How long answers to writes take (smoothed, and its variation), from their first send; undefined: none yet. */
  #answerMs: number | undefined;
  #answerVarianceMs = 0;
  #sendSeq = 0;
  /**
   * The latest first send of a write the coordinator took (answered, or applied here), and when that was
   * known: a write whose latest send came before it was overtaken (lost on its way).
   */
  #takenSeq = 0;
  #takenAt = Number.NEGATIVE_INFINITY;

  constructor(host: ClientHost, retryDelayMs: number) {
    this.#host = host;
    this.#retryDelayMs = retryDelayMs;
  }

  get pending(): number {
    let count = 0;
    for (let outstanding = this.#outstanding.first(); outstanding !== undefined; outstanding = this.#outstanding.next(outstanding)) if (outstanding.waiter !== undefined) count++;
    return count;
  }

  /** Opens a request, answered through `waiter` (perhaps before this returns); returns its id. */
  open(op: StateOp, waiter: Waiter, now: number): number {
    this.stats.requestsSent++;
    return this.#send(op, waiter, now);
  }

  /** The caller of request `id` stopped waiting (timeout, abort): a lock request that went out is withdrawn. */
  abandon(id: number, now: number): void {
    const outstanding = this.#outstanding.get(id);
    if (outstanding === undefined || outstanding.waiter === undefined) return;
    this.#outstanding.take(id);
    const op = outstanding.request.op;
    if (op.case === "lock" && outstanding.sentTo !== undefined) this.#withdraw(op.key, id, now);
  }

  /** The view changed: requests go to its coordinator. */
  onView(now: number): void {
    for (let outstanding = this.#outstanding.first(); outstanding !== undefined; outstanding = this.#outstanding.next(outstanding)) this.#dispatch(outstanding.request.requestId, now, true);
  }

  /**
   * A new term was accepted here: notices of the last one no longer count, and every request sent goes
   * again at once (same id: applied at most once). What the coordinator waited on to answer them ended
   * with its term; its new term answers them from its record of applied requests. With the same
   * coordinator nothing else would send them soon — one handed to this member's own coordinator never.
   */
  onTerm(now: number): void {
    this.#noticed.clear();
    for (let outstanding = this.#outstanding.first(); outstanding !== undefined; outstanding = this.#outstanding.next(outstanding)) {
      outstanding.applied = undefined;
      if (outstanding.sentTo !== undefined) outstanding.resendAt = now;
    }
  }

  onResponse(peer: PeerKey, response: StateResponse, acceptedEpoch: number, now: number): void {
    const id = response.requestId;
    const outstanding = this.#outstanding.get(id);
    if (outstanding === undefined) return;
    // A success from a coordinator older than the term we accepted is not taken: the request goes to
    // the current coordinator, which answers it from the record of applied requests.
    if (response.outcome === "OK" && response.epoch < acceptedEpoch) {
      this.stats.staleRefused++;
      this.#dispatch(id, now, true);
      return;
    }
    if (peer !== outstanding.sentTo) return;
    // Not (yet) the coordinator, or it stepped down — or, for a withdrawal, any answer but its
    // confirmation: ask again shortly, wherever the view says.
    if (response.outcome === "NOT_COORDINATOR" || (outstanding.waiter === undefined && response.outcome !== "OK")) {
      outstanding.resendAt = Math.min(outstanding.resendAt, now + this.#retryDelayMs);
      return;
    }
    this.#finish(id, outstanding, response, now);
  }

  /** The coordinator here answered one of our requests (this member coordinates). */
  onLocalResponse(response: StateResponse, now: number): void {
    const outstanding = this.#outstanding.get(response.requestId);
    if (outstanding === undefined) return;
    if (response.outcome === "NOT_COORDINATOR" || (outstanding.waiter === undefined && response.outcome !== "OK")) {
      outstanding.resendAt = now + this.#retryDelayMs;
      return;
    }
    this.#finish(response.requestId, outstanding, response, now);
  }

  /**
   * This replica applied one of our requests, from the coordinator of the term it accepted (`term`):
   * done now if the term needs no other member's notice for it, else once enough have come.
   */
  onApplied(record: AppliedRecord, epoch: number, now: number): void {
    const outstanding = this.#outstanding.get(record.requestId);
    if (outstanding === undefined) return;
    const term = this.#host.term();
    if (term.epoch !== epoch || memberOf(term.members, this.#host.local.id) === undefined) return;
    outstanding.applied = record;
    outstanding.appliedEpoch = epoch;
    outstanding.noticesNeeded = noticesNeeded(term.members.length);
    this.#taken(outstanding, now);
    this.#settle(record.requestId, outstanding, now);
  }

  /** Member `peer` applied the updates of term `position.epoch` up to `position.index` (a notice). */
  onNotice(peer: PeerKey, position: Position, now: number): void {
    const term = this.#host.term();
    if (position.epoch !== term.epoch || peer === term.coordinator || memberOf(term.members, peer) === undefined) return;
    const seen = this.#noticed.get(peer);
    if (seen !== undefined && seen.index >= position.index) return;
    this.#noticed.set(peer, position);
    // In the order of their ids, each request's id its own (one that ends meanwhile is passed by its id).
    for (let outstanding = this.#outstanding.first(); outstanding !== undefined; outstanding = this.#outstanding.next(outstanding)) {
      if (outstanding.applied !== undefined) this.#settle(outstanding.request.requestId, outstanding, now);
    }
  }

  /** Fails nothing (the map API fails its calls): forgets every request. */
  close(): void {
    this.#outstanding.clear();
    this.#noticed.clear();
  }

  pollTimeout(): number {
    let next = Number.POSITIVE_INFINITY;
    for (let outstanding = this.#outstanding.first(); outstanding !== undefined; outstanding = this.#outstanding.next(outstanding)) {
      if (outstanding.resendAt < next) next = outstanding.resendAt;
    }
    return next;
  }

  handleTimeout(now: number): void {
    for (let outstanding = this.#outstanding.first(); outstanding !== undefined; outstanding = this.#outstanding.next(outstanding)) {
      if (outstanding.resendAt > now) continue;
      const id = outstanding.request.requestId;
      // A write waits its turn at a coordinator that takes our writes, while none sent after it was taken —
      // or it was taken, and applied here, and waits for other members' notices: sent again, it would
      // only load the coordinator further. One overtaken by a later write was lost on its way.
      const waiting = outstanding.sends > 0 && WRITES.has(outstanding.request.op.case) && (outstanding.applied !== undefined || outstanding.sendSeq > this.#takenSeq);
      if (waiting && now < this.#takenAt + this.#resendFirstMs()) {
        outstanding.resendAt = this.#takenAt + this.#resendFirstMs();
        continue;
      }
      this.#dispatch(id, now, outstanding.sentTo !== undefined);
    }
  }

  /** The coordinator took write `outstanding` (it answered it, or this replica applied it). */
  #taken(outstanding: Outstanding, now: number): void {
    if (outstanding.sends === 0 || !WRITES.has(outstanding.request.op.case)) return;
    this.#takenAt = now;
    // Its first send: the copy taken may be that one, and the writes sent after it are not overtaken.
    if (outstanding.firstSeq > this.#takenSeq) this.#takenSeq = outstanding.firstSeq;
  }

  #settle(id: number, outstanding: Outstanding, now: number): void {
    const record = outstanding.applied!;
    const epoch = outstanding.appliedEpoch;
    const term = this.#host.term();
    let noticed = 0;
    for (const member of term.members) {
      if (member.id === this.#host.local.id || member.id === term.coordinator) continue;
      const seen = this.#noticed.get(member.id);
      if (seen !== undefined && seen.epoch === epoch && seen.index >= record.index) noticed++;
    }
    if (noticed < outstanding.noticesNeeded) return;
    this.#finish(id, outstanding, { requestId: id, outcome: "OK", message: "", epoch, index: record.index, previous: record.previous, token: record.token }, now);
  }

  #finish(id: number, outstanding: Outstanding, response: StateResponse, now: number): void {
    this.#outstanding.take(id);
    this.#taken(outstanding, now);
    // Only writes tell how long answers take (a lock's answer waits for the lock), counted from their
    // first send: a write sent again counts its wait too, which errs on the long side, never the short.
    if (outstanding.sends > 0 && outstanding.sentTo !== this.#host.local.id && WRITES.has(outstanding.request.op.case)) this.#answered(now - outstanding.sentAt);
    if (outstanding.waiter === undefined) return;
    const op = outstanding.request.op;
    const taken = outstanding.waiter.answer(response);
    if (op.case !== "lock") return;
    // A lock granted to a caller that gave up meanwhile is withdrawn (and so released) at once. So is one
    // refused where a grant may live on elsewhere: by a coordinator without a quorum (it did not look),
    // when another coordinator had the request too (it may have granted it, in a history that lives on),
    // or when it went out more than once: a copy still on its way (sent before the refusal came) finds the
    // request no longer waiting there and would be granted, to nobody.
    const granted = response.outcome === "OK" && response.token > 0;
    if (granted ? !taken : response.outcome === "NO_QUORUM" || outstanding.sentToMany || outstanding.sends > 1) this.#withdraw(op.key, id, now);
  }

  #withdraw(key: string, lockRequestId: number, now: number): void {
    this.stats.cancelsSent++;
    this.#send({ case: "cancel", key, lockRequestId }, undefined, now);
  }

  /** A new outstanding request for `op`, sent at once; returns its id. */
  #send(op: StateOp, waiter: Waiter | undefined, now: number): number {
    const id = this.#nextId++;
    this.#outstanding.add({
      request: { requestId: id, op },
      waiter,
      sentTo: undefined,
      sentToMany: false,
      sends: 0,
      sentAt: now,
      firstSeq: 0,
      sendSeq: 0,
      resendAt: now,
      resendMs: this.#resendFirstMs(),
      applied: undefined,
      appliedEpoch: 0,
      noticesNeeded: 0,
    });
    this.#dispatch(id, now, false);
    return id;
  }

  #dispatch(id: number, now: number, retry: boolean): void {
    const outstanding = this.#outstanding.get(id)!;
    const coordinator = this.#host.coordinator();
    if (coordinator === undefined) {
      // Sent when a view names a coordinator.
      outstanding.resendAt = Number.POSITIVE_INFINITY;
      return;
    }
    if (retry) this.stats.requestsRetried++;
    if (outstanding.sentTo !== undefined && outstanding.sentTo !== coordinator.id) outstanding.sentToMany = true;
    outstanding.sentTo = coordinator.id;
    if (coordinator.id === this.#host.local.id) {
      // Handed over here, nothing is lost on the way: the coordinator answers (or refuses) it.
      outstanding.resendAt = Number.POSITIVE_INFINITY;
    } else {
      outstanding.sendSeq = ++this.#sendSeq;
      if (outstanding.sends++ === 0) {
        outstanding.sentAt = now;
        outstanding.firstSeq = outstanding.sendSeq;
      }
      outstanding.resendAt = now + outstanding.resendMs;
      outstanding.resendMs = Math.min(RESEND_MOST_MS, outstanding.resendMs * 2);
    }
    this.#host.sendRequest(coordinator.id, outstanding.request, now);
  }

  /** An answer to a write came `ms` after its first send: how long answers take (RFC 6298's estimator). */
  #answered(ms: number): void {
    if (this.#answerMs === undefined) {
      this.#answerMs = ms;
      this.#answerVarianceMs = ms / 2;
      return;
    }
    this.#answerVarianceMs = 0.75 * this.#answerVarianceMs + 0.25 * Math.abs(this.#answerMs - ms);
    this.#answerMs = 0.875 * this.#answerMs + 0.125 * ms;
  }

  /**
   * The first wait before a request is sent again: longer than answers take now. Many requests in flight
   * wait their turn at a busy coordinator far longer than a round trip; sent again after a fixed wait,
   * they would all go again, and load it further.
   */
  #resendFirstMs(): number {
    if (this.#answerMs === undefined) return RESEND_FIRST_MS;
    return Math.min(RESEND_MOST_MS, Math.max(RESEND_FIRST_MS, this.#answerMs + 4 * this.#answerVarianceMs));
  }
}

/** The ring's size when it is made, and the least it shrinks to. */
const FIRST_SLOTS = 16;

/**
 * A client's outstanding requests by id, walked in the order of their ids (the order they were opened).
 * Ids are handed out one after another and most requests end within a window of the latest ones: a
 * request sits in a ring of slots by its id modulo the ring's size (at least twice the requests in it,
 * at most sixteen times once past its first size), which spans the ids from the oldest request in it to
 * the latest. One left behind by far younger ones (a lock request waiting long while writes come and go)
 * moves out of the ring to a list beside it, older than every request in the ring. A map of them all,
 * with deletions between new ids, would be rebuilt every few hundred requests.
 */
class OutstandingRequests {
  #slots: Array<Outstanding | undefined> = new Array<Outstanding | undefined>(FIRST_SLOTS).fill(undefined);
  /** The ids the ring spans: from the oldest request in it to past the latest (no more than its slots). */
  #first = 0;
  #next = 0;
  #inRing = 0;
  /** Requests moved out of the ring, in the order of their ids, each older than every one in the ring. */
  readonly #behind: Outstanding[] = [];

  get(id: number): Outstanding | undefined {
    if (id >= this.#first) return id < this.#next ? this.#slots[id & (this.#slots.length - 1)] : undefined;
    for (const outstanding of this.#behind) if (outstanding.request.requestId === id) return outstanding;
    return undefined;
  }

  /** The request with the least id (undefined: none): where a walk in id order starts. */
  first(): Outstanding | undefined {
    return this.#after(0);
  }

  /** The request after `outstanding` in id order (undefined: none), whether or not `outstanding` ended meanwhile. */
  next(outstanding: Outstanding): Outstanding | undefined {
    return this.#after(outstanding.request.requestId);
  }

  /** The request with the least id above `id` (undefined: none): a walk in id order that requests may end or open during. */
  #after(id: number): Outstanding | undefined {
    const behind = this.#behind;
    if (behind.length > 0 && behind[behind.length - 1]!.request.requestId > id) {
      // The first of them past `id`, found by halves: a walk through many left behind stays linear.
      let low = 0;
      let high = behind.length - 1;
      while (low < high) {
        const middle = (low + high) >>> 1;
        if (behind[middle]!.request.requestId > id) high = middle;
        else low = middle + 1;
      }
      return behind[low];
    }
    const slots = this.#slots;
    for (let i = Math.max(id + 1, this.#first); i < this.#next; i++) {
      const outstanding = slots[i & (slots.length - 1)];
      if (outstanding !== undefined) return outstanding;
    }
    return undefined;
  }

  /** Adds a request whose id is above every one added before. */
  add(outstanding: Outstanding): void {
    const id = outstanding.request.requestId;
    if (this.#inRing === 0) this.#first = id;
    while (id + 1 - this.#first > this.#slots.length) {
      if (2 * (this.#inRing + 1) > this.#slots.length) this.#resize(2 * this.#slots.length);
      else this.#leaveBehind();
    }
    this.#slots[id & (this.#slots.length - 1)] = outstanding;
    this.#next = id + 1;
    this.#inRing++;
  }

  take(id: number): Outstanding | undefined {
    if (id < this.#first) {
      const at = this.#behind.findIndex((outstanding) => outstanding.request.requestId === id);
      return at < 0 ? undefined : this.#behind.splice(at, 1)[0];
    }
    if (id >= this.#next) return undefined;
    const slot = id & (this.#slots.length - 1);
    const outstanding = this.#slots[slot];
    if (outstanding === undefined) return undefined;
    this.#slots[slot] = undefined;
    this.#inRing--;
    if (id === this.#first) this.#passGaps();
    if (this.#slots.length > FIRST_SLOTS && 16 * this.#inRing < this.#slots.length && 2 * (this.#next - this.#first) <= this.#slots.length) this.#resize(this.#slots.length / 2);
    return outstanding;
  }

  clear(): void {
    this.#slots = new Array<Outstanding | undefined>(FIRST_SLOTS).fill(undefined);
    this.#first = this.#next;
    this.#inRing = 0;
    this.#behind.length = 0;
  }

  /** The oldest request in the ring moves out of it, and the ring spans from the next one. */
  #leaveBehind(): void {
    const slot = this.#first & (this.#slots.length - 1);
    this.#behind.push(this.#slots[slot]!);
    this.#slots[slot] = undefined;
    this.#inRing--;
    this.#passGaps();
  }

  /** The ring spans from its oldest request (or from past its latest, when it holds none). */
  #passGaps(): void {
    const slots = this.#slots;
    while (this.#first < this.#next && slots[this.#first & (slots.length - 1)] === undefined) this.#first++;
  }

  #resize(size: number): void {
    const slots = new Array<Outstanding | undefined>(size).fill(undefined);
    for (let id = this.#first; id < this.#next; id++) slots[id & (size - 1)] = this.#slots[id & (this.#slots.length - 1)];
    this.#slots = slots;
  }
}
