import { describe, expect, it } from "vitest";
import { Replica } from "./replica.ts";
import { Sequencer, type SequencerHost, TOKEN_BLOCK } from "./sequencer.ts";
import type { MemberInstance, ReplicaChange, StateAck, StateOp, StateResponse, Update } from "./state-types.ts";
import { encodeUpdate } from "./state-wire.ts";
import { VisibleState } from "./visible-state.ts";

const M = { id: "0a".repeat(16), incarnation: 1 };
const B = { id: "0b".repeat(16), incarnation: 1 };
const C = { id: "0c".repeat(16), incarnation: 1 };
const LEASE = 1_000;

class Bed {
  readonly replica = new Replica(64);
  readonly visible = new VisibleState(this.replica);
  readonly multicast: Update[] = [];
  readonly unicast: Array<[string, Update]> = [];
  readonly probes: Array<[string, number]> = [];
  readonly responses: Array<[MemberInstance, StateResponse]> = [];
  readonly shown: ReplicaChange[] = [];
  readonly resyncs: string[] = [];
  readonly sequencer: Sequencer;
  now = 0;
  #id = 1;

  constructor(members: MemberInstance[] = [M, B, C], ceiling = TOKEN_BLOCK + 1, maxUpdateBytes = 60_000) {
    const host: SequencerHost = {
      local: M,
      replica: this.replica,
      visible: this.visible,
      multicastUpdate: (update) => this.multicast.push(update),
      multicastAnnounce: () => undefined,
      sendAnnounce: (peer, announce) => this.probes.push([peer, announce.index]),
      sendUpdate: (peer, update) => this.unicast.push([peer, update]),
      respond: (requester, response) => this.responses.push([requester, response]),
      shown: (changes) => this.shown.push(...changes),
      resync: (member) => this.resyncs.push(member.id),
      ceilingRaised: () => undefined,
      wake: () => undefined,
    };
    this.sequencer = new Sequencer(host, { leaseMs: LEASE, maxUpdateBytes }, { epoch: 2, members, tokenCeiling: ceiling }, 0, 0);
    this.replica.synced(2, M.id, 0, ceiling);
  }

  /** Every member accepted the term, and echoes the first lease probe. */
  start(): void {
    for (const peer of [B, C]) {
      this.sequencer.accepted(peer.id, 0, this.now);
      this.ack(peer, 0);
    }
  }

  ack(peer: MemberInstance, index: number, highestSeen = index, leaseProbe = 1): void {
    const ack: StateAck = {
      position: { epoch: 2, coordinator: M.id, index },
      view: undefined,
      tokenCeiling: 0,
      accepted: { epoch: 2, coordinator: M.id, members: [], prior: [] },
      acceptedBegun: true,
      promised: { epoch: 2, coordinator: M.id },
      memorySince: 0,
      ready: true,
      highestSeen,
      leaseProbe,
      snapshotTransfer: 0,
      snapshotChunks: 0,
    };
    this.sequencer.onAck(peer.id, ack, this.now);
  }

  request(requester: MemberInstance, op: StateOp): number {
    const requestId = this.#id++;
    this.sequencer.onRequest(requester, { requestId, op }, this.now);
    return requestId;
  }

  put(requester: MemberInstance, key: string, extra: Partial<{ ifVersion: number; fencingToken: number }> = {}): number {
    return this.request(requester, { case: "put", put: { key, value: new Uint8Array([1]), format: 0, ttlMs: 0, removeOnExit: false, ifVersion: extra.ifVersion, fencingToken: extra.fencingToken ?? 0 } });
  }

  lock(requester: MemberInstance, key: string, waitMs = 1_000): number {
    return this.request(requester, { case: "lock", key, leaseMs: 0, waitMs, releaseOnExit: true });
  }

  response(requestId: number): StateResponse | undefined {
    return this.responses.find(([, r]) => r.requestId === requestId)?.[1];
  }
}

