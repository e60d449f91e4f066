import { describe, expect, it } from "vitest";
import { emptyDataFields } from "../../wire/frames.ts";
import { keyOf } from "../member-key.ts";
import type { PeerKey } from "../protocol.ts";
import { Recovery } from "./recovery.ts";
import { type RingId, RingStore } from "./ring-store.ts";
import type { Commit, MemberState } from "./totem-frames.ts";

const A = keyOf(new Uint8Array(16).fill(0xa1));
const B = keyOf(new Uint8Array(16).fill(0xb2));
const C = keyOf(new Uint8Array(16).fill(0xc3));
const D = keyOf(new Uint8Array(16).fill(0xd4));
const OLD: RingId = { representative: A, seq: 4 };
const OTHER: RingId = { representative: D, seq: 6 };
const NEW: RingId = { representative: A, seq: 7 };

/** The old ring as a member holds it: `held` with their messages, `carriersOnly` as carriers of an earlier recovery (no message). */
function oldRing(held: number[], carriersOnly: number[] = []): RingStore {
  const ring = new RingStore(OLD, [A, B, C], new Map([[A, 7], [B, 1], [C, 1]]));
  for (const seq of held) ring.put(seq, { origin: B, originIncarnation: 1, data: { ...emptyDataFields(), globalSeq: seq }, carrier: undefined });
  for (const seq of carriersOnly) ring.put(seq, { origin: B, originIncarnation: 1, data: undefined, carrier: new Uint8Array(1) });
  return ring;
}

function state(member: PeerKey, incarnation: number, oldRing: RingId | undefined, oldAru: number, highReceived: number): MemberState {
  return { member, incarnation, oldRing, oldAru, highDelivered: 0, highReceived, received: true };
}

function commit(...members: MemberState[]): Commit {
  return { ring: NEW, members };
}

function carried(recovery: Recovery): number[] {
  const seqs: number[] = [];
  while (recovery.pending > 0) seqs.push(recovery.take().data!.globalSeq);
  return seqs;
}

describe("Recovery", () => {
  it("carries nothing for a member that was on no ring, or alone from its old ring", () => {
    const fresh = new Recovery(commit(state(A, 7, undefined, 0, 0), state(B, 1, OLD, 2, 5)), undefined, A);
    expect([fresh.high, fresh.pending]).toEqual([0, 0]);
    const alone = new Recovery(commit(state(A, 7, OLD, 2, 5), state(D, 1, OTHER, 9, 9)), oldRing([1, 2, 4, 5]), A);
    // Nobody from its ring to carry to; it still delivers what it holds up to what it received.
    expect([alone.high, alone.pending]).toEqual([5, 0]);
  });

  it("carries, from the member with the highest aru, everything above the lowest aru; from the others, what is above the highest aru", () => {
    const states = commit(state(A, 7, OLD, 3, 8), state(B, 1, OLD, 5, 7), state(D, 1, OTHER, 2, 2));
    // B holds everything up to its aru 5, and 7; A holds up to 3, and 6 and 8 (7 only as an earlier carrier).
    const atB = new Recovery(states, oldRing([1, 2, 3, 4, 5, 7]), B);
    expect(atB.high).toBe(8);
    expect(carried(atB)).toEqual([4, 5, 7]);
    const atA = new Recovery(states, oldRing([1, 2, 3, 6, 8], [7]), A);
    expect(atA.high).toBe(8);
    expect(carried(atA)).toEqual([6, 8]);
  });

  it("among members with the same highest aru, the first in ring order carries below it", () => {
    const states = commit(state(A, 7, OLD, 5, 6), state(B, 1, OLD, 5, 6), state(C, 1, OLD, 2, 2));
    expect(carried(new Recovery(states, oldRing([1, 2, 3, 4, 5, 6]), A))).toEqual([3, 4, 5, 6]);
    expect(carried(new Recovery(states, oldRing([1, 2, 3, 4, 5, 6]), B))).toEqual([6]);
  });

  const ends: Array<[string, MemberState[], PeerKey[]]> = [
    ["every old member moves on as itself: no stream ends", [state(A, 7, OLD, 1, 1), state(B, 1, OLD, 1, 1), state(C, 1, OLD, 1, 1)], []],
    ["a member left: its stream ends", [state(A, 7, OLD, 1, 1), state(B, 1, OLD, 1, 1)], [C]],
    ["a member restarted (another incarnation, on no ring): its stream ends", [state(A, 7, OLD, 1, 1), state(B, 2, undefined, 0, 0), state(C, 1, OLD, 1, 1)], [B]],
    ["a newcomer from no ring breaks no stream", [state(A, 7, OLD, 1, 1), state(B, 1, OLD, 1, 1), state(C, 1, OLD, 1, 1), state(D, 1, undefined, 0, 0)], []],
    ["rings merge: every old stream ends", [state(A, 7, OLD, 1, 1), state(B, 1, OLD, 1, 1), state(C, 1, OLD, 1, 1), state(D, 1, OTHER, 3, 3)], [A, B, C]],
  ];

  it.each(ends)("where streams end: %s", (_name, states, ended) => {
    const recovery = new Recovery(commit(...states), oldRing([1]), A);
    expect(recovery.endedStreams(oldRing([1]))).toEqual(
      ended.map((peer) => ({ peer, incarnation: peer === A ? 7 : 1 })),
    );
  });
});
