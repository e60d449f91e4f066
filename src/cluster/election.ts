import type { PeerKey } from "../reliable/protocol.ts";
import { comparePositions, type MemberInstance, type Position, type StateAck, type Term, type TermRecord } from "./state-types.ts";

/** What a member of the view answered the coordinator's PrepareOp with: a promise, and where it stands. */
export interface Report {
  readonly member: MemberInstance;
  readonly position: Position;
  readonly accepted: Term;
  /** The member knows `accepted` began (every one of its members accepted it). */
  readonly begun: boolean;
  readonly tokenCeiling: number;
  /** The first incarnation whose term memory the member keeps (StateAck.memorySince). */
  readonly memorySince: number;
}

/**
 * Whether `report` speaks for `member` (a member of some term, in the incarnation the term names): it is
 * that member, in that incarnation or a later one whose memory reaches back to it. A process started
 * again under the same member id (an insider identity) does not: it forgot what its earlier run promised
 * and accepted.
 */
function speaksFor(report: Report, member: MemberInstance): boolean {
  return report.member.id === member.id && report.memorySince <= member.incarnation;
}

/** What the coordinator of a view does once every member promised. */
export type Decision =
  /** A member is further along: take what it has first. */
  | { readonly kind: "pull"; readonly from: PeerKey }
  /** This side may not take writes (quorum mode, or too few members). */
  | { readonly kind: "refuse"; readonly reason: string }
  /** Start the term (at the election's epoch); fencing tokens go on from `nextToken`. */
  | { readonly kind: "start"; readonly nextToken: number };

export interface ElectionRules {
  readonly quorum: boolean;
  readonly minimumMembers: number;
}

function record(term: TermRecord): TermRecord {
  return { epoch: term.epoch, coordinator: term.coordinator, members: term.members };
}

/**
 * The terms whose members may be the agreed set, from what the members of a view reported, newest first:
 * the latest term any of them accepted and — unless one of them knows it began — the terms its own
 * election counted on (its `prior`). A term begins only once every one of its members accepted it, and
 * a member remembers what it accepted across restarts: so a term one of its members here reports not
 * having accepted never began, and never will (that member promised a later epoch), and is left out.
 * This list is the `prior` of the term the view's election starts.
 */
export function agreedCandidates(reports: readonly Report[]): TermRecord[] {
  let latest: Term | undefined;
  for (const report of reports) if (report.accepted.epoch > (latest?.epoch ?? 0)) latest = report.accepted;
  if (latest === undefined) return [];
  const term = latest;
  const begun = reports.some((r) => r.begun && r.accepted.epoch === term.epoch && r.accepted.coordinator === term.coordinator);
  const candidates = begun ? [record(term)] : [record(term), ...term.prior];
  return candidates.filter((candidate) => !reports.some((r) => r.accepted.epoch < candidate.epoch && candidate.members.some((m) => speaksFor(r, m))));
}

/**
 * Whether a view may start a term, in quorum mode, from what its members reported (see
 * {@link agreedCandidates} for the terms that may hold the agreed set):
 * - the view holds more than half of the members of each such term — or exactly half, with the term's
 *   coordinator — counted by member id: a member that restarted in place (same id, a later incarnation)
 *   counts as itself, because its earlier run is certainly gone and it kept the term it accepted and the
 *   epochs it promised across its restart; one whose memory does not reach back to the incarnation the
 *   term names (a process started again under the same id) does not count: it may have forgotten a
 *   later term it was part of;
 * - and one of them at least still holds the newest such term's data: it accepted that term, or a later
 *   one, in the incarnation the term names (it did not restart since). Whatever a term committed is on
 *   every one of its members, and a later term's sync brought it along, so it is then here. With every
 *   member of the latest term here, each having taken it up and restarted since, nothing of its data is
 *   left anywhere: the map starts again from what they hold.
 *
 * Each election counts on every term that may still be the agreed set until one is known to have begun,
 * so the agreed set changes only with a majority of the old one — also when a term began on only some of
 * its members: two sides of a partition can never both pass. A group that never agreed on anything (a
 * first start) passes. Returns why not, or undefined.
 */