describe("Sequencer", () => {
  it("refuses a copy of a refused request again, even once what refused it is gone (a duplicated datagram)", () => {
    const bed = new Bed();
    bed.start();
    const held = bed.lock(C, "k", 0);
    bed.sequencer.flush(bed.now);
    const token = bed.response(held)?.token ?? bed.replica.locks.get("k")!.token;
    // B's tryLock and put while C holds the lock: both refused.
    const tryLock = { requestId: 100, op: { case: "lock", key: "k", leaseMs: 0, waitMs: 0, releaseOnExit: true } } as const;
    const put = { requestId: 101, op: { case: "put", put: { key: "k", value: new Uint8Array([2]), format: 0, ttlMs: 0, removeOnExit: false, ifVersion: undefined, fencingToken: 0 } } } as const;
    bed.sequencer.onRequest(B, tryLock, bed.now);
    bed.sequencer.onRequest(B, put, bed.now);
    expect(bed.responses.filter(([, r]) => r.requestId >= 100).map(([, r]) => r.outcome)).toEqual(["LOCKED", "LOCKED"]);
    // C releases; then the network delivers the copies of B's requests.
    bed.request(C, { case: "unlock", key: "k", fencingToken: token });
    bed.sequencer.flush(bed.now);
    expect(bed.replica.locks.has("k")).toBe(false);
    bed.sequencer.onRequest(B, tryLock, bed.now);
    bed.sequencer.onRequest(B, put, bed.now);
    bed.sequencer.flush(bed.now);
    expect(bed.replica.locks.has("k")).toBe(false);
    expect(bed.replica.appliedRequest(B, 101)).toBeUndefined();
    expect(bed.responses.filter(([, r]) => r.requestId >= 100).map(([, r]) => r.outcome)).toEqual(["LOCKED", "LOCKED", "LOCKED", "LOCKED"]);
    expect(bed.sequencer.stats.requestsDeduplicated).toBe(2);
  });

  it("waits until every member took up the term and a majority echoed its lease probe", () => {
    const bed = new Bed();
    bed.put(B, "x");
    bed.sequencer.flush(bed.now);
    expect(bed.multicast).toHaveLength(0);
    bed.sequencer.accepted(B.id, 0, 0);
    bed.sequencer.accepted(C.id, 0, 0);
    expect(bed.sequencer.serving(0)).toBe(false);
    bed.ack(B, 0);
    expect(bed.sequencer.serving(0)).toBe(true);
    bed.sequencer.flush(0);
    expect(bed.multicast.map((u) => u.index)).toEqual([1]);
  });

  it("orders a turn's requests on different keys into one update; a key twice starts the next", () => {
    const bed = new Bed();
    bed.start();
    bed.put(B, "a");
    bed.put(C, "b");
    bed.put(B, "c");
    bed.put(C, "a");
    bed.sequencer.flush(0);
    expect(bed.multicast.map((u) => [u.index, u.requests.length])).toEqual([
      [1, 3],
      [2, 1],
    ]);
    // Versions are the indexes: compare-and-set against them.
    const stale = bed.put(B, "a", { ifVersion: 1 });
    bed.sequencer.flush(0);
    expect(bed.response(stale)).toMatchObject({ outcome: "VERSION_MISMATCH" });
  });

  it("orders a request sent again while its batch is open once, whatever the order its requester's ids come in", () => {
    const bed = new Bed();
    bed.start();
    const put = (requester: MemberInstance, requestId: number, key: string) =>
      bed.sequencer.onRequest(requester, { requestId, op: { case: "put", put: { key, value: new Uint8Array([1]), format: 0, ttlMs: 0, removeOnExit: false, ifVersion: undefined, fencingToken: 0 } } }, bed.now);
    for (const [requestId, key] of [[10, "a"], [11, "b"], [12, "c"], [5, "d"], [20, "e"], [11, "b"], [5, "d"], [12, "c"], [20, "e"]] as const) put(B, requestId, key);
    put(C, 11, "f");
    bed.sequencer.flush(0);
    expect(bed.multicast.map((u) => u.requests.map((r) => r.requestId))).toEqual([[10, 11, 12, 5, 20, 11]]);
    // The next batch knows none of them as its own: a new id of B's, and an id of the batch before, are ordered anew.
    put(B, 13, "a");
    put(C, 12, "b");
    bed.sequencer.flush(0);
    expect(bed.multicast.map((u) => u.requests.map((r) => r.requestId))).toEqual([[10, 11, 12, 5, 20, 11], [13, 12]]);
  });

  it("commits once every member has an update: the application sees it then, and its own request is answered", () => {
    const bed = new Bed();
    bed.start();
    const own = bed.put(M, "x");
    bed.sequencer.flush(0);
    expect(bed.visible.getEntry("x")).toBeUndefined();
    bed.ack(B, 1);
    expect(bed.shown).toEqual([]);
    expect(bed.response(own)).toBeUndefined();
    bed.ack(C, 1);
    expect(bed.shown.map((c) => c.kind)).toEqual(["insert"]);
    expect(bed.response(own)).toMatchObject({ outcome: "OK", index: 1 });
    // Sent again (its answer lost): answered from the record, not applied twice.
    bed.sequencer.onRequest(M, { requestId: own, op: { case: "put", put: { key: "x", value: new Uint8Array([2]), format: 0, ttlMs: 0, removeOnExit: false, ifVersion: undefined, fencingToken: 0 } } }, 0);
    bed.sequencer.flush(0);
    expect(bed.multicast).toHaveLength(1);
    expect(bed.sequencer.stats.requestsDeduplicated).toBe(1);
  });

  it("sends a member what it says it lacks, and what it has not acknowledged for a while (once a probe found it lacks it)", () => {
    const bed = new Bed();
    bed.start();
    for (const key of ["a", "b", "c"]) {
      bed.put(B, key);
      bed.sequencer.flush(0);
    }
    bed.ack(B, 1, 3);
    expect(bed.unicast.map(([peer, u]) => [peer, u.index])).toEqual([
      [B.id, 2],
      [B.id, 3],
    ]);
    bed.now = bed.sequencer.pollTimeout();
    bed.sequencer.handleTimeout(bed.now);
    // C said nothing new for a while: told the last index, it says it lacks what comes before.
    expect(bed.probes.filter(([peer]) => peer === C.id)).toEqual([[C.id, 3]]);
    bed.ack(C, 0, 3);
    expect(bed.unicast.filter(([peer]) => peer === C.id).map(([, u]) => u.index)).toEqual([1, 2, 3]);
    // Not sent again at its next acknowledgement (they may be on their way still), but after a while.
    bed.now += 5;
    bed.ack(C, 0, 3);
    expect(bed.unicast.filter(([peer]) => peer === C.id)).toHaveLength(3);
    bed.now += 20;
    bed.ack(C, 0, 3);
    expect(bed.unicast.filter(([peer]) => peer === C.id).map(([, u]) => u.index)).toEqual([1, 2, 3, 1, 2, 3]);
  });

  it("stops serving when no majority heard from it within the lease", () => {
    const bed = new Bed();
    bed.start();
    expect(bed.sequencer.serving(LEASE - 1)).toBe(true);
    expect(bed.sequencer.serving(LEASE + 1)).toBe(false);
    bed.now = LEASE + 1;
    const late = bed.put(B, "x");
    bed.sequencer.flush(LEASE + 1);
    expect(bed.multicast).toHaveLength(0);
    expect(bed.response(late)).toBeUndefined();
    // Heard again (an echo of a later probe): it serves what waited.
    bed.sequencer.handleTimeout(bed.now);
    bed.ack(B, 0, 0, 2);
    bed.sequencer.flush(bed.now);
    expect(bed.multicast.map((u) => u.index)).toEqual([1]);
  });

  it("grants locks first come first served; a waiter that waited too long is told LOCKED", () => {
    const bed = new Bed();
    bed.start();
    const first = bed.lock(B, "l");
    bed.lock(C, "l", 50);
    bed.sequencer.flush(0);
    expect(bed.replica.locks.get("l")?.holder).toEqual(B);
    const token = bed.replica.locks.get("l")!.token;
    bed.now = 60;
    bed.sequencer.handleTimeout(60);
    expect(bed.responses.at(-1)?.[1]).toMatchObject({ outcome: "LOCKED" });
    const again = bed.lock(C, "l", 1_000);
    bed.request(B, { case: "unlock", key: "l", fencingToken: token });
    bed.sequencer.flush(60);
    expect(bed.replica.locks.get("l")).toMatchObject({ holder: C, token: token + 1 });
    expect(first).toBeLessThan(again);
  });

  it("withdraws a lock request: queued, granted, or not seen yet (it is then never granted)", () => {
    const bed = new Bed();
    bed.start();
    bed.lock(B, "l");
    bed.sequencer.flush(0);
    const queued = bed.lock(C, "l");
    bed.request(C, { case: "cancel", key: "l", lockRequestId: queued });
    // Not seen yet: recorded as applied without a grant.
    bed.request(C, { case: "cancel", key: "m", lockRequestId: 999 });
    bed.sequencer.flush(0);
    expect(bed.replica.appliedRequest(C, queued)?.token).toBe(0);
    bed.sequencer.onRequest(C, { requestId: 999, op: { case: "lock", key: "m", leaseMs: 0, waitMs: 0, releaseOnExit: true } }, 0);
    bed.sequencer.flush(0);
    expect(bed.replica.locks.has("m")).toBe(false);
    // Granted meanwhile: released.
    const granted = bed.lock(C, "n");
    bed.sequencer.flush(0);
    expect(bed.replica.locks.get("n")?.holder).toEqual(C);
    bed.request(C, { case: "cancel", key: "n", lockRequestId: granted });
    bed.sequencer.flush(0);
    expect(bed.replica.locks.has("n")).toBe(false);
  });

  it("grants fencing tokens only below a ceiling every member acknowledged, raising it ahead", () => {
    const bed = new Bed([M, B, C], 3);
    bed.start();
    bed.lock(B, "a");
    bed.lock(B, "b");
    bed.lock(B, "c");
    bed.sequencer.flush(0);
    // Tokens 1 and 2 are below the ceiling; the third waits for the raised one to be acknowledged.
    expect([...bed.replica.locks.values()].map((l) => l.token).sort()).toEqual([1, 2]);
    const raise = bed.multicast.find((u) => u.tokenCeiling > 0)!;
    expect(raise.tokenCeiling).toBe(3 + TOKEN_BLOCK);
    bed.ack(B, raise.index);
    bed.sequencer.flush(0);
    expect(bed.replica.locks.has("c")).toBe(false);
    bed.ack(C, raise.index);
    bed.sequencer.flush(0);
    expect(bed.replica.locks.get("c")?.token).toBe(3);
  });

  it("refuses a write whose update would not fit in a datagram", () => {
    const bed = new Bed();
    bed.start();
    const big = bed.request(B, {
      case: "batch",
      puts: Array.from({ length: 2_000 }, (_, i) => ({ key: `k${i}`, value: new Uint8Array(30), format: 0, ttlMs: 0, removeOnExit: false, ifVersion: undefined, fencingToken: 0 })),
      removes: [],
    });
    expect(bed.response(big)).toMatchObject({ outcome: "TOO_LARGE" });
  });

  it("keeps every update within the largest a datagram carries, however many requests a turn brings", () => {
    // Incarnations and request ids as large as they come (8-byte varints): the most a request takes.
    const big = (member: MemberInstance) => ({ id: member.id, incarnation: 2 ** 52 });
    const [b, c] = [big(B), big(C)];
    const maxUpdateBytes = 4_000;
    const bed = new Bed([M, b, c], TOKEN_BLOCK + 1, maxUpdateBytes);
    bed.sequencer.accepted(b.id, 0, 0);
    bed.sequencer.accepted(c.id, 0, 0);
    for (const peer of [b, c]) bed.ack(peer, 0);
    const ids: number[] = [];
    for (let i = 0; i < 1_500; i++) {
      const requester = i % 2 === 0 ? b : c;
      const requestId = 2 ** 52 - i;
      const op: StateOp =
        i % 5 === 4
          ? { case: "lock", key: `lock-${i}`, leaseMs: 0, waitMs: 0, releaseOnExit: true }
          : { case: "put", put: { key: `key-${i}`.repeat(1 + (i % 7)), value: new Uint8Array(i % 97), format: 0, ttlMs: 1_000, removeOnExit: true, ifVersion: undefined, fencingToken: 0 } };
      bed.sequencer.onRequest(requester, { requestId, op }, bed.now);
      ids.push(requestId);
    }
    bed.sequencer.flush(bed.now);
    expect(bed.responses.filter(([, r]) => r.outcome !== "OK")).toEqual([]);
    expect(bed.multicast.flatMap((u) => u.requests.map((r) => r.requestId)).filter((id) => id !== 0).sort((x, y) => y - x)).toEqual(ids);
    expect(bed.multicast.length).toBeGreaterThan(10);
    for (const update of bed.multicast) expect(encodeUpdate("g", update, 2 ** 52, true).length).toBeLessThanOrEqual(maxUpdateBytes);
  });
});
