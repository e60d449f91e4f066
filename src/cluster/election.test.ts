import { describe, expect, it } from "vitest";
import { quorumRefusal, type Report, TermElection } from "./election.ts";
import { type MemberInstance, NO_PROMISE, NO_TERM, type StateAck, type Term } from "./state-types.ts";

const A = { id: "a".repeat(32), incarnation: 1 };
const B = { id: "b".repeat(32), incarnation: 1 };
const C = { id: "c".repeat(32), incarnation: 1 };
const D = { id: "d".repeat(32), incarnation: 1 };
const E = { id: "e".repeat(32), incarnation: 1 };
const restarted = (m: MemberInstance) => ({ id: m.id, incarnation: m.incarnation + 1 });

const term = (epoch: number, coordinator: MemberInstance, members: MemberInstance[], prior: Term[] = []): Term => ({
  epoch,
  coordinator: coordinator.id,
  members,
  prior: prior.map(({ epoch, coordinator, members }) => ({ epoch, coordinator, members })),
});
const report = (member: MemberInstance, accepted: Term, index = 10, begun = false, memorySince = 0): Report => ({
  member,
  position: { epoch: accepted.epoch, coordinator: accepted.coordinator, index },
  accepted,
  begun,
  tokenCeiling: 1,
  memorySince,
});

describe("quorumRefusal", () => {
  const abcde = term(5, A, [A, B, C, D, E]);

  it("lets a group that never agreed on anything start", () => {
    expect(quorumRefusal([A, B], [{ ...report(A, NO_TERM, 0) }, { ...report(B, NO_TERM, 0) }])).toBeUndefined();
  });

  it("needs a majority of the latest term's members, counted by id", () => {
    expect(quorumRefusal([A, B, C], [report(A, abcde), report(B, abcde), report(C, abcde)])).toBeUndefined();
    expect(quorumRefusal([D, E], [report(D, abcde), report(E, abcde)])).toMatch(/holds 2 of the 5 members/);
  });

  it("counts on the latest term any member reports, not on each member's own", () => {
    // C took part in the later term {A, B, C}: D and E, with C, hold one of its three members.
    const abc = term(6, A, [A, B, C]);
    expect(quorumRefusal([C, D, E], [report(C, abc), report(D, abcde), report(E, abcde)])).toMatch(/holds 1 of the 3 members/);
  });

  it("takes exactly half of the members with the term's coordinator, never without it", () => {
    const ac = term(7, A, [A, C]);
    expect(quorumRefusal([A], [report(A, ac)])).toBeUndefined();
    expect(quorumRefusal([C], [report(C, ac)])).toMatch(/holds 1 of the 2/);
  });

  it("counts a restarted member (same id, later incarnation) as itself, but not its data", () => {
    const ac = term(7, A, [A, C]);
    // A holds the term's state; C restarted (it remembers the term, not the data): a quorum.
    expect(quorumRefusal([A, restarted(C)], [report(A, ac), report(restarted(C), ac, 0)])).toBeUndefined();
    const abc = term(8, A, [A, B, C]);
    // Two of three restarted at once: the third holds everything done (done means on every member).
    expect(quorumRefusal([restarted(A), restarted(B), C], [report(restarted(A), abc, 0), report(restarted(B), abc, 0), report(C, abc)])).toBeUndefined();
    // Two restarted, the third away: it may hold what was done.
    expect(quorumRefusal([restarted(A), restarted(B)], [report(restarted(A), abc, 0), report(restarted(B), abc, 0)])).toMatch(/no member here still holds/);
    // All restarted and here: nothing of it is left anywhere; they start again.
    expect(quorumRefusal([restarted(A), restarted(B), restarted(C)], [report(restarted(A), abc, 0), report(restarted(B), abc, 0), report(restarted(C), abc, 0)])).toBeUndefined();
  });

  it("counts on the earlier agreed set too while the latest term is not known to have begun (a term begun on some of its members only)", () => {
    // {A..E} began at 23. A started 24 with {A, B, C} (D, E cut off), and C missed its sync: 24 never
    // began, so {A..E} may still be the agreed set. A and B alone hold 2 of its 5 (before, 2 of 3 of 24
    // passed) while C, D and E — 3 of 5, and they never accepted 24 — pass: never both.
    const all = term(23, A, [A, B, C, D, E]);
    const abc = term(24, A, [A, B, C], [all]);
    expect(quorumRefusal([A, B], [report(A, abc), report(B, abc)])).toMatch(/holds 2 of the 5 members of the term 23/);
    expect(quorumRefusal([C, D, E], [report(C, all, 10, true), report(D, all, 10, true), report(E, all, 10, true)])).toBeUndefined();
    // Once 24 is known to have begun (its coordinator said every member accepted it), C accepted it too:
    // its members alone are the agreed set, and C, D and E hold 1 of them.
    expect(quorumRefusal([A, B], [report(A, abc, 10, true), report(B, abc)])).toBeUndefined();
    expect(quorumRefusal([C, D, E], [report(C, abc), report(D, all), report(E, all)])).toMatch(/holds 1 of the 3 members/);
  });

  it("leaves out a term one of its members here never accepted: it never began, and its data is the earlier term's", () => {
    // {A, B, C} at 3; 4 = {A, B} began on A alone. Both restart; C still holds 3 intact.
    const abc = term(3, A, [A, B, C]);
    const ab = term(4, A, [A, B], [abc]);
    expect(quorumRefusal([restarted(A), restarted(B), C], [report(restarted(A), ab, 0), report(restarted(B), abc, 0), report(C, abc)])).toBeUndefined();
    // Without C, no one holds 3's data.
    expect(quorumRefusal([restarted(A), restarted(B)], [report(restarted(A), ab, 0), report(restarted(B), abc, 0)])).toMatch(/no member here still holds/);
  });

  it("does not count a member that did not accept the latest term as holding its state", () => {
    // 8 = {A, B} may have begun (B is away): C, which did not accept it, does not hold what it committed.
    const older = term(7, A, [A, B, C]);
    const ab = term(8, A, [A, B], [older]);
    expect(quorumRefusal([restarted(A), C], [report(restarted(A), ab, 0), report(C, older)])).toMatch(/no member here still holds/);
    // Had B been here not having accepted 8 either, 8 never began: C holds 7, all there is.
    expect(quorumRefusal([restarted(A), B, C], [report(restarted(A), ab, 0), report(B, older), report(C, older)])).toBeUndefined();
  });
});