export function quorumRefusal(view: readonly MemberInstance[], reports: readonly Report[]): string | undefined {
  const candidates = agreedCandidates(reports);
  const newest = candidates[0];
  if (newest === undefined) return undefined;
  const ids = new Set(view.map((m) => m.id));
  const reported = new Map(reports.map((r) => [r.member.id, r]));
  // Here for `member` of a term: in the view, and (when it reported) remembering that incarnation.
  const here = (member: MemberInstance) => {
    if (!ids.has(member.id)) return false;
    const report = reported.get(member.id);
    return report === undefined || speaksFor(report, member);
  };
  for (const term of candidates) {
    const size = term.members.length;
    const present = term.members.filter(here).length;
    const coordinator = term.members.find((m) => m.id === term.coordinator);
    const coordinatorHere = coordinator === undefined ? ids.has(term.coordinator) : here(coordinator);
    if (present * 2 < size || (present * 2 === size && !coordinatorHere)) {
      const which = term === newest ? "that last agreed on the map" : `of the term ${term.epoch} that may still hold the agreed set`;
      return `no quorum: this side holds ${present} of the ${size} members ${which}`;
    }
  }
  const holds = (r: Report) => r.accepted.epoch >= newest.epoch && r.accepted.members.some((m) => m.id === r.member.id && m.incarnation === r.member.incarnation);
  if (reports.some(holds)) return undefined;
  const tookUp = reports.filter((r) => r.accepted.epoch === newest.epoch && r.accepted.coordinator === newest.coordinator);
  const latest = reports.every((r) => r.accepted.epoch <= newest.epoch);
  if (!latest || tookUp.length < newest.members.length) {
    return `no quorum: no member here still holds the state the ${newest.members.length} members that last agreed on the map held (those here restarted since)`;
  }
  return undefined;
}

/**
 * The coordinator's side of a view change, as in Paxos' first phase: it asks every member of the view to
 * promise not to accept a term below `epoch` (above every epoch it knows of), learns where each stands
 * and what it accepted last, asks again above any higher epoch an answer shows, and once every member
 * promised, decides — pull from a member further along, refuse (no quorum, too few members), or start
 * the term at `epoch` above every fencing-token ceiling reported. A member that promised cannot accept a
 * term of a lower epoch from anyone, so no term begun elsewhere meanwhile can be missed by this one.
 */
export class TermElection {
  readonly view: readonly MemberInstance[];
  readonly epoch: number;
  readonly #reports = new Map<PeerKey, Report>();
  #higher = 0;

  constructor(view: readonly MemberInstance[], epoch: number) {
    this.view = view;
    this.epoch = epoch;
  }

  /**
   * Takes `peer`'s answer (a member of the view, in the incarnation the view has): a promise of our
   * epoch to `local`, or a refusal showing a higher one.
   */
  answer(peer: PeerKey, incarnation: number, ack: StateAck, local: PeerKey): void {
    const member = this.view.find((m) => m.id === peer && m.incarnation === incarnation);
    if (member === undefined) return;
    const seen = Math.max(ack.promised.epoch, ack.accepted.epoch, ack.position.epoch);
    if (ack.promised.epoch === this.epoch && ack.promised.coordinator === local) {
      this.#reports.set(peer, { member, position: ack.position, accepted: ack.accepted, begun: ack.acceptedBegun, tokenCeiling: ack.tokenCeiling, memorySince: ack.memorySince });
    } else if (seen >= this.epoch) {
      this.#higher = Math.max(this.#higher, seen);
    }
  }

  /** An epoch some member promised or accepted at or above ours: ask again above it (0: none). */
  get higher(): number {
    return this.#higher;
  }

  /** The members that have not promised yet. */
  missing(): MemberInstance[] {
    return this.view.filter((m) => !this.#reports.has(m.id));
  }

  positions(): Map<PeerKey, Position> {
    return new Map([...this.#reports].map(([peer, report]) => [peer, report.position]));
  }

  /**
   * A pull from `source` brought our replica to `position`, where `source` stood when it answered (its
   * SyncComplete names it): decide again with both there. It may be short of what `source` reported —
   * it took updates of another line since, from a coordinator it followed — and compared with its
   * report again, `source` would stay further along and be pulled from without end.
   */
  pulled(local: PeerKey, source: PeerKey, position: Position, tokenCeiling: number): void {
    const own = this.#reports.get(local);
    if (own !== undefined) this.#reports.set(local, { ...own, position, tokenCeiling: Math.max(own.tokenCeiling, tokenCeiling) });
    const pulled = this.#reports.get(source);
    if (pulled !== undefined) this.#reports.set(source, { ...pulled, position });
  }

  /** The `prior` of the term this election starts (once every member promised). */
  prior(): TermRecord[] {
    return agreedCandidates([...this.#reports.values()]);
  }

  /** Once every member promised: what to do (undefined before). */
  decide(local: PeerKey, rules: ElectionRules): Decision | undefined {
    if (this.missing().length > 0) return undefined;
    const reports = [...this.#reports.values()];
    if (this.view.length < rules.minimumMembers) {
      return { kind: "refuse", reason: `no quorum: the group has ${this.view.length} of the ${rules.minimumMembers} members it needs to take writes` };
    }
    if (rules.quorum) {
      const refusal = quorumRefusal(this.view, reports);
      if (refusal !== undefined) return { kind: "refuse", reason: refusal };
    }
    const own = this.#reports.get(local)!;
    let best = own;
    for (const report of reports) if (comparePositions(report.position, best.position) > 0) best = report;
    if (best !== own && comparePositions(best.position, own.position) !== 0) return { kind: "pull", from: best.member.id };
    let nextToken = 1;
    for (const report of reports) nextToken = Math.max(nextToken, report.tokenCeiling);
    return { kind: "start", nextToken };
  }
}
