import { describe, expect, it } from "vitest";
import { Replica } from "./replica.ts";
import { ReplicaFollower, type TermMemory } from "./state-follower.ts";
import { NO_PROMISE, NO_TERM, type ReplicaChange, type StateAck, type Update } from "./state-types.ts";
import { VisibleState } from "./visible-state.ts";

const ME = { id: "0a".repeat(16), incarnation: 1 };
const M = { id: "0b".repeat(16), incarnation: 1 };
const R = { id: "0c".repeat(16), incarnation: 1 };
const VIEW = { id: { installer: M.id, counter: 4 }, members: [M, ME, R], coordinator: M };

class Bed {
  readonly replica = new Replica(64);
  readonly visible = new VisibleState(this.replica);
  readonly memory: TermMemory = { accepted: NO_TERM, begun: false, promised: NO_PROMISE, echoed: undefined, probe: 0, since: undefined };
  readonly acks: Array<[string, StateAck]> = [];
  readonly changes: Array<[ReplicaChange, boolean]> = [];
  readonly own: number[] = [];
  accepted = 0;
  /** Someone listens to the map's changes. */
  watched = true;
  readonly follower = new ReplicaFollower({
    local: ME,
    replica: this.replica,
    visible: this.visible,
    memory: this.memory,
    sendAck: (peer, ack) => this.acks.push([peer, ack]),
    changed: (changes, resync) => this.changes.push(...changes.map((c) => [c, resync] as [ReplicaChange, boolean])),
    changesWatched: () => this.watched,
    ownApplied: (record) => this.own.push(record.requestId),
    accepted: () => this.accepted++,
    pulled: () => undefined,
  });

  constructor() {
    this.follower.onView(VIEW);
  }

  /** Promises epoch 5 to M and accepts its term at index `index`, in `view` (installed before). */
  join(index = 0, view = VIEW): void {
    this.follower.onPrepare(M.id, 5, view.id);
    this.follower.onSync(M.id, { epoch: 5, coordinator: M.id, index, members: view.members, tokenCeiling: 100, snapshotTransfer: 0, snapshotChunks: 0, entryCount: 0, prior: [] }, 0);
  }

  /** {@link join}, then sends what joining owed and forgets it: what it sends next is what follows. */
  joinQuietly(view = VIEW): void {
    this.join(0, view);
    this.follower.flush(false);
    this.acks.length = 0;
  }
}

function update(index: number, requester = R, epoch = 5): Update {
  return {
    epoch,
    index,
    coordinator: M.id,
    requests: [{ requestId: index, requester, changes: [{ kind: "put", entry: { key: `k${index}`, value: new Uint8Array([index]), format: 0, version: index, owner: requester, removeOnExit: false, ttlMs: 0 }, inserted: true }] }],
    tokenCeiling: 0,
    forget: [],
  };
}