describe("quorumRefusal, members whose process started again under the same id (an insider identity)", () => {
  const F = { id: "f".repeat(32), incarnation: 1 };
  // The process started again: a later incarnation, and a term memory that begins with it.
  const fresh = (m: MemberInstance) => ({ id: m.id, incarnation: m.incarnation + 1_000 });
  const freshReport = (m: MemberInstance) => report(fresh(m), NO_TERM, 0, false, fresh(m).incarnation);

  it("does not take a member's forgetting a term for that term never having begun", () => {
    // 5 = {A..E} began. {A, B, E} go on with it; C's process starts again and, with D and a newcomer F,
    // forms another view. C not remembering 5 must not strike 5 from the terms that may hold the agreed
    // set: this side holds 2 of its 5 members (D, and C only by id), not a quorum.
    const t5 = term(5, A, [A, B, C, D, E]);
    const side = [fresh(C), D, F];
    expect(quorumRefusal(side, [freshReport(C), report(D, t5, 10, true), report(F, NO_TERM, 0, false, 1)])).toMatch(/holds 1 of the 5/);
    // The other side: 3 of 5.
    expect(quorumRefusal([A, B, E], [report(A, t5, 10, true), report(B, t5, 10, true), report(E, t5, 10, true)])).toBeUndefined();
  });

  it("does not count a member by id for a term it may have forgotten being part of", () => {
    // 5 = {A..E} began, then 7 = {A, B, C, E} (D away) began too. C and E start again as new processes
    // and meet D, which knows only 5: counted by id they would be 3 of 5's members, while {A, B} serve 7
    // (half of it, with its coordinator). They forgot 7, so they do not count for 5 either.
    const t5 = term(5, A, [A, B, C, D, E]);
    const t7 = term(7, A, [A, B, C, E], [t5]);
    expect(quorumRefusal([A, B], [report(A, t7, 12, true), report(B, t7, 12, true)])).toBeUndefined();
    expect(quorumRefusal([fresh(C), D, fresh(E)], [freshReport(C), report(D, t5, 10, true), freshReport(E)])).toMatch(/holds 1 of the 5/);
  });

  it("counts a member restarted in place, whose memory reaches back to the incarnation a term names", () => {
    const t5 = term(5, A, [A, B, C]);
    // B restarted in place: a later incarnation, its memory from its first one.
    const b = restarted(B);
    expect(quorumRefusal([A, b], [report(A, t5, 10, true), report(b, t5, 10, true, B.incarnation)])).toBeUndefined();
    // The same, started again as a new process: A alone holds 1 of 3.
    expect(quorumRefusal([A, fresh(B)], [report(A, t5, 10, true), freshReport(B)])).toMatch(/holds 1 of the 3/);
  });

  it("lets a group whose every member started afresh start again, as at a first start", () => {
    expect(quorumRefusal([fresh(A), fresh(B), fresh(C)], [freshReport(A), freshReport(B), freshReport(C)])).toBeUndefined();
  });
});

