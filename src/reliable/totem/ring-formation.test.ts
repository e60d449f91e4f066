import { fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FrameSchema } from "../../../gen/activeblaze/v1/envelope_pb.ts";
import { keyOf } from "../member-key.ts";
import type { PeerKey } from "../protocol.ts";
import { RingFormation } from "./ring-formation.ts";
import { type RingId, RingStore } from "./ring-store.ts";
import { type Commit, decodeJoin, type Join, type MemberState } from "./totem-frames.ts";

const A = keyOf(new Uint8Array(16).fill(0xa1));
const B = keyOf(new Uint8Array(16).fill(0xb2));
const C = keyOf(new Uint8Array(16).fill(0xc3));
const OPTIONS = { joinIntervalMs: 50, consensusTimeoutMs: 200, tokenTimeoutMs: 1_000 };

/** A formation at `local` (incarnation 7) that records the joins it multicasts. */
function formationAt(local: PeerKey) {
  const joins: Join[] = [];
  const formation = new RingFormation({ multicastFrame: (bytes) => joins.push(decodeJoin(fromBinary(FrameSchema, bytes))!) }, local, 7, OPTIONS);
  const rings: { installed: RingStore | undefined; current: RingStore | undefined } = { installed: undefined, current: undefined };
  return { formation, joins, rings };
}

function join(members: PeerKey[], highestRingSeq = 0, announce?: RingId): Join {
  return { ring: announce, members: [...members].sort(), failed: [], highestRingSeq, announce: announce !== undefined };
}

function state(member: PeerKey, incarnation: number, received: boolean): MemberState {
  return { member, incarnation, oldRing: undefined, oldAru: 0, highDelivered: 0, highReceived: 0, received };
}

