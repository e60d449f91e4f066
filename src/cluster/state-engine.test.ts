import { fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FrameSchema } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { StateEngine, type StateEngineOptions, type TermMemory } from "./state-engine.ts";
import { type MemberInstance, NO_PROMISE, NO_TERM, type StateResponse } from "./state-types.ts";
import { decodeStateFrame, type StateFrame } from "./state-wire.ts";

const C = "0c".repeat(16);
const A = "0a".repeat(16);
const B = "0b".repeat(16);
const LEASE_MS = 500;
const OPTIONS: StateEngineOptions = {
  quorum: true,
  minimumMembers: 1,
  logLimit: 4,
  snapshotChunkBytes: 256,
  maxUpdateBytes: 1_200,
  retryDelayMs: 50,
  leaseMs: LEASE_MS,
};

interface Node {
  readonly member: MemberInstance;
  readonly memory: TermMemory;
  readonly engine: StateEngine;
}

/**
 * State engines of a group on a network of their own: frames go through the wire format, are delivered
 * in order at the next step unless `drop` says otherwise, and the time moves a millisecond a step.
 */
class Bed {
  now = 0;
  readonly nodes = new Map<string, Node>();
  readonly #memories = new Map<string, TermMemory>();
  #queue: Array<{ readonly from: MemberInstance; readonly to: string; readonly bytes: Uint8Array }> = [];
  drop: (from: string, to: string, frame: StateFrame) => boolean = () => false;
  readonly sent: Array<{ readonly from: string; readonly to: string; readonly frame: StateFrame }> = [];

  /**
   * Starts member `id` as `incarnation`; its term memory is kept across its restarts, as ClusterState keeps
   * it — unless `newProcess`: a process started again under the same id (an insider identity) begins with
   * a memory of its own.
   */
  start(id: string, incarnation = 1, newProcess = false): Node {
    this.nodes.get(id)?.engine.close(this.now);
    if (newProcess) this.#memories.delete(id);
    let memory = this.#memories.get(id);
    if (memory === undefined) {
      memory = { accepted: NO_TERM, begun: false, promised: NO_PROMISE, echoed: undefined, probe: 0, since: undefined };
      this.#memories.set(id, memory);
    }
    const member = { id, incarnation };
    const engine = new StateEngine(
      {
        local: member,
        group: "g",
        unicast: (peer, frame) => this.#queue.push({ from: member, to: peer, bytes: frame }),
        multicast: (frame) => {
          for (const other of this.nodes.keys()) if (other !== id) this.#queue.push({ from: member, to: other, bytes: frame });
        },
        changed: () => undefined,
        changesWatched: () => false,
        synced: () => undefined,
        wake: () => undefined,
      },
      OPTIONS,
      memory,
    );
    const node = { member, memory, engine };
    this.nodes.set(id, node);
    return node;
  }

  node(id: string): Node {
    return this.nodes.get(id)!;
  }

  /** Installs a view of `ids` (coordinated by the first) at each of them. */
  view(counter: number, ids: readonly string[]): void {
    const members = ids.map((id) => this.node(id).member);
    for (const id of ids) this.node(id).engine.onView({ id: { installer: ids[0]!, counter }, members, coordinator: members[0]! }, this.now);
  }

  /** Runs `ms` milliseconds: delivers what was sent, ends every member's turn, fires what is due. */
  run(ms: number, until: () => boolean = () => false): void {
    const end = this.now + ms;
    while (this.now < end && !until()) {
      this.now++;
      for (const node of this.nodes.values()) if (node.engine.pollTimeout() <= this.now) node.engine.handleTimeout(this.now);
      this.#deliver();
    }
  }

  put(id: string, key: string, size = 64): { response: StateResponse | undefined } {
    const result: { response: StateResponse | undefined } = { response: undefined };
    const value = new Uint8Array(size).fill(key.length);
    this.node(id).engine.request({ case: "put", put: { key, value, format: 0, ttlMs: 0, removeOnExit: false, ifVersion: undefined, fencingToken: 0 } }, {
      answer: (response) => {
        result.response = response;
        return true;
      },
    }, this.now);
    this.#deliver();
    return result;
  }

  /** Hands `to` a frame from `from` running as `incarnation` (one that was on its way, say); what it sends goes at the next step. */
  inject(from: string, incarnation: number, to: string, frame: StateFrame): void {
    this.node(to).engine.onFrame(from, incarnation, frame, this.now);
  }

  #deliver(): void {
    for (let round = 0; round < 100; round++) {
      for (const node of this.nodes.values()) node.engine.flush(this.now);
      const queue = this.#queue;
      if (queue.length === 0) return;
      this.#queue = [];
      for (const { from, to, bytes } of queue) {
        const frame = decodeStateFrame(fromBinary(FrameSchema, bytes), this.now)!;
        this.sent.push({ from: from.id, to, frame });
        const target = this.nodes.get(to);
        if (target === undefined || this.drop(from.id, to, frame)) continue;
        target.engine.onFrame(from.id, from.incarnation, frame, this.now);
      }
    }
  }
}

