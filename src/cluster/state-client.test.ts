import { describe, expect, it } from "vitest";
import { StateClient } from "./state-client.ts";
import type { MemberInstance, StateRequest, StateResponse, Term } from "./state-types.ts";

const ME = { id: "0a".repeat(16), incarnation: 1 };
const M = { id: "0b".repeat(16), incarnation: 1 };
const R = { id: "0c".repeat(16), incarnation: 1 };
const S = { id: "0d".repeat(16), incarnation: 1 };

class Bed {
  coordinator: MemberInstance | undefined = M;
  term: Term = { epoch: 3, coordinator: M.id, members: [ME, M, R], prior: [] };
  readonly sent: Array<[string, StateRequest]> = [];
  readonly client = new StateClient(
    { local: ME, coordinator: () => this.coordinator, term: () => this.term, sendRequest: (to, request) => this.sent.push([to, request]) },
    20,
  );
  readonly answers = new Map<number, StateResponse>();
  taking = true;

  open(op: StateRequest["op"], now = 0): number {
    const id = this.client.open(
      op,
      {
        answer: (response) => {
          this.answers.set(response.requestId, response);
          return this.taking;
        },
      },
      now,
    );
    return id;
  }
}

const ok = (requestId: number, epoch = 3, token = 0): StateResponse => ({ requestId, outcome: "OK", message: "", epoch, index: 7, previous: [], token });
const put = { case: "put", put: { key: "k", value: new Uint8Array(), format: 0, ttlMs: 0, removeOnExit: false, ifVersion: undefined, fencingToken: 0 } } as const;