function ack(accepted: Term, promised: { epoch: number; coordinator: string }, index = 3, tokenCeiling = 1): StateAck {
  return {
    position: { epoch: accepted.epoch, coordinator: accepted.coordinator, index },
    view: { installer: A.id, counter: 1 },
    tokenCeiling,
    accepted,
    acceptedBegun: false,
    promised,
    memorySince: 0,
    ready: true,
    highestSeen: index,
    leaseProbe: 0,
    snapshotTransfer: 0,
    snapshotChunks: 0,
  };
}

describe("TermElection", () => {
  const rules = { quorum: true, minimumMembers: 1 };
  const t3 = term(3, A, [A, B, C]);

  it("decides once every member promised its epoch; starts above every ceiling reported", () => {
    const election = new TermElection([A, B, C], 4);
    election.answer(A.id, 1, ack(t3, { epoch: 4, coordinator: A.id }, 5, 10), A.id);
    election.answer(B.id, 1, ack(t3, { epoch: 4, coordinator: A.id }, 5, 2_000), A.id);
    expect(election.decide(A.id, rules)).toBeUndefined();
    expect(election.missing()).toEqual([C]);
    election.answer(C.id, 1, ack(t3, { epoch: 4, coordinator: A.id }, 5, 30), A.id);
    expect(election.decide(A.id, rules)).toEqual({ kind: "start", nextToken: 2_000 });
  });

  it("names as the new term's prior the terms that may hold the agreed set: the latest, and its own prior until it is known to have begun", () => {
    const t2 = term(2, B, [A, B, C, D]);
    const t3after2 = term(3, A, [A, B, C], [t2]);
    const promise = { epoch: 4, coordinator: A.id };
    const record = ({ epoch, coordinator, members }: Term) => ({ epoch, coordinator, members });
    const notKnown = new TermElection([A, B], 4);
    notKnown.answer(A.id, 1, ack(t3after2, promise), A.id);
    notKnown.answer(B.id, 1, ack(t3after2, promise), A.id);
    expect(notKnown.prior()).toEqual([record(t3after2), record(t2)]);
    const known = new TermElection([A, B], 4);
    known.answer(A.id, 1, { ...ack(t3after2, promise), acceptedBegun: true }, A.id);
    known.answer(B.id, 1, ack(t3after2, promise), A.id);
    expect(known.prior()).toEqual([record(t3after2)]);
  });

  it("takes no promise made to another coordinator, and asks above an epoch promised elsewhere", () => {
    const election = new TermElection([A, B], 4);
    election.answer(B.id, 1, ack(t3, { epoch: 4, coordinator: C.id }), A.id);
    expect(election.missing()).toContainEqual(B);
    expect(election.higher).toBe(4);
    election.answer(B.id, 1, ack(t3, { epoch: 9, coordinator: C.id }), A.id);
    expect(election.higher).toBe(9);
  });

  it("ignores answers from members not in the view, or from another incarnation", () => {
    const election = new TermElection([A, B], 4);
    election.answer(D.id, 1, ack(t3, { epoch: 4, coordinator: A.id }), A.id);
    election.answer(B.id, 2, ack(t3, { epoch: 4, coordinator: A.id }), A.id);
    expect(election.missing()).toEqual([A, B]);
  });

  it("pulls from a member further along, then starts with its position", () => {
    const election = new TermElection([A, B], 4);
    election.answer(A.id, 1, ack(t3, { epoch: 4, coordinator: A.id }, 5), A.id);
    election.answer(B.id, 1, ack(t3, { epoch: 4, coordinator: A.id }, 9), A.id);
    expect(election.decide(A.id, { quorum: false, minimumMembers: 1 })).toEqual({ kind: "pull", from: B.id });
    election.pulled(A.id, B.id, { epoch: 3, coordinator: A.id, index: 9 }, 1);
    expect(election.decide(A.id, { quorum: false, minimumMembers: 1 })).toMatchObject({ kind: "start" });
  });

  it("takes a pulled member for where its pull found it, not for what it reported: it never pulls from it again", () => {
    // B reported the position of the later term 15 (C's), then applied updates of A's older line that
    // A's earlier term sync had sent it: it is at 4/414 of A when pulled. Compared with its report
    // again, it would stay "further along", and A would pull from it for ever.
    const t15 = term(15, C, [B, C, D]);
    const t6 = term(6, A, [A, B, C]);
    const promise = { epoch: 16, coordinator: A.id };
    const free = { quorum: false, minimumMembers: 1 };
    const election = new TermElection([A, B], 16);
    election.answer(A.id, 1, ack(t6, promise, 414), A.id);
    election.answer(B.id, 1, ack(t15, promise, 408), A.id);
    expect(election.decide(A.id, free)).toEqual({ kind: "pull", from: B.id });
    const found = { epoch: 4, coordinator: A.id, index: 414 };
    election.pulled(A.id, B.id, found, 1);
    expect(election.decide(A.id, free)).toMatchObject({ kind: "start" });
    expect(election.positions()).toEqual(new Map([[A.id, found], [B.id, found]]));
  });

  it("pulls from the next member further along once a pull found its source behind its report", () => {
    const t15 = term(15, C, [B, C, D]);
    const t6 = term(6, A, [A, B, C]);
    const promise = { epoch: 16, coordinator: A.id };
    const free = { quorum: false, minimumMembers: 1 };
    const election = new TermElection([A, B, C], 16);
    election.answer(A.id, 1, ack(t6, promise, 414), A.id);
    election.answer(B.id, 1, ack(t15, promise, 408), A.id);
    election.answer(C.id, 1, ack(t15, promise, 408), A.id);
    expect(election.decide(A.id, free)).toEqual({ kind: "pull", from: B.id });
    // B had gone back onto A's older line; C still stands where it reported.
    election.pulled(A.id, B.id, { epoch: 4, coordinator: A.id, index: 414 }, 1);
    expect(election.decide(A.id, free)).toEqual({ kind: "pull", from: C.id });
    election.pulled(A.id, C.id, { epoch: 15, coordinator: C.id, index: 408 }, 1);
    expect(election.decide(A.id, free)).toMatchObject({ kind: "start" });
  });

  it("refuses below minimumMembers, and without a quorum", () => {
    const alone = new TermElection([A], 4);
    alone.answer(A.id, 1, ack(t3, { epoch: 4, coordinator: A.id }), A.id);
    expect(alone.decide(A.id, { quorum: false, minimumMembers: 2 })).toMatchObject({ kind: "refuse", reason: expect.stringMatching(/1 of the 2 members/) });
    expect(alone.decide(A.id, rules)).toMatchObject({ kind: "refuse", reason: expect.stringMatching(/holds 1 of the 3/) });
    expect(NO_PROMISE.epoch).toBe(0);
  });
});