describe("RingFormation", () => {
  it("forms a ring of one once a join interval passed alone", () => {
    const { formation, joins, rings } = formationAt(A);
    formation.gather(0, rings);
    expect(joins).toEqual([join([A])]);
    expect(formation.handleTimeout(49, rings)).toBeUndefined();
    const formed = formation.handleTimeout(50, rings);
    expect(formed).toEqual({ kind: "recover", commit: { ring: { representative: A, seq: 1 }, members: [state(A, 7, true)] } });
    expect(formation.phase).toBe("formed");
    expect(formation.highestRingSeq).toBe(1);
    // No more joins, and no announcements before the ring is installed.
    expect(formation.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
  });

  it("commits, as the smallest member, once every member named the same set in a join of this formation", () => {
    const { formation, joins, rings } = formationAt(A);
    formation.gather(0, rings);
    expect(formation.peerUp(B, 1, 0, rings)).toBeUndefined();
    expect(joins.at(-1)).toEqual(join([A, B]));
    // Too early: a join interval has not passed since the formation started.
    expect(formation.onJoin(B, join([A, B]), 10, rings)).toBeUndefined();
    expect(formation.handleTimeout(50, rings)).toEqual({
      kind: "commit",
      commit: { ring: { representative: A, seq: 1 }, members: [state(A, 7, true), state(B, 1, false)] },
    });
    expect(formation.phase).toBe("commit");
    expect(formation.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
  });

  it("numbers the new ring above every ring it heard of", () => {
    const { formation, rings } = formationAt(A);
    rings.installed = rings.current = new RingStore({ representative: B, seq: 4 }, [A, B]);
    formation.gather(0, rings);
    formation.peerUp(B, 1, 0, rings);
    formation.onJoin(B, join([A, B], 9), 10, rings);
    const formed = formation.handleTimeout(50, rings);
    expect(formed?.kind === "commit" && formed.commit.ring).toEqual({ representative: A, seq: 10 });
    // Its own state on its old ring goes in the commit token.
    expect(formed?.kind === "commit" && formed.commit.members[0]!.oldRing).toEqual({ representative: B, seq: 4 });
  });

  it("counts neither joins naming another set nor joins from before this formation", () => {
    const { formation, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.peerUp(B, 1, 0, rings);
    formation.peerUp(C, 1, 0, rings);
    formation.onJoin(B, join([A, B]), 10, rings);
    formation.onJoin(C, join([A, B, C]), 10, rings);
    expect(formation.handleTimeout(50, rings)).toBeUndefined();
    // B's join is older than the next formation (started at 100, counting joins from 50 on).
    formation.onJoin(B, join([A, B, C]), 20, rings);
    formation.gather(100, rings);
    formation.onJoin(C, join([A, B, C]), 110, rings);
    expect(formation.handleTimeout(150, rings)).toBeUndefined();
    expect(formation.onJoin(B, join([A, B, C]), 160, rings)?.kind).toBe("commit");
  });

  it("leaves out a member silent through consensusTimeoutMs, and takes it back once it is heard", () => {
    const { formation, joins, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.peerUp(B, 1, 0, rings);
    formation.peerUp(C, 1, 0, rings);
    formation.onJoin(B, join([A, B, C]), 10, rings);
    for (const now of [50, 100, 150]) expect(formation.handleTimeout(now, rings)).toBeUndefined();
    expect(formation.candidates()).toEqual([A, B, C]);
    // 200 ms into the formation C has sent no join and was not heard: it failed. B still names C.
    expect(formation.handleTimeout(200, rings)).toBeUndefined();
    expect(formation.candidates()).toEqual([A, B]);
    expect(joins.at(-1)).toEqual({ ...join([A, B]), failed: [C] });
    expect(formation.onJoin(B, join([A, B]), 210, rings)).toEqual({
      kind: "commit",
      commit: { ring: { representative: A, seq: 1 }, members: [state(A, 7, true), state(B, 1, false)] },
    });
  });

  it("does not fail a member heard lately, though it sent no join", () => {
    const { formation, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.peerUp(B, 1, 0, rings);
    formation.peerUp(C, 1, 0, rings);
    formation.heard(B, 150);
    for (const now of [50, 100, 150, 200, 250, 300]) {
      // C names the set A wants, whatever it is: it stays, and A is not left alone.
      formation.onJoin(C, join(formation.candidates()), now, rings);
      formation.handleTimeout(now, rings);
    }
    expect(formation.candidates()).toEqual([A, B, C]);
    formation.handleTimeout(350, rings);
    expect(formation.candidates()).toEqual([A, C]);
    // A join from it makes it a candidate again (and this member says so at once).
    formation.onJoin(B, join([A, B, C]), 360, rings);
    expect(formation.candidates()).toEqual([A, B, C]);
  });

  it("leaves out a member silent since a join naming this set: one that crashed just after it must not hold the formation", () => {
    const { formation, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.peerUp(B, 1, 0, rings);
    formation.peerUp(C, 1, 0, rings);
    // C names A's set once and crashes; B, which left C out already, names the others.
    formation.onJoin(C, join([A, B, C]), 10, rings);
    for (let now = 50; now <= 200; now += 50) {
      formation.onJoin(B, join([A, B]), now, rings);
      expect(formation.handleTimeout(now, rings)).toBeUndefined();
    }
    expect(formation.candidates()).toEqual([A, B, C]);
    formation.onJoin(B, join([A, B]), 250, rings);
    expect(formation.handleTimeout(250, rings)?.kind).toBe("commit");
    expect(formation.candidates()).toEqual([A, B]);
  });

  it("hearing none of the others, waits twice the consensus timeout before it forms a ring alone", () => {
    const { formation, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.peerUp(B, 1, 0, rings);
    formation.peerUp(C, 1, 0, rings);
    // B and C fall silent at 100 (an overloaded socket, say): from 300 on A has heard nobody for 200 ms.
    formation.heard(B, 100);
    formation.heard(C, 100);
    for (let now = 50; now < 500; now += 50) expect(formation.handleTimeout(now, rings)).toBeUndefined();
    expect(formation.candidates()).toEqual([A, B, C]);
    // Heard again in time, neither is left out.
    formation.heard(B, 460);
    formation.heard(C, 460);
    for (let now = 500; now < 900; now += 50) formation.handleTimeout(now, rings);
    expect(formation.candidates()).toEqual([A, B, C]);
    // Silent on: once both were silent 400 ms (at 860, after 460), A leaves both out and forms a ring alone.
    expect(formation.handleTimeout(900, rings)?.kind).toBe("recover");
    expect(formation.candidates()).toEqual([A]);
  });

  it("hearing some of the others, leaves the silent ones out after the consensus timeout", () => {
    const { formation, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.peerUp(B, 1, 0, rings);
    formation.peerUp(C, 1, 0, rings);
    for (let now = 50; now <= 200; now += 50) {
      // B is heard all along (no join of its own yet); C never after it came up.
      formation.heard(B, now);
      formation.handleTimeout(now, rings);
    }
    expect(formation.candidates()).toEqual([A, B]);
  });

  it("measures silence up to the time a pass was due: the process stalled, and what its peers sent waits behind the timer", () => {
    const { formation, joins, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.peerUp(B, 1, 0, rings);
    formation.peerUp(C, 1, 0, rings);
    formation.onJoin(C, join([A, B, C]), 40, rings);
    formation.handleTimeout(50, rings);
    // The process stalls from 60 to 500: the pass due at 100 runs at 500, where B has been silent 500 ms.
    expect(formation.handleTimeout(500, rings)).toBeUndefined();
    expect(formation.candidates()).toEqual([A, B, C]);
    expect(joins.at(-1)).toEqual(join([A, B, C]));
    // Then the datagrams that waited: C again, nothing from B. The next pass, on time, leaves B out.
    formation.onJoin(C, join([A, B, C]), 500, rings);
    formation.handleTimeout(550, rings);
    expect(formation.candidates()).toEqual([A, C]);
  });

  it("leaves a silent member out though every pass runs a little late (a busy process)", () => {
    const { formation, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.peerUp(B, 1, 0, rings);
    formation.peerUp(C, 1, 0, rings);
    // Each pass runs 60 ms after it was due (more than a join interval); C is heard all along, B never.
    let now = 0;
    while (now < 400 && formation.candidates().includes(B)) {
      now = formation.pollTimeout() + 60;
      formation.onJoin(C, join(formation.candidates()), now, rings);
      formation.handleTimeout(now, rings);
    }
    expect(formation.candidates()).toEqual([A, C]);
    expect(now).toBeLessThan(400);
  });

  it("waits, as a larger member, for the commit token and fills in its state on its first rotation", () => {
    const { formation, rings } = formationAt(B);
    rings.installed = rings.current = new RingStore({ representative: B, seq: 3 }, [B]);
    rings.installed.put(1, { origin: B, originIncarnation: 7, data: undefined, carrier: undefined });
    formation.gather(0, rings);
    formation.peerUp(A, 1, 0, rings);
    expect(formation.onJoin(A, join([A, B], 3), 60, rings)).toBeUndefined();
    const commit = (seq: number, members: MemberState[]): Commit => ({ ring: { representative: A, seq }, members });
    // A ring no newer than its own, or of another set of members: not for this member.
    const stale = commit(3, [state(A, 1, true), state(B, 7, false)]);
    expect(formation.onCommit(stale, stale.members[1]!, rings)).toBeUndefined();
    const other = commit(4, [state(A, 1, true), state(B, 7, false), state(C, 1, false)]);
    expect(formation.onCommit(other, other.members[1]!, rings)).toBeUndefined();
    const first = commit(4, [state(A, 1, true), state(B, 7, false)]);
    const formed = formation.onCommit(first, first.members[1]!, rings);
    expect(formed).toEqual({
      kind: "commit",
      commit: commit(4, [state(A, 1, true), { ...state(B, 7, true), oldRing: { representative: B, seq: 3 }, oldAru: 1, highReceived: 1 }]),
    });
    expect(first.members[1]!.received).toBe(false);
    expect(formation.phase).toBe("commit");

    // A member of the proposed ring that names it again changes nothing; one that names another set starts a formation.
    expect(formation.onJoin(A, join([A, B], 4), 70, rings)).toBeUndefined();
    expect(formation.onJoin(A, join([A, B, C], 4), 70, rings)).toEqual({ kind: "regather" });
    expect(formation.onJoin(C, join([A, B], 4), 70, rings)).toEqual({ kind: "regather" });

    // The second rotation, back at a member that committed to the ring: recovery starts.
    const second = commit(4, [state(A, 1, true), state(B, 7, true)]);
    expect(formation.onCommit(commit(5, second.members), second.members[1]!, rings)).toBeUndefined();
    expect(formation.onCommit(second, second.members[1]!, rings)).toEqual({ kind: "recover", commit: second });
    expect(formation.phase).toBe("formed");
    expect(formation.highestRingSeq).toBe(4);
  });

  it("on a ring: forms it again for a newcomer, a new incarnation, a member gone, or a join newer than the ring", () => {
    const { formation, joins, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.peerUp(B, 1, 0, rings);
    formation.onJoin(B, join([A, B]), 10, rings);
    formation.handleTimeout(50, rings);
    formation.onCommit(
      { ring: { representative: A, seq: 1 }, members: [state(A, 7, true), state(B, 1, true)] },
      state(A, 7, true),
      rings,
    );
    expect(formation.phase).toBe("formed");
    rings.installed = rings.current = new RingStore({ representative: A, seq: 1 }, [A, B], new Map([[A, 7], [B, 1]]));
    const sent = joins.length;
    expect(formation.peerUp(B, 1, 60, rings)).toBeUndefined();
    expect(formation.peerUp(B, 2, 60, rings)).toEqual({ kind: "regather" });
    expect(formation.peerUp(C, 1, 60, rings)).toEqual({ kind: "regather" });
    expect(formation.peerDown(C, 60, rings)).toBeUndefined();
    expect(formation.peerDown(B, 60, rings)).toEqual({ kind: "regather" });
    formation.peerUp(B, 2, 60, rings);
    // Joins left over from the formation of this ring are older than it.
    expect(formation.onJoin(B, join([A, B], 0), 60, rings)).toBeUndefined();
    expect(formation.onJoin(B, join([A, B], 1), 60, rings)).toEqual({ kind: "regather" });
    expect(formation.onJoin(C, join([A, C], 0), 60, rings)).toEqual({ kind: "regather" });
    // Nothing was multicast meanwhile: that is for the formation the member starts.
    expect(joins.length).toBe(sent);
  });

  it("announces a running ring as its representative, and merges with another ring it hears announced", () => {
    const { formation, joins, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.handleTimeout(50, rings);
    const ring = new RingStore({ representative: A, seq: 1 }, [A], new Map([[A, 7]]));
    rings.installed = rings.current = ring;
    formation.installed(ring, 60);
    expect(formation.pollTimeout()).toBe(1_060);
    formation.handleTimeout(1_060, rings);
    expect(joins.at(-1)).toEqual({ ring: ring.id, members: [A], failed: [], highestRingSeq: 1, announce: true });
    expect(formation.pollTimeout()).toBe(2_060);
    // Its own ring's announcement changes nothing; another ring's makes this member form one ring with it.
    formation.peerUp(B, 1, 1_100, rings);
    const merged = new RingStore({ representative: A, seq: 1 }, [A, B]);
    expect(formation.onJoin(B, join([A, B], 1, merged.id), 1_100, { installed: merged, current: merged })).toBeUndefined();
    expect(formation.onJoin(B, join([B, C], 5, { representative: B, seq: 5 }), 1_100, rings)).toEqual({ kind: "regather" });
    // Once it gathers, it announces no more.
    formation.gather(1_100, rings);
    expect(formation.pollTimeout()).toBe(1_150);
  });

  it("in recovery, announces nothing", () => {
    const { formation, joins, rings } = formationAt(A);
    formation.gather(0, rings);
    formation.handleTimeout(50, rings);
    const old = new RingStore({ representative: A, seq: 1 }, [A]);
    rings.installed = old;
    formation.installed(old, 60);
    // A new ring recovers: the old one does not run any more.
    rings.current = new RingStore({ representative: A, seq: 2 }, [A]);
    const sent = joins.length;
    formation.handleTimeout(1_060, rings);
    expect(joins.length).toBe(sent);
    expect(formation.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
  });
});