describe("ReplicaFollower", () => {
  it("promises an epoch above every one it promised or accepted, in its view, to its coordinator only", () => {
    const bed = new Bed();
    bed.follower.onPrepare(R.id, 9, VIEW.id);
    bed.follower.onPrepare(M.id, 9, { installer: M.id, counter: 3 });
    expect(bed.acks).toHaveLength(0);
    bed.follower.onPrepare(M.id, 5, VIEW.id);
    expect(bed.memory.promised).toEqual({ epoch: 5, coordinator: M.id });
    bed.follower.onPrepare(M.id, 4, VIEW.id);
    expect(bed.memory.promised.epoch).toBe(5);
    expect(bed.acks.at(-1)![1]).toMatchObject({ view: VIEW.id, promised: { epoch: 5, coordinator: M.id } });
  });

  it("accepts a term not below its promise, from its coordinator, found at the term's index", () => {
    const bed = new Bed();
    bed.follower.onPrepare(M.id, 5, VIEW.id);
    const sync = { epoch: 4, coordinator: M.id, index: 0, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 0, snapshotChunks: 0, entryCount: 0, prior: [] };
    bed.follower.onSync(M.id, sync, 0);
    expect(bed.follower.current).toBe(false);
    bed.follower.onSync(M.id, { ...sync, epoch: 5, index: 2 }, 0);
    expect(bed.follower.current).toBe(false);
    // The updates before it (of an older term) bring it there.
    bed.follower.onUpdate(M.id, update(1, R, 3), 0, false, 0);
    bed.follower.onUpdate(M.id, update(2, R, 3), 0, false, 0);
    bed.follower.onSync(M.id, { ...sync, epoch: 5, index: 2 }, 0);
    expect(bed.follower.current).toBe(true);
    expect(bed.memory.accepted).toMatchObject({ epoch: 5, coordinator: M.id });
    expect(bed.replica.position).toEqual({ epoch: 5, coordinator: M.id, index: 2 });
  });

  it("applies in order, keeps updates past a gap until it is filled, and says what it lacks", () => {
    const bed = new Bed();
    bed.join();
    bed.follower.onUpdate(M.id, update(1), 3, false, 0);
    bed.follower.onUpdate(M.id, update(3), 3, false, 0);
    bed.follower.flush(false);
    expect(bed.acks.filter(([peer]) => peer === M.id).at(-1)![1]).toMatchObject({ position: { index: 1 }, highestSeen: 3, leaseProbe: 3 });
    bed.follower.onUpdate(M.id, update(2), 3, false, 0);
    expect(bed.replica.position.index).toBe(3);
    expect(bed.changes.map(([c]) => c.kind === "insert" && c.entry.key)).toEqual(["k1", "k2", "k3"]);
    // From a member that is not its coordinator: refused.
    bed.follower.onUpdate(R.id, update(4), 3, false, 0);
    expect(bed.follower.stats.staleRefused).toBe(1);
  });

  it("knows its term began once its coordinator says so in an update or announce of that term, reports it, and forgets it at a new term", () => {
    const bed = new Bed();
    const prior = [{ epoch: 4, coordinator: R.id, members: [M, ME, R] }];
    bed.follower.onPrepare(M.id, 5, VIEW.id);
    bed.follower.onSync(M.id, { epoch: 5, coordinator: M.id, index: 0, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 0, snapshotChunks: 0, entryCount: 0, prior }, 0);
    expect(bed.memory).toMatchObject({ accepted: { epoch: 5, prior }, begun: false });
    // Of an older term, or naming another coordinator than its sender: not ours.
    bed.follower.onUpdate(M.id, { ...update(1, R, 4) }, 0, true, 0);
    bed.follower.onAnnounce(M.id, { epoch: 5, coordinator: R.id, index: 1, leaseProbe: 0 }, true);
    expect(bed.memory.begun).toBe(false);
    bed.follower.onUpdate(M.id, update(1), 0, false, 0);
    bed.follower.onUpdate(M.id, update(2), 0, false, 0);
    expect(bed.memory.begun).toBe(false);
    bed.follower.onAnnounce(M.id, { epoch: 5, coordinator: M.id, index: 2, leaseProbe: 0 }, true);
    expect(bed.memory.begun).toBe(true);
    bed.follower.onPrepare(M.id, 6, VIEW.id);
    expect(bed.acks.at(-1)![1]).toMatchObject({ view: VIEW.id, accepted: { epoch: 5, prior }, acceptedBegun: true });
    bed.follower.onSync(M.id, { epoch: 6, coordinator: M.id, index: 2, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 0, snapshotChunks: 0, entryCount: 0, prior: [] }, 0);
    expect(bed.memory).toMatchObject({ accepted: { epoch: 6 }, begun: false });
    bed.follower.onUpdate(M.id, update(3, R, 6), 0, true, 0);
    expect(bed.memory.begun).toBe(true);
  });

  it("tells a requester it applied its request, when the term needs that notice", () => {
    const bed = new Bed();
    bed.join();
    bed.follower.onUpdate(M.id, update(1, R), 0, false, 0);
    bed.follower.onUpdate(M.id, update(2, ME), 0, false, 0);
    bed.follower.flush(false);
    expect(bed.acks.filter(([peer]) => peer === R.id).map(([, ack]) => ack.position.index)).toEqual([1]);
    expect(bed.own).toEqual([2]);
  });

  it("sends a notice before the coordinator's acknowledgement (its requester waits for it)", () => {
    const bed = new Bed();
    bed.joinQuietly();
    bed.follower.onUpdate(M.id, update(1, R), 0, false, 0);
    bed.follower.flush(false);
    expect(bed.acks.map(([peer, ack]) => [peer, ack.position.index])).toEqual([[R.id, 1], [M.id, 1]]);
  });

  it("in a term of two, holds back the acknowledgement of an update that completes its own request to the next turn, or to a request to the coordinator in this one", () => {
    const bed = new Bed();
    const pair = { ...VIEW, members: [M, ME] };
    bed.follower.onView(pair);
    bed.joinQuietly(pair);
    const toM = () => bed.acks.filter(([peer]) => peer === M.id).map(([, ack]) => ack.position.index);
    bed.follower.onUpdate(M.id, update(1, ME), 0, false, 10);
    bed.follower.onUpdate(M.id, update(2, ME), 0, false, 10.5);
    // It waits, and asks for a turn at once.
    bed.follower.flush(false);
    expect(toM()).toEqual([]);
    expect(bed.own).toEqual([1, 2]);
    expect(bed.follower.pollTimeout()).toBe(10);
    // The next turn sends it.
    bed.follower.flush(false);
    expect(toM()).toEqual([2]);
    expect(bed.follower.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
    // With a request of this member to the coordinator in the same turn, it goes with that.
    bed.follower.onUpdate(M.id, update(3, ME), 0, false, 20);
    bed.follower.flush(true);
    expect(toM()).toEqual([2, 3]);
    bed.follower.flush(false);
    expect(toM()).toEqual([2, 3]);
    // Its own request in an update that also holds the coordinator's, or raises the token ceiling, or
    // probes the lease anew: at once.
    const both = update(4, ME);
    bed.follower.onUpdate(M.id, { ...both, requests: [...both.requests, { requestId: 40, requester: M, changes: [] }] }, 0, false, 30);
    bed.follower.flush(false);
    expect(toM()).toEqual([2, 3, 4]);
    bed.follower.onUpdate(M.id, { ...update(5, ME), tokenCeiling: 200 }, 0, false, 30);
    bed.follower.flush(false);
    expect(toM()).toEqual([2, 3, 4, 5]);
    bed.follower.onUpdate(M.id, update(6, ME), 9, false, 30);
    bed.follower.flush(false);
    expect(toM()).toEqual([2, 3, 4, 5, 6]);
  });

  it("in a term of three, acknowledges at once: its own requests are done by the other members' notices", () => {
    const bed = new Bed();
    bed.joinQuietly();
    bed.follower.onUpdate(M.id, update(1, ME), 0, false, 0);
    bed.follower.onUpdate(M.id, update(2, R), 0, false, 0);
    bed.follower.flush(false);
    expect(bed.acks.map(([peer, ack]) => [peer, ack.position.index])).toEqual([[R.id, 2], [M.id, 2]]);
  });

  it("installs a snapshot once it holds every chunk, showing the differences as a resync", () => {
    const bed = new Bed();
    bed.follower.onPrepare(M.id, 5, VIEW.id);
    const chunk = { transfer: 1, epoch: 3, index: 40, chunkCount: 2, locks: [], applied: [], nextToken: 5 };
    const entry = { key: "s", value: new Uint8Array([1]), format: 0, version: 30, owner: R, removeOnExit: false, ttlMs: 0, expiresAt: undefined };
    bed.follower.onSnapshot(M.id, { ...chunk, chunk: 0, entries: [entry] });
    const sync = { epoch: 5, coordinator: M.id, index: 40, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 1, snapshotChunks: 2, entryCount: 1, prior: [] };
    bed.follower.onSync(M.id, sync, 0);
    expect(bed.follower.current).toBe(false);
    bed.follower.flush(false);
    expect(bed.acks.at(-1)![1]).toMatchObject({ snapshotTransfer: 1, snapshotChunks: 1 });
    bed.follower.onSnapshot(M.id, { ...chunk, chunk: 1, entries: [] });
    bed.follower.onSync(M.id, sync, 0);
    expect(bed.follower.current).toBe(true);
    expect(bed.changes).toEqual([[expect.objectContaining({ kind: "insert" }), true]]);
  });

  it("installs a snapshot nobody watches with no entry changes, but with its locks' (the map acts on them)", () => {
    const bed = new Bed();
    bed.watched = false;
    bed.follower.onPrepare(M.id, 5, VIEW.id);
    const entry = { key: "s", value: new Uint8Array([1]), format: 0, version: 30, owner: R, removeOnExit: false, ttlMs: 0, expiresAt: undefined };
    const lock = { key: "s", holder: R, token: 4, leaseMs: 0, releaseOnExit: false };
    bed.follower.onSnapshot(M.id, { transfer: 1, epoch: 3, index: 40, chunkCount: 1, chunk: 0, entries: [entry], locks: [lock], applied: [], nextToken: 5 });
    bed.follower.onSync(M.id, { epoch: 5, coordinator: M.id, index: 40, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 1, snapshotChunks: 1, entryCount: 1, prior: [] }, 0);
    expect(bed.follower.current).toBe(true);
    expect(bed.replica.entries.get("s")).toBe(entry);
    expect(bed.changes).toEqual([[expect.objectContaining({ kind: "lock" }), true]]);
  });

  it("installs only the snapshot a SyncComplete names: a complete one staged from its sender's earlier run, numbered alike, is not taken for it", () => {
    const bed = new Bed();
    bed.follower.onPrepare(M.id, 5, VIEW.id);
    const entry = (version: number) => ({ key: "s", value: new Uint8Array([version]), format: 0, version, owner: R, removeOnExit: false, ttlMs: 0, expiresAt: undefined });
    // A chunk of M's earlier run (a copy that came after that snapshot was installed, or one whose
    // SyncComplete never came): staged, complete.
    bed.follower.onSnapshot(M.id, { transfer: 1, epoch: 3, index: 40, chunkCount: 1, chunk: 0, entries: [entry(30)], locks: [], applied: [], nextToken: 5 });
    // M restarted in place numbers its transfers afresh: its first SyncComplete overtakes its chunk.
    const sync = { epoch: 5, coordinator: M.id, index: 60, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 1, snapshotChunks: 1, entryCount: 1, prior: [] };
    bed.follower.onSync(M.id, sync, 0);
    expect(bed.follower.current).toBe(false);
    expect(bed.replica.entries.has("s")).toBe(false);
    // Nor does it tell M it holds the chunk of that number.
    bed.follower.flush(false);
    expect(bed.acks.filter(([, ack]) => ack.snapshotTransfer !== 0)).toEqual([]);
    bed.follower.onSnapshot(M.id, { transfer: 1, epoch: 4, index: 60, chunkCount: 1, chunk: 0, entries: [entry(55)], locks: [], applied: [], nextToken: 5 });
    bed.follower.onSync(M.id, sync, 0);
    expect(bed.follower.current).toBe(true);
    expect(bed.replica.position.index).toBe(60);
    expect(bed.replica.entries.get("s")!.version).toBe(55);
  });

  it("does not take its replica back to a copy of a snapshot of the term it already installed and went past", () => {
    const bed = new Bed();
    bed.follower.onPrepare(M.id, 5, VIEW.id);
    const chunk = { transfer: 1, epoch: 5, index: 40, chunkCount: 1, chunk: 0, entries: [], locks: [], applied: [], nextToken: 5 };
    const sync = { epoch: 5, coordinator: M.id, index: 40, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 1, snapshotChunks: 1, entryCount: 0, prior: [] };
    bed.follower.onSnapshot(M.id, chunk);
    bed.follower.onSync(M.id, sync, 0);
    expect(bed.follower.current).toBe(true);
    bed.follower.onUpdate(M.id, update(41), 0, false, 0);
    bed.follower.onUpdate(M.id, update(42), 0, false, 0);
    expect(bed.replica.position.index).toBe(42);
    // The chunk and the SyncComplete again (resent before our acceptance reached the coordinator, or duplicated).
    bed.follower.onSnapshot(M.id, chunk);
    bed.follower.onSync(M.id, sync, 0);
    expect(bed.replica.position.index).toBe(42);
    expect(bed.replica.entries.has("k42")).toBe(true);
    expect(bed.follower.stats.snapshotsInstalled).toBe(1);
    bed.follower.flush(false);
    expect(bed.acks.filter(([peer]) => peer === M.id).at(-1)![1]).toMatchObject({ position: { index: 42 } });
  });

  it("takes an update the coordinator multicast only in the term it accepted and follows: one of another term may not follow on from its replica", () => {
    const bed = new Bed();
    // It accepted R's term 4 and holds two updates R ordered in it that nobody else got (R was cut off with them).
    const viewOfR = { id: { installer: R.id, counter: 3 }, members: VIEW.members, coordinator: R };
    bed.follower.onView(viewOfR);
    bed.follower.onPrepare(R.id, 4, viewOfR.id);
    bed.follower.onSync(R.id, { epoch: 4, coordinator: R.id, index: 0, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 0, snapshotChunks: 0, entryCount: 0, prior: [] }, 0);
    for (const index of [1, 2]) bed.follower.onUpdate(R.id, { ...update(index, R, 4), coordinator: R.id }, 2, false, 0);
    expect(bed.replica.position).toEqual({ epoch: 4, coordinator: R.id, index: 2 });
    // M's side went on without it (M's term 6), and M, coordinating the next view, asks for its promise.
    bed.follower.onView(VIEW);
    bed.follower.onPrepare(M.id, 7, VIEW.id);
    // M's multicast of its term 6 (index 3 of its line, not of R's), delayed past the prepare: refused.
    const refused = bed.follower.stats.staleRefused;
    bed.follower.onUpdate(M.id, update(3, R, 6), 9, false, 0);
    expect(bed.replica.position).toEqual({ epoch: 4, coordinator: R.id, index: 2 });
    expect(bed.replica.entries.has("k3")).toBe(false);
    expect(bed.follower.stats.staleRefused).toBe(refused + 1);
    // Once it accepted a term, the multicast of that term goes on from its position.
    bed.follower.onSnapshot(M.id, { transfer: 1, epoch: 6, index: 3, chunkCount: 1, chunk: 0, entries: [], locks: [], applied: [], nextToken: 5 });
    bed.follower.onSync(M.id, { epoch: 7, coordinator: M.id, index: 3, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 1, snapshotChunks: 1, entryCount: 0, prior: [] }, 0);
    bed.follower.onUpdate(M.id, update(4, R, 7), 10, false, 0);
    expect(bed.replica.position).toEqual({ epoch: 7, coordinator: M.id, index: 4 });
  });

  it("takes no update of an epoch below its position's: a sync suffix sent from a position it reported before it accepted a later term does not follow on from it", () => {
    const bed = new Bed();
    bed.join();
    bed.follower.onUpdate(M.id, update(1), 3, false, 0);
    // R's view: it promises R's term 7 and accepts it where it stands, then takes an update R ordered in it.
    const viewOfR = { id: { installer: R.id, counter: 5 }, members: VIEW.members, coordinator: R };
    bed.follower.onView(viewOfR);
    bed.follower.onPrepare(R.id, 7, viewOfR.id);
    bed.follower.onSync(R.id, { epoch: 7, coordinator: R.id, index: 1, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 0, snapshotChunks: 0, entryCount: 0, prior: [] }, 0);
    bed.follower.onUpdate(R.id, { ...update(2, ME, 7), coordinator: R.id }, 0, false, 0);
    expect(bed.replica.position).toEqual({ epoch: 7, coordinator: R.id, index: 2 });
    // Back in M's view, M's suffix of its line 5 from index 1 (where it stood when it promised M), delayed:
    // index 3 of M's line is not the update after index 2 of R's.
    bed.follower.onView({ ...VIEW, id: { installer: M.id, counter: 6 } });
    const refused = bed.follower.stats.staleRefused;
    bed.follower.onUpdate(M.id, update(2), 0, false, 0);
    bed.follower.onUpdate(M.id, update(3), 0, false, 0);
    expect(bed.replica.position).toEqual({ epoch: 7, coordinator: R.id, index: 2 });
    expect(bed.replica.entries.has("k3")).toBe(false);
    expect(bed.follower.stats.staleRefused).toBe(refused + 2);
  });

  it("once it promised a next term, takes no more of the last term's multicast, and drops what it kept past a gap: the next term's sync brings what follows its position", () => {
    const bed = new Bed();
    bed.join();
    bed.follower.onUpdate(M.id, update(1), 3, false, 0);
    // Past a gap: kept.
    bed.follower.onUpdate(M.id, update(3), 3, false, 0);
    // M's next election, after a term 6 of R's without us: M takes R's line, further along than its own.
    bed.follower.onPrepare(M.id, 8, VIEW.id);
    bed.follower.onUpdate(M.id, update(2), 3, false, 0);
    expect(bed.replica.position.index).toBe(1);
    // The sync of term 8 from where it stands: R's line at 2 (point to point), then the SyncComplete.
    bed.follower.onUpdate(M.id, { ...update(2, ME, 6), coordinator: R.id }, 0, false, 0);
    expect(bed.replica.position).toEqual({ epoch: 6, coordinator: R.id, index: 2 });
    bed.follower.onSync(M.id, { epoch: 8, coordinator: M.id, index: 2, members: VIEW.members, tokenCeiling: 100, snapshotTransfer: 0, snapshotChunks: 0, entryCount: 0, prior: [] }, 0);
    expect(bed.follower.current).toBe(true);
    expect(bed.replica.position).toEqual({ epoch: 8, coordinator: M.id, index: 2 });
    expect(bed.replica.entries.has("k3")).toBe(false);
  });
});
