import { describe, expect, it } from "vitest";
import { Replica } from "./replica.ts";
import type { OrderedRequest, StoredEntry, Update } from "./state-types.ts";

const A = { id: "0a".repeat(16), incarnation: 1 };
const B = { id: "0b".repeat(16), incarnation: 1 };
const entry = (key: string, version: number) => ({ key, value: new Uint8Array([version]), format: 0, version, owner: A, removeOnExit: false, ttlMs: 0 });
const stored = (key: string, version: number): StoredEntry => ({ ...entry(key, version), expiresAt: undefined });
const snapshot = (...entries: StoredEntry[]) => new Map(entries.map((e) => [e.key, e]));
const update = (index: number, requests: OrderedRequest[], extra: Partial<Update> = {}): Update => ({ epoch: 1, index, coordinator: B.id, requests, tokenCeiling: 0, forget: [], ...extra });

describe("Replica", () => {
  it("records each request of a batch, with what it replaced only for single-key writes", () => {
    const replica = new Replica(16);
    replica.apply(update(1, [{ requestId: 1, requester: A, changes: [{ kind: "put", entry: entry("x", 1), inserted: true }] }]), 0);
    const { records, changes } = replica.apply(
      update(2, [
        { requestId: 2, requester: A, changes: [{ kind: "put", entry: entry("x", 2), inserted: false }] },
        { requestId: 3, requester: B, changes: [{ kind: "put", entry: entry("y", 2), inserted: true }, { kind: "put", entry: entry("z", 2), inserted: true }] },
        { requestId: 4, requester: B, changes: [{ kind: "lock", lock: { key: "l", holder: B, token: 9, leaseMs: 0, releaseOnExit: true } }] },
      ]),
      0,
    );
    expect(changes.map((c) => c.kind)).toEqual(["update", "insert", "insert", "lock"]);
    expect(records.map((r) => [r.requestId, r.previous.length, r.token])).toEqual([
      [2, 1, 0],
      [3, 0, 0],
      [4, 0, 9],
    ]);
    expect(replica.appliedRequest(A, 2)?.index).toBe(2);
    expect(replica.nextToken).toBe(10);
  });

  it("forgets the records of members an update names, and keeps the highest token ceiling", () => {
    const replica = new Replica(16);
    replica.apply(update(1, [{ requestId: 1, requester: A, changes: [] }], { tokenCeiling: 1_024 }), 0);
    expect(replica.requesters()).toEqual([A]);
    replica.apply(update(2, [], { forget: [A], tokenCeiling: 100 }), 0);
    expect(replica.appliedRequest(A, 1)).toBeUndefined();
    expect(replica.tokenCeiling).toBe(1_024);
  });

  it("remembers the last 4,096 requests of a requester, in the order they were first applied (one applied again keeps its place)", () => {
    const replica = new Replica(16);
    let index = 0;
    const applyRequest = (requestId: number) => replica.apply(update(++index, [{ requestId, requester: A, changes: [] }]), 0);
    for (let id = 1; id <= 4_096; id++) applyRequest(id);
    // Request 1 again: remembered already, it stays the oldest.
    applyRequest(1);
    expect(replica.appliedRequest(A, 1)?.index).toBe(index);
    applyRequest(4_097);
    expect(replica.appliedRequest(A, 1)).toBeUndefined();
    expect(replica.appliedRequest(A, 2)).toBeDefined();
    for (let id = 4_098; id <= 4_096 * 2 + 10; id++) applyRequest(id);
    expect(replica.appliedRecords().map((r) => r.requestId)).toEqual(Array.from({ length: 4_096 }, (_, i) => 4_096 + 11 + i));
    expect(replica.lastAppliedIndex(A)).toBe(index);
  });

  it("remembers requests whose ids lie far apart as it does ids one after another", () => {
    const replica = new Replica(16);
    let index = 0;
    const applyRequest = (requestId: number) => replica.apply(update(++index, [{ requestId, requester: A, changes: [] }]), 0);
    // Ids a multiple of every table size apart, and some one after another among them.
    const ids = [1, 2 ** 20 + 1, 2 ** 40 + 1, 3, 2 ** 20 + 3, 4, 5, 2 ** 33 + 5];
    for (const id of ids) applyRequest(id);
    for (let id = 6; id <= 4_096; id++) applyRequest(id);
    // The oldest 3 went (1, 2^20 + 1, 2^40 + 1); the rest are found, in the order they were applied.
    expect([1, 2 ** 20 + 1, 2 ** 40 + 1].map((id) => replica.appliedRequest(A, id))).toEqual([undefined, undefined, undefined]);
    for (const id of [3, 2 ** 20 + 3, 4, 5, 2 ** 33 + 5, 6, 4_096]) expect(replica.appliedRequest(A, id)?.requestId).toBe(id);
    expect(replica.appliedRequest(A, 2)).toBeUndefined();
    expect(replica.appliedRecords().map((r) => r.requestId).slice(0, 6)).toEqual([3, 2 ** 20 + 3, 4, 5, 2 ** 33 + 5, 6]);
    expect(replica.appliedRecords()).toHaveLength(4_096);
    // One applied again takes its new record and keeps its place.
    applyRequest(2 ** 20 + 3);
    expect(replica.appliedRequest(A, 2 ** 20 + 3)?.index).toBe(index);
    expect(replica.appliedRecords()[1]!.requestId).toBe(2 ** 20 + 3);
    applyRequest(4_100);
    expect(replica.appliedRequest(A, 3)).toBeUndefined();
    expect(replica.appliedRecords().map((r) => r.requestId).slice(0, 2)).toEqual([2 ** 20 + 3, 4]);
  });

  it("keeps a log of the last updates for replicas behind, and knows the line it follows", () => {
    const replica = new Replica(16);
    for (let i = 1; i <= 20; i++) replica.apply(update(i, []), 0);
    expect(replica.updatesAfter(10)?.map((u) => u.index)).toEqual([11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    expect(replica.updatesAfter(2)).toBeUndefined();
    expect(replica.follows({ epoch: 1, coordinator: B.id, index: 12 })).toBe(true);
    expect(replica.follows({ epoch: 1, coordinator: A.id, index: 12 })).toBe(false);
    // A snapshot replaces all of it; the differences are the changes listeners see.
    const diff = replica.install(snapshot(stored("n", 30)), [], [], 30, 1, 0);
    expect(diff.map((c) => c.kind)).toEqual(["insert"]);
    expect(replica.updatesAfter(30)).toEqual([]);
  });

  it("keeps exactly the last logLimit updates, and after a snapshot only the updates that follow it", () => {
    const replica = new Replica(16);
    for (let i = 1; i <= 40; i++) replica.apply(update(i, []), 0);
    expect(replica.updatesAfter(24)?.map((u) => u.index)).toEqual(Array.from({ length: 16 }, (_, i) => 25 + i));
    expect(replica.updatesAfter(23)).toBeUndefined();
    expect(replica.updatesAfter(38, 1)?.map((u) => u.index)).toEqual([39]);
    replica.install(snapshot(), [], [], 50, 1, 0);
    replica.synced(1, B.id, 50, 0);
    for (let i = 51; i <= 53; i++) replica.apply(update(i, []), 0);
    expect(replica.updatesAfter(50)?.map((u) => u.index)).toEqual([51, 52, 53]);
    expect(replica.updatesAfter(49)).toBeUndefined();
    expect(replica.updatesAfter(35)).toBeUndefined();
  });

  it("installs a snapshot into an empty replica (a joiner) and into one with entries to the same state, with the differences as changes", () => {
    const incoming = () => snapshot(stored("a", 5), stored("b", 6), stored("c", 7));
    const joiner = new Replica(16);
    const joined = joiner.install(incoming(), [], [], 40, 1, 0);
    expect(joined.map((c) => [c.kind, c.kind === "insert" ? c.entry.key : ""])).toEqual([
      ["insert", "a"],
      ["insert", "b"],
      ["insert", "c"],
    ]);
    const behind = new Replica(16);
    behind.apply(update(1, [{ requestId: 1, requester: A, changes: ["a", "x"].map((key) => ({ kind: "put", entry: entry(key, 1), inserted: true })) }]), 0);
    behind.apply(update(2, [{ requestId: 2, requester: A, changes: [{ kind: "put", entry: { ...entry("b", 6) }, inserted: true }] }]), 0);
    const caught = behind.install(incoming(), [], [], 40, 1, 0);
    // x went, a changed, b is as it was, c came.
    expect(caught.map((c) => [c.kind, c.kind === "lock" || c.kind === "unlock" ? c.lock.key : c.entry.key])).toEqual([
      ["remove", "x"],
      ["update", "a"],
      ["insert", "c"],
    ]);
    const state = (replica: Replica) => [...replica.entries.values()].map((e) => [e.key, e.version]).sort();
    expect(state(behind)).toEqual(state(joiner));
    expect(state(joiner)).toEqual([
      ["a", 5],
      ["b", 6],
      ["c", 7],
    ]);
    // Unwatched: the same state, and only the locks' changes.
    const unwatched = new Replica(16);
    unwatched.apply(update(1, [{ requestId: 1, requester: A, changes: [{ kind: "put", entry: entry("x", 1), inserted: true }, { kind: "lock", lock: { key: "x", holder: A, token: 3, leaseMs: 0, releaseOnExit: false } }] }]), 0);
    const quiet = unwatched.install(incoming(), [], [], 40, 1, 0, false);
    expect(quiet.map((c) => c.kind)).toEqual(["unlock"]);
    expect(state(unwatched)).toEqual(state(joiner));
  });
});