/** C coordinates a term of C, A and B (quorum mode), which has begun. */
function termOfThree(): Bed {
  const bed = new Bed();
  for (const id of [C, A, B]) bed.start(id);
  bed.view(1, [C, A, B]);
  bed.run(1_000, () => bed.node(C).engine.serving(bed.now));
  expect(bed.node(C).engine.serving(bed.now)).toBe(true);
  return bed;
}

/** Puts while `running` and until `done` (or `rounds` puts, 5 ms apart), at C. */
function writeUntil(bed: Bed, done: () => boolean, rounds = 200): void {
  for (let i = 0; i < rounds && !done(); i++) {
    bed.put(C, `w${i % 8}`);
    bed.run(5);
  }
}

/** B is cut off while C orders more than its log keeps: B can only be brought up again by snapshot. */
function leaveBehind(bed: Bed): void {
  bed.drop = (_from, to) => to === B;
  for (let i = 0; i < 40; i++) {
    bed.put(C, `k${i}`);
    bed.run(2);
  }
}

const caughtUp = (bed: Bed) => () => bed.node(B).engine.replica.position.index === bed.node(C).engine.replica.position.index;

describe("StateEngine", () => {
  it("brings a member the log can no longer repair up again by one snapshot while writes go on, and sends its SyncComplete again when lost", () => {
    const bed = termOfThree();
    const before = bed.node(C).engine.stats.snapshotsSent;
    leaveBehind(bed);
    // B is heard again; the first SyncComplete of its snapshot (which takes many chunks) is lost. Every
    // update B now gets lies past its gap, and its acknowledgement says so.
    let lost = 0;
    bed.drop = (_from, to, frame) => to === B && frame.kind === "sync" && lost++ === 0;
    writeUntil(bed, caughtUp(bed));
    expect(lost).toBeGreaterThan(1);
    expect(bed.node(B).engine.replica.position).toEqual(bed.node(C).engine.replica.position);
    expect([...bed.node(B).engine.replica.entries.keys()].sort()).toEqual([...bed.node(C).engine.replica.entries.keys()].sort());
    expect(bed.node(C).engine.stats.snapshotsSent - before).toBe(1);
  });

  it("starts a member's snapshot afresh when it answers as a later incarnation (restarted in place, the chunks it held lost)", () => {
    const bed = termOfThree();
    const before = bed.node(C).engine.stats.snapshotsSent;
    leaveBehind(bed);
    // B is heard again but gets only the first eight chunks of its snapshot: the snapshot is on its way.
    bed.drop = (_from, to, frame) => to === B && frame.kind === "snapshot" && frame.chunk.chunk >= 8;
    bed.run(20);
    expect(bed.node(B).engine.replica.position.index).toBe(0);
    const late = bed.sent.filter((s) => s.from === B && s.frame.kind === "ack" && s.frame.ack.snapshotTransfer === 0).at(-1)!.frame;
    // B restarts in place (its term memory kept, its replica and staged chunks gone) and follows C again.
    const restarted = bed.start(B, 2);
    const members = [C, A, B].map((id) => bed.node(id).member);
    restarted.engine.onView({ id: { installer: C, counter: 1 }, members, coordinator: bed.node(C).member }, bed.now);
    bed.drop = () => false;
    bed.run(200, () => bed.node(C).engine.stats.snapshotsSent - before === 2);
    // An acknowledgement of B's earlier run, come late, changes nothing.
    expect(bed.node(C).engine.stats.snapshotsSent - before).toBe(2);
    bed.inject(B, 1, C, late);
    writeUntil(bed, caughtUp(bed));
    expect(bed.node(B).engine.replica.position).toEqual(bed.node(C).engine.replica.position);
    expect(bed.node(C).engine.stats.snapshotsSent - before).toBe(2);
  });

  it("counts a member restarted in place at the position its new replica holds, though it names the term: a write commits once that run holds it", () => {
    const bed = termOfThree();
    bed.put(C, "before");
    bed.run(20);
    const restarted = bed.start(B, 2);
    const members = [C, A, B].map((id) => bed.node(id).member);
    restarted.engine.onView({ id: { installer: C, counter: 1 }, members, coordinator: bed.node(C).member }, bed.now);
    // The new run cannot be brought up for now: its acknowledgements name the term, at index 0.
    bed.drop = (_from, to, frame) => to === B && frame.kind !== "announce";
    const write = bed.put(C, "after");
    bed.run(300);
    expect(bed.sent.some((s) => s.from === B && s.frame.kind === "ack" && s.frame.ack.accepted.epoch === bed.node(C).engine.epoch)).toBe(true);
    expect(write.response).toBeUndefined();
    bed.drop = () => false;
    bed.run(500, () => write.response !== undefined);
    expect(write.response).toMatchObject({ outcome: "OK" });
    expect(bed.node(B).engine.replica.position.index).toBeGreaterThanOrEqual(write.response!.index);
  });

  it("reports how far back its term memory reaches: its first incarnation, kept across restarts in place", () => {
    const bed = termOfThree();
    expect(bed.node(B).memory.since).toBe(1);
    bed.start(B, 2);
    expect(bed.node(B).memory.since).toBe(1);
    bed.start(B, 7, true);
    expect(bed.node(B).memory.since).toBe(7);
    bed.view(2, [C, A, B]);
    bed.run(20);
    const answers = bed.sent.filter((s) => s.from === B && s.frame.kind === "ack" && s.frame.ack.view !== undefined);
    expect(answers.at(-1)!.frame).toMatchObject({ ack: { memorySince: 7 } });
  });

  it("never serves on the word of a member whose process started again under the same id: it may have forgotten a later term", () => {
    const bed = termOfThree();
    // B is cut off; C and A go on as a term of their own (2 of the 3), which begins.
    bed.drop = (from, to) => from === B || to === B;
    bed.view(2, [C, A]);
    bed.run(1_000, () => bed.node(C).engine.serving(bed.now) && bed.node(C).memory.begun);
    expect(bed.node(C).memory).toMatchObject({ accepted: { members: [{ id: C }, { id: A }] }, begun: true });
    // A's process starts again under the same id, forgetting that term, and meets B; C goes on alone
    // (half of its term {C, A}, with its coordinator: it may serve).
    bed.start(A, 1_000, true);
    bed.drop = (from, to) => (from === C) !== (to === C);
    bed.view(3, [C]);
    bed.view(3, [B, A]);
    bed.run(2_000);
    expect(bed.node(C).engine.serving(bed.now)).toBe(true);
    // B knows only the first term: A does not speak for that term's A, so B's side holds 1 of its 3.
    expect(bed.node(B).engine.serving(bed.now)).toBe(false);
  });

  it("keeps, across a restart in place, the lease it echoed: the restarted member promises another coordinator only once that lease ran out", () => {
    const bed = termOfThree();
    // B hears nothing from C for longer than the lease: C serves on A's echoes alone.
    bed.drop = (from, to) => (from === C && to === B) || (from === B && to === C);
    bed.run(2 * LEASE_MS);
    expect(bed.node(C).engine.serving(bed.now)).toBe(true);
    // Now C is cut off from A too, just after A echoed it, and A restarts in place. B and A's next
    // incarnation form a view without C, which B coordinates.
    bed.drop = (from, to) => from === C || to === C;
    const echoedAt = bed.now;
    bed.start(A, 2);
    bed.view(2, [B, A]);
    let overlap = 0;
    bed.run(3 * LEASE_MS, () => {
      if (bed.node(B).engine.serving(bed.now) && bed.node(C).engine.serving(bed.now)) overlap++;
      return bed.node(B).engine.serving(bed.now);
    });
    expect(overlap).toBe(0);
    expect(bed.node(B).engine.serving(bed.now)).toBe(true);
    expect(bed.now).toBeGreaterThanOrEqual(echoedAt + LEASE_MS);
  });

  it("serves again soon as a coordinator restarted in place (coordinator again): its members echo its new run's lease probes, not their count of its earlier run's", () => {
    const bed = termOfThree();
    // A while of the term: the lease probe numbers grow.
    bed.run(20 * LEASE_MS);
    bed.start(C, 2);
    bed.view(2, [C, A, B]);
    const restartedAt = bed.now;
    bed.run(20 * LEASE_MS, () => bed.node(C).engine.serving(bed.now));
    expect(bed.node(C).engine.serving(bed.now)).toBe(true);
    expect(bed.now - restartedAt).toBeLessThan(LEASE_MS);
  });

  it("serves again soon as a coordinator restarted in place when an announce of its earlier run reaches its members late, after the view", () => {
    const bed = termOfThree();
    bed.run(20 * LEASE_MS);
    const late = bed.sent.filter((s) => s.from === C && s.frame.kind === "announce").at(-1)!.frame;
    bed.start(C, 2);
    bed.view(2, [C, A, B]);
    for (const id of [A, B]) bed.inject(C, 1, id, late);
    const restartedAt = bed.now;
    bed.run(20 * LEASE_MS, () => bed.node(C).engine.serving(bed.now));
    expect(bed.node(C).engine.serving(bed.now)).toBe(true);
    expect(bed.now - restartedAt).toBeLessThan(LEASE_MS);
  });
});