describe("StateClient", () => {
  it("sends to the coordinator, again (same id) while unanswered, backing off, and to a new one at once", () => {
    const bed = new Bed();
    const id = bed.open(put);
    expect(bed.sent).toEqual([[M.id, { requestId: id, op: put }]]);
    expect(bed.client.pollTimeout()).toBe(100);
    bed.client.handleTimeout(100);
    expect(bed.client.pollTimeout()).toBe(300);
    bed.coordinator = R;
    bed.client.onView(150);
    expect(bed.sent.map(([to, r]) => [to, r.requestId])).toEqual([
      [M.id, id],
      [M.id, id],
      [R.id, id],
    ]);
    expect(bed.client.stats.requestsRetried).toBe(2);
  });

  it("takes an answer from the member it asked; NOT_COORDINATOR means ask again shortly; an older term's success is not taken", () => {
    const bed = new Bed();
    const id = bed.open(put);
    bed.client.onResponse(R.id, ok(id), 3, 0);
    expect(bed.answers.size).toBe(0);
    bed.client.onResponse(M.id, { ...ok(id), outcome: "NOT_COORDINATOR" }, 3, 0);
    expect(bed.client.pollTimeout()).toBe(20);
    bed.client.onResponse(M.id, ok(id, 2), 3, 10);
    expect(bed.answers.size).toBe(0);
    expect(bed.client.stats.staleRefused).toBe(1);
    bed.client.onResponse(M.id, ok(id), 3, 20);
    expect(bed.answers.get(id)?.outcome).toBe("OK");
    expect(bed.client.pending).toBe(0);
  });

  it("finishes a write it applied once every other member of the coordinator's term noticed it — the term's count, not its own view's", () => {
    const bed = new Bed();
    const id = bed.open(put);
    const record = { requester: ME, requestId: id, index: 7, previous: [], token: 0 };
    bed.client.onApplied(record, 3, 0);
    expect(bed.answers.size).toBe(0);
    // S is not in the term: its notice does not count.
    bed.client.onNotice(S.id, { epoch: 3, coordinator: M.id, index: 9 }, 0);
    expect(bed.answers.size).toBe(0);
    bed.client.onNotice(R.id, { epoch: 3, coordinator: M.id, index: 9 }, 0);
    expect(bed.answers.get(id)).toMatchObject({ outcome: "OK", index: 7 });
    // In a term of two (this member and the coordinator), applying it here is enough.
    bed.term = { epoch: 4, coordinator: M.id, members: [ME, M], prior: [] };
    bed.client.onTerm(0);
    const lock = bed.open({ case: "lock", key: "l", leaseMs: 0, waitMs: 0, releaseOnExit: true });
    bed.client.onApplied({ requester: ME, requestId: lock, index: 8, previous: [], token: 4 }, 4, 0);
    expect(bed.answers.get(lock)).toMatchObject({ outcome: "OK", token: 4 });
  });

  it("sends its requests again when a new term starts, though the coordinator stays the same (one handed to its own coordinator would never go again)", () => {
    const bed = new Bed();
    bed.coordinator = ME;
    bed.term = { epoch: 3, coordinator: ME.id, members: [ME, M, R], prior: [] };
    const id = bed.open(put, 0);
    expect(bed.sent).toEqual([[ME.id, { requestId: id, op: put }]]);
    // Handed over here: nothing is lost on the way, so nothing is sent again…
    expect(bed.client.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
    // …until the term it was waiting in ends (R left): the coordinator's new term answers it afresh.
    bed.term = { epoch: 4, coordinator: ME.id, members: [ME, M], prior: [] };
    bed.client.onTerm(50);
    expect(bed.client.pollTimeout()).toBe(50);
    bed.client.handleTimeout(50);
    expect(bed.sent.at(-1)).toEqual([ME.id, { requestId: id, op: put }]);
    expect(bed.client.stats.requestsRetried).toBe(1);
    // One sent to a remote coordinator goes again at once too, rather than at its next resend (160).
    const other = new Bed();
    const remote = other.open(put, 60);
    other.client.onTerm(70);
    expect(other.client.pollTimeout()).toBe(70);
    other.client.handleTimeout(70);
    expect(other.sent).toEqual([
      [M.id, { requestId: remote, op: put }],
      [M.id, { requestId: remote, op: put }],
    ]);
  });

  it("withdraws a lock request given up on, until a coordinator confirms it; and a grant nobody takes any more", () => {
    const bed = new Bed();
    const lock = bed.open({ case: "lock", key: "l", leaseMs: 0, waitMs: 1_000, releaseOnExit: true });
    bed.client.abandon(lock, 5);
    const cancel = bed.sent.at(-1)![1];
    expect(cancel.op).toEqual({ case: "cancel", key: "l", lockRequestId: lock });
    expect(bed.client.pending).toBe(0);
    bed.client.handleTimeout(bed.client.pollTimeout());
    expect(bed.sent.at(-1)![1].requestId).toBe(cancel.requestId);
    bed.client.onResponse(M.id, ok(cancel.requestId), 3, 200);
    expect(bed.client.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
    // Granted, but its caller gave up in the same moment: withdrawn at once.
    bed.taking = false;
    const late = bed.open({ case: "lock", key: "m", leaseMs: 0, waitMs: 1_000, releaseOnExit: true });
    bed.client.onResponse(M.id, ok(late, 3, 12), 3, 300);
    expect(bed.sent.at(-1)![1].op).toEqual({ case: "cancel", key: "m", lockRequestId: late });
  });

  it("withdraws a lock request refused after it went out twice (the copy on its way would be granted to nobody); not one sent once", () => {
    const bed = new Bed();
    const locked = (requestId: number): StateResponse => ({ requestId, outcome: "LOCKED", message: "still locked", epoch: 3, index: 0, previous: [], token: 0 });
    const once = bed.open({ case: "lock", key: "l", leaseMs: 0, waitMs: 50, releaseOnExit: true });
    bed.client.onResponse(M.id, locked(once), 3, 60);
    expect(bed.answers.get(once)?.outcome).toBe("LOCKED");
    expect(bed.sent.map(([, request]) => request.op.case)).toEqual(["lock"]);
    const twice = bed.open({ case: "lock", key: "l", leaseMs: 0, waitMs: 500, releaseOnExit: true }, 100);
    bed.client.handleTimeout(200);
    expect(bed.sent.filter(([, request]) => request.requestId === twice)).toHaveLength(2);
    bed.client.onResponse(M.id, locked(twice), 3, 600);
    expect(bed.answers.get(twice)?.outcome).toBe("LOCKED");
    expect(bed.sent.at(-1)![1].op).toEqual({ case: "cancel", key: "l", lockRequestId: twice });
  });

  it("waits longer before sending a write again when answers take longer; never less than 100 ms", () => {
    const bed = new Bed();
    const first = bed.open(put, 0);
    bed.client.onResponse(M.id, ok(first), 3, 10);
    const quick = bed.open(put, 100);
    expect(bed.client.pollTimeout()).toBe(200);
    bed.client.onResponse(M.id, ok(quick), 3, 110);
    for (let i = 0; i < 8; i++) {
      const slow = bed.open(put, 1_000 * (i + 1));
      bed.client.onResponse(M.id, ok(slow), 3, 1_000 * (i + 1) + 400);
    }
    const later = bed.open(put, 10_000);
    expect(bed.client.pollTimeout()).toBeGreaterThan(10_400);
    expect(bed.client.pollTimeout()).toBeLessThanOrEqual(11_000);
    bed.client.onResponse(M.id, ok(later), 3, 10_010);
  });

  it("does not send a write again while the coordinator takes the ones sent before it; sends one overtaken by a later one", () => {
    const bed = new Bed();
    const ids = [bed.open(put, 0), bed.open(put, 0), bed.open(put, 0)];
    // The first is answered just before its wait ends: the others wait their turn.
    bed.client.onResponse(M.id, ok(ids[0]!), 3, 95);
    bed.client.handleTimeout(100);
    expect(bed.sent).toHaveLength(3);
    // Nothing more taken for a while: they go again.
    bed.client.handleTimeout(bed.client.pollTimeout());
    expect(bed.sent.map(([, r]) => r.requestId)).toEqual([...ids, ids[1], ids[2]]);
    // A later write is taken while the one before it is not: that one was lost, and goes again when its
    // wait is over, though the coordinator takes writes.
    const other = new Bed();
    const lost = other.open(put, 0);
    const taken = other.open(put, 0);
    other.client.onResponse(M.id, ok(taken), 3, 95);
    other.client.handleTimeout(100);
    expect(other.sent.filter(([, r]) => r.requestId === lost)).toHaveLength(2);
  });

  it("keeps a request that many later ones came and went past, and sends its requests again in the order they were opened", () => {
    const bed = new Bed();
    const lock = bed.open({ case: "lock", key: "l", leaseMs: 0, waitMs: 60_000, releaseOnExit: true });
    const waiting: number[] = [];
    for (let i = 0; i < 5_000; i++) {
      const id = bed.open(put);
      if (i % 1_000 === 999) waiting.push(id);
      else bed.client.onResponse(M.id, ok(id), 3, 0);
    }
    expect(bed.client.pending).toBe(1 + waiting.length);
    bed.sent.length = 0;
    bed.coordinator = R;
    bed.client.onView(10);
    expect(bed.sent.map(([, request]) => request.requestId)).toEqual([lock, ...waiting]);
    bed.client.onResponse(R.id, ok(lock, 3, 9), 3, 20);
    expect(bed.answers.get(lock)).toMatchObject({ outcome: "OK", token: 9 });
    for (const id of waiting) bed.client.onResponse(R.id, ok(id), 3, 20);
    expect(bed.client.pending).toBe(0);
    expect(bed.client.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
  });
});
